"""The Rust HTTP/1.x head parser behind greenwheel.pywsgi (httparse)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenwheel._core import HttpParseError, TooManyHeaders, parse_chunk_size, parse_request


def test_complete_request_head():
    data = b"GET /a%20b?x=1 HTTP/1.1\r\nHost: example\r\nX-Two: a\r\nX-Two: b\r\n\r\nBODY"
    method, target, minor, headers, consumed = parse_request(data)
    assert (method, target, minor) == ("GET", "/a%20b?x=1", 1)
    assert headers == [("Host", "example"), ("X-Two", "a"), ("X-Two", "b")]
    assert data[consumed:] == b"BODY"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_any_bytes_like(kind):
    assert parse_request(kind(b"POST / HTTP/1.0\r\n\r\n"))[:3] == ("POST", "/", 0)


def test_header_values_are_latin1_strings():
    (_, _, _, headers, _) = parse_request(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n")
    assert headers == [("X-Name", "caf\xe9")]


@pytest.mark.parametrize(
    "partial",
    [b"", b"GE", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n"],
)
def test_incomplete_heads_are_none(partial):
    assert parse_request(partial) is None


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",  # space in the name
        b"GET / HTTP/9.9\r\n\r\n",  # unknown version
        b"G\x00T / HTTP/1.1\r\n\r\n",  # NUL in the method
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",  # obsolete line folding
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",  # bare CR
    ],
)
def test_malformed_heads_raise(bad):
    with pytest.raises(HttpParseError):
        parse_request(bad)


def test_too_many_headers_is_its_own_error():
    data = b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 11 + b"\r\n"
    with pytest.raises(TooManyHeaders):
        parse_request(data, max_headers=10)
    assert len(parse_request(data, max_headers=11)[3]) == 11
    assert issubclass(TooManyHeaders, HttpParseError)
    assert issubclass(HttpParseError, ValueError)


@pytest.mark.parametrize("limit", [1, 127, 128, 129, 300])
def test_header_limits_around_the_stack_slots(limit):
    # Up to 128 header slots live on the stack, more on the heap: the limit
    # is exact on both sides, and every header comes back in order.
    def head(n):
        return (
            b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v%d\r\n" % (i, i) for i in range(n)) + b"\r\n"
        )

    headers = parse_request(head(limit), max_headers=limit)[3]
    assert headers == [("H%d" % i, "v%d" % i) for i in range(limit)]
    with pytest.raises(TooManyHeaders, match="more than %d header fields" % limit):
        parse_request(head(limit + 1), max_headers=limit)


def test_non_buffer_input_is_a_type_error():
    with pytest.raises(TypeError):
        parse_request("GET / HTTP/1.1\r\n\r\n")


def test_chunk_sizes():
    assert parse_chunk_size(b"1a\r\nrest") == (4, 26)
    assert parse_chunk_size(b"0\r\n") == (3, 0)
    assert parse_chunk_size(b"ff;ext=1\r\n") == (10, 255)
    assert parse_chunk_size(b"1a") is None
    with pytest.raises(HttpParseError):
        parse_chunk_size(b"zz\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"2;\nAB\r\nXY\r\n",  # a bare LF inside the extension: a line end to some
        b"2;\n",  # incomplete, but already wrong
        b"2;a\x00b\r\n",
        b"2;a\rb\r\n",
        b"2;\x1b\r\n",
        b"2;\x7f\r\n",
        b"2;a=b\n\r\n",
    ],
)
def test_control_bytes_in_a_chunk_extension_are_refused(line):
    with pytest.raises(HttpParseError, match="invalid chunk size line"):
        parse_chunk_size(line)


def test_chunk_extensions_keep_tabs_quotes_and_obs_text():
    line = b'a;\tname="v a\xe9;l" ;x\r\n'
    assert parse_chunk_size(line + b"0123456789\r\n") == (len(line), 10)
    # The data after the size line is not the line's business: any byte there.
    assert parse_chunk_size(b"2\r\n\n\x00\r\n") == (3, 2)
    assert parse_chunk_size(b"2;ext\r") is None


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    # Any input is either incomplete, a parsed head, or a clean ValueError.
    try:
        result = parse_request(data)
    except HttpParseError:
        return
    if result is not None:
        assert 0 < result[4] <= len(data)
