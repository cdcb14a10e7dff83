"""greenwheel.monkey with real blocking software.

Every scenario runs in a fresh interpreter (patching is process-global) and
reports on stdout; the assertions are made here.
"""

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from _childproc import child_env, run_python, slow_http_server

pytestmark = pytest.mark.timeout(60)


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_patch_all_replaces_the_standard_modules():
    proc = run_python(
        """
        from greenwheel import monkey
        assert monkey.patch_all() is True
        import json, queue, select, selectors, socket, ssl, subprocess, threading, time, os, signal
        import greenwheel, greenwheel.socket, greenwheel.ssl, greenwheel.subprocess, greenwheel.queue
        print(json.dumps({
            "socket": socket.socket is greenwheel.socket.socket,
            "create_connection": socket.create_connection is greenwheel.socket.create_connection,
            "getaddrinfo": socket.getaddrinfo is greenwheel.socket.getaddrinfo,
            "select": select.select.__module__,
            "epoll_removed": not hasattr(select, "epoll"),
            "selector": selectors.DefaultSelector.__name__,
            "ssl": ssl.SSLContext is greenwheel.ssl.SSLContext,
            "time": time.sleep is greenwheel.sleep,
            "queue": queue.Queue is greenwheel.queue.Queue,
            "popen": subprocess.Popen is greenwheel.subprocess.Popen,
            "fork": os.fork.__module__,
            "signal": signal.signal.__module__,
            "event": threading.Event.__module__,
            "patched": [monkey.is_module_patched(m) for m in ("socket", "threading", "_thread", "time")],
            "object": monkey.is_object_patched("time", "sleep"),
            "not_object": monkey.is_object_patched("time", "monotonic"),
            "original": monkey.get_original("time", "sleep").__module__,
            "originals": [f.__name__ for f in monkey.get_original("socket", ["socket", "getaddrinfo"])],
            "saved": sorted(monkey.saved["time"]),
            "again": monkey.patch_all(),
        }))
        """
    )
    out = last_json(proc)
    assert out["socket"] and out["create_connection"] and out["getaddrinfo"]
    assert out["select"] == "greenwheel._select" and out["epoll_removed"]
    assert out["selector"] == "GeventSelector"
    assert out["ssl"] and out["time"] and out["queue"] and out["popen"]
    assert out["fork"] == "greenwheel.os" and out["signal"] == "greenwheel.signal"
    assert out["event"] == "greenwheel._event"
    assert out["patched"] == [True, True, True, True]
    assert out["object"] and not out["not_object"]
    assert out["original"] == "time"
    assert out["originals"] == ["socket", "getaddrinfo"]
    assert out["saved"] == ["sleep"]
    assert out["again"] is None  # nothing left to patch
    assert "Warning" not in proc.stderr


