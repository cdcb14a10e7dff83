"""Is this text a numeric IP address?  (gevent's ``gevent.resolver._addresses``.)

Resolvers answer numeric addresses themselves instead of asking DNS, and a
hosts file line is valid only with one; these helpers decide.  IPv4 means the
strict dotted quad (``1.2.3.4``; not ``1.2.3`` nor ``0x7f.1``, which
``inet_aton`` would take); IPv6 may carry a zone (``fe80::1%eth0``), which is
not part of the address.  Text may be ``str`` or ``bytes`` (ASCII).
"""

import socket as _socket

__all__ = ["AddressSyntaxError", "is_ipv4_addr", "is_ipv6_addr"]


class AddressSyntaxError(ValueError):
    """The text is not an address of the family asked for."""


def _text(host):
    if isinstance(host, bytes):
        try:
            return host.decode("ascii")
        except UnicodeDecodeError:
            raise AddressSyntaxError(host) from None
    if isinstance(host, str):
        return host
    raise AddressSyntaxError(host)


def _packed(family, host):
    # inet_pton is the strict parser (inet_aton accepts shorthand forms).
    text = _text(host)
    try:
        return _socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise AddressSyntaxError(host) from None


def ipv4_packed(host):
    """The 4 bytes of the dotted-quad *host*; :exc:`AddressSyntaxError` if it is not one."""
    return _packed(_socket.AF_INET, host)


def ipv6_packed(host):
    """The 16 bytes of the IPv6 *host* (a ``%zone`` suffix is ignored);
    :exc:`AddressSyntaxError` if it is not one."""
    text = _text(host)
    address, sep, zone = text.partition("%")
    if sep and not zone:
        raise AddressSyntaxError(host)
    return _packed(_socket.AF_INET6, address)


def is_ipv4_addr(host):
    """True if *host* is a dotted-quad IPv4 address."""
    if not host or not isinstance(host, (str, bytes)):
        return False
    try:
        ipv4_packed(host)
    except AddressSyntaxError:
        return False
    return True


def is_ipv6_addr(host):
    """True if *host* is an IPv6 address (with or without a ``%zone``)."""
    if not host or not isinstance(host, (str, bytes)):
        return False
    try:
        ipv6_packed(host)
    except AddressSyntaxError:
        return False
    return True
