"""A resolver that speaks DNS itself, with dnspython (gevent.resolver.dnspython).

Select it with ``greenwheel.config.resolver = "dnspython"`` (or
``GEVENT_RESOLVER=dnspython``); it needs the ``dnspython`` package
(``pip install dnspython``, or greenwheel's ``dnspython`` extra).

How a name is answered:

1. numeric addresses (and the stdlib's special names ``""`` and
   ``"<broadcast>"``) need no look-up: the standard library answers them;
2. the hosts file (``/etc/hosts``, re-read when it changes) comes next;
3. otherwise dnspython builds the queries, and greenwheel sockets carry
   them to the nameservers of :attr:`Resolver.resolver` (a
   ``dns.resolver.Resolver``, configured from ``/etc/resolv.conf``: its
   ``nameservers``, ``port``, ``search``, ``ndots``, ``timeout`` and
   ``lifetime`` are used).  Only the calling greenlet waits for an answer.
   CNAME chains are followed; truncated UDP answers are asked again over
   TCP.

Results and errors follow the standard library's functions: unknown names
raise ``socket.gaierror(EAI_NONAME)``, names without addresses of the
wanted family ``gaierror(EAI_NODATA)``, unreachable nameservers
``gaierror(EAI_AGAIN)``; ``gethostbyaddr`` raises ``socket.herror``.
Nothing is cached.
"""

import ipaddress
import socket as _stdsocket
import time

from .. import _socket as _gs
from ._hostsfile import HostsFile

_MISSING = "the 'dnspython' resolver needs the dnspython package: pip install dnspython"

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.resolver
    import dns.reversename
except ImportError as ex:  # pragma: no cover - exercised without dnspython
    raise ImportError("%s (%s)" % (_MISSING, ex)) from ex

__all__ = ["Resolver"]

_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_CNAME = dns.rdatatype.CNAME
_PTR = dns.rdatatype.PTR
_IN = dns.rdataclass.IN

_EAI_NODATA = getattr(_stdsocket, "EAI_NODATA", _stdsocket.EAI_NONAME)
_MESSAGES = {
    _stdsocket.EAI_NONAME: "Name or service not known",
    _EAI_NODATA: "No address associated with hostname",
    _stdsocket.EAI_AGAIN: "Temporary failure in name resolution",
    _stdsocket.EAI_FAMILY: "ai_family not supported",
}

#: How many CNAME links a look-up follows before it gives up.
_MAX_CHAIN = 16


def _gaierror(code):
    return _stdsocket.gaierror(code, _MESSAGES[code])


class _Temporary(Exception):
    """No nameserver gave a usable answer in time."""


class _Outcome:
    """What a look-up of one name found."""

    def __init__(self):
        self.canonical = None
        self.aliases = []
        self.addresses = []
        self.exists = False  # the name (or one of its search forms) exists


def _text(name):
    """A dns.name.Name as the C library spells it: no trailing dot."""
    return name.to_unicode(omit_final_dot=True)


def _host_text(hostname):
    """The host name as text, or None when the stdlib should judge it."""
    if isinstance(hostname, str):
        # As the stdlib: a name the IDNA codec refuses (empty or overlong
        # labels) raises its UnicodeError before any look-up.
        hostname.encode("idna")
        return hostname
    if isinstance(hostname, (bytes, bytearray)):
        try:
            return bytes(hostname).decode("idna")
        except UnicodeError:
            return None
    return None


def _numeric(name):
    """The address the C library reads ``name`` as without a look-up
    (``"127.1"``, ``"fe80::1%lo"``...), or None for a name to look up."""
    if not name or name == "<broadcast>":
        return None
    try:
        infos = _gs._stdlib("getaddrinfo")(
            name, None, 0, _stdsocket.SOCK_STREAM, 0, _stdsocket.AI_NUMERICHOST
        )
    except (OSError, UnicodeError):
        return None
    return infos[0][4][0] if infos else None