def test_threading_runs_on_greenlets():
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import json, threading, time, queue

        out = {}
        main = threading.main_thread()
        out["main"] = threading.current_thread() is main and main.name == "MainThread"
        local = threading.local()
        local.value = "main"
        seen, idents, names, main_seen = [], set(), set(), []
        lock, rlock, sem = threading.Lock(), threading.RLock(), threading.BoundedSemaphore(5)

        def work(i):
            local.value = i
            with sem:
                time.sleep(0.2)
            with lock, rlock, rlock:
                seen.append(local.value)
                idents.add(threading.get_ident())
                names.add(threading.current_thread().name)
                main_seen.append(threading.current_thread() is threading.main_thread())

        start = time.monotonic()
        threads = [threading.Thread(target=work, args=(i,), name="w%d" % i) for i in range(10)]
        for t in threads:
            t.start()
        alive_during = all(t.is_alive() for t in threads)
        for t in threads:
            t.join()
        out["elapsed"] = time.monotonic() - start
        out["seen"] = sorted(seen)
        out["idents"] = len(idents)
        out["names"] = sorted(names) == sorted("w%d" % i for i in range(10))
        out["not_main"] = not any(main_seen)
        out["alive"] = [alive_during, any(t.is_alive() for t in threads)]
        out["local_main"] = local.value

        cond = threading.Condition()
        ready = []
        def waiter():
            with cond:
                cond.wait_for(lambda: ready, timeout=5)
                ready.append("woken")
        t = threading.Thread(target=waiter); t.start(); time.sleep(0.05)
        with cond:
            ready.append("go"); cond.notify_all()
        t.join(2)
        out["condition"] = ready

        ev = threading.Event()
        timer = threading.Timer(0.1, ev.set); timer.start()
        out["event"] = [ev.wait(0.01), ev.wait(2)]
        timer.join()

        q = queue.Queue()
        def producer():
            for i in range(3):
                time.sleep(0.02); q.put(i)
        threading.Thread(target=producer, daemon=True).start()
        out["queue"] = [q.get(timeout=2) for _ in range(3)]

        barrier = threading.Barrier(3)
        hits = []
        def party():
            barrier.wait(2); hits.append(1)
        ps = [threading.Thread(target=party) for _ in range(3)]
        [p.start() for p in ps]; [p.join() for p in ps]
        out["barrier"] = len(hits)

        # A ticker greenlet keeps running while a "thread" blocks in join().
        import greenwheel
        ticks = []
        tick = greenwheel.spawn(lambda: [ticks.append(1) or time.sleep(0.01) for _ in range(1000)])
        sleeper = threading.Thread(target=time.sleep, args=(0.2,)); sleeper.start(); sleeper.join()
        tick.kill()
        out["ticks"] = len(ticks)
        out["count"] = threading.active_count()
        print(json.dumps(out))
        """
    )
    out = last_json(proc)
    assert out["main"]
    assert out["elapsed"] < 1.0  # 10 x 0.2 s, 5 at a time: about 0.4 s
    assert out["seen"] == list(range(10))
    assert out["idents"] == 10 and out["names"] and out["not_main"]
    assert out["alive"] == [True, False]
    assert out["local_main"] == "main"
    assert out["condition"] == ["go", "woken"]
    assert out["event"] == [False, True]
    assert out["queue"] == [0, 1, 2]
    assert out["barrier"] == 3
    assert out["ticks"] >= 5
    assert out["count"] <= 2


def test_main_thread_join_and_non_daemon_threads_at_exit():
    # A non-daemon "thread" still running when the main module ends is
    # waited for (as with real threads), and a greenlet may join the main thread.
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import threading, time

        def late():
            time.sleep(0.2)
            print("late thread done", flush=True)

        def join_main():
            threading.main_thread().join()
            print("main joined", flush=True)

        threading.Thread(target=late).start()
        threading.Thread(target=join_main, daemon=True).start()
        time.sleep(0.01)
        print("main ends", flush=True)
        """
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "main ends"
    assert "late thread done" in lines
    assert "main joined" in lines


def test_concurrent_futures_thread_pool_after_patching():
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import concurrent.futures, json, threading
        # Only eight jobs running at once get past the barrier (run one by
        # one, the first would break it after its timeout).
        barrier = threading.Barrier(8)
        def job(x):
            barrier.wait(timeout=20)
            return x * x
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(job, range(8)))
        print(json.dumps([results, type(barrier._cond._lock).__module__]))
        """
    )
    results, lock_module = last_json(proc)
    assert results == [x * x for x in range(8)]
    assert lock_module.startswith("greenwheel"), lock_module  # the patched primitives


def test_a_thread_pool_left_running_is_stopped_at_exit():
    # Python 3.13 stops ThreadPoolExecutor workers from threading's atexit
    # hooks inside threading._shutdown(); with threading half patched this
    # hung forever. The pending work still runs, and the interpreter exits.
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import concurrent.futures, sys, threading, time
        start = getattr(threading, "_start_joinable_thread", None)  # 3.13+
        if start is None:
            start = threading._start_new_thread
        print(start.__module__, flush=True)
        pool = concurrent.futures.ThreadPoolExecutor(2)
        pool.submit(lambda: time.sleep(0.1) or print("pending work ran", flush=True))
        """,
        timeout=30,
    )
    assert proc.stdout.splitlines() == ["greenwheel.thread", "pending work ran"]


