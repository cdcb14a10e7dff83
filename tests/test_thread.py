"""greenwheel.thread: the _thread interface on greenlets (what patch_thread installs)."""

import subprocess
import sys
import textwrap

from _childproc import run_python


def test_a_forked_child_exits_cleanly_with_logging_handlers_after_patch_all():
    # At the child's exit a logging handler's clean-up takes the logging lock,
    # which asks get_ident() after greenlet has torn the thread's greenlets
    # down: that must not print "greenlet is being finalized".
    code = textwrap.dedent(
        """
        from greenwheel import monkey
        monkey.patch_all()
        import os
        from logging import Handler
        from threading import Event
        from greenwheel import spawn

        handler = Handler()
        handler.acquire()
        ready = Event()

        def forker():
            ready.set()
            handler.acquire()
            handler.release()
            pid = os.fork()
            if pid:
                os.waitpid(pid, 0)

        glet = spawn(forker)
        ready.wait()
        handler.release()
        glet.join()
        """
    )
    done = run_python(code)
    assert done.stdout == "" and done.stderr == ""


def test_get_ident_names_the_greenlet():
    import greenwheel as gw
    from greenwheel import thread

    glet = gw.spawn(thread.get_ident)
    assert glet.get() == thread.get_ident(glet) == id(glet)
    assert thread.get_ident() == id(gw.getcurrent())


def test_a_trace_function_asking_current_thread_while_a_thread_ends():
    # Thread._delete() removes the thread from threading._active while holding
    # _active_limbo_lock, and the trace function (shared by every greenlet of
    # the OS thread) runs right then: building the _DummyThread that
    # current_thread() returns must not take that lock again.
    code = textwrap.dedent(
        """
        from greenwheel import monkey
        monkey.patch_all()
        import sys, threading

        def trace(frame, event, arg):
            threading.current_thread()
            return trace

        t = threading.Thread(target=lambda: None)
        sys.settrace(trace)
        t.start()
        t.join()
        sys.settrace(None)
        print("done")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
