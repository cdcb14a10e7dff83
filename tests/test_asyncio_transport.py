"""greenwheel.asyncio's socket transports (``_make_socket_transport``).

greenwheel's loop makes its own subclass of asyncio's socket transport that
reads at most 64 KiB per ``recv()`` (see ``_SocketTransport`` in
python/greenwheel/_asyncio_loop.py for why). Each behaviour is asserted on
asyncio's default loop and on greenwheel's in the same test: the transport
must still do what asyncio's does.
"""

import asyncio
import ssl

import pytest

import greenwheel.asyncio as gwa
from _tls import make_cert

LOOPS = {"asyncio": asyncio.new_event_loop, "greenwheel": gwa.new_event_loop}
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every chunk boundary visible


@pytest.fixture(params=sorted(LOOPS))
def loop(request):
    loop = LOOPS[request.param]()
    yield loop
    if not loop.is_closed():
        loop.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


class Collect(asyncio.Protocol):
    """Keeps every chunk data_received() got; done when the peer closes."""

    def __init__(self, loop):
        self.chunks, self.done = [], loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.chunks.append(data)

    def eof_received(self):
        self.done.set_result(b"".join(self.chunks))

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class Sender(asyncio.Protocol):
    """Writes the payload at once, then closes (the rest drains from the buffer)."""

    def connection_made(self, transport):
        transport.write(PAYLOAD)
        transport.close()


def test_large_payload_arrives_intact_in_bounded_chunks(loop):
    async def main():
        server = await loop.create_server(Sender, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(lambda: Collect(loop), "127.0.0.1", port)
        received = await asyncio.wait_for(protocol.done, 10)
        await asyncio.wait_for(protocol.lost, 10)
        server.close()
        await server.wait_closed()
        return transport, protocol, received

    transport, protocol, received = loop.run_until_complete(main())
    assert received == PAYLOAD
    sizes = [len(chunk) for chunk in protocol.chunks]
    assert max(sizes) <= transport.max_size, sizes
    assert all(type(chunk) is bytes for chunk in protocol.chunks)
    if isinstance(loop, gwa.GreenwheelEventLoop):
        assert transport.max_size == 64 * 1024
        assert max(sizes) <= 64 * 1024, sizes


def test_transport_api_matches_asyncio(loop):
    async def main():
        server = await loop.create_server(Sender, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(lambda: Collect(loop), "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        facts = {
            "peername": transport.get_extra_info("peername") == ("127.0.0.1", port),
            "sockname": transport.get_extra_info("sockname") == sock.getsockname(),
            "protocol": transport.get_protocol() is protocol,
            "can_write_eof": transport.can_write_eof(),
            "reading": transport.is_reading(),
            "closing": transport.is_closing(),
            "buffer": transport.get_write_buffer_size(),
            "limits": transport.get_write_buffer_limits(),
        }
        transport.pause_reading()
        facts["paused"] = not transport.is_reading()
        transport.resume_reading()
        received = await asyncio.wait_for(protocol.done, 10)
        transport.close()
        facts["closed"] = transport.is_closing()
        facts["lost"] = await asyncio.wait_for(protocol.lost, 10)
        server.close()
        await server.wait_closed()
        return facts, received

    facts, received = loop.run_until_complete(main())
    assert received == PAYLOAD
    assert facts == {
        "peername": True,
        "sockname": True,
        "protocol": True,
        "can_write_eof": True,
        "reading": True,
        "closing": False,
        "buffer": 0,
        "limits": (16 * 1024, 64 * 1024),
        "paused": True,
        "closed": True,
        "lost": None,
    }


def test_write_buffer_pauses_and_resumes_the_writer(loop):
    """A peer that does not read fills the write buffer: pause_writing() then
    resume_writing() once it reads, as asyncio's flow control promises."""
    events = []

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.paused = loop.create_future()
            self.resumed = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport
            transport.set_write_buffer_limits(high=64 * 1024)
            # Far more than the kernel's socket buffers hold.
            for _ in range(64):
                transport.write(PAYLOAD)

        def pause_writing(self):
            events.append("pause")
            self.paused.set_result(self.transport.get_write_buffer_size())

        def resume_writing(self):
            events.append("resume")
            self.resumed.set_result(self.transport.get_write_buffer_size())

    async def main():
        writers = []
        server = await loop.create_server(
            lambda: writers.append(Writer()) or writers[-1], "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        transport, reader = await loop.create_connection(lambda: Collect(loop), "127.0.0.1", port)
        transport.pause_reading()
        while not writers:
            await asyncio.sleep(0)
        buffered = await asyncio.wait_for(writers[0].paused, 10)
        transport.resume_reading()
        left = await asyncio.wait_for(writers[0].resumed, 30)
        writers[0].transport.abort()
        transport.close()
        server.close()
        await server.wait_closed()
        return buffered, left

    buffered, left = loop.run_until_complete(main())
    assert events == ["pause", "resume"]
    assert buffered > 64 * 1024
    assert left <= 16 * 1024


def test_tls_runs_over_the_transport(loop, cert):
    certfile, keyfile = cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certfile, keyfile)
    client_ctx = ssl.create_default_context(cafile=certfile)

    async def main():
        server = await loop.create_server(Sender, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(
            lambda: Collect(loop), "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        received = await asyncio.wait_for(protocol.done, 10)
        version = transport.get_extra_info("ssl_object").version()
        transport.close()
        await asyncio.wait_for(protocol.lost, 10)
        server.close()
        await server.wait_closed()
        return received, version

    received, version = loop.run_until_complete(main())
    assert received == PAYLOAD
    assert version.startswith("TLS")
