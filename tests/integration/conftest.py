"""Fixtures for the integration tests (issue: unmodified gevent applications).

The servers are session-scoped: starting PostgreSQL costs about a second, and
every test uses its own keys/tables, so sharing one server keeps the suite
fast without coupling tests.
"""

import pytest
from _services import postgres_server, redis_server


@pytest.fixture(scope="session")
def redis():
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres():
    with postgres_server() as server:
        yield server
