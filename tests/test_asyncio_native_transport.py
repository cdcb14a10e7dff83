"""The native read and write paths of greenwheel.asyncio's socket transport
(rust/py/aio_transport.rs) against asyncio's own transport on the default
loop: the same programs of writes, peer sends, pauses and protocol switches
must give the same bytes, the same protocol calls and the same errors.
"""

import asyncio
import gc
import logging
import socket
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenwheel.asyncio as gasyncio

SIZES = st.sampled_from([0, 1, 64, 5000, 300_000])  # 300 kB fills the socket buffers


def payload(kind, size, seed):
    data = bytes((seed + i) % 251 for i in range(size))
    return {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]


actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.sampled_from(["bytes", "bytearray", "memoryview"]),
            SIZES,
        ),
        st.tuples(st.just("peer_send"), SIZES),
        st.tuples(st.just("pause_reading")),
        st.tuples(st.just("resume_reading")),
        st.tuples(st.just("buffered_protocol")),
        st.tuples(st.just("plain_protocol")),
    ),
    max_size=12,
)


class Record:
    def __init__(self):
        self.events = []
        self.received = bytearray()
        self.lost = asyncio.Event()

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set()

    def eof_received(self):
        self.events.append(("eof",))


class Plain(asyncio.Protocol):
    def __init__(self, record):
        self.r = record

    def data_received(self, data):
        assert type(data) is bytes
        self.r.received += data

    def eof_received(self):
        self.r.eof_received()

    def connection_lost(self, exc):
        self.r.connection_lost(exc)


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, record):
        self.r = record
        self.buffer = bytearray(1000)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.r.received += self.buffer[:nbytes]

    def eof_received(self):
        self.r.eof_received()

    def connection_lost(self, exc):
        self.r.connection_lost(exc)


async def play(program):
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    record = Record()
    transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
    written = bytearray()
    sent = bytearray()
    backlog = bytearray()
    paused = False
    for action in program:
        if action[0] == "write":
            data = payload(action[1], action[2], len(written))
            written += data
            transport.write(data)
        elif action[0] == "peer_send":
            # As much as the kernel takes now: the transport may be paused.
            data = payload("bytes", action[1], 7 + len(sent))
            sent += data
            backlog += data
            try:
                while backlog:
                    del backlog[: peer.send(backlog)]
            except BlockingIOError:
                pass
        elif action[0] == "pause_reading":
            if not paused:
                transport.pause_reading()
                paused = True
        elif action[0] == "resume_reading":
            if paused:
                transport.resume_reading()
                paused = False
        elif action[0] == "buffered_protocol":
            transport.set_protocol(Buffered(record))
        else:
            transport.set_protocol(Plain(record))
        await asyncio.sleep(0)
    if paused:
        transport.resume_reading()
    await loop.sock_sendall(peer, backlog)
    transport.write_eof()
    got = bytearray()
    while True:
        chunk = await loop.sock_recv(peer, 1 << 16)
        if not chunk:
            break
        got += chunk
    # (Until the protocol has everything, or the connection is lost: a
    # transport that drops bytes ends here too and fails the comparison.)
    while len(record.received) < len(sent) and not record.lost.is_set():
        await asyncio.sleep(0)
    peer.close()
    await record.lost.wait()
    return {
        "peer got": bytes(got) == bytes(written),
        "protocol got": bytes(record.received) == bytes(sent),
        "events": record.events,
        "buffered": transport.get_write_buffer_size(),
    }


def on_both_loops(program_factory):
    default = asyncio.new_event_loop()
    ours = gasyncio.new_event_loop()
    try:
        # wait_for only turns a hang into a failure; no program comes near it.
        want = default.run_until_complete(asyncio.wait_for(program_factory(), 60))
        got = ours.run_until_complete(asyncio.wait_for(program_factory(), 60))
    finally:
        default.close()
        ours.close()
    return got, want


@settings(max_examples=60, deadline=None)
@given(program=actions)
def test_the_native_paths_behave_as_asyncios_transport(program):
    got, want = on_both_loops(lambda: play(program))
    assert got == want
    assert got["peer got"] and got["protocol got"]


async def failing_data_received():
    # data_received raises: asyncio reports it and closes the transport,
    # connection_lost gets the error.
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    ours, peer = socket.socketpair()
    record = Record()

    class Failing(Plain):
        def data_received(self, data):
            raise ZeroDivisionError("in data_received")

    transport, _ = await loop.create_connection(lambda: Failing(record), sock=ours)
    peer.send(b"x")
    await record.lost.wait()
    peer.close()
    return reported, record.events, transport.is_closing()


