"""Cooperative TLS: the implementation behind :mod:`greenwheel.ssl`.

:class:`SSLSocket` is a greenwheel socket carrying an OpenSSL connection from
the standard :mod:`ssl` module.  The descriptor is non-blocking, so OpenSSL
answers "want read" / "want write" instead of blocking; each of those parks
the greenlet on the socket's read or write watcher and then retries the same
OpenSSL call.  Because the TLS object is created over the SSLSocket itself
(``owner=self``), SNI and message callbacks receive the SSLSocket, as with
the standard library.

:class:`SSLContext` is ``ssl.SSLContext`` whose ``wrap_socket`` returns
these sockets; :func:`create_default_context` returns one.
"""

from __future__ import annotations

import errno
import os
import ssl as __ssl__
import sys
from time import monotonic as _monotonic

from . import _socket as _gsocket
from ._socket import _READ, _WRITE, socket
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, NoReturn

    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "SSLContext",
    "SSLSocket",
    "wrap_socket",
    "create_default_context",
    "get_server_certificate",
]

SSLError = __ssl__.SSLError
SSLWantReadError = __ssl__.SSLWantReadError
SSLWantWriteError = __ssl__.SSLWantWriteError
SSLZeroReturnError = __ssl__.SSLZeroReturnError
SSLEOFError = __ssl__.SSLEOFError
SSL_ERROR_EOF = __ssl__.SSL_ERROR_EOF
CERT_NONE = __ssl__.CERT_NONE
CHANNEL_BINDING_TYPES = __ssl__.CHANNEL_BINDING_TYPES
Purpose = __ssl__.Purpose

_READ_TIMEOUT = "The read operation timed out"
_WRITE_TIMEOUT = "The write operation timed out"
_HANDSHAKE_TIMEOUT = "The handshake operation timed out"


_StdSSLContext = __ssl__.SSLContext
_CSSLContext = _StdSSLContext.__mro__[1]  # _ssl._SSLContext, the C base


def _c_property(name):
    # The standard SSLContext's setters for these properties call
    # ``super(SSLContext, SSLContext)`` with ``SSLContext`` looked up in the
    # ssl module at call time.  Once greenwheel.monkey has patched
    # ``ssl.SSLContext`` with this subclass, that recursed forever (gevent
    # issue 1016); these setters go straight to the C base instead.
    std = getattr(_StdSSLContext, name)
    base = getattr(_CSSLContext, name)

    def fset(self, value):
        if name == "minimum_version" and value == __ssl__.TLSVersion.SSLv3:
            self.options &= ~__ssl__.Options.OP_NO_SSLv3
        base.__set__(self, value)

    return property(std.fget, fset, None, std.__doc__)


class SSLContext(_StdSSLContext):
    """``ssl.SSLContext`` whose :meth:`wrap_socket` returns a cooperative :class:`SSLSocket`."""

    # ``SSLContext.wrap_socket`` (inherited) builds its sockets through this.
    # (Ours is not a subclass of ssl.SSLSocket, hence the ignores.)
    sslsocket_class = None  # type: ignore[assignment]  # set below, once SSLSocket exists

    if hasattr(_CSSLContext, "minimum_version"):
        minimum_version = _c_property("minimum_version")
        maximum_version = _c_property("maximum_version")
    if TYPE_CHECKING:
        # Inherited: builds a greenwheel SSLSocket (see sslsocket_class).
        def wrap_socket(  # type: ignore[override]
            self,
            sock: socket,
            server_side: bool = False,
            do_handshake_on_connect: bool = True,
            suppress_ragged_eofs: bool = True,
            server_hostname: str | bytes | None = None,
            session: __ssl__.SSLSession | None = None,
        ) -> SSLSocket: ...

    options = _c_property("options")
    verify_flags = _c_property("verify_flags")
    verify_mode = _c_property("verify_mode")

    @property
    def _msg_callback(self):
        return _StdSSLContext._msg_callback.fget(self)

    @_msg_callback.setter
    def _msg_callback(self, callback):
        base = _CSSLContext._msg_callback
        if callback is None:
            base.__set__(self, None)
            return
        if not callable(callback):
            raise TypeError("%s is not callable." % (callback,))
        # Let the standard setter build its wrapper on a scratch context,
        # then install that wrapper here through the C base.
        scratch = _StdSSLContext(__ssl__.PROTOCOL_TLS_CLIENT)
        saved = __ssl__.SSLContext
        __ssl__.SSLContext = _StdSSLContext
        try:
            _StdSSLContext._msg_callback.fset(scratch, callback)
        finally:
            __ssl__.SSLContext = saved
        base.__set__(self, base.__get__(scratch))


