"""greenwheel.resolver.dnspython: DNS over greenwheel sockets, against a test server."""

import select
import socket as stdsocket
import sys
import threading
import time
import warnings

import pytest

pytest.importorskip("dns.resolver")
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

import greenwheel as gw
from greenwheel import config
from greenwheel.resolver import thread
from greenwheel.resolver._hostsfile import HostsFile
from greenwheel.resolver.dnspython import Resolver

DELAY = 0.75

#: name -> {rdtype: [(text rdata)]}; CNAMEs are answered for any type.
ZONE = {
    "a.test.": {"A": ["10.0.0.1"]},
    "six.test.": {"AAAA": ["fd00::1"]},
    "both.test.": {"A": ["10.0.0.2"], "AAAA": ["fd00::2"]},
    "alias.test.": {"CNAME": ["a.test."]},
    "far.test.": {"CNAME": ["alias.test."]},
    "slow1.test.": {"A": ["10.0.1.1"]},
    "slow2.test.": {"A": ["10.0.1.2"]},
    "1.0.0.10.in-addr.arpa.": {"PTR": ["a.test."]},
    "hosted.test.": {"A": ["10.9.9.9"]},
    "big.test.": {"A": ["10.2.0.%d" % i for i in range(1, 41)]},
}
#: names the UDP server answers truncated (so they are asked again over TCP)
TCP_ONLY = {"big.test."}
#: names whose CNAME answer leaves the target's records out (the resolver must ask again)
BARE_CNAMES = {"far.test."}


