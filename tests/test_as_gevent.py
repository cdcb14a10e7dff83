"""greenwheel.as_gevent: unmodified gevent code runs on greenwheel.

Every test runs in a fresh interpreter: the alias is process-wide by design,
and these tests check what a user sees from the command line.
"""

import os
import subprocess
import sys
import textwrap

import pytest


def run(args, cwd=None, env=None, **kwargs):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=60,
        **kwargs,
    )


def test_gevent_names_resolve_to_greenwheel_modules_shared_not_copied():
    code = textwrap.dedent(
        """
        import greenwheel.as_gevent
        import gevent, gevent.hub, gevent.monkey
        from gevent.event import Event
        from gevent import pool as gpool
        import greenwheel, greenwheel.event, greenwheel.pool
        assert gevent is greenwheel
        assert gevent.hub is greenwheel.hub and gevent.monkey is greenwheel.monkey
        assert Event is greenwheel.event.Event and gpool is greenwheel.pool
        # The module keeps its own spec: reload and pickling use greenwheel's name.
        assert gevent.hub.__spec__.name == "greenwheel.hub"
        import sys
        assert sys.modules["gevent.event"] is greenwheel.event
        try:
            import gevent.no_such_module
        except ModuleNotFoundError as exc:
            assert exc.name == "gevent.no_such_module", exc.name
        else:
            raise AssertionError("imported a module that does not exist")
        # gevent code runs: a greenlet, an event and a sleep, through the gevent names.
        e = Event()
        g = gevent.spawn(lambda: (gevent.sleep(0.01), e.set()))
        assert e.wait(5) and g.join(5) is None and g.dead
        print(sorted(greenwheel.as_gevent.__all__), greenwheel.as_gevent.installed())
        """
    )
    out = run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "['GeventAlreadyImported',",
        "'install',",
        "'installed',",
        "'main']",
        "True",
    ]


def test_refuses_when_another_gevent_is_already_imported(tmp_path):
    # A package named gevent that is not greenwheel's (the real one, in a user's
    # environment) imported first: installing the alias must fail loudly.
    (tmp_path / "gevent").mkdir()
    (tmp_path / "gevent" / "__init__.py").write_text("REAL = True\n")
    code = "import gevent\nimport greenwheel.as_gevent\n"
    out = run(["-c", code], env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 1
    assert "GeventAlreadyImported" in out.stderr
    assert "the real gevent is already imported (gevent)" in out.stderr
    # The other order works, and the alias wins over the installed package.
    code = "import greenwheel.as_gevent, gevent\nprint(hasattr(gevent, 'REAL'), gevent.__name__)\n"
    out = run(["-c", code], env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "greenwheel"]


APP = """\
import sys
import gevent
from gevent import monkey

def work(n):
    gevent.sleep(0.01)
    return n * 2

jobs = [gevent.spawn(work, n) for n in range(3)]
gevent.joinall(jobs)
print(gevent.__name__, [job.value for job in jobs], sys.argv[1:], __name__)
sys.exit(int(sys.argv[-1]))
"""


def test_runs_a_script_with_its_arguments_and_exit_status(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = run(["-m", "greenwheel.as_gevent", str(app), "--flag", "3"])
    assert out.returncode == 3, out.stderr
    assert out.stdout.strip() == "greenwheel [0, 2, 4] ['--flag', '3'] __main__"


def test_runs_a_module_like_python_dash_m(tmp_path):
    (tmp_path / "gapp").mkdir()
    (tmp_path / "gapp" / "__init__.py").write_text("")
    (tmp_path / "gapp" / "__main__.py").write_text(APP)
    out = run(["-m", "greenwheel.as_gevent", "-m", "gapp", "x", "0"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "greenwheel [0, 2, 4] ['x', '0'] __main__"


def test_runs_a_command_string():
    code = "import gevent, sys; print(gevent.__name__, sys.argv)"
    out = run(["-m", "greenwheel.as_gevent", "-c", code, "a"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "greenwheel ['-c', 'a']"


def test_runs_an_installed_console_script(tmp_path):
    # pytest's own console script, collecting a test that imports gevent:
    # the entry point runs with the alias already in place.
    (tmp_path / "test_uses_gevent.py").write_text(
        "import gevent\n\ndef test_it():\n    assert gevent.__name__ == 'greenwheel'\n"
    )
    out = run(
        [
            "-m",
            "greenwheel.as_gevent",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_uses_gevent.py",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_runs_an_executable_script_found_on_path(tmp_path):
    tool = tmp_path / "gevent-tool"
    tool.write_text("#!/usr/bin/env python3\n" + APP)
    tool.chmod(0o755)
    env = {"PATH": str(tmp_path) + os.pathsep + os.environ.get("PATH", "")}
    out = run(["-m", "greenwheel.as_gevent", "gevent-tool", "0"], env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "greenwheel [0, 2, 4] ['0'] __main__"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ([], 2, "usage: python -m greenwheel.as_gevent"),
        (["-m"], 2, "usage:"),
        (["no-such-program-here"], 2, "no script, module or console script 'no-such-program-here'"),
        (["--help"], 0, "usage:"),
    ],
)
def test_bad_command_lines_get_usage_and_status(args, status, message):
    out = run(["-m", "greenwheel.as_gevent", *args])
    assert out.returncode == status
    assert message in out.stderr


def test_python_dash_m_runs_a_gevent_module_by_its_gevent_name(tmp_path):
    # 'python -m gevent.monkey script.py' (gevent's documented way to patch
    # before a script runs) runs greenwheel.monkey's main through the alias.
    script = tmp_path / "patched.py"
    script.write_text(
        "import socket, gevent.monkey\nprint(gevent.monkey.is_module_patched('socket'))\n"
    )
    out = run(["-m", "greenwheel.as_gevent", "-m", "gevent.monkey", str(script)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_gevent_submodules_are_in_sys_modules_under_gevent_names_however_imported():
    # Libraries detect gevent by looking in sys.modules (psycopg 3 asks
    # sys.modules.get("gevent.monkey").is_module_patched("select") and runs
    # every query one at a time when it is missing). 'from gevent import monkey'
    # imports the submodule under the package's __name__ (greenwheel), so the
    # alias must file it under the gevent name as well.
    code = textwrap.dedent(
        """
        import sys
        import greenwheel.as_gevent
        import greenwheel
        # Imported before the alias: filed when it is installed.
        assert sys.modules["gevent"] is greenwheel
        assert sys.modules["gevent.hub"] is sys.modules["greenwheel.hub"]
        from gevent import monkey
        assert sys.modules.get("gevent.monkey") is monkey, sorted(sys.modules)
        monkey.patch_all()
        assert sys.modules["gevent.monkey"].is_module_patched("select")
        # Imported later under greenwheel's name: filed too, keeping its own
        # spec and loader (a plain source loader, not the alias's).
        import greenwheel.pywsgi as pywsgi
        assert sys.modules.get("gevent.pywsgi") is pywsgi
        assert pywsgi.__spec__.name == "greenwheel.pywsgi"
        assert type(pywsgi.__loader__).__name__ == "SourceFileLoader", pywsgi.__loader__
        assert pywsgi.__spec__.loader is pywsgi.__loader__
        import importlib
        assert importlib.reload(pywsgi) is pywsgi
        # The extension module too.
        assert sys.modules["gevent._core"] is sys.modules["greenwheel._core"]
        print("ok")
        """
    )
    out = run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