class Resolver:
    """Resolver(hub=None): DNS over greenwheel sockets, with dnspython.

    :attr:`resolver` is the ``dns.resolver.Resolver`` whose settings are
    used (change its ``nameservers``/``port``/``timeout``/``lifetime`` to
    steer the look-ups); :attr:`hosts_file` is the
    :class:`~greenwheel.resolver._hostsfile.HostsFile` consulted first.
    ``config.resolver_nameservers`` and ``config.resolver_timeout``, when
    set, override the nameservers and the lifetime of a look-up.
    """

    def __init__(self, hub=None):
        if hub is None:
            from .._hub import get_hub

            hub = get_hub()
        self.hub = hub
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
        from .._config import config

        nameservers = config.resolver_nameservers  # a list (the setting parses text)
        if nameservers:
            resolver.nameservers = list(nameservers)
        lifetime = config.resolver_timeout
        if lifetime:
            resolver.lifetime = lifetime
        self.resolver = resolver
        self.hosts_file = HostsFile()

    # -- DNS ---------------------------------------------------------------

    def _servers(self):
        resolver = self.resolver
        for server in resolver.nameservers:
            if isinstance(server, str):
                yield server, resolver.nameserver_ports.get(server, resolver.port)
            elif hasattr(server, "address") and hasattr(server, "port"):
                # Do53 nameservers; DNS-over-HTTPS/TLS/QUIC ones are skipped.
                if type(server).__name__ == "Do53Nameserver":
                    yield server.address, server.port

    def _exchange(self, query, address, port, timeout):
        family = _stdsocket.AF_INET6 if ":" in address else _stdsocket.AF_INET
        sock = _gs.socket(family, _stdsocket.SOCK_DGRAM)
        try:
            sock.settimeout(timeout)
            response = dns.query.udp(
                query, address, timeout=timeout, port=port, sock=sock, ignore_unexpected=True
            )
        finally:
            sock.close()
        if response.flags & dns.flags.TC:
            sock = _gs.socket(family, _stdsocket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect((address, port))
                response = dns.query.tcp(query, address, timeout=timeout, port=port, sock=sock)
            finally:
                sock.close()
        return response

    def _ask(self, qname, rdtype, deadline):
        """The first usable response to one question, or _Temporary."""
        query = dns.message.make_query(qname, rdtype, _IN)
        query.flags |= dns.flags.RD
        servers = list(self._servers())
        for _ in range(2):  # two rounds over the nameservers, as the C library
            for address, port in servers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Temporary()
                timeout = min(self.resolver.timeout or remaining, remaining)
                try:
                    response = self._exchange(query, address, port, timeout)
                except (OSError, dns.exception.DNSException):
                    continue
                if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    return response
        raise _Temporary()

    def _chase(self, qname, rdtype, deadline, outcome):
        """Follow qname's CNAMEs to its rdtype records; fills outcome."""
        aliases = []
        for _ in range(_MAX_CHAIN):
            response = self._ask(qname, rdtype, deadline)
            if response.rcode() == dns.rcode.NXDOMAIN:
                return False
            outcome.exists = True
            current = qname
            while True:
                rrset = response.get_rrset(response.answer, current, _IN, rdtype)
                if rrset:
                    outcome.canonical = outcome.canonical or _text(current)
                    for alias in aliases:
                        if alias not in outcome.aliases:
                            outcome.aliases.append(alias)
                    for rdata in rrset:
                        value = rdata.address if rdtype in (_A, _AAAA) else _text(rdata.target)
                        if value not in outcome.addresses:
                            outcome.addresses.append(value)
                    return True
                link = response.get_rrset(response.answer, current, _IN, _CNAME)
                if not link:
                    break
                aliases.append(_text(current))
                current = link[0].target
            if current == qname:
                return False  # the name exists, without such records
            qname = current  # the chain leaves this answer: ask about its end
        return False

    def _candidates(self, name):
        """The absolute names to try for ``name``, as resolv.conf's search rules say."""
        try:
            if name.endswith("."):
                return [dns.name.from_text(name)]
            relative = dns.name.from_text(name, origin=None)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return []
        absolute = relative.concatenate(dns.name.root)
        resolver = self.resolver
        domains = list(resolver.search or ())
        if not domains and resolver.domain and resolver.domain != dns.name.root:
            domains = [resolver.domain]
        searched = []
        for domain in domains:
            try:
                searched.append(relative.concatenate(domain))
            except dns.exception.DNSException:
                pass
        ndots = resolver.ndots if resolver.ndots is not None else 1
        if len(relative) - 1 >= ndots:
            return [absolute] + searched
        return searched + [absolute]

    def _lookup(self, name, rdtypes):
        """Addresses (or PTR targets) of ``name``: an _Outcome, or a gaierror."""
        outcome = self._from_hosts(name, rdtypes)
        if outcome is not None:
            return outcome
        deadline = time.monotonic() + (self.resolver.lifetime or 5.0)
        temporary = False
        exists = False
        for qname in self._candidates(name):
            outcome = _Outcome()
            try:
                for rdtype in rdtypes:
                    if not self._chase(qname, rdtype, deadline, outcome) and not outcome.exists:
                        break  # NXDOMAIN: no need to ask for the other family
            except _Temporary:
                temporary = True
                continue
            if outcome.addresses:
                return outcome
            exists = exists or outcome.exists
        if temporary:
            raise _gaierror(_stdsocket.EAI_AGAIN)
        raise _gaierror(_EAI_NODATA if exists else _stdsocket.EAI_NONAME)

    def _from_hosts(self, name, rdtypes):
        hosts = self.hosts_file
        hosts.load()
        # Compared as written: "localhost." is not the file's "localhost" (as glibc).
        key = name.lower()
        outcome = _Outcome()
        for rdtype in rdtypes:
            table, alias_table = (
                (hosts.v4, hosts.v4_aliases) if rdtype == _A else (hosts.v6, hosts.v6_aliases)
            )
            address = table.get(key)
            if address is not None:
                outcome.addresses.append(address)
                if outcome.canonical is None:
                    outcome.canonical = alias_table.get(key, key)
        return outcome if outcome.addresses else None

    def _reverse(self, address):
        """The names of a numeric address: [name, aliases...] (maybe empty), or _Temporary."""
        hosts = self.hosts_file
        hosts.load()
        name = hosts.reverse.get(address)
        if name is not None:
            return [name]
        outcome = _Outcome()
        deadline = time.monotonic() + (self.resolver.lifetime or 5.0)
        self._chase(dns.reversename.from_address(address), _PTR, deadline, outcome)
        return outcome.addresses

    # -- the socket module's functions ---------------------------------------

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        stdlib = _gs._stdlib("getaddrinfo")
        name = _host_text(host)
        if (
            name is None
            or name == ""
            or flags & getattr(_stdsocket, "AI_NUMERICHOST", 0)
            or _gs._is_ip_literal(name)
            or _numeric(name) is not None
        ):
            return stdlib(host, port, family, type, proto, flags)
        # Let the stdlib judge the port, family, type and flags before any query.
        if port is not None:
            stdlib(None, port, family, type, proto, flags & ~_stdsocket.AI_CANONNAME)
        elif family not in (_stdsocket.AF_UNSPEC, _stdsocket.AF_INET, _stdsocket.AF_INET6):
            raise _gaierror(_stdsocket.EAI_FAMILY)
        if family == _stdsocket.AF_INET:
            rdtypes = (_A,)
        elif family == _stdsocket.AF_INET6:
            rdtypes = (_AAAA,)
        else:
            rdtypes = (_A, _AAAA)
        outcome = self._lookup(name, rdtypes)
        numeric = flags | getattr(_stdsocket, "AI_NUMERICHOST", 0)
        result = []
        for address in outcome.addresses:
            for entry in stdlib(address, port, family, type, proto, numeric):
                if flags & _stdsocket.AI_CANONNAME:
                    entry = entry[:3] + ("" if result else outcome.canonical,) + entry[4:]
                result.append(entry)
        return result

    def gethostbyname(self, hostname):
        name = _host_text(hostname)
        if name is None or name in ("", "<broadcast>") or _numeric(name) is not None:
            return _gs._stdlib("gethostbyname")(hostname)
        return self._lookup(name, (_A,)).addresses[0]

    def gethostbyname_ex(self, hostname):
        name = _host_text(hostname)
        if name is None or name in ("", "<broadcast>") or _numeric(name) is not None:
            # The C library answers numeric addresses without a look-up.
            return _gs._stdlib("gethostbyname_ex")(hostname)
        outcome = self._lookup(name, (_A,))
        return outcome.canonical, list(outcome.aliases), list(outcome.addresses)

    def gethostbyaddr(self, ip_address):
        name = _host_text(ip_address)
        if name is None:
            return _gs._stdlib("gethostbyaddr")(ip_address)
        address = _numeric(name)
        if address is None:
            address = self._lookup(name, (_A, _AAAA)).addresses[0]
        address = str(ipaddress.ip_address(address.split("%", 1)[0]))
        try:
            names = self._reverse(address)
        except _Temporary:
            raise _stdsocket.herror(2, "Host name lookup failure") from None
        if not names:
            raise _stdsocket.herror(1, "Unknown host")
        return names[0], names[1:], [address]

    def getnameinfo(self, sockaddr, flags):
        stdlib = _gs._stdlib("getnameinfo")
        if flags & _stdsocket.NI_NUMERICHOST:
            return stdlib(sockaddr, flags)
        # The stdlib checks the sockaddr (numeric host, port) and names the service.
        numeric_host, service = stdlib(
            sockaddr, (flags | _stdsocket.NI_NUMERICHOST) & ~_stdsocket.NI_NAMEREQD
        )
        try:
            names = self._reverse(numeric_host.split("%", 1)[0])
        except _Temporary:
            names = []
            if flags & _stdsocket.NI_NAMEREQD:
                raise _gaierror(_stdsocket.EAI_AGAIN) from None
        if names:
            return names[0], service
        if flags & _stdsocket.NI_NAMEREQD:
            raise _gaierror(_stdsocket.EAI_NONAME)
        return numeric_host, service

    def close(self):
        """Nothing to release: every look-up makes and closes its own sockets."""

    def __repr__(self):
        return "<%s at %#x hub=%r>" % (type(self).__name__, id(self), self.hub)