def test_urllib_and_requests_fetch_concurrently(tmp_path):
    pytest.importorskip("requests")
    with slow_http_server(tmp_path, delay=0.2) as url:
        proc = run_python(
            """
            from greenwheel import monkey; monkey.patch_all()
            import json, sys, time, urllib.request
            import requests
            import greenwheel

            url = sys.argv[1]

            def with_urllib(i):
                with urllib.request.urlopen("%s/u%d" % (url, i), timeout=10) as resp:
                    return resp.read().decode()

            session = requests.Session()
            def with_requests(i):
                resp = requests.get("%s/r%d" % (url, i), timeout=10)
                resp.raise_for_status()
                return resp.text

            out = {}
            for name, fetch in (("urllib", with_urllib), ("requests", with_requests)):
                start = time.monotonic()
                jobs = [greenwheel.spawn(fetch, i) for i in range(20)]
                greenwheel.joinall(jobs, raise_error=True)
                out[name] = [time.monotonic() - start, [job.value for job in jobs]]
            print(json.dumps(out))
            """,
            url,
        )
    out = last_json(proc)
    for name, prefix in (("urllib", "u"), ("requests", "r")):
        elapsed, bodies = out[name]
        assert bodies == ["hello /%s%d" % (prefix, i) for i in range(20)]
        # Sequentially this would take 20 x 0.2 = 4 s.
        assert elapsed < 1.5, (name, elapsed)


def test_https_with_requests_and_urllib(tmp_path):
    pytest.importorskip("requests")
    from _tls import make_cert

    certfile, keyfile = make_cert(tmp_path)
    with slow_http_server(tmp_path, delay=0.2, tls=(certfile, keyfile)) as url:
        proc = run_python(
            """
            from greenwheel import monkey; monkey.patch_all()
            import json, ssl, sys, time, urllib.request
            import requests
            import greenwheel

            url, cafile = sys.argv[1], sys.argv[2]
            context = ssl.create_default_context(cafile=cafile)

            def with_urllib(i):
                with urllib.request.urlopen("%s/u%d" % (url, i), timeout=10, context=context) as resp:
                    return resp.read().decode()

            def with_requests(i):
                return requests.get("%s/r%d" % (url, i), timeout=10, verify=cafile).text

            out = {"context": type(context).__module__}
            for name, fetch in (("urllib", with_urllib), ("requests", with_requests)):
                start = time.monotonic()
                jobs = [greenwheel.spawn(fetch, i) for i in range(20)]
                greenwheel.joinall(jobs, raise_error=True)
                out[name] = [time.monotonic() - start, [job.value for job in jobs]]
            print(json.dumps(out))
            """,
            url.replace("127.0.0.1", "localhost"),
            certfile,
        )
    out = last_json(proc)
    assert out["context"] == "greenwheel.ssl"
    for name, prefix in (("urllib", "u"), ("requests", "r")):
        elapsed, bodies = out[name]
        assert bodies == ["hello /%s%d" % (prefix, i) for i in range(20)]
        assert elapsed < 1.5, (name, elapsed)


