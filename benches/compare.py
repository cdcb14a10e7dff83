#!/usr/bin/env python
"""greenwheel vs gevent, eventlet, asyncio, uvloop, rloop, granian: same workloads, side by side.

    python benches/compare.py                 # everything (~5 minutes), or: make bench-py
    python benches/compare.py --quick         # smoke test: tenfold smaller, ~1 minute
    python benches/compare.py --only sleep0,timer --libs greenwheel,gevent --repeat 3
    python benches/compare.py --tree before=/tmp/old/python --libs greenwheel,gevent

Install the other libraries first (whatever fails to install is skipped)::

    python -m pip install -q gevent eventlet uvloop rloop granian flask matplotlib \
        pytest-benchmark                      # or: python -m pip install -e '.[bench]'
    apt-get install -y wrk openssl            # for the HTTP workloads (openssl: TLS row)

rloop is an asyncio event loop like uvloop: it runs the asyncio rows.
granian is a Rust HTTP server: it only has the WSGI rows (the same WSGI
application, from ``benches/wsgi_apps.py``, served by ``granian --interface
wsgi --workers 1``), and each of those runs it in every single-worker
configuration of ``workloads.GRANIAN_CONFIGS`` (its default, and one
blocking thread) and reports the best, naming it.

Each (workload, library) pair runs in a fresh child process (``workloads.py
run WORKLOAD LIB``) so that nothing is shared between libraries; the HTTP
workloads start one more process for the server and run wrk against it,
with wrk held to CPU 0 so that the server has a core of its own
(``workloads.wrk_cpu_prefix``: unpinned, the scheduler's placement of wrk's
threads moved the rows by up to 20%).
With ``--repeat N`` every pair runs N times and the best run is reported.

``--tree LABEL=DIR`` adds a column that runs greenwheel from another source
tree (DIR is that tree's ``python`` directory, holding its own built
``_core``), in the same run: the before/after table of a structural change.
With ``--tree-lib greenwheel.asyncio`` the tree's column runs the asyncio
workloads on that tree's ``greenwheel.asyncio`` loop instead.

Prints a table of each workload's rate (and its ratio to gevent), then the
performance targets of the issues with PASS/MISS (INFO: reported, no target;
N/A: a row or a peer the target reads was not measured), and writes
``benches/results.json`` (raw numbers and the machine) and
``benches/results.png`` (ratio to gevent per workload).

The machine has 2 cores and other processes may be running: numbers from a
busy machine are lower and noisier, so the load average is recorded too.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import FAMILY, WORKLOADS, Workload, wrk_cpu_prefix  # noqa: E402

LIBS = (
    "greenwheel",
    "gevent",
    "eventlet",
    "asyncio",
    "uvloop",
    "rloop",
    "greenwheel.asyncio",
    "granian",
    "greenlet",
)
BASELINE = "gevent"
SUBJECT = "greenwheel"

#: Seconds before a child is considered hung (its process group is killed).
CHILD_TIMEOUT = {False: 300, True: 120}


# --- running the children -------------------------------------------------------------


def run_child(name: str, lib: str, quick: bool, tree: str | None = None) -> dict:
    """Run one workload on one library in a fresh process; return its JSON outcome.

    With ``tree`` (a source tree's ``python`` directory), greenwheel is
    imported from there: PYTHONPATH comes before the installed package, and
    the HTTP workloads' server processes inherit it.
    """
    command = [sys.executable, str(HERE / "workloads.py"), "run", name, lib]
    if quick:
        command.append("--quick")
    env = None
    if tree is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    started = time.perf_counter()
    # A session of its own, so a hung child can be killed together with the
    # server process an HTTP workload starts.
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT[quick])
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"error": f"timed out after {CHILD_TIMEOUT[quick]} s"}
    wall = time.perf_counter() - started
    json_lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not json_lines:
        last = [line for line in stderr.strip().splitlines() if line.strip()]
        return {
            "error": last[-1] if last else f"exit status {child.returncode}",
            "stderr": stderr[-4000:],
        }
    outcome = json.loads(json_lines[-1])
    outcome["wall_seconds"] = round(wall, 2)
    return outcome


def merge(previous: dict | None, outcome: dict, workload: Workload) -> dict:
    """Fold one run into the record of a (workload, library) pair, keeping the best run."""
    record = previous or {"runs": []}
    if "value" not in outcome:
        # A successful run from another repeat wins over a skip or an error.
        if "value" not in record:
            record.update({k: v for k, v in outcome.items() if k in ("skip", "error", "stderr")})
        return record
    record["runs"].append(outcome["value"])
    best = min if workload.lower_is_better else max
    if "value" not in record or best(record["value"], outcome["value"]) == outcome["value"]:
        record["value"] = outcome["value"]
        record["details"] = outcome.get("details", {})
    for stale in ("skip", "error", "stderr"):
        record.pop(stale, None)
    return record


# --- reading the results ------------------------------------------------------------------


class Results:
    """The measured numbers and what can be derived from them."""

    def __init__(self, workloads: list[Workload], libs: list[str]):
        self.workloads = workloads
        self.libs = libs
        self.records: dict[str, dict[str, dict]] = {w.name: {} for w in workloads}

    def value(self, name: str, lib: str) -> float | None:
        return self.records.get(name, {}).get(lib, {}).get("value")

    def ratio(self, name: str, lib: str) -> float | None:
        """How many times better than gevent (for memory: gevent bytes / lib bytes)."""
        value, base = self.value(name, lib), self.value(name, BASELINE)
        if not value or not base:
            return None
        return base / value if WORKLOADS[name].lower_is_better else value / base

    def flatness(self, lib: str) -> float | None:
        """Per-op cost of timer arm+cancel with 1M pending over that with 10k pending."""
        small, large = self.value("timer_10k", lib), self.value("timer_1m", lib)
        return small / large if small and large else None

    def why_missing(self, name: str, lib: str = SUBJECT) -> str:
        record = self.records.get(name, {}).get(lib)
        if record is None:
            return "not run"
        return record.get("skip") or record.get("error") or "no result"


def si(value: float) -> str:
    """3 significant digits with a k/M/G suffix: 1290117 -> '1.29M'."""
    suffix = ""
    for scale, letter in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            value, suffix = value / scale, letter
            break
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}{suffix}"


def _not_applicable(skip: str) -> bool:
    """A skip because the library has no implementation of the row at all
    (workloads.py: "no sleep0 for granian", "asyncio has no wsgi server")."""
    return skip.startswith("no ") or " has no " in skip


def print_table(results: Results) -> None:
    notes: dict[str, int] = {}

    def note(text: str) -> str:
        return f"[{notes.setdefault(text, len(notes) + 1)}]"

    flatness_label = "timer flatness: 1M / 10k per-op cost"
    title_width = max(len(w.title) for w in results.workloads) + 2
    title_width = max(title_width, len(flatness_label) + 2)
    unit_width = max(len(w.unit) for w in results.workloads) + 2
    cell = max(16, *(len(lib) + 2 for lib in results.libs))
    header = f"{'workload':<{title_width}}{'unit':<{unit_width}}" + "".join(
        f"{lib:>{cell}}" for lib in results.libs
    )
    print(header)
    print("-" * len(header))
    for w in results.workloads:
        cells = []
        for lib in results.libs:
            record = results.records[w.name].get(lib, {})
            if "value" in record:
                ratio = results.ratio(w.name, lib)
                text = si(record["value"]) + (f" {ratio:5.2f}x" if ratio is not None else "")
                details = record.get("details", {})
                if details.get("config"):
                    # A library run in several configurations: which one is shown.
                    tried = ", ".join(
                        f"{config} {si(rate)}"
                        for config, rate in details.get("rates_by_config", {}).items()
                    )
                    text += note(f"{lib} / {w.name}: {details['config']} (of {tried} {w.unit})")
            elif "skip" in record and _not_applicable(record["skip"]):
                # The library has no such thing (granian runs no sleep(0),
                # asyncio ships no WSGI server): nothing to explain.
                text = "-"
            elif "skip" in record:
                text = "skip" + note(f"{lib}: {record['skip']}")
            elif "error" in record:
                text = "error" + note(f"{lib} / {w.name}: {record['error']}")
            else:
                text = "-"
            # A cell with a note may fill its width: keep it apart from its neighbour.
            cells.append(f"{text:>{cell}}" if len(text) < cell else " " + text)
        print(f"{w.title:<{title_width}}{w.unit:<{unit_width}}" + "".join(cells))
    if {"timer_10k", "timer_1m"} <= set(results.records):
        cells = []
        for lib in results.libs:
            flat = results.flatness(lib)
            cells.append(f"{(f'{flat:.2f}' if flat else '-'):>{cell}}")
        print(f"{flatness_label:<{title_width}}{'x (1 = flat)':<{unit_width}}" + "".join(cells))
    print()
    print(
        "ratio = times better than gevent: rate / gevent's rate; for memory (lower is"
        " better) gevent's bytes / the library's bytes.  Best of the runs.  -: the"
        " library has no such workload."
    )
    # Variants of one workload share their note: print it once, under the family name.
    explained = {w.note: w.title.split(",")[0] for w in reversed(results.workloads) if w.note}
    for text, family in reversed(explained.items()):
        print(f"  {family}: {text}")
    for text, number in notes.items():
        print(f"  [{number}] {text}")


# --- the targets ------------------------------------------------------------------


def _ratio_part(name: str, minimum: float):
    def part(results: Results):
        ratio = results.ratio(name, SUBJECT)
        if ratio is None:
            return None, f"{name}: {results.why_missing(name)}"
        # Named: a target may read several rows (Event and Queue, 10k and 1M).
        return ratio >= minimum, f"{ratio:.2f}x @{name}"

    part.reads = (name,)
    return part


def _flatness_part(maximum: float):
    def part(results: Results):
        flat = results.flatness(SUBJECT)
        if flat is None:
            return None, "timer_10k/timer_1m: missing"
        return flat <= maximum, f"1M/10k {flat:.2f}"

    part.reads = ("timer_10k", "timer_1m")
    return part


def _absolute_part(name: str, minimum: float):
    def part(results: Results):
        value = results.value(name, SUBJECT)
        if value is None:
            return None, f"{name}: {results.why_missing(name)}"
        return value >= minimum, f"{si(value)} req/s"

    part.reads = (name,)
    return part


def _vs_standalone_part(name: str, minimum: float):
    # The gunicorn row measures greenwheel's standalone server beside the
    # worker, in turns (workloads.gunicorn_driver): the median ratio of the turns.
    def part(results: Results):
        details = results.records.get(name, {}).get(SUBJECT, {}).get("details", {})
        ratio = details.get("vs_standalone")
        if ratio is None:
            return None, f"{name}: {results.why_missing(name)}"
        text = f"{ratio:.2f}x the standalone rate (median of turns)"
        cpu = details.get("us_per_request") or {}
        if cpu.get("gunicorn") and cpu.get("standalone"):
            text += f"; CPU per request {cpu['gunicorn']:.1f} vs {cpu['standalone']:.1f} us"
        return ratio >= minimum, text

    part.reads = (name,)
    return part


def _memory_part(name: str, maximum_bytes: float, label: str | None = None):
    def part(results: Results):
        value = results.value(name, SUBJECT)
        if value is None:
            return None, f"{name}: {results.why_missing(name)}"
        return value <= maximum_bytes, f"{value / 1024:.2f} KB @{label or name}"

    part.reads = (name,)
    return part


def _vs_floor_part(name: str, floor: str, maximum: float, label: str | None = None):
    """greenwheel's bytes on row *name* over *floor*'s bytes (the same run)."""

    def part(results: Results):
        value, base = results.value(name, SUBJECT), results.value(name, floor)
        if value is None or base is None:
            lib = SUBJECT if value is None else floor
            return None, f"{name}: {lib}: {results.why_missing(name, lib)}"
        ratio = value / base
        return ratio <= maximum, (
            f"{ratio:.2f}x {floor} ({value / 1024:.2f} vs {base / 1024:.2f} KB) @{label or name}"
        )

    part.reads = (name,)
    return part


def _peer_label(results: Results, name: str, lib: str) -> str:
    """``granian`` or, for a library run in several configurations, ``granian (its best)``."""
    config = results.records.get(name, {}).get(lib, {}).get("details", {}).get("config")
    return f"{lib} ({config})" if config else lib


def best_peer(results: Results, name: str, peers: tuple[str, ...]) -> tuple[str | None, str]:
    """The best of *peers* on row *name*, or (None, why) if any of them is missing.

    Every peer must have been measured: "the best of uvloop and rloop" is no
    claim if one of them did not run.
    """
    missing = [f"{peer}: {results.why_missing(name, peer)}" for peer in peers]
    measured = [peer for peer in peers if results.value(name, peer)]
    if len(measured) < len(peers):
        return None, "; ".join(
            m for peer, m in zip(peers, missing, strict=True) if peer not in measured
        )
    pick = min if WORKLOADS[name].lower_is_better else max
    return pick(measured, key=lambda peer: results.value(name, peer)), ""


def _vs_peer_part(name: str, peers: tuple[str, ...], minimum: float, subject: str = SUBJECT):
    """*subject*'s rate on row *name* over the best of *peers* (each at its best config)."""

    def part(results: Results):
        value = results.value(name, subject)
        if value is None:
            return None, f"{name}: {results.why_missing(name, subject)}"
        peer, why = best_peer(results, name, peers)
        if peer is None:
            return None, f"{name}: {why}"
        ratio = value / results.value(name, peer)
        return ratio >= minimum, f"{ratio:.2f}x {_peer_label(results, name, peer)} @{name}"

    part.reads = (name,)
    return part


#: What a report-only part returns instead of PASS/MISS.
REPORT = "report"


def _report_part(name: str, peers: tuple[str, ...]):
    """No target: greenwheel's rate on row *name* and its ratio to each peer measured."""

    def part(results: Results):
        value = results.value(name, SUBJECT)
        if value is None:
            return None, f"{name}: {results.why_missing(name)}"
        texts = [f"{si(value)} {WORKLOADS[name].unit}"]
        for peer in peers:
            if results.value(name, peer):
                ratio = value / results.value(name, peer)
                texts.append(f"{ratio:.2f}x {_peer_label(results, name, peer)}")
        return REPORT, "; ".join(texts) + f" @{name}"

    part.reads = (name,)
    return part


def _flask_ceiling_part():
    """What a server that runs the application in its own thread could reach
    on the Flask row: the application alone (``flask_alone``) plus the
    server's own cost per request, taken as greenwheel's hello-world request
    (``http_wsgi``), against granian's Flask rate."""

    def part(results: Results):
        app = results.value("flask_alone", "greenlet")
        hello = results.value("http_wsgi", SUBJECT)
        peer, why = best_peer(results, "http_flask", ("granian",))
        if app is None or hello is None or peer is None:
            return None, why or "flask_alone (greenlet) and http_wsgi (greenwheel) are needed"
        ceiling = 1 / (1 / app + 1 / hello)
        granian = results.value("http_flask", peer)
        return REPORT, (
            f"ceiling {si(ceiling)} req/s = {ceiling / granian:.2f}x"
            f" {_peer_label(results, 'http_flask', peer)} (app alone {si(app)} calls/s,"
            f" hello world {si(hello)} req/s)"
        )

    part.reads = ("flask_alone", "http_flask")
    return part


def _stream_ceiling_part():
    """What StreamServer could reach on its row if it cost exactly what the
    best Protocol server costs per request plus the greenlet round trip a
    blocking handler makes instead of the loop's callback (``switch_floor``:
    a round trip's time minus a plain call's), against that peer."""

    def part(results: Results):
        trips = results.value("switch_floor", "greenlet")
        details = results.records.get("switch_floor", {}).get("greenlet", {}).get("details", {})
        calls = details.get("call_rate")
        peer, why = best_peer(results, "http_stream", ("uvloop", "rloop"))
        if trips is None or not calls or peer is None:
            return None, why or "switch_floor (greenlet) and http_stream (uvloop, rloop) are needed"
        extra = 1 / trips - 1 / calls
        rate = results.value("http_stream", peer)
        ceiling = 1 / (1 / rate + extra)
        return REPORT, (
            f"ceiling {si(ceiling)} req/s = {ceiling / rate:.2f}x {peer} (+{extra * 1e9:.0f} ns"
            f" per request: a round trip {1e9 / trips:.0f} ns, a call {1e9 / calls:.0f} ns)"
        )

    part.reads = ("switch_floor", "http_stream")
    return part


#: (target as the issue states it, the checks that must all pass)
TARGETS = [
    ("sleep(0) >= 2.5x gevent", [_ratio_part("sleep0", 2.5)]),
    ("spawn+joinall >= 2x gevent", [_ratio_part("spawn_join", 2.0)]),
    ("Timeout start+cancel >= 3x gevent", [_ratio_part("timeout", 3.0)]),
    (
        "timer arm+cancel: 1M cost within 1.2x of 10k, >= 2x gevent at 1M",
        [_flatness_part(1.2), _ratio_part("timer_1m", 2.0)],
    ),
    # Issue 19: arming and cancelling a reused watcher at least matches
    # libev's heap at both sizes.
    (
        "timer arm+cancel >= 1.0x gevent (10k and 1M pending)",
        [_ratio_part("timer_10k", 1.0), _ratio_part("timer_1m", 1.0)],
    ),
    ("200k staggered sleepers >= 2.5x gevent", [_ratio_part("staggered", 2.5)]),
    (
        "Event / Queue ping-pong >= 2x gevent",
        [_ratio_part("event_pingpong", 2.0), _ratio_part("queue_pingpong", 2.0)],
    ),
    ("HTTP StreamServer, wrk -c100 >= 1.5x gevent", [_ratio_part("http_stream", 1.5)]),
    # The WSGI target is about the servers as shipped: gevent's
    # pywsgi writes headers and body separately without TCP_NODELAY and
    # stalls ~40 ms per keep-alive response. The "http_wsgi" row (TCP_NODELAY
    # forced on every server) is printed too, for the server-only comparison.
    (
        "WSGI >= 30k req/s and >= 10x gevent pywsgi (servers as shipped)",
        [_absolute_part("http_wsgi_nagle", 30_000), _ratio_part("http_wsgi_nagle", 10.0)],
    ),
    (
        "gunicorn -w 1 -k greenwheel.gunicorn.Worker >= 0.95x standalone WSGIServer",
        [_vs_standalone_part("http_wsgi_gunicorn", 0.95)],
    ),
    (
        "memory per parked greenlet <= 1.5 KB",
        [
            _memory_part("memory_100k", 1536, label="100K"),
            _memory_part("memory_1m", 1536, label="1M"),
        ],
    ),
    # Issue 19: the Rust-native peers.  granian is compared at its best
    # single-worker configuration (workloads.GRANIAN_CONFIGS, best of the run).
    (
        "WSGI hello world >= 1.1x granian (best single-worker configuration)",
        [_vs_peer_part("http_wsgi", ("granian",), 1.1)],
    ),
    ("Flask app >= 1.1x granian", [_vs_peer_part("http_flask", ("granian",), 1.1)]),
    ("Flask app: one-thread ceiling vs granian (floor, same run)", [_flask_ceiling_part()]),
    (
        "StreamServer HTTP >= 1.05x best of uvloop and rloop Protocol servers",
        [_vs_peer_part("http_stream", ("uvloop", "rloop"), 1.05)],
    ),
    (
        "StreamServer: greenlet round-trip ceiling vs uvloop/rloop (floor, same run)",
        [_stream_ceiling_part()],
    ),
    (
        "memory per parked greenlet <= 1.1x a bare greenlet parked in Python (same run)",
        [
            _vs_floor_part("memory_100k", "greenlet", 1.1, label="100K"),
            _vs_floor_part("memory_1m", "greenlet", 1.1, label="1M"),
        ],
    ),
    (
        "idle keep-alive connection <= 8 KB of server RSS",
        [_memory_part("memory_idle_keepalive", 8192)],
    ),
    # Issue 18: greenwheel's asyncio event loop against the fastest loops,
    # workload by workload.
    (
        "greenwheel.asyncio >= 1.0x best of uvloop and rloop, each workload",
        [
            _vs_peer_part(name, ("uvloop", "rloop"), 1.0, subject="greenwheel.asyncio")
            for name in (
                "sleep0",
                "spawn_join",
                "timer_10k",
                "staggered",
                "tcp_echo",
                "tcp_echo_protocol",
                "http_stream",
            )
        ],
    ),
    (
        "TLS keep-alive (reported, no target)",
        [_report_part("http_wsgi_tls", ("granian", "gevent"))],
    ),
]


def evaluate_targets(results: Results) -> list[dict]:
    """PASS/MISS per target; targets about workloads that were not run are left out."""
    evaluated = []
    for target, parts in TARGETS:
        if not any(name in results.records for part in parts for name in part.reads):
            continue
        checks = [part(results) for part in parts]
        passed = [ok for ok, _ in checks]
        if False in passed:
            status = "MISS"
        elif None in passed:
            status = "N/A"
        elif REPORT in passed:
            status = "INFO"
        else:
            status = "PASS"
        measured = list(dict.fromkeys(text for _, text in checks))  # no repeated reasons
        evaluated.append({"target": target, "status": status, "measured": "; ".join(measured)})
    return evaluated


def print_targets(evaluated: list[dict]) -> None:
    if not evaluated:
        return
    width = max(len(t["target"]) for t in evaluated) + 2
    print(f"Issue targets for {SUBJECT}:")
    for t in evaluated:
        print(f"  {t['status']:<5} {t['target']:<{width}} {t['measured']}")


# --- machine, JSON and chart -----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> str | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_revision(python_dir: str | Path = HERE) -> str | None:
    """The short revision of the tree holding ``python_dir``, ``-dirty`` if its sources are."""
    top = Path(python_dir).parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(top), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            # Untracked sources count: they are measured as much as tracked ones.
            ["git", "-C", str(top), "status", "--porcelain", "--", "python", "rust"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def _wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (out.stdout or out.stderr).split("[")[0].strip() or None


def machine_info() -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _memory_total(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": {
            pkg: _version(pkg)
            for pkg in (
                "greenwheel",
                "greenlet",
                "gevent",
                "eventlet",
                "uvloop",
                "rloop",
                "granian",
                "flask",
            )
        },
        "greenwheel_git": _git_revision(),
        "wrk": _wrk_version(),
        "wrk_command_prefix": " ".join(wrk_cpu_prefix()) or None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(
    path: Path, results: Results, machine: dict, settings: dict, unavailable: dict, targets
) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "unavailable_libraries": unavailable,
        "baseline": BASELINE,
        "workloads": {
            w.name: {
                "title": w.title,
                "unit": w.unit,
                "lower_is_better": w.lower_is_better,
                "results": results.records[w.name],
                "ratio_to_gevent": {lib: results.ratio(w.name, lib) for lib in results.libs},
            }
            for w in results.workloads
        },
        "derived": {
            "timer_flatness_1m_over_10k": {lib: results.flatness(lib) for lib in results.libs}
        },
        "targets": targets,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_chart(path: Path, results: Results, machine: dict) -> str | None:
    """Grouped bars of the ratio to gevent; returns why not, if it could not."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"

    rows = [w for w in results.workloads if any(results.ratio(w.name, lib) for lib in results.libs)]
    if not rows:
        return "no ratios to chart (gevent not measured?)"
    libs = results.libs
    width = 0.8 / len(libs)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(rows) + 3), 6.5))
    ratios = []
    for i, lib in enumerate(libs):
        xs, ys = [], []
        for x, w in enumerate(rows):
            slot = x - 0.4 + width * (i + 0.5)
            ratio = results.ratio(w.name, lib)
            if ratio:
                xs.append(slot)
                ys.append(ratio)
            elif lib == SUBJECT:
                # Say so rather than leave a gap that reads like "zero".
                ax.annotate(
                    "n/a",
                    (slot, 0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color="gray",
                    rotation=90,
                )
        ratios.extend(ys)
        bars = ax.bar(xs, ys, width, label=lib, zorder=2)
        if lib == SUBJECT:
            ax.bar_label(bars, labels=[f"{y:.1f}x" for y in ys], fontsize=7, padding=2)
    ax.axhline(1.0, color="black", linewidth=1, zorder=3)
    # Ratios span orders of magnitude on some rows (pywsgi, timers): log scale
    # keeps 0.1x and 10x equally readable.
    if max(ratios) / min(ratios) > 10:
        ax.set_yscale("log")
        ticks = [
            t
            for t in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100)
            if min(ratios) / 2 < t < max(ratios) * 2
        ]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{t:g}x" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(min(ratios) / 1.5, max(ratios) * 1.8)  # room for the labels
    else:
        ax.set_ylim(0, max(ratios) * 1.15)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([w.title for w in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("times better than gevent\n(memory: gevent bytes / library bytes)")
    ax.set_title(
        f"{SUBJECT} vs {', '.join(lib for lib in libs if lib != SUBJECT)}: ratio to gevent,"
        " higher is better\n"
        f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['date'][:10]}",
        fontsize=10,
        pad=28,
    )
    ax.grid(axis="y", which="both", alpha=0.3, zorder=0)
    # Above the plot, where no bar can hide under it.
    ax.legend(
        fontsize=8, ncol=len(libs), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# --- main -------------------------------------------------------------------------------


def select_workloads(only: str | None) -> list[Workload]:
    """``--only`` names workloads, or prefixes of them (``timer`` = timer_10k + timer_1m)."""
    if not only:
        return list(WORKLOADS.values())
    wanted = [item.strip() for item in only.split(",") if item.strip()]
    unknown = [
        item for item in wanted if not any(n == item or n.startswith(item + "_") for n in WORKLOADS)
    ]
    if unknown:
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    return [
        w
        for n, w in WORKLOADS.items()
        if any(n == item or n.startswith(item + "_") for item in wanted)
    ]


def select_libraries(libs: str | None) -> tuple[list[str], dict[str, str]]:
    wanted = [item.strip() for item in libs.split(",")] if libs else list(LIBS)
    unknown = [lib for lib in wanted if lib not in FAMILY]
    if unknown:
        sys.exit(f"unknown library {', '.join(unknown)}; choose from {', '.join(LIBS)}")
    available, unavailable = [], {}
    for lib in wanted:
        # find_spec does not import: the parent stays free of every library
        # (a submodule's spec would import its package: look for the package).
        if importlib.util.find_spec(lib.partition(".")[0]) is None:
            unavailable[lib] = "not installed (python -m pip install " + lib + ")"
        else:
            available.append(lib)
    return available, unavailable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark greenwheel against gevent, eventlet, asyncio, uvloop, rloop"
        " and granian.",
        epilog="workloads: " + ", ".join(WORKLOADS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs and tenfold smaller sizes (smoke test)"
    )
    parser.add_argument(
        "--only", metavar="WORKLOAD[,..]", help="run only these workloads (or name prefixes)"
    )
    parser.add_argument(
        "--libs", metavar="LIB[,..]", help=f"libraries to compare (default: {','.join(LIBS)})"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each pair N times, report the best"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE,
        metavar="DIR",
        help="where results.json/.png go (default: benches/)",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="one more column: greenwheel from another tree's python dir (repeatable)",
    )
    parser.add_argument(
        "--tree-lib",
        default=SUBJECT,
        metavar="LIB",
        help=f"what the --tree columns run: {SUBJECT} (default) or greenwheel.asyncio",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tree_lib not in (SUBJECT, "greenwheel.asyncio"):
        parser.error(f"--tree-lib is {SUBJECT} or greenwheel.asyncio, not {args.tree_lib!r}")
    trees = {}
    for item in args.tree:
        label, sep, directory = item.partition("=")
        if not sep or not label or not directory:
            parser.error(f"--tree wants LABEL=DIR, not {item!r}")
        if label in FAMILY or label in trees:
            parser.error(f"--tree label {label!r} is taken")
        if not (Path(directory) / "greenwheel" / "__init__.py").is_file():
            parser.error(f"--tree {label}: {directory} holds no greenwheel package")
        trees[label] = str(Path(directory).resolve())
    args.trees = trees
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workloads = select_workloads(args.only)
    libs, unavailable = select_libraries(args.libs)
    # A tree's column sits next to the installed library it runs.
    at = libs.index(args.tree_lib) + 1 if args.tree_lib in libs else 0
    libs[at:at] = list(args.trees)
    machine = machine_info()
    machine["trees"] = {
        label: {"dir": d, "git": _git_revision(d)} for label, d in args.trees.items()
    }
    started = time.perf_counter()

    print(
        f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"load average {' '.join(map(str, machine['load_average_start']))}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v))
    for lib, why in unavailable.items():
        print(f"skipping {lib}: {why}")
    if args.quick:
        print("--quick: short runs, sizes cut tenfold; a smoke test, not a measurement")
    print(flush=True)

    results = Results(workloads, libs)
    total = len(workloads) * len(libs) * args.repeat
    done = 0
    errors = 0
    for workload in workloads:
        for _ in range(args.repeat):
            # Libraries interleave across repeats, so a noisy moment on the
            # machine does not land on one library's runs only.
            for lib in libs:
                tree = args.trees.get(lib)
                outcome = run_child(workload.name, args.tree_lib if tree else lib, args.quick, tree)
                record = merge(results.records[workload.name].get(lib), outcome, workload)
                results.records[workload.name][lib] = record
                done += 1
                if "value" in outcome:
                    shown = f"{si(outcome['value'])} {workload.unit}"
                elif "skip" in outcome:
                    shown = f"skipped: {outcome['skip']}"
                else:
                    errors += 1
                    shown = f"ERROR: {outcome['error']}"
                wall = outcome.get("wall_seconds")
                print(
                    f"[{done:>3}/{total}] {workload.name:<16} {lib:<11} {shown}"
                    + (f"  ({wall:.1f} s)" if wall is not None else ""),
                    file=sys.stderr,
                    flush=True,
                )

    print()
    print_table(results)
    print()
    targets = evaluate_targets(results)
    print_targets(targets)

    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["total_seconds"] = round(time.perf_counter() - started, 1)
    settings = {
        "quick": args.quick,
        "repeat": args.repeat,
        "libs": libs,
        "workloads": [w.name for w in workloads],
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, chart_path = args.out / "results.json", args.out / "results.png"
    write_json(json_path, results, machine, settings, unavailable, targets)
    chart_problem = write_chart(chart_path, results, machine)
    print()
    print(f"wrote {json_path}" + (f"; {chart_problem}" if chart_problem else f" and {chart_path}"))
    print(
        f"total {machine['total_seconds']:.0f} s; load average at the end "
        f"{' '.join(map(str, machine['load_average_end']))}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
