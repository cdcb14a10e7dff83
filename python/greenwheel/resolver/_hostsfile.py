"""A reader for the hosts file (``/etc/hosts``), as resolvers that do not ask the
C library need one.

``HostsFile(path).load()`` parses the file into name -> address tables; it
re-reads only when the file's modification time changed, so calling it
before every look-up is cheap. Malformed lines (an address that is not an
IPv4 or IPv6 literal, or no names) are skipped, as the C library skips them.
"""

import ipaddress
import os

__all__ = ["HostsFile"]


class HostsFile:
    """The name -> address tables of one hosts file."""

    def __init__(self, fname=None):
        self.fname = fname or ("/etc/hosts" if os.name != "nt" else None)
        #: canonical name or alias (lower case) -> IPv4 address
        self.v4 = {}
        #: canonical name or alias (lower case) -> IPv6 address
        self.v6 = {}
        #: alias (lower case) -> its canonical name, for each family
        self.v4_aliases = {}
        self.v6_aliases = {}
        #: address -> canonical name (the first line naming the address wins)
        self.reverse = {}
        self._mtime = None

    def _read(self):
        try:
            with open(self.fname, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except (OSError, TypeError):
            return []

    def load(self):
        """(Re)read the file if it changed since the last load."""
        try:
            mtime = os.stat(self.fname).st_mtime
        except (OSError, TypeError):
            mtime = None
        if mtime is not None and mtime == self._mtime:
            return
        self._mtime = mtime
        v4, v6, v4_aliases, v6_aliases, reverse = {}, {}, {}, {}, {}
        for line in self._read():
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            address, canonical, *aliases = fields
            try:
                version = ipaddress.ip_address(address.split("%", 1)[0]).version
            except ValueError:
                continue
            table, alias_table = (v4, v4_aliases) if version == 4 else (v6, v6_aliases)
            canonical = canonical.lower()
            # The first line that names a host decides its address, as in the C library.
            table.setdefault(canonical, address)
            for alias in aliases:
                alias = alias.lower()
                table.setdefault(alias, address)
                alias_table.setdefault(alias, canonical)
            reverse.setdefault(address, canonical)
        self.v4, self.v6 = v4, v6
        self.v4_aliases, self.v6_aliases = v4_aliases, v6_aliases
        self.reverse = reverse

    def iter_all_host_addr_pairs(self):
        """Every (name, address) the file declares: canonical names and aliases."""
        self.load()
        for table in (self.v4, self.v6):
            yield from table.items()