class DNSServer:
    """A UDP nameserver on 127.0.0.1 in a thread, answering from ZONE."""

    def __init__(self):
        # UDP and TCP on one port (TCP answers what UDP answers truncated).
        for _ in range(20):
            self.listener = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.port = self.listener.getsockname()[1]
            self.sock = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
            try:
                self.sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.sock.close()
                self.listener.close()
        self.listener.listen(5)
        self.listener.settimeout(2)
        self.queries = []  # (name, type) in arrival order
        self.events = []  # ("ask"|"answer", name) for the delayed names
        self.stopping = threading.Event()
        self.pending = []  # (due, wire, peer)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def answer(self, query):
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        rdtype = question.rdtype
        current = name
        for _ in range(8):
            records = ZONE.get(current)
            if records is None:
                if current == name:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
            if "CNAME" in records and rdtype != dns.rdatatype.CNAME:
                target = records["CNAME"][0]
                response.answer.append(dns.rrset.from_text(current, 60, "IN", "CNAME", target))
                if current in BARE_CNAMES:
                    break
                current = target
                continue
            values = records.get(dns.rdatatype.to_text(rdtype))
            if values:
                response.answer.append(
                    dns.rrset.from_text(current, 60, "IN", dns.rdatatype.to_text(rdtype), *values)
                )
            break
        return response

    def run(self):
        while not self.stopping.is_set():
            now = time.monotonic()
            for item in [p for p in self.pending if p[0] <= now]:
                self.pending.remove(item)
                self.events.append(("answer", item[3]))
                self.sock.sendto(item[1], item[2])
            ready = select.select([self.sock, self.listener], [], [], 0.02)[0]
            if self.listener in ready:
                self.serve_tcp()
            if self.sock not in ready:
                continue
            wire, peer = self.sock.recvfrom(4096)
            query = dns.message.from_wire(wire)
            name = query.question[0].name.to_text()
            self.queries.append((name, dns.rdatatype.to_text(query.question[0].rdtype)))
            if name in TCP_ONLY:
                response = dns.message.make_response(query)
                response.flags |= dns.flags.TC
                self.sock.sendto(response.to_wire(), peer)
                continue
            reply = self.answer(query).to_wire()
            if name.startswith("slow"):
                self.events.append(("ask", name))
                self.pending.append((time.monotonic() + DELAY, reply, peer, name))
            else:
                self.sock.sendto(reply, peer)

    def serve_tcp(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(2)
            size = int.from_bytes(self._read(conn, 2), "big")
            query = dns.message.from_wire(self._read(conn, size))
            name = query.question[0].name.to_text()
            self.queries.append((name, "TCP"))
            reply = self.answer(query).to_wire()
            conn.sendall(len(reply).to_bytes(2, "big") + reply)

    @staticmethod
    def _read(conn, count):
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()
        self.listener.close()
        assert not self.thread.is_alive()


@pytest.fixture
def server():
    server = DNSServer()
    yield server
    server.stop()


@pytest.fixture
def hosts(tmp_path):
    path = tmp_path / "hosts"
    path.write_text(
        "# a test hosts file\n"
        "127.0.0.1 localhost\n"
        "10.5.5.5 hosted.test hostalias\n"
        "fd00::5 hosted6.test\n"
    )
    return str(path)


@pytest.fixture
def resolver(server, hosts):
    resolver = Resolver()
    net = dns.resolver.Resolver(configure=False)
    net.nameservers = ["127.0.0.1"]
    net.port = server.port
    net.search = []
    net.timeout = 2.0
    net.lifetime = 5.0
    resolver.resolver = net
    resolver.hosts_file = HostsFile(hosts)
    yield resolver
    resolver.close()


def test_a_records(resolver):
    assert resolver.gethostbyname("a.test") == "10.0.0.1"
    assert resolver.gethostbyname("a.test.") == "10.0.0.1"
    assert resolver.gethostbyname_ex("a.test") == ("a.test", [], ["10.0.0.1"])
    infos = resolver.getaddrinfo("a.test", 80, 0, stdsocket.SOCK_STREAM)
    assert infos == [
        (stdsocket.AF_INET, stdsocket.SOCK_STREAM, stdsocket.IPPROTO_TCP, "", ("10.0.0.1", 80))
    ]


def test_aaaa_records(resolver):
    infos = resolver.getaddrinfo("six.test", 443, stdsocket.AF_INET6, stdsocket.SOCK_STREAM)
    assert [info[4][:2] for info in infos] == [("fd00::1", 443)]
    assert infos[0][0] == stdsocket.AF_INET6
    infos = resolver.getaddrinfo("both.test", "80", 0, stdsocket.SOCK_DGRAM)
    assert sorted(info[4][0] for info in infos) == ["10.0.0.2", "fd00::2"]
    # A name with only IPv6 has no IPv4 address: the stdlib's EAI_NODATA.
    with pytest.raises(stdsocket.gaierror) as info:
        resolver.gethostbyname("six.test")
    assert info.value.errno == stdsocket.EAI_NODATA


def test_cname_chains_are_followed(resolver):
    assert resolver.gethostbyname("alias.test") == "10.0.0.1"
    assert resolver.gethostbyname_ex("alias.test") == ("a.test", ["alias.test"], ["10.0.0.1"])
    # far.test's answer stops at its CNAME: the resolver asks about the target.
    name, aliases, addresses = resolver.gethostbyname_ex("far.test")
    assert (name, addresses) == ("a.test", ["10.0.0.1"])
    assert aliases == ["far.test", "alias.test"]
    infos = resolver.getaddrinfo(
        "alias.test", 80, stdsocket.AF_INET, stdsocket.SOCK_STREAM, 0, stdsocket.AI_CANONNAME
    )
    assert infos[0][3] == "a.test"


def test_truncated_answers_are_asked_again_over_tcp(resolver, server):
    name, aliases, addresses = resolver.gethostbyname_ex("big.test")
    assert len(addresses) == 40
    assert set(addresses) == {"10.2.0.%d" % i for i in range(1, 41)}
    assert server.queries == [("big.test.", "A"), ("big.test.", "TCP")]


def test_nxdomain_is_a_gaierror(resolver):
    for call in (
        lambda: resolver.gethostbyname("nope.test"),
        lambda: resolver.gethostbyname_ex("nope.test"),
        lambda: resolver.getaddrinfo("nope.test", 80),
        lambda: resolver.gethostbyaddr("nope.test"),
    ):
        with pytest.raises(stdsocket.gaierror) as info:
            call()
        assert info.value.errno == stdsocket.EAI_NONAME
        assert info.value.args[1] == "Name or service not known"


def test_reverse_lookups(resolver, server):
    assert resolver.gethostbyaddr("10.0.0.1") == ("a.test", [], ["10.0.0.1"])
    assert resolver.getnameinfo(("10.0.0.1", 80), 0) == ("a.test", "http")
    with pytest.raises(stdsocket.herror) as info:
        resolver.gethostbyaddr("10.7.7.7")
    assert info.value.args == (1, "Unknown host")
    assert resolver.getnameinfo(("10.7.7.7", 81), stdsocket.NI_NUMERICSERV) == ("10.7.7.7", "81")
    with pytest.raises(stdsocket.gaierror) as info:
        resolver.getnameinfo(("10.7.7.7", 81), stdsocket.NI_NAMEREQD)
    assert info.value.errno == stdsocket.EAI_NONAME
    # The hosts file answers reverse look-ups too.
    before = len(server.queries)
    assert resolver.gethostbyaddr("10.5.5.5") == ("hosted.test", [], ["10.5.5.5"])
    assert len(server.queries) == before


def test_hosts_file_comes_first(resolver, server, hosts):
    # hosted.test is in the zone too, with another address: the file wins, unasked.
    assert resolver.gethostbyname("hosted.test") == "10.5.5.5"
    assert resolver.gethostbyname("HostAlias") == "10.5.5.5"
    assert resolver.gethostbyname_ex("hostalias")[0] == "hosted.test"
    infos = resolver.getaddrinfo("hosted6.test", 1, stdsocket.AF_INET6, stdsocket.SOCK_STREAM)
    assert infos[0][4][:2] == ("fd00::5", 1)
    assert server.queries == []
    # The file's names match as written: with a final dot, the nameserver answers (glibc).
    assert resolver.gethostbyname("hosted.test.") == "10.9.9.9"
    assert server.queries == [("hosted.test.", "A")]
    # Without the file, the nameserver answers.
    resolver.hosts_file = HostsFile(hosts + ".missing")
    assert resolver.gethostbyname("hosted.test") == "10.9.9.9"
    assert server.queries == [("hosted.test.", "A")] * 2


def test_numeric_addresses_need_no_query(resolver, server):
    assert resolver.gethostbyname("192.0.2.7") == "192.0.2.7"
    assert resolver.gethostbyname_ex("192.0.2.7") == stdsocket.gethostbyname_ex("192.0.2.7")
    assert resolver.getaddrinfo("192.0.2.7", 80, 0, stdsocket.SOCK_STREAM) == (
        stdsocket.getaddrinfo("192.0.2.7", 80, 0, stdsocket.SOCK_STREAM)
    )
    assert resolver.getaddrinfo("::1", "80", stdsocket.AF_INET6) == stdsocket.getaddrinfo(
        "::1", "80", stdsocket.AF_INET6
    )
    assert resolver.getaddrinfo(None, 80, 0, stdsocket.SOCK_STREAM) == stdsocket.getaddrinfo(
        None, 80, 0, stdsocket.SOCK_STREAM
    )
    # The C library's other numeric spellings are numeric too.
    assert resolver.gethostbyname("127.1") == "127.0.0.1"
    assert resolver.getaddrinfo("0x7f.1", 80, 0, stdsocket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
    assert resolver.gethostbyaddr("10.0.0.1") == ("a.test", [], ["10.0.0.1"])
    before = len(server.queries)
    assert resolver.gethostbyaddr("10.1") == ("a.test", [], ["10.0.0.1"])
    assert server.queries[before:] == [("1.0.0.10.in-addr.arpa.", "PTR")]
    del server.queries[:]
    flags = stdsocket.NI_NUMERICHOST | stdsocket.NI_NUMERICSERV
    assert resolver.getnameinfo(("192.0.2.7", 80), flags) == ("192.0.2.7", "80")
    assert server.queries == []


def test_search_domains_and_nxdomain_short_cut(resolver, server):
    resolver.resolver.search = [dns.name.from_text("nowhere."), dns.name.from_text("test.")]
    assert resolver.gethostbyname("a") == "10.0.0.1"
    # "a" has fewer dots than ndots (1): the search forms come first.
    assert server.queries == [("a.nowhere.", "A"), ("a.test.", "A")]
    del server.queries[:]
    infos = resolver.getaddrinfo("six", 80, 0, stdsocket.SOCK_STREAM)
    assert [info[4][0] for info in infos] == ["fd00::1"]
    # An NXDOMAIN answer to A spares the AAAA question.
    assert server.queries == [("six.nowhere.", "A"), ("six.test.", "A"), ("six.test.", "AAAA")]


def test_bad_arguments_raise_as_the_stdlib_does(resolver, server):
    with pytest.raises(stdsocket.gaierror) as info:
        resolver.getaddrinfo("a.test", "no-such-service")
    assert info.value.errno == stdsocket.EAI_SERVICE
    with pytest.raises(TypeError):
        resolver.gethostbyname(None)
    # Names the IDNA codec refuses raise its UnicodeError, as the stdlib's functions do.
    for name in ("a..test", "x" * 70 + ".test"):
        with pytest.raises(UnicodeError):
            resolver.gethostbyname(name)
        with pytest.raises(UnicodeError):
            resolver.getaddrinfo(name, 80)
    assert server.queries == []


def test_unreachable_nameserver_is_a_temporary_failure(resolver):
    # A port nobody answers on: the look-up gives up after its lifetime.
    silent = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver.resolver.port = silent.getsockname()[1]
        resolver.resolver.timeout = 0.05
        resolver.resolver.lifetime = 0.2
        with pytest.raises(stdsocket.gaierror) as info:
            resolver.gethostbyname("a.test")
        assert info.value.errno == stdsocket.EAI_AGAIN
    finally:
        silent.close()


def test_lookups_wait_cooperatively(resolver, server):
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gw.sleep(0.05)

    started = time.monotonic()
    background = gw.spawn(ticker)
    first = gw.spawn(resolver.gethostbyname, "slow1.test")
    second = gw.spawn(resolver.gethostbyname, "slow2.test")
    gw.joinall([first, second], timeout=10)
    elapsed = time.monotonic() - started
    background.kill()
    assert (first.value, second.value) == ("10.0.1.1", "10.0.1.2")
    # Both questions reached the server before it answered either: they overlapped.
    kinds = [kind for kind, _ in server.events]
    assert kinds[:2] == ["ask", "ask"], server.events
    # Serially this would take 2 * DELAY; the server's events above already
    # show the overlap, so this bound only has to catch a serialisation.
    assert elapsed < 2 * DELAY, elapsed
    # And the loop ran meanwhile.
    assert len(ticks) >= 3


def test_config_selects_the_dnspython_resolver():
    hub = gw.get_hub()
    saved = dict(config._values)
    saved_hub = {k: hub.__dict__[k] for k in ("_resolver", "_resolver_class") if k in hub.__dict__}
    try:
        config.resolver = "dnspython"
        assert config.resolver is Resolver
        for key in ("_resolver", "_resolver_class"):
            hub.__dict__.pop(key, None)
        assert hub.resolver_class is Resolver
        assert isinstance(hub.resolver, Resolver)
        config.resolver = "ares,dnspython"  # gevent's lists: the first available one
        assert config.resolver is Resolver
    finally:
        for key in ("_resolver", "_resolver_class"):
            hub.__dict__.pop(key, None)
        hub.__dict__.update(saved_hub)
        config._values.clear()
        config._values.update(saved)


def test_without_dnspython(monkeypatch):
    for name in [n for n in sys.modules if n == "dns" or n.startswith("dns.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "dns", None)
    monkeypatch.delitem(sys.modules, "greenwheel.resolver.dnspython")
    import greenwheel.resolver as package

    monkeypatch.delattr(package, "dnspython", raising=False)
    with pytest.raises(ImportError, match="pip install dnspython"):
        import greenwheel.resolver.dnspython  # noqa: F401
    saved = dict(config._values)
    hub = gw.get_hub()
    saved_hub = {k: hub.__dict__[k] for k in ("_resolver", "_resolver_class") if k in hub.__dict__}
    try:
        with pytest.warns(RuntimeWarning, match="pip install dnspython"):
            config.resolver = "dnspython"
        for key in ("_resolver", "_resolver_class"):
            hub.__dict__.pop(key, None)
        assert hub.resolver_class is thread.Resolver
    finally:
        for key in ("_resolver", "_resolver_class"):
            hub.__dict__.pop(key, None)
        hub.__dict__.update(saved_hub)
        config._values.clear()
        config._values.update(saved)


def test_config_nameservers_and_timeout():
    saved = dict(config._values)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # _config calls them no-effect
            config.resolver_nameservers = "127.0.0.2, 127.0.0.3"
            config.resolver_timeout = 1.5
        resolver = Resolver()
        assert resolver.resolver.nameservers == ["127.0.0.2", "127.0.0.3"]
        assert resolver.resolver.lifetime == 1.5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            config.resolver_nameservers = ["::1"]
        assert Resolver().resolver.nameservers == ["::1"]
    finally:
        config._values.clear()
        config._values.update(saved)
