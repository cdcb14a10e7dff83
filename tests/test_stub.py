"""The .pyi stub of the Rust module matches what the extension exports."""

import subprocess
import sys

import pytest


def test_core_stub_matches_runtime():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "greenwheel._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
