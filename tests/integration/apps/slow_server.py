"""A plain threading HTTP server (stdlib only, never greenwheel) for load tests.

``GET /slow`` answers after 0.1 s; ``GET /stats`` reports, as JSON, how many
``/slow`` requests were answered, the most that were in flight at once (the
server's own proof that a client overlapped its requests) and the process ids
and event-loop libraries that clients sent in ``X-Locust-Pid`` and
``X-Gevent``. It prints its port on the first line of stdout.
"""

import http.server
import json
import sys
import threading
import time

DELAY = 0.1

lock = threading.Lock()
state = {"served": 0, "in_flight": 0, "max_in_flight": 0}
pids = set()
impls = set()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as load-testing clients expect

    def do_GET(self):
        if self.path.startswith("/slow"):
            with lock:
                state["in_flight"] += 1
                state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
                pids.add(self.headers.get("X-Locust-Pid"))
                impls.add(self.headers.get("X-Gevent"))
            try:
                time.sleep(DELAY)
            finally:
                with lock:
                    state["in_flight"] -= 1
                    state["served"] += 1
            body = b"slow ok"
        elif self.path == "/stats":
            with lock:
                report = dict(state, pids=sorted(map(str, pids)), impls=sorted(map(str, impls)))
                body = json.dumps(report).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A load generator that stops drops its keep-alive connections
        # mid-request; that is its right, not a server error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