def test_an_error_in_data_received_is_reported_and_closes_as_in_asyncio():
    got, want = on_both_loops(failing_data_received)
    assert got == want
    assert got[0] == ["Fatal error: protocol.data_received() call failed."]


async def read_error_escaping(cancel_first):
    # The transport's _fatal_error itself raises: the error leaves the
    # read and reaches the loop's exception handler through the reader
    # handle, as any callback's error does.
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ours, peer = socket.socketpair()
    record = Record()

    class Failing(Plain):
        def data_received(self, data):
            if cancel_first:
                loop._selector.get_key(ours.fileno()).data[0].cancel()
            raise ZeroDivisionError("in data_received")

    transport, _ = await loop.create_connection(lambda: Failing(record), sock=ours)
    reader = loop._selector.get_key(ours.fileno()).data[0]

    def fatal_error(exc, message):
        raise KeyError("from _fatal_error")

    transport._fatal_error = fatal_error
    peer.send(b"x")
    while not reported:
        await asyncio.sleep(0)
    del transport._fatal_error
    transport.close()
    await record.lost.wait()
    peer.close()
    (context,) = reported
    return context, reader


@pytest.mark.parametrize("cancel_first", [False, True])
def test_an_error_escaping_a_read_goes_to_the_exception_handler(cancel_first):
    (got, reader), (want, _) = on_both_loops(lambda: read_error_escaping(cancel_first))
    for context in (got, want):
        assert isinstance(context["exception"], KeyError)
        assert context["message"].startswith("Exception in callback ")
    assert got["handle"] is reader
    assert "read_ready" in got["message"]


async def bad_writes():
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    record = Record()
    transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
    errors = []
    for data in ("text", 12, None):
        try:
            transport.write(data)
        except Exception as ex:
            errors.append((type(ex).__name__, str(ex)))
    transport.write_eof()
    try:
        transport.write(b"after eof")
    except Exception as ex:
        errors.append((type(ex).__name__, str(ex)))
    peer.close()
    await record.lost.wait()
    try:
        transport.write(b"after close")
    except Exception as ex:
        errors.append((type(ex).__name__, str(ex)))
    return errors, record.events


def test_bad_writes_raise_as_in_asyncio():
    got, want = on_both_loops(bad_writes)
    assert got == want
    assert got[0][0][0] == "TypeError"


async def write_to_a_reset_peer():
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    ours, peer = socket.socketpair()
    record = Record()
    transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
    peer.close()
    transport.write(b"x" * 100)  # EPIPE: a fatal write error
    await record.lost.wait()
    return reported, record.events


def test_a_failed_send_is_fatal_as_in_asyncio():
    got, want = on_both_loops(write_to_a_reset_peer)
    assert got == want


def test_a_closed_transport_lets_go_of_its_native_paths():
    # The native reader and writer refer to their transport: once the
    # connection is lost they are dropped (later calls take asyncio's own
    # methods), and the collector frees the transport.
    async def main():
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        record = Record()
        transport, protocol = await loop.create_connection(lambda: Plain(record), sock=ours)
        assert type(transport._gw_writer).__name__ == "TransportIO"
        assert transport._read_ready.__self__ is transport._gw_writer
        transport.write(b"hello")
        assert peer.recv(100) == b"hello"
        transport.close()
        await record.lost.wait()
        peer.close()
        assert transport._gw_writer is None and "_read_ready" not in vars(transport)
        # asyncio's write, for a lost connection: counted, not sent.
        transport.write(b"late")
        assert transport._conn_lost == 2
        transport.set_protocol(Buffered(record))  # (no native reader to tell)
        assert isinstance(transport.get_protocol(), Buffered)
        return weakref.ref(transport)

    loop = gasyncio.new_event_loop()
    try:
        ref = loop.run_until_complete(main())
        gc.collect()
        assert ref() is None
    finally:
        loop.close()


async def writes_after_loss():
    # After the connection is lost asyncio counts further writes in
    # `_conn_lost` and warns from the fifth on: the count is kept natively
    # (TransportAttrs) and asyncio's `+= 1` must reach it.
    loop = asyncio.get_running_loop()
    warnings = []

    class Collect(logging.Handler):
        def emit(self, rec):
            warnings.append(rec.getMessage())

    handler = Collect(logging.WARNING)
    logging.getLogger("asyncio").addHandler(handler)
    try:
        ours, peer = socket.socketpair()
        record = Record()
        transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
        transport.abort()
        await record.lost.wait()
        peer.close()
        for _ in range(7):
            transport.write(b"lost")
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    return warnings, transport._conn_lost


