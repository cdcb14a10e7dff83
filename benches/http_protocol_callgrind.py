"""Instructions per keep-alive HTTP request of the asyncio Protocol server
(compare.py's ``http_stream`` row for the asyncio-family loops), counted by
callgrind in ONE process.

The server is benches/workloads.py's ``_HTTPProtocol`` on the loop under
test.  The client lives in the same process and is identical for every loop:
``conns`` plain non-blocking sockets, one request each per round (wrk-style
``GET / HTTP/1.1`` with a Host header), then ``await asyncio.sleep(0)`` until
its own ``select.epoll`` (polled with timeout 0) has reported a whole
response on every socket.  So each loop iteration sees many ready fds, as
with wrk -c100.  The client's cost per request (a ``send``, a ``recv``, its
share of one ``epoll.poll``) is the same Python code on every loop; only the
``sleep(0)`` yields are the loop's, and they are shared by ``conns``
requests.  The count reported is (instructions for 3R rounds - for R rounds)
/ (2R * conns): start-up and warm-up cancel out.  The server runs no task,
so the client's share is the inclusive count of the task steps
(``TaskStepMethWrapper_call``, callgrind_annotate --inclusive=yes), and the
server's is the rest: the loop's polling and dispatch, the transport and the
protocol (the benchmark's own Python code, the same on every loop).

    python benches/http_protocol_callgrind.py greenwheel.asyncio uvloop rloop
    python benches/http_protocol_callgrind.py --tree /tmp/old/python greenwheel.asyncio

Needs valgrind; runs the real interpreter (a pyenv shim breaks valgrind).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import asyncio, importlib, select, socket, sys
sys.path.insert(0, sys.argv[4])
from workloads import HTTP_RESPONSE, _HTTPProtocol

lib, conns, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HTTPProtocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
    size = len(HTTP_RESPONSE)
    sleep = asyncio.sleep
    poll = ep.poll
    yields = 0

    async def one_round():
        nonlocal yields
        for s in socks:
            s.send(REQUEST)
        pending = conns
        while pending:
            await sleep(0)
            yields += 1
            for fd, _ in poll(0):
                if len(by_fd[fd].recv(65536)) != size:
                    raise RuntimeError("partial response")
                pending -= 1

    for _ in range(20):
        await one_round()
    yields = 0
    for _ in range(rounds):
        await one_round()
    print("yields/round", yields / rounds, file=sys.stderr)


mod = importlib.import_module(lib)
loop = mod.new_event_loop() if lib != "asyncio" else asyncio.new_event_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(main())
"""

PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"


def count(lib, conns, rounds, tree):
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        env = dict(os.environ, PYTHONHASHSEED="1")
        if tree:
            env["PYTHONPATH"] = tree
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                PYTHON,
                script,
                lib,
                str(conns),
                str(rounds),
                HERE,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Collected : (\d+)", out.stderr)
        if not found:
            raise RuntimeError(out.stderr)
        yields = re.search(r"yields/round (\S+)", out.stderr)
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", f"{tmp}/cg.out"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # The client coroutine's steps (the server runs no task).
        step = re.search(r"^\s*([\d,]+) .*:TaskStepMethWrapper_call ", annotated, re.M)
        client = int(step.group(1).replace(",", "")) if step else 0
        return int(found.group(1)), client, yields.group(1) if yields else "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("libs", nargs="+")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tree", help="a tree's python directory (PYTHONPATH)")
    args = parser.parse_args()
    for lib in args.libs:
        low, client_low, y1 = count(lib, args.conns, args.rounds, args.tree)
        high, client_high, y3 = count(lib, args.conns, 3 * args.rounds, args.tree)
        requests = 2 * args.rounds * args.conns
        per = (high - low) / requests
        client = (client_high - client_low) / requests
        print(
            f"{lib:20s} {per:7.0f} instructions/request: server {per - client:6.0f},"
            f" client task {client:6.0f}  (yields/round {y1}, {y3})"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
