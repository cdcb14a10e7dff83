"""Locust load test used by tests/integration/test_locust.py.

Two user classes run side by side: one on locust's requests-based client and
one on geventhttpclient (FastHttpUser). Each hits the server's 0.1 s endpoint
without waiting between requests, under its own name so locust's stats report
the two clients separately. Every request names the process that sent it
(``X-Locust-Pid``) and the event-loop library that ``import gevent`` gave it
(``X-Gevent``), so the server can tell which processes generated load and on
what. USERS_PER_CLASS comes from the environment so the test decides the load.
"""

import os

import gevent
from locust import HttpUser, constant, task
from locust.contrib.fasthttp import FastHttpUser

USERS_PER_CLASS = int(os.environ.get("USERS_PER_CLASS", "10"))
HEADERS = {"X-Locust-Pid": str(os.getpid()), "X-Gevent": gevent.__name__}


class RequestsUser(HttpUser):
    fixed_count = USERS_PER_CLASS
    wait_time = constant(0)

    @task
    def slow(self):
        self.client.get("/slow", name="http-user", headers=HEADERS)


class GeventHttpClientUser(FastHttpUser):
    fixed_count = USERS_PER_CLASS
    wait_time = constant(0)

    @task
    def slow(self):
        self.client.get("/slow", name="fast-http-user", headers=HEADERS)