def test_fork_after_patching():
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import json, os, sys, threading, time
        import greenwheel

        ticks = []
        ticker = greenwheel.spawn(lambda: [ticks.append(1) or time.sleep(0.01) for _ in range(10000)])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # The child's hub was re-initialised: greenlets and "threads" work.
            done = []
            threads = [threading.Thread(target=lambda i=i: (time.sleep(0.05), done.append(i))) for i in range(3)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            os.write(w, json.dumps([sorted(done), threading.current_thread() is threading.main_thread()]).encode())
            sys.exit(3)  # a normal interpreter exit (threading._shutdown included)
        os.close(w)
        n = len(ticks)
        rpid, status = os.waitpid(pid, 0)  # patched: only this greenlet waits
        child = json.loads(os.read(r, 1000))
        ticker.kill()
        print(json.dumps([rpid == pid, os.WEXITSTATUS(status), child, len(ticks) - n]))
        """
    )
    same, code, child, ticks = last_json(proc)
    assert same and code == 3
    assert child == [[0, 1, 2], True]
    assert ticks >= 3


# --- redis -----------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_redis_round_trips_from_100_greenlets(redis_server):
    pytest.importorskip("redis")
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import json, sys, time
        import greenwheel, redis

        client = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), max_connections=200)
        client.delete("gw:counter")
        active, peak = [0], [0]

        def worker(i):
            key = "gw:key:%d" % i
            for round_ in range(5):
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                client.set(key, "%d-%d" % (i, round_))
                value = client.get(key).decode()
                client.incr("gw:counter")
                active[0] -= 1
                assert value == "%d-%d" % (i, round_), value
                # BLPOP on an empty list blocks server-side: only cooperative
                # sockets let the other 99 greenlets go on meanwhile.
                if round_ == 0:
                    client.blpop("gw:empty:%d" % i, timeout=0.1)
            return i

        start = time.monotonic()
        jobs = [greenwheel.spawn(worker, i) for i in range(100)]
        greenwheel.joinall(jobs, raise_error=True)
        print(json.dumps({
            "values": sorted(job.value for job in jobs),
            "counter": int(client.get("gw:counter")),
            "elapsed": time.monotonic() - start,
            "peak": peak[0],
        }))
        """,
        str(redis_server),
    )
    out = last_json(proc)
    assert out["values"] == list(range(100))
    assert out["counter"] == 500
    # 100 blocking BLPOPs of 0.1 s overlap: well under the 10 s they add up to.
    assert out["elapsed"] < 5.0
    assert out["peak"] > 1