class SSLSocket(socket):
    """A TLS connection over a greenwheel socket (``ssl.SSLSocket`` interface).

    Created by :meth:`SSLContext.wrap_socket`; there is no public constructor.
    """

    __slots__ = (
        "_sslobj",
        "_context",
        "_session",
        "_connected",
        "server_side",
        "server_hostname",
        "do_handshake_on_connect",
        "suppress_ragged_eofs",
        "__dict__",
    )

    if TYPE_CHECKING:
        _sslobj: Any
        _context: Any
        _session: Any
        _connected: bool
        server_side: bool
        server_hostname: str | None
        do_handshake_on_connect: bool
        suppress_ragged_eofs: bool

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "%s does not have a public constructor. Instances are returned by "
            "SSLContext.wrap_socket()." % (type(self).__name__,)
        )

    @classmethod
    def _create(
        cls,
        sock,
        server_side=False,
        do_handshake_on_connect=True,
        suppress_ragged_eofs=True,
        server_hostname=None,
        context=None,
        session=None,
    ):
        if sock.getsockopt(__ssl__.SOL_SOCKET, __ssl__.SO_TYPE) != __ssl__.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")

        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto, fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        socket.__init__(self, **kwargs)
        sock_timeout = sock.gettimeout()
        sock.detach()

        self._context = context
        self._session = session
        self._sslobj = None
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs

        try:
            self.getpeername()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                self.close()
                raise
            connected = False
            # Not connected, so nothing should be readable; data here would
            # be plaintext that must not pass for TLS payload.
            try:
                early = _gsocket._ss_recv(self, 1, 0)
            except OSError as err:
                if err.errno not in (errno.ENOTCONN, errno.EINVAL, errno.EAGAIN):
                    self.close()
                    raise
                early = b""
            if early:
                reason = "Closed before TLS handshake with data in recv buffer."
                error = SSLError(e.errno, reason)
                error.reason = reason
                error.library = None
                try:
                    self.close()
                except OSError:
                    pass
                raise error from None
        else:
            connected = True

        self.timeout = sock_timeout
        self._connected = connected
        if connected:
            try:
                self._sslobj = context._wrap_socket(
                    self, server_side, self.server_hostname, owner=self, session=session
                )
                if do_handshake_on_connect:
                    if sock_timeout == 0.0:
                        raise ValueError(
                            "do_handshake_on_connect should not be specified for non-blocking sockets"
                        )
                    self.do_handshake()
            except BaseException:
                self.close()
                raise
        return self

    # -- the cooperative core ---------------------------------------------------

    def _ssl_retry(self, method, args, events, msg):
        # The first attempt wanted *events*; wait and retry until it is done.
        timeout = self.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._wait(events, deadline, msg)
            try:
                return method(*args)
            except SSLWantReadError:
                events = _READ
            except SSLWantWriteError:
                events = _WRITE

    def _ssl_call(self, method, args, msg):
        try:
            return method(*args)
        except SSLWantReadError:
            if self.timeout == 0.0:
                raise
            events = _READ
        except SSLWantWriteError:
            if self.timeout == 0.0:
                raise
            events = _WRITE
        return self._ssl_retry(method, args, events, msg)

    # -- properties -----------------------------------------------------------------

    @property
    def context(self) -> __ssl__.SSLContext:
        return self._context

    @context.setter
    def context(self, ctx: __ssl__.SSLContext) -> None:
        self._context = ctx
        self._sslobj.context = ctx

    @property
    def session(self) -> __ssl__.SSLSession | None:
        """The ``SSLSession`` of a client connection."""
        if self._sslobj is not None:
            return self._sslobj.session
        return None

    @session.setter
    def session(self, session: __ssl__.SSLSession | None) -> None:
        self._session = session
        if self._sslobj is not None:
            self._sslobj.session = session

    @property
    def session_reused(self) -> bool | None:
        if self._sslobj is not None:
            return self._sslobj.session_reused
        return None

    def dup(self) -> NoReturn:
        raise NotImplementedError("Can't dup() %s instances" % (type(self).__name__,))

    def _checkClosed(self, msg=None):
        pass

    def _check_connected(self):
        if not self._connected:
            # Raises ENOTCONN if the socket really is not connected.
            self.getpeername()

    # -- TLS data -------------------------------------------------------------------

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> Any:
        """Read up to *len* bytes (into *buffer* if given); b'' (or 0) at EOF."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        args = (len,) if buffer is None else (len, buffer)
        try:
            try:
                return sslobj.read(*args)
            except SSLWantReadError:
                if self.timeout == 0.0:
                    raise
                events = _READ
            except SSLWantWriteError:
                if self.timeout == 0.0:
                    raise
                events = _WRITE
            return self._ssl_retry(sslobj.read, args, events, _READ_TIMEOUT)
        except SSLZeroReturnError:
            if self.suppress_ragged_eofs:
                return b"" if buffer is None else 0
            raise
        except SSLError as ex:
            if ex.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return b"" if buffer is None else 0
            raise

    def write(self, data: ReadableBuffer) -> int:
        """Write *data* over TLS; return the number of bytes written."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        return self._ssl_call(sslobj.write, (data,), _WRITE_TIMEOUT)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:  # type: ignore[override]
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    "non-zero flags not allowed in calls to send() on %s" % (type(self),)
                )
            return self._ssl_call(self._sslobj.write, (data,), _WRITE_TIMEOUT)
        return socket.send(self, data, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        sslobj = self._sslobj
        if sslobj is None:
            return socket.sendall(self, data, flags)
        if flags != 0:
            raise ValueError(
                "non-zero flags not allowed in calls to sendall() on %s" % (type(self),)
            )
        with memoryview(data) as view, view.cast("B") as octets:
            total = len(octets)
            count = 0
            while count < total:
                count += self._ssl_call(sslobj.write, (octets[count:],), _WRITE_TIMEOUT)
        return None

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        if self._sslobj is not None:
            return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined]
        return socket.sendfile(self, file, offset, count)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    "non-zero flags not allowed in calls to recv() on %s" % (type(self),)
                )
            return self.read(buflen)
        return socket.recv(self, buflen, flags)

    def _recv_within(self, bufsize, timeout):
        # The base class reads the fd directly; TLS records go through recv().
        if self._sslobj is None:
            return socket._recv_within(self, bufsize, timeout)
        saved = self.timeout
        self.timeout = timeout
        try:
            return self.recv(bufsize)
        finally:
            self.timeout = saved

    def recv_into(self, buffer: WriteableBuffer, nbytes: int | None = None, flags: int = 0) -> int:
        if nbytes is None:
            nbytes = 0
            if buffer is not None:
                with memoryview(buffer) as view:
                    nbytes = view.nbytes
            if not nbytes:
                nbytes = 1024
        if self._sslobj is not None:
            if flags != 0:
                raise ValueError(
                    "non-zero flags not allowed in calls to recv_into() on %s" % (type(self),)
                )
            return self.read(nbytes, buffer)
        return socket.recv_into(self, buffer, nbytes, flags)

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> tuple[bytes, Any]:
        if self._sslobj is not None:
            raise ValueError("recvfrom not allowed on instances of %s" % (type(self),))
        return socket.recvfrom(self, buflen, flags)

    def recvfrom_into(
        self, buffer: WriteableBuffer, nbytes: int | None = None, flags: int = 0
    ) -> tuple[int, Any]:
        if self._sslobj is not None:
            raise ValueError("recvfrom_into not allowed on instances of %s" % (type(self),))
        return socket.recvfrom_into(self, buffer, nbytes or 0, flags)

    def sendto(self, data: ReadableBuffer, flags_or_addr: Any, addr: Any = None) -> int:
        if self._sslobj is not None:
            raise ValueError("sendto not allowed on instances of %s" % (type(self),))
        if addr is None:
            return socket.sendto(self, data, flags_or_addr)
        return socket.sendto(self, data, flags_or_addr, addr)

    def sendmsg(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("sendmsg not allowed on instances of %s" % (type(self),))

    def recvmsg(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("recvmsg not allowed on instances of %s" % (type(self),))

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("recvmsg_into not allowed on instances of %s" % (type(self),))

    def pending(self) -> int:
        """Bytes already decrypted and buffered, readable without waiting."""
        if self._sslobj is not None:
            return self._sslobj.pending()
        return 0

    # -- connection life cycle ---------------------------------------------------

    def do_handshake(self, block: bool = False) -> None:
        """Perform the TLS handshake (waiting cooperatively unless non-blocking)."""
        self._check_connected()
        timeout = self.timeout
        if timeout == 0.0 and block:
            self.timeout = None
        try:
            self._ssl_call(self._sslobj.do_handshake, (), _HANDSHAKE_TIMEOUT)
        finally:
            self.timeout = timeout

    def unwrap(self) -> socket:
        """Shut TLS down (close_notify both ways); return the plain socket (self)."""
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        try:
            result = self._ssl_call(sslobj.shutdown, (), _READ_TIMEOUT)
        except (SSLEOFError, SSLZeroReturnError):
            result = self
        except OSError as ex:
            if ex.errno != 0:
                raise
            result = self
        self._sslobj = None
        return result if result is not None else self

    def shutdown(self, how: int) -> None:
        self._sslobj = None
        socket.shutdown(self, how)

    def verify_client_post_handshake(self) -> None:
        if self._sslobj:
            return self._sslobj.verify_client_post_handshake()
        raise ValueError("No SSL wrapper around " + str(self))

    def _real_close(self, _ss=None):
        self._sslobj = None
        socket._real_close(self)

    def _real_connect(self, addr, connect_ex):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self._context._wrap_socket(
            self, False, self.server_hostname, owner=self, session=self._session
        )
        try:
            if connect_ex:
                rc = socket.connect_ex(self, addr)
            else:
                rc = None
                socket.connect(self, addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def connect(self, addr: Any) -> None:
        """Connect to *addr*, then perform the handshake (unless told not to)."""
        self._real_connect(addr, False)

    def connect_ex(self, addr: Any) -> int:
        return self._real_connect(addr, True)

    def accept(self) -> tuple[SSLSocket, Any]:
        """Accept a connection and wrap it as a server-side SSLSocket."""
        newsock, addr = socket.accept(self)
        try:
            newsock = SSLSocket._create(
                newsock,
                server_side=True,
                do_handshake_on_connect=self.do_handshake_on_connect,
                suppress_ragged_eofs=self.suppress_ragged_eofs,
                context=self._context,
            )
        except BaseException:
            newsock.close()
            raise
        return newsock, addr

    # -- TLS session information ---------------------------------------------------

    def getpeercert(self, binary_form: bool = False) -> Any:
        self._check_connected()
        return self._sslobj.getpeercert(binary_form)

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        if self._sslobj is not None:
            return self._sslobj.get_channel_binding(cb_type)
        if cb_type not in CHANNEL_BINDING_TYPES:
            raise ValueError(f"{cb_type} channel binding type not implemented")
        return None

    def selected_npn_protocol(self) -> str | None:
        return None

    def selected_alpn_protocol(self) -> str | None:
        if self._sslobj is None or not __ssl__.HAS_ALPN:
            return None
        return self._sslobj.selected_alpn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        return None if self._sslobj is None else self._sslobj.cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return None if self._sslobj is None else self._sslobj.shared_ciphers()

    def compression(self) -> str | None:
        return None if self._sslobj is None else self._sslobj.compression()

    def version(self) -> str | None:
        return None if self._sslobj is None else self._sslobj.version()

    if hasattr(__ssl__.SSLSocket, "get_verified_chain"):

        def get_verified_chain(self) -> list[bytes]:
            chain = self._sslobj.get_verified_chain()
            return (
                [] if chain is None else [c.public_bytes(__ssl__._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
            )

        def get_unverified_chain(self) -> list[bytes]:
            chain = self._sslobj.get_unverified_chain()
            return (
                [] if chain is None else [c.public_bytes(__ssl__._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
            )


SSLSocket.__module__ = "greenwheel.ssl"
SSLContext.__module__ = "greenwheel.ssl"
SSLContext.sslsocket_class = SSLSocket  # type: ignore[assignment]


def _wrap_with_context(context: __ssl__.SSLContext, sock: socket, **kwargs: Any) -> SSLSocket:
    """Wrap *sock* in a greenwheel :class:`SSLSocket` using any ``ssl.SSLContext``.

    Lets callers holding a plain standard-library context (which would build
    a blocking ``ssl.SSLSocket``) still get a cooperative socket.
    """
    return SSLSocket._create(sock, context=context, **kwargs)


def create_default_context(
    purpose: __ssl__.Purpose = Purpose.SERVER_AUTH,
    *,
    cafile: Any = None,
    capath: Any = None,
    cadata: Any = None,
) -> SSLContext:
    """Like ``ssl.create_default_context``, returning a greenwheel :class:`SSLContext`."""
    if purpose == Purpose.SERVER_AUTH:
        context = SSLContext(__ssl__.PROTOCOL_TLS_CLIENT)
    elif purpose == Purpose.CLIENT_AUTH:
        context = SSLContext(__ssl__.PROTOCOL_TLS_SERVER)
    else:
        raise ValueError(purpose)
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    elif context.verify_mode != CERT_NONE:
        context.load_default_certs(purpose)
    keylogfile = os.environ.get("SSLKEYLOGFILE")
    if keylogfile and hasattr(context, "keylog_filename") and not sys.flags.ignore_environment:
        context.keylog_filename = keylogfile
    return context


def _create_unverified_context(
    protocol=None,
    *,
    cert_reqs=CERT_NONE,
    check_hostname=False,
    purpose=Purpose.SERVER_AUTH,
    certfile=None,
    keyfile=None,
    cafile=None,
    capath=None,
    cadata=None,
):
    """A context that does not verify certificates (``ssl._create_unverified_context``)."""
    if protocol is None:
        protocol = (
            __ssl__.PROTOCOL_TLS_CLIENT
            if purpose == Purpose.SERVER_AUTH
            else __ssl__.PROTOCOL_TLS_SERVER
        )
    context = SSLContext(protocol)
    context.check_hostname = check_hostname
    if cert_reqs is not None:
        context.verify_mode = cert_reqs
    if keyfile and not certfile:
        raise ValueError("certfile must be specified")
    if certfile or keyfile:
        context.load_cert_chain(certfile, keyfile)
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    elif context.verify_mode != CERT_NONE:
        context.load_default_certs(purpose)
    return context


def wrap_socket(
    sock: socket,
    keyfile: Any = None,
    certfile: Any = None,
    server_side: bool = False,
    cert_reqs: int = CERT_NONE,
    ssl_version: int | None = None,
    ca_certs: Any = None,
    do_handshake_on_connect: bool = True,
    suppress_ragged_eofs: bool = True,
    ciphers: str | None = None,
) -> SSLSocket:
    """The classic module-level ``ssl.wrap_socket`` (gone from the stdlib in 3.12)."""
    if server_side and not certfile:
        raise ValueError("certfile must be specified for server-side operations")
    if keyfile and not certfile:
        raise ValueError("certfile must be specified")
    if ssl_version is None:
        ssl_version = __ssl__.PROTOCOL_TLS_SERVER if server_side else __ssl__.PROTOCOL_TLS_CLIENT
    context = SSLContext(ssl_version)
    if ssl_version == getattr(__ssl__, "PROTOCOL_TLS_CLIENT", None):
        context.check_hostname = False
    context.verify_mode = cert_reqs
    if ca_certs:
        context.load_verify_locations(ca_certs)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    if ciphers:
        context.set_ciphers(ciphers)
    return context.wrap_socket(
        sock=sock,
        server_side=server_side,
        do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs,
    )


def get_server_certificate(
    addr: tuple[str, int],
    ssl_version: int | None = None,
    ca_certs: Any = None,
    timeout: float | None = _gsocket._GLOBAL_DEFAULT_TIMEOUT,
) -> str:
    """The PEM certificate of the TLS server at *addr* (``(host, port)``)."""
    host, port = addr
    if ca_certs is not None:
        context = _create_unverified_context(
            ssl_version, cert_reqs=__ssl__.CERT_REQUIRED, cafile=ca_certs
        )
    else:
        context = _create_unverified_context(ssl_version)
    with _gsocket.create_connection(addr, timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as sslsock:
            dercert = sslsock.getpeercert(True)
    return __ssl__.DER_cert_to_PEM_cert(dercert)