def test_writes_after_the_connection_is_lost_are_counted_as_in_asyncio():
    got, want = on_both_loops(writes_after_loss)
    assert got == want
    assert got[0] == ["socket.send() raised exception."] * 3


def buffered(buffer):
    # asyncio's write buffer: a bytearray on 3.11, a deque of memoryviews
    # from 3.12 on.
    if isinstance(buffer, (bytes, bytearray)):
        return bytes(buffer)
    return b"".join(buffer)


async def attribute_states():
    # The attributes the native paths read (stored natively) read back as
    # asyncio wrote them, through the transport's life.
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    record = Record()
    transport, protocol = await loop.create_connection(lambda: Plain(record), sock=ours)

    def state():
        return (
            transport._conn_lost,
            transport._eof,
            transport._empty_waiter,
            buffered(transport._buffer),
            transport._protocol is transport.get_protocol(),
            type(transport._protocol).__name__,
        )

    states = [state()]
    transport.write(b"x" * 300_000)  # more than the socket takes: the rest is buffered
    states.append(state()[:3] + (len(transport._buffer) > 0,) + state()[4:])
    transport.set_protocol(Buffered(record))
    states.append(state()[:3] + state()[4:])
    transport.write_eof()
    states.append(state()[:3] + state()[4:])
    transport.abort()
    await record.lost.wait()
    peer.close()
    states.append(state())
    return states


def test_the_natively_kept_attributes_read_as_in_asyncio():
    got, want = on_both_loops(attribute_states)
    assert got == want
    assert got[0] == (0, False, None, b"", True, "Plain")


def test_the_natively_kept_attributes_can_be_assigned():
    # asyncio assigns them (and programs may): the native write path sees
    # an assigned `_eof` and refuses as asyncio's write does.
    async def main():
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        record = Record()
        transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
        transport._eof = True
        with pytest.raises(RuntimeError, match="Cannot call write\\(\\) after write_eof\\(\\)"):
            transport.write(b"x")
        transport._eof = False
        transport.write(b"y")
        assert peer.recv(10) == b"y"

        # Values of other types are tested by their truth and length, as
        # asyncio's write tests them.
        class Flag:
            def __init__(self, value):
                self.value = value

            def __bool__(self):
                return self.value

        transport._eof = Flag(True)
        with pytest.raises(RuntimeError, match="after write_eof"):
            transport.write(b"x")
        transport._eof = Flag(False)
        transport._buffer = Flag(False)  # asyncio asks `not self._buffer`
        transport.write(b"z")
        assert peer.recv(10) == b"z"
        transport._buffer = bytearray()
        transport.close()
        await record.lost.wait()
        peer.close()

    loop = gasyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.fixture(autouse=True)
def no_default_loop_policy_leak():
    yield
    asyncio.set_event_loop(None)


async def data_then_close(size):
    # The peer's bytes and its FIN arrive before the loop reads: the FIN's
    # one edge is spent on the event that also announced the bytes, so
    # after reading them the transport must still learn of the EOF.
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    record = Record()
    peer.sendall(payload("bytes", size, 3))
    peer.shutdown(socket.SHUT_WR)
    transport, _ = await loop.create_connection(lambda: Plain(record), sock=ours)
    await record.lost.wait()
    peer.close()
    return bytes(record.received) == payload("bytes", size, 3), record.events


@pytest.mark.parametrize("size", [1, 5000, 200_000])
def test_bytes_then_eof_in_one_event_reach_the_protocol_as_in_asyncio(size):
    got, want = on_both_loops(lambda: data_then_close(size))
    assert got == want
    assert got[0] and got[1] == [("eof",), ("lost", None)]


async def trickle(rounds):
    # The peer sends only after the transport has read everything (a short
    # read), and the loop then blocks in the kernel: the next bytes must be
    # reported by their own edge, with no re-arming of the fd in between.
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    record = Record()
    waiting = {}

    class Counting(Plain):
        def data_received(self, data):
            super().data_received(data)
            want, fut = waiting.get("now", (None, None))
            if fut is not None and len(self.r.received) >= want and not fut.done():
                fut.set_result(None)

    transport, _ = await loop.create_connection(lambda: Counting(record), sock=ours)
    for i in range(rounds):
        fut = loop.create_future()
        waiting["now"] = (sum(range(1, i + 2)), fut)
        await loop.sock_sendall(peer, bytes([i % 256]) * (i + 1))
        await fut
    transport.close()
    peer.close()
    await record.lost.wait()
    return len(record.received)


def test_bytes_sent_after_a_short_read_arrive_by_their_own_edge():
    got, want = on_both_loops(lambda: trickle(200))
    assert got == want == sum(range(1, 201))