def test_a_reused_descriptor_is_woken_after_patching():
    # Each round's socket takes the descriptor number the previous one just
    # closed, from a spawned greenlet. close() must tell the loop
    # (closing_fd) even though patch_all() made _thread.get_ident name
    # greenlets, or the next wait trusts a registration the kernel dropped
    # and is never woken (every second connection to a server was lost).
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import json, socket
        import greenwheel

        def round_trip(i):
            a, b = socket.socketpair()
            greenwheel.spawn(b.sendall, b"%d" % i)
            data = a.recv(10)  # waits: the loop registers a's descriptor
            a.close()
            b.close()
            return data.decode()

        def rounds():
            return [greenwheel.spawn(round_trip, i).get(timeout=5) for i in range(4)]

        print(json.dumps(greenwheel.spawn(rounds).get(timeout=20)))
        """
    )
    assert last_json(proc) == ["0", "1", "2", "3"]


def test_stdlib_selectors_are_cooperative_after_patching():
    # SelectSelector and PollSelector captured select.select / select.poll
    # when selectors was first imported (socketserver, multiprocessing and
    # http.server use them): after patch_all() they block only the greenlet.
    proc = run_python(
        """
        import selectors, socketserver  # imported before patching, as usual
        from greenwheel import monkey; monkey.patch_all()
        import json, multiprocessing.connection, socket, threading
        import greenwheel

        results = {}
        for cls in (selectors.SelectSelector, selectors.PollSelector):
            a, b = socket.socketpair()
            sel = cls()
            sel.register(a, selectors.EVENT_READ)
            writer = greenwheel.spawn(b.sendall, b"x")
            ready = sel.select(10)  # the writer can only run if this yields
            results[cls.__name__] = [key.fileobj is a for key, _ in ready]
            sel.close()
            a.close()
            b.close()

        a, b = multiprocessing.connection.Pipe()
        greenwheel.spawn(b.send, "ping")
        results["wait"] = [c.recv() for c in multiprocessing.connection.wait([a], 10)]

        class Echo(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.sendall(self.request.recv(100))

        server = socketserver.TCPServer(("127.0.0.1", 0), Echo)
        serving = threading.Thread(target=server.serve_forever, args=(0.05,))
        serving.start()
        with socket.create_connection(server.server_address, timeout=5) as c:
            c.sendall(b"echo")
            results["socketserver"] = c.recv(100).decode()
        server.shutdown()
        serving.join()
        server.server_close()
        results["marked"] = getattr(selectors.SelectSelector._select, "_gevent_monkey", False)
        print(json.dumps(results))
        """
    )
    assert last_json(proc) == {
        "SelectSelector": [True],
        "PollSelector": [True],
        "wait": ["ping"],
        "socketserver": "echo",
        "marked": True,
    }


def test_patch_all_announces_events_and_honours_vetoes():
    proc = run_python(
        """
        import json, socket, ssl, time
        from greenwheel import events, monkey

        seen = []

        def subscriber(event):
            seen.append(type(event).__name__ + ":" + str(getattr(event, "module_name", "")))
            if isinstance(event, events.GeventWillPatchModuleEvent) and event.module_name == "ssl":
                raise events.DoNotPatch
            if isinstance(event, events.GeventWillPatchAllEvent):
                seen.append(["kwargs", event.patch_all_kwargs, event.will_patch_module("socket"),
                             event.will_patch_module("thread")])

        events.subscribers.append(subscriber)
        result = monkey.patch_all(thread=False, select=False, extra_kwarg=42)
        print(json.dumps({
            "result": result,
            "seen": seen,
            "ssl_patched": monkey.is_module_patched("ssl"),
            "socket_patched": monkey.is_module_patched("socket"),
            "settings": monkey.saved["_gevent_saved_patch_all_module_settings"]["os"],
            "again": monkey.patch_all(thread=False, select=False),
            "after_again": len(seen),
        }))
        """
    )
    out = last_json(proc)
    seen = out["seen"]
    assert out["result"] is True
    assert seen[0] == "GeventWillPatchAllEvent:"
    assert seen[1] == ["kwargs", {"extra_kwarg": 42}, True, False]
    assert seen[2].startswith("GeventWillPatchModuleEvent:")
    assert seen[3] == "GeventDidPatchModuleEvent:" + seen[2].split(":")[1]
    assert seen[-2:] == ["GeventDidPatchBuiltinModulesEvent:", "GeventDidPatchAllEvent:"]
    assert "GeventWillPatchModuleEvent:ssl" in seen
    assert "GeventDidPatchModuleEvent:ssl" not in seen
    assert "GeventDidPatchModuleEvent:socket" in seen
    assert not out["ssl_patched"] and out["socket_patched"]
    assert out["settings"] is True
    assert out["again"] is None and out["after_again"] == len(seen)  # nothing to do: no events


def test_patch_all_vetoed_as_a_whole():
    proc = run_python(
        """
        import json
        from greenwheel import events, monkey

        def veto(event):
            if isinstance(event, events.GeventWillPatchAllEvent):
                raise events.DoNotPatch

        events.subscribers.append(veto)
        print(json.dumps([monkey.patch_all(), monkey.is_module_patched("socket")]))
        """
    )
    assert last_json(proc) == [False, False]


# --- warnings, running scripts ----------------------------------------------------------------


def test_warns_when_ssl_was_imported_first():
    proc = run_python(
        """
        import ssl
        from ssl import SSLContext
        import warnings
        warnings.simplefilter("always")
        from greenwheel import monkey
        monkey.patch_all()
        """
    )
    assert "MonkeyPatchWarning" in proc.stderr
    assert "ssl" in proc.stderr and "__main__" in proc.stderr
    assert "Modules that had direct imports (NOT patched)" in proc.stderr


def test_ssl_warning_names_subclasses_of_the_original_context():
    proc = run_python(
        """
        import ssl
        import warnings
        warnings.simplefilter("always")

        class Mine(ssl.SSLContext):
            pass

        from greenwheel import monkey
        monkey.patch_all()
        """
    )
    assert "Subclasses (NOT patched) of ssl.SSLContext: __main__.Mine" in proc.stderr
    assert "direct imports" not in proc.stderr


def test_warns_when_threads_were_already_running():
    proc = run_python(
        """
        import threading
        release = threading.Event()  # the real one: the thread lives until patched
        t = threading.Thread(target=release.wait, name="early-bird")
        t.start()
        import warnings
        warnings.simplefilter("always")
        from greenwheel import monkey
        monkey.patch_all()
        release.set()
        t.join()  # now a cooperative polling join
        print("joined", t.is_alive())
        """
    )
    assert "MonkeyPatchWarning" in proc.stderr and "early-bird" in proc.stderr
    assert "joined False" in proc.stdout
    assert "KeyError" not in proc.stderr


def test_warns_about_thread_objects_imported_by_name(tmp_path):
    (tmp_path / "early_lib.py").write_text(
        "from threading import local, get_ident\nSTATE = local()\n"
    )
    proc = run_python(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import early_lib
        import warnings
        warnings.simplefilter("always")
        from greenwheel import monkey
        monkey.patch_all()
        """,
        str(tmp_path),
    )
    assert "MonkeyPatchWarning" in proc.stderr and "early_lib" in proc.stderr


