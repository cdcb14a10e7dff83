"""Real servers for the integration tests: redis-server and PostgreSQL.

Each is started from the Debian packages on this machine (``.ci/run``
installs them), on a loopback port of its own, with its data in a fresh
temporary directory, and stopped (and its directory removed) when the test
session ends. Nothing is mocked: the applications under test talk to the real
server over TCP.

A missing server binary is a skip with the exact reason, never a silent pass.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the servers we start
    cannot take port 0, so a start that loses the race is retried)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Block (this is plain test-runner code, not a greenlet) until something
    accepts on 127.0.0.1:*port*; fail early if *proc* exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "nothing listens on port %d after %.0f s" % (port, timeout)
                ) from err
            time.sleep(0.02)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Redis:
    host: str
    port: int

    @property
    def url(self) -> str:
        return "redis://%s:%d/0" % (self.host, self.port)


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip(
            "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
        )
    workdir = tempfile.mkdtemp(prefix="gw-redis-")
    proc = None
    try:
        for _attempt in range(3):
            port = free_port()
            proc = subprocess.Popen(
                [
                    exe,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    workdir,
                    "--maxclients",
                    "4000",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_port(port, proc=proc)
                break
            except RuntimeError:
                continue  # lost the port race: try another
        else:
            raise RuntimeError("redis-server did not start")
        yield Redis("127.0.0.1", port)
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    dbname: str

    @property
    def dsn(self) -> str:
        return "host=%s port=%d user=%s dbname=%s" % (self.host, self.port, self.user, self.dbname)


def _pg_bindir() -> str | None:
    for name in ("pg_ctl", "initdb"):
        path = shutil.which(name)
        if path:
            return os.path.dirname(path)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    # PostgreSQL refuses to run as root: run it as the Debian package's user.
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL")
        prefix = [runuser, "-u", "postgres", "--"]
    workdir = tempfile.mkdtemp(prefix="gw-pg-")
    datadir = os.path.join(workdir, "data")
    if prefix:
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    run = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True, timeout=120)
    started = False
    try:
        subprocess.run(
            prefix
            + [
                os.path.join(bindir, "initdb"),
                "-D",
                datadir,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            **run,
        )
        for _attempt in range(3):
            port = free_port()
            opts = (
                "-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=300"
                % (
                    port,
                    workdir,
                )
            )
            proc = subprocess.run(
                prefix
                + [
                    os.path.join(bindir, "pg_ctl"),
                    "-D",
                    datadir,
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    os.path.join(workdir, "log"),
                    "start",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=90,
            )
            if proc.returncode == 0:
                started = True
                break
        if not started:
            with open(os.path.join(workdir, "log")) as f:
                raise RuntimeError("PostgreSQL did not start:\n" + f.read()[-2000:])
        yield Postgres("127.0.0.1", port, "postgres", "postgres")
    finally:
        if started:
            subprocess.run(
                prefix + [os.path.join(bindir, "pg_ctl"), "-D", datadir, "-m", "immediate", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
        shutil.rmtree(workdir, ignore_errors=True)
