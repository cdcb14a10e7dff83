"""greenwheel.backdoor: a console per connection, output to its own client, the server unaffected."""

import socket
import sys
import threading

import greenlet

import greenwheel as gw
from _netutil import run_in_thread
from greenwheel.backdoor import BackdoorServer


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""

    def until(self, token=b">>> "):
        while token not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += data
        before, _, self.buf = self.buf.partition(token)
        return before

    def run(self, line, prompt=b">>> "):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.until(prompt).decode()

    def close(self):
        self.sock.close()


def test_console_evaluates_prints_and_reports_errors():
    server = BackdoorServer(("127.0.0.1", 0), locals={"x": 42}, banner="hello")
    server.start()
    try:

        def session():
            c = Client(server.server_port)
            banner = c.until().decode()
            out = [
                c.run("x + 1"),
                c.run("print('hi')"),
                c.run("1/0"),
                c.run("for i in range(2):", b"... "),
                c.run("    print(i)", b"... "),
                c.run(""),
                c.run("quit"),
            ]
            c.sock.sendall(b"quit()\r\n")
            out.append(c.until(b"\0"))  # the server closes the connection
            c.close()
            return banner, out

        banner, out = run_in_thread(session)
    finally:
        server.stop()
    assert banner == "hello\r\n"
    assert out[0] == "43\r\n" and out[1] == "hi\r\n"
    assert "ZeroDivisionError: division by zero" in out[2]
    assert out[3] == "" and out[4] == "" and out[5] == "0\r\n1\r\n"
    assert "Use quit() or Ctrl-D" in out[6]
    assert out[7] == b""


def test_each_console_has_its_own_namespace_and_the_default_banner():
    server = BackdoorServer(("127.0.0.1", 0))
    server.start()
    try:

        def two_sessions():
            a, b = Client(server.server_port), Client(server.server_port)
            banner = a.until().decode()
            b.until()
            a.run("mine = 'a'")
            seen = b.run("'mine' in dir()")
            a.sock.shutdown(socket.SHUT_WR)  # end of input closes that console
            end = a.until(b"\0")
            still = b.run("2 * 21")
            a.close()
            b.close()
            return banner, seen, end, still

        banner, seen, end, still = run_in_thread(two_sessions)
    finally:
        server.stop()
    assert banner.startswith("Python %s" % (sys.version.split()[0],))
    assert "(BackdoorServer on 127.0.0.1:" in banner
    assert seen == "False\r\n" and end.strip() == b"" and still == "42\r\n"


def test_the_rest_of_the_process_keeps_its_own_streams(capsys):
    server = BackdoorServer(("127.0.0.1", 0))
    server.start()
    previous = greenlet.gettrace()
    try:
        printed = []

        def session():
            c = Client(server.server_port)
            c.until()
            printed.append(c.run("print('to the client')"))
            # While this console waits for input, the server's greenlets print.
            gw_done.wait(15)
            printed.append(c.run("print('again')"))
            c.close()

        gw_done = threading.Event()
        thread = threading.Thread(target=session)
        thread.start()
        while not printed:
            gw.sleep(0.005)
        print("from the server")
        gw.spawn(print, "from a greenlet").join()
        gw_done.set()
        while thread.is_alive():
            gw.sleep(0.005)
        thread.join()
    finally:
        server.stop()
    gw.sleep(0.05)  # the console greenlet ends and lets go of the streams
    assert printed == ["to the client\r\n", "again\r\n"]
    out = capsys.readouterr().out
    assert "from the server\n" in out and "from a greenlet\n" in out
    assert "to the client" not in out and "again" not in out
    assert sys.stdout is not None and greenlet.gettrace() is previous


def test_console_builtins_is_the_module():
    # As in gevent: __builtins__ is the builtins module, so locals() shows a
    # short repr instead of the whole builtins dict; builtins works too.
    server = BackdoorServer(("127.0.0.1", 0), banner="")
    server.start()
    try:

        def session():
            client = Client(server.server_port)
            client.until()
            shown = client.run('locals()["__builtins__"]')
            length = client.run("builtins.len([1, 2])")
            client.close()
            return shown, length

        shown, length = run_in_thread(session)
    finally:
        server.stop()
    assert shown == "<module 'builtins' (built-in)>\r\n"
    assert length == "2\r\n"
