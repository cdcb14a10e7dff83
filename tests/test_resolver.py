"""greenwheel.resolver: the hub's resolver behind greenwheel.socket's look-ups."""

import os
import socket as stdsocket
import threading

import pytest

import greenwheel as gw
from greenwheel import config
from greenwheel import socket as gsocket
from greenwheel.resolver import blocking, thread


@pytest.fixture
def hub():
    hub = gw.get_hub()
    saved = dict(hub.__dict__)
    saved_config = dict(config._values)
    yield hub
    for key in ("_resolver", "_resolver_class"):
        hub.__dict__.pop(key, None)
        if key in saved:
            hub.__dict__[key] = saved[key]
    config._values.clear()
    config._values.update(saved_config)


def recording_getaddrinfo(monkeypatch):
    threads = []
    real = stdsocket.getaddrinfo

    def fake(*args):
        threads.append(threading.get_ident())
        return real("127.0.0.1", *args[1:])

    monkeypatch.setattr(stdsocket, "getaddrinfo", fake)
    return threads


def test_default_is_the_thread_resolver(hub, monkeypatch):
    assert hub.resolver_class is thread.Resolver
    assert isinstance(hub.resolver, thread.Resolver) and hub.resolver.hub is hub
    assert hub.resolver is hub.resolver  # made once
    assert hub.resolver.pool is hub.threadpool
    threads = recording_getaddrinfo(monkeypatch)
    infos = gsocket.getaddrinfo("example.invalid", 80, gsocket.AF_INET, gsocket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    assert threads and threads[0] != threading.get_ident()  # ran in a worker


def test_blocking_resolver_runs_in_the_calling_thread(hub, monkeypatch):
    hub.resolver = blocking.Resolver()
    threads = recording_getaddrinfo(monkeypatch)
    infos = gsocket.getaddrinfo("example.invalid", 80, gsocket.AF_INET, gsocket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    assert threads == [threading.get_ident()]
    assert gsocket.gethostbyname("127.0.0.1") == "127.0.0.1"
    del hub.resolver  # back to a new one of resolver_class
    assert isinstance(hub.resolver, thread.Resolver)


def test_config_resolver_picks_the_class_of_new_resolvers(hub):
    del hub.resolver
    config.resolver = "block"
    assert hub.resolver_class is blocking.Resolver
    assert isinstance(hub.resolver, blocking.Resolver)
    del hub.resolver
    # gevent's, not ours: the thread resolver, with a warning when it is set.
    with pytest.warns(RuntimeWarning, match="no resolver 'ares'"):
        config.resolver = "ares"
    assert hub.resolver_class is thread.Resolver
    config.resolver = blocking.Resolver  # a class works too
    assert hub.resolver_class is blocking.Resolver
    hub.resolver_class = thread.Resolver  # the hub's own choice wins
    assert isinstance(hub.resolver, thread.Resolver)


def test_config_resolver_takes_gevents_comma_lists(hub, recwarn):
    # gevent's form: several names, the first one available wins, silently.
    config.resolver = "ares, block"
    assert config.resolver is blocking.Resolver
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_custom_resolver_serves_the_socket_functions(hub):
    calls = []

    class Fixed:
        def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
            calls.append(host)
            return [(gsocket.AF_INET, gsocket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

        def gethostbyname(self, hostname):
            return "10.1.2.3"

    hub.resolver = Fixed()
    assert gsocket.getaddrinfo("svc", 8080)[0][4] == ("10.1.2.3", 8080)
    assert gsocket.gethostbyname("svc") == "10.1.2.3"
    assert calls == ["svc"]


def test_both_resolvers_answer_like_the_standard_library(hub):
    for resolver in (thread.Resolver(hub), blocking.Resolver(hub)):
        assert resolver.getaddrinfo("127.0.0.1", 80, 0, stdsocket.SOCK_STREAM) == (
            stdsocket.getaddrinfo("127.0.0.1", 80, 0, stdsocket.SOCK_STREAM)
        )
        assert resolver.gethostbyname("localhost") == stdsocket.gethostbyname("localhost")
        flags = stdsocket.NI_NUMERICHOST | stdsocket.NI_NUMERICSERV
        assert resolver.getnameinfo(("127.0.0.1", 80), flags) == ("127.0.0.1", "80")
        with pytest.raises(stdsocket.gaierror):
            resolver.getaddrinfo("no-such-host.invalid", 80)
        resolver.close()
        assert type(resolver).__name__ in repr(resolver)


def test_hosts_file_reader(tmp_path):
    from greenwheel.resolver._hostsfile import HostsFile

    path = tmp_path / "hosts"
    path.write_text(
        "# comment line\n"
        "127.0.0.1   localhost  loopback # trailing comment\n"
        "::1         localhost ip6-localhost\n"
        "10.0.0.5    Server.Example server\n"
        "10.0.0.6    server\n"  # a later line does not override the first
        "not-an-ip   bogus\n"
        "192.0.2.1\n"
        "fe80::1%eth0 linklocal\n"
    )
    hosts = HostsFile(str(path))
    assert sorted(hosts.iter_all_host_addr_pairs()) == [
        ("ip6-localhost", "::1"),
        ("linklocal", "fe80::1%eth0"),
        ("localhost", "127.0.0.1"),
        ("localhost", "::1"),
        ("loopback", "127.0.0.1"),
        ("server", "10.0.0.5"),
        ("server.example", "10.0.0.5"),
    ]
    assert hosts.v4["server"] == "10.0.0.5" and hosts.v4_aliases["server"] == "server.example"
    assert hosts.reverse["::1"] == "localhost"
    # Re-read only when the file changes.
    path.write_text("10.9.9.9 other\n")
    os.utime(path, (1, 1))
    hosts.load()
    assert hosts.v4 == {"other": "10.9.9.9"}
    # A missing file is empty, not an error.
    assert list(HostsFile(str(tmp_path / "missing")).iter_all_host_addr_pairs()) == []