def test_no_warning_when_patching_first():
    proc = run_python(
        """
        import warnings
        warnings.simplefilter("error")
        from greenwheel import monkey
        monkey.patch_all()
        import ssl, threading, requests
        print("clean")
        """
    )
    assert "clean" in proc.stdout


def test_python_m_greenwheel_monkey_runs_a_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys, threading\n"
        "import greenwheel.monkey as monkey\n"
        # The five threads (greenlets, patched) only get past the barrier together.
        "barrier, passed = threading.Barrier(5), []\n"
        "job = lambda: passed.append(barrier.wait(timeout=20))\n"
        "ts = [threading.Thread(target=job) for _ in range(5)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(__name__, sys.argv[1:], monkey.is_module_patched('socket'), len(passed) == 5)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "greenwheel.monkey", str(script), "one", "--two"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "__main__ ['one', '--two'] True True"

    # Options: patch only what is named.
    proc = subprocess.run(
        [sys.executable, "-m", "greenwheel.monkey", "--time", "--thread", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "__main__ [] False True"


def test_patched_subprocess_and_dns_in_a_child():
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import json, socket, subprocess, time
        import greenwheel
        ticks = []
        def ticker():
            while True:
                ticks.append(1); time.sleep(0.01)
        t = greenwheel.spawn(ticker)
        out = subprocess.run(["sh", "-c", "sleep 0.2; echo done"], capture_output=True, text=True).stdout
        addr = socket.getaddrinfo("localhost", 80, socket.AF_INET)[0][4]
        t.kill()
        print(json.dumps([out, addr[0], len(ticks)]))
        """
    )
    out, addr, ticks = last_json(proc)
    assert out == "done\n" and addr == "127.0.0.1"
    assert ticks >= 5


def test_is_anything_patched_reports_any_patching():
    code = (
        "from greenwheel import monkey\n"
        "print(monkey.is_anything_patched())\n"
        "monkey.patch_time()\n"
        "print(monkey.is_anything_patched())\n"
    )
    done = run_python(code)
    assert done.stdout.split() == ["False", "True"]


def test_threading_http_server_answers_after_patch_all():
    # The first stdlib server a user tries: in a patched threading.Thread, with
    # a client in the same process (it hung before selectors were patched).
    proc = run_python(
        """
        from greenwheel import monkey; monkey.patch_all()
        import http.server, json, threading, urllib.request

        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"hello " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        serving = threading.Thread(target=server.serve_forever, args=(0.05,))
        serving.start()
        url = "http://127.0.0.1:%d" % server.server_address[1]
        bodies = [urllib.request.urlopen(url + "/%d" % i, timeout=10).read().decode() for i in range(3)]
        server.shutdown()
        serving.join()
        server.server_close()
        print(json.dumps(bodies))
        """
    )
    assert last_json(proc) == ["hello /0", "hello /1", "hello /2"]


def test_patching_from_another_thread_warns_and_the_interpreter_still_exits():
    # Patched from a non-main OS thread, the main thread keeps its OS ident;
    # the interpreter's shutdown used to wait forever for its shutdown lock.
    proc = run_python(
        """
        import threading
        from greenwheel import monkey

        seen = []
        monkey._process_warnings = seen.extend

        def target():
            monkey.patch_all()

        t = threading.Thread(target=target)
        t.start()
        t.join()
        print(len(seen), "main native thread" in seen[0], "will hang from a greenlet" in seen[1])
        """,
        timeout=30,
    )
    assert proc.stdout.split() == ["2", "True", "True"]
