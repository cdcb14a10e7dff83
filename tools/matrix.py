"""The interpreter matrix: tests and wheels on every supported CPython.

    python3 tools/matrix.py list          # the interpreters found
    python3 tools/matrix.py test          # build + pytest on each (own venv, own extension)
    python3 tools/matrix.py wheels        # manylinux wheels for each, into dist/
    python3 tools/matrix.py test-wheels   # each wheel in a fresh venv, the suite against it;
                                          # then the sdist, built and installed by pip

Interpreters are looked up as pyenv installs them (``~/.pyenv/versions/3.X.*``)
and then on PATH (``python3.X``). One that is truly absent is skipped with a
printed reason; ``GREENWHEEL_REQUIRE_ALL=1`` (set by .ci/run) makes that an
error instead, so CI cannot go green on fewer interpreters than it claims.

Each venv lives outside the source tree (under ``$TMPDIR``), and each
interpreter gets its own cargo target directory: PyO3 is configured per
interpreter, and sharing one directory would rebuild it on every switch.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ("3.11", "3.12", "3.13")
#: The oldest manylinux tag the extension links for (glibc 2.17), via zig.
MANYLINUX = "manylinux2014"


def find(version: str) -> str | None:
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(
        glob.glob(os.path.join(pyenv_root, "versions", version + ".*", "bin", "python" + version)),
        key=lambda p: [int(x) for x in p.split("/versions/")[1].split("/")[0].split(".")],
    )
    if candidates:
        return candidates[-1]
    return shutil.which("python" + version)


def interpreters() -> dict[str, str]:
    found = {}
    for version in VERSIONS:
        path = find(version)
        if path is None:
            message = "python%s not found (no pyenv install, not on PATH)" % version
            if os.environ.get("GREENWHEEL_REQUIRE_ALL"):
                sys.exit("error: " + message)
            print("skipping " + message, flush=True)
            continue
        found[version] = path
    return found


def run(cmd: list[str], **kwargs) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def venv(version: str, python: str, name: str) -> str:
    path = os.path.join(tempfile.gettempdir(), "greenwheel-%s-%s" % (name, version))
    shutil.rmtree(path, ignore_errors=True)
    run([python, "-m", "venv", path])
    return os.path.join(path, "bin", "python")


def _build_requires() -> list[str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return [r for r in tomllib.load(f)["build-system"]["requires"] if r.startswith("maturin")]


#: maturin as pyproject.toml's build-system pins it.
MATURIN = _build_requires()


def requirements() -> list[str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    return project["optional-dependencies"]["test"]


def cmd_list() -> None:
    for version, path in interpreters().items():
        print(version, path)


def cmd_test(skip_current: bool) -> None:
    current = "%d.%d" % sys.version_info[:2]
    for version, python in interpreters().items():
        if skip_current and version == current:
            print("python%s: already tested by `make test`" % version, flush=True)
            continue
        env_python = venv(version, python, "test")
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "py" + version))
        # `make test` minus the Rust core's tests, which do not involve Python.
        run(["make", "-C", ROOT, "deps", "build", "test-py", "PYTHON=" + env_python], env=env)


def cmd_wheels() -> None:
    found = interpreters()
    dist = os.path.join(ROOT, "dist")
    shutil.rmtree(dist, ignore_errors=True)
    # The build tools get a venv of their own: `python -m maturin` looks for
    # its binary next to the running interpreter's scripts, which a venv made
    # with --system-site-packages (or a user install) does not have.
    version = "%d.%d" % sys.version_info[:2]
    build_python = venv(version, sys.executable, "build")
    run([build_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "ziglang"])
    run([build_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + MATURIN)
    cmd = [build_python, "-m", "maturin", "build", "--release", "--strip", "--zig"]
    cmd += ["--compatibility", MANYLINUX, "--out", dist]
    for python in found.values():
        cmd += ["--interpreter", python]
    # maturin finds zig as `python3 -m ziglang` with the python3 on PATH, so
    # the build venv (which has ziglang) goes first: without it a machine
    # whose own python3 lacks ziglang fails with "Failed to find zig".
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "wheels"))
    env["PATH"] = os.pathsep.join([os.path.dirname(build_python), env.get("PATH", "")])
    run(cmd, cwd=ROOT, env=env)
    run([build_python, "-m", "maturin", "sdist", "--out", dist], cwd=ROOT)


def cmd_test_wheels() -> None:
    dist = os.path.join(ROOT, "dist")
    for version, python in interpreters().items():
        tag = "cp" + version.replace(".", "")
        wheels = glob.glob(os.path.join(dist, "greenwheel-*-%s-%s-*.whl" % (tag, tag)))
        if len(wheels) != 1:
            sys.exit("error: expected one %s wheel in dist/, found %r" % (tag, wheels))
        wheel = wheels[0]
        if MANYLINUX.replace("2014", "_2_17") not in wheel and MANYLINUX not in wheel:
            sys.exit("error: %s is not tagged %s" % (wheel, MANYLINUX))
        env_python = venv(version, python, "wheel")
        run([env_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])
        run(
            [env_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            + requirements()
        )
        # The whole suite (unit and integration), from the checkout, importing
        # the installed wheel (conftest asserts where greenwheel came from).
        # Each wheel is its interpreter's own build of the extension, so this
        # is also the interpreter matrix CI runs (`test --others` runs the
        # same suite on editable builds, for development).
        env = dict(os.environ, GREENWHEEL_TEST_INSTALLED="1")
        run(
            [
                env_python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests",
            ],
            cwd=ROOT,
            env=env,
        )


def cmd_test_sdist() -> None:
    # The sdist must build and install on its own (pip runs maturin in an
    # isolated build environment, as a user's `pip install greenwheel-*.tar.gz`).
    sdists = glob.glob(os.path.join(ROOT, "dist", "greenwheel-*.tar.gz"))
    if len(sdists) != 1:
        sys.exit("error: expected one sdist in dist/, found %r" % (sdists,))
    version = "%d.%d" % sys.version_info[:2]
    env_python = venv(version, sys.executable, "sdist")
    run([env_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", sdists[0]])
    run(
        [
            env_python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "pytest",
            "pytest-timeout",
            "hypothesis",
            "mypy",
        ]
    )
    env = dict(os.environ, GREENWHEEL_TEST_INSTALLED="1")
    run(
        [
            env_python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_api.py",
            "tests/test_interpreter.py",
            "tests/test_hub.py",
            "tests/test_stub.py",
        ],
        cwd=ROOT,
        env=env,
    )


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("list", "test", "wheels", "test-wheels"):
        sys.exit(__doc__)
    if argv[0] == "list":
        cmd_list()
    elif argv[0] == "test":
        cmd_test(skip_current="--others" in argv)
    elif argv[0] == "wheels":
        cmd_wheels()
    else:
        cmd_test_wheels()
        cmd_test_sdist()


if __name__ == "__main__":
    main(sys.argv[1:])
