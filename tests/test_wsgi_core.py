"""The Rust parts of pywsgi's request path: request_environ, response_head, ResponseHead.response_bytes.

Each is checked against a plain-Python model of the same rules (what
pywsgi did in Python before the work moved to Rust), on examples and on
hypothesis-generated input: the same result, or the same exception with the
same arguments, because the first problem found is what the client or the
application is told.
"""

import re
import time
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenwheel._core import (
    HttpParseError,
    RequestError,
    RequestHead,
    RequestParser,
    ResponseHead,
    TooManyHeaders,
    http_date,
    parse_request,
    request_environ,
    response_head,
)
from greenwheel._pywsgi import format_date_time

BASE = {"SERVER_NAME": "x", "wsgi.input_terminated": True}
LIMITS = (1 << 30, 8192, 65536)

# The named fields of the records the Rust functions return.
REQUEST_FIELDS = (
    "method",
    "target",
    "version",
    "headers",
    "head_length",
    "environ",
    "content_length",
    "chunked",
    "close_connection",
    "expect_continue",
)
RESPONSE_FIELDS = (
    "status",
    "status_bytes",
    "code",
    "header_block",
    "content_length",
    "content_length_value",
    "date",
    "connection",
    "transfer_encoding",
    "connection_close",
)


def fields(record):
    """A RequestHead or ResponseHead as a dict of its named fields (None stays None)."""
    if record is None:
        return None
    names = REQUEST_FIELDS if isinstance(record, RequestHead) else RESPONSE_FIELDS
    assert isinstance(record, (RequestHead, ResponseHead)), record
    return {name: getattr(record, name) for name in names}


# --- the model --------------------------------------------------------------------------


def _tokens(value):
    return {token.strip() for token in value.lower().split(",")}


def _key(name):
    if "_" in name:
        return ""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def _origin_path(target):
    low = target[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        slash = target.find("/", target.find("//") + 2)
        return target[slash:] if slash >= 0 else "/"
    return target


def model_request(data, max_headers, base, limits):
    max_body, max_line, max_head = limits
    parsed = parse_request(data, max_headers)
    if parsed is None:
        return None
    method, target, minor, headers, head_length = parsed
    if len(target) + len(method) + 10 > max_line:
        raise RequestError(414, "request line longer than %d bytes" % (max_line,))
    if head_length > max_head:
        raise RequestError(431, "request head larger than %d bytes" % (max_head,))
    env = dict(base)
    for name, value in headers:
        key = _key(name)
        if key:
            old = env.get(key)
            if old is None:
                env[key] = value
            elif key in ("CONTENT_LENGTH", "HTTP_HOST", "HTTP_TRANSFER_ENCODING"):
                raise RequestError(400, "duplicate %s header" % (name,))
            else:
                env[key] = old + ("; " if "COOKIE" in key else ",") + value
    te = env.get("HTTP_TRANSFER_ENCODING")
    cl = env.get("CONTENT_LENGTH")
    if te is not None:
        if cl is not None:
            raise RequestError(400, "both Content-Length and Transfer-Encoding")
        if not minor:
            raise RequestError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if te.lower() != "chunked":
            raise RequestError(400, "unsupported Transfer-Encoding %r" % (te,))
        chunked, length = True, None
    else:
        chunked = False
        if cl is None:
            length = 0
        else:
            if not (cl.isdigit() and cl.isascii() and len(cl) <= 18):
                raise RequestError(400, "invalid Content-Length %r" % (cl,))
            length = int(cl)
            if max_body is not None and length > max_body:
                raise RequestError(413, "Content-Length %d over the limit %d" % (length, max_body))
    conn = env.get("HTTP_CONNECTION")
    if minor:
        close = conn is not None and "close" in _tokens(conn)
        expect = env.get("HTTP_EXPECT")
        expect_continue = expect is not None and expect.lower() == "100-continue"
    else:
        close = conn is None or "keep-alive" not in _tokens(conn)
        expect_continue = False
    version = "HTTP/1.1" if minor else "HTTP/1.0"
    env["REQUEST_METHOD"] = method
    path = target
    query = path.find("?")
    if query >= 0:
        env["QUERY_STRING"] = path[query + 1 :]
        path = path[:query]
    else:
        env["QUERY_STRING"] = ""
    if path[:1] != "/":
        path = _origin_path(path)
    if "%" in path:
        path = unquote(path, encoding="latin-1")
    env["PATH_INFO"] = path
    env["SERVER_PROTOCOL"] = version
    return dict(
        method=method,
        target=target,
        version=version,
        headers=headers,
        head_length=head_length,
        environ=env,
        content_length=length,
        chunked=chunked,
        close_connection=close,
        expect_continue=expect_continue,
    )


# RFC 9110: a field name is a token; values and the reason phrase may hold
# HTAB, SP, VCHAR and obs-text, no other control character.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def model_response(status, headers):
    if type(status) is not str:
        if not isinstance(status, str):
            raise UnicodeError("The status string must be a native string")
        status = str(status)
    if "\r" in status or "\n" in status:
        raise ValueError("carriage return or newline in status", status)
    code = status[:3]
    if (
        len(code) != 3
        or not code.isdigit()
        or not code.isascii()
        or (len(status) > 3 and status[3] != " ")
    ):
        raise ValueError("Invalid status %r: must be a three-digit code and a reason" % (status,))
    special = {}
    pairs = []
    for name, value in headers:
        if not isinstance(name, str):
            raise UnicodeError("The header must be a native string", name, value)
        if not isinstance(value, str):
            raise UnicodeError("The value must be a native string", name, value)
        pairs.append((str(name), str(value)))
    for name, value in pairs:
        if "\r" in name or "\n" in name:
            raise ValueError("carriage return or newline in header name", name)
        if "\r" in value or "\n" in value:
            raise ValueError("carriage return or newline in header value", value)
    for name, value in pairs:
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise UnicodeError("Non-latin1 header", repr(name), repr(value)) from None
        if not _TOKEN.fullmatch(name):
            raise ValueError("header name is not a token", name)
        if _CONTROL.search(value):
            raise ValueError("control character in header value", value)
        special[name.lower()] = value
    try:
        status_bytes = status.encode("latin-1")
    except UnicodeEncodeError:
        raise UnicodeError("Non-latin1 status", repr(status)) from None
    if _CONTROL.search(status):
        raise ValueError("control character in status", status)
    block = "".join("%s: %s\r\n" % pair for pair in pairs).encode("latin-1")
    cl = special.get("content-length")
    cl_value = None
    if cl is not None:
        cl = cl.strip()
        if not (cl.isdigit() and cl.isascii()):
            raise ValueError("Invalid Content-Length header %r" % (cl,))
        cl_value = int(cl)
    conn = special.get("connection")
    close = conn is not None and "close" in _tokens(conn)
    return dict(
        status=status,
        status_bytes=status_bytes,
        code=int(code),
        header_block=block,
        content_length=cl,
        content_length_value=cl_value,
        date=special.get("date"),
        connection=conn,
        transfer_encoding=special.get("transfer-encoding"),
        connection_close=close,
    )


def outcome(fn, *args):
    try:
        result = fn(*args)
        return ("ok", result if fn in (model_request, model_response) else fields(result))
    except Exception as ex:  # the exception is the outcome
        return ("raised", type(ex), ex.args)


# --- request_environ --------------------------------------------------------------------


def test_environ_of_a_plain_request():
    data = b"GET /a%20b/c?x=1&y HTTP/1.1\r\nHost: h\r\nX-Two: a\r\nX-Two: b\r\n\r\nrest"
    head = request_environ(data, 100, BASE, LIMITS)
    assert (head.method, head.target, head.version) == ("GET", "/a%20b/c?x=1&y", "HTTP/1.1")
    assert head.headers == [("Host", "h"), ("X-Two", "a"), ("X-Two", "b")]
    assert data[head.head_length :] == b"rest"
    env = head.environ
    assert env == dict(
        BASE,
        HTTP_HOST="h",
        HTTP_X_TWO="a,b",
        REQUEST_METHOD="GET",
        QUERY_STRING="x=1&y",
        PATH_INFO="/a b/c",
        SERVER_PROTOCOL="HTTP/1.1",
    )
    assert env is not BASE and "HTTP_HOST" not in BASE
    framing = (head.content_length, head.chunked, head.close_connection, head.expect_continue)
    assert framing == (0, False, False, False)


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", (None, True, False, False)),
        (b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", (12, False, False, False)),
        (b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE \r\n\r\n", (0, False, True, False)),
        (b"GET / HTTP/1.0\r\n\r\n", (0, False, True, False)),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", (0, False, False, False)),
        (b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n", (0, False, False, True)),
        (b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", (0, False, True, False)),
    ],
)
def test_framing_decisions(head, expected):
    parsed = request_environ(head, 100, BASE, LIMITS)
    framing = (
        parsed.content_length,
        parsed.chunked,
        parsed.close_connection,
        parsed.expect_continue,
    )
    assert framing == expected


@pytest.mark.parametrize(
    "head, status, message",
    [
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", 414, "request line longer than 64 bytes"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate Host header"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "unsupported Transfer-Encoding 'gzip'",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400, "invalid Content-Length '+3'"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n",
            413,
            "Content-Length 101 over the limit 100",
        ),
    ],
)
def test_refusals_carry_status_and_message(head, status, message):
    with pytest.raises(RequestError) as info:
        request_environ(head, 100, BASE, (100, 64, 65536))
    assert info.value.args == (status, message)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, HttpParseError)


def test_head_size_limit_and_parse_errors():
    head = b"GET / HTTP/1.1\r\nX: " + b"v" * 200 + b"\r\n\r\n"
    with pytest.raises(RequestError) as info:
        request_environ(head, 100, BASE, (None, 8192, 100))
    assert info.value.args == (431, "request head larger than 100 bytes")
    with pytest.raises(TooManyHeaders):
        request_environ(b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 3 + b"\r\n", 2, BASE, LIMITS)
    many = b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 200 + b"\r\n"  # past the 128 stack slots
    assert request_environ(many, 200, BASE, LIMITS).environ["HTTP_A"] == ",".join(["b"] * 200)
    with pytest.raises(TooManyHeaders):
        request_environ(many, 199, BASE, LIMITS)
    with pytest.raises(HttpParseError):
        request_environ(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 100, BASE, LIMITS)
    assert request_environ(b"GET / HTTP/1.1\r\nHost:", 100, BASE, LIMITS) is None


def test_limits_of_any_int_size_and_bad_limits():
    head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert request_environ(head, 100, BASE, (10**40, 10**40, 10**40)).content_length == 5
    assert request_environ(head, 100, BASE, (None, 8192, 65536)).content_length == 5
    with pytest.raises(TypeError):
        request_environ(head, 100, BASE, ("5", 8192, 65536))


def test_base_environ_values_join_like_python():
    env = request_environ(
        b"GET / HTTP/1.1\r\nX-A: 2\r\n\r\n", 100, {"HTTP_X_A": "1"}, LIMITS
    ).environ
    assert env["HTTP_X_A"] == "1,2"
    with pytest.raises(TypeError):
        request_environ(b"GET / HTTP/1.1\r\nX-A: 2\r\n\r\n", 100, {"HTTP_X_A": 1}, LIMITS)


token = st.text(alphabet="abcXYZ-_019", min_size=1, max_size=8)
value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12)
fixed_names = st.sampled_from(
    [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Expect",
        "Cookie",
        "Cookie2",
        "X_Y",
    ]
)
fixed_values = st.sampled_from(
    ["chunked", "CHUNKED", "gzip", "12", " 7", "1" * 19, "close", "keep-alive, x", "100-continue"]
)
targets = st.one_of(
    st.sampled_from(["/", "*", "/a?b", "/%41%zz%4", "http://h", "HTTPS://h/p?q%20", "h:80"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1).map(
        lambda t: t.replace("\x7f", "")
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
    target=targets,
    minor=st.sampled_from([0, 1]),
    headers=st.lists(
        st.tuples(st.one_of(token, fixed_names), st.one_of(value, fixed_values)), max_size=6
    ),
    limits=st.tuples(
        st.one_of(st.none(), st.integers(0, 50)), st.integers(1, 60), st.integers(1, 200)
    ),
)
def test_request_environ_matches_the_model(method, target, minor, headers, limits):
    head = ("%s %s HTTP/1.%d\r\n" % (method, target, minor)).encode("latin-1")
    for name, val in headers:
        head += ("%s: %s\r\n" % (name, val.strip())).encode("latin-1")
    head += b"\r\n"
    assert outcome(request_environ, head, 5, BASE, limits) == outcome(
        model_request, head, 5, BASE, limits
    )


# --- response_head ------------------------------------------------------------------------


def test_response_head_of_a_plain_response():
    result = response_head("200 OK", [("Content-Type", "text/plain"), ("Content-Length", " 5 ")])
    assert fields(result) == dict(
        status="200 OK",
        status_bytes=b"200 OK",
        code=200,
        header_block=b"Content-Type: text/plain\r\nContent-Length:  5 \r\n",
        content_length="5",
        content_length_value=5,
        date=None,
        connection=None,
        transfer_encoding=None,
        connection_close=False,
    )


class Str(str):
    def __str__(self):
        return "converted"


@pytest.mark.parametrize(
    "status, headers",
    [
        (b"200 OK", []),
        ("200 OK\r\nX: y", []),
        ("20 OK", []),
        ("2000", []),
        ("\u0663\u0660\u0660 OK", []),
        ("200 OK", [("X", 1)]),
        ("200 OK", [(1, "x")]),
        ("200 OK", [("X", "a\nb")]),
        ("200 OK", [("X\r", "b")]),
        ("200 OK", [("X", "\u20ac")]),
        ("200 \u20ac", [("X", "\u20ac")]),
        ("200 \u20ac", []),
        ("200 OK", [("Content-Length", "1.5")]),
        ("200 OK", [("Content-Length", "")]),
        ("200 OK", [("X", "a", "b")]),
        ("200 OK", [("X",)]),
        ("200 OK", [7]),
        ("200 OK", ["ab"]),
        ("200 OK", 7),
        (Str("200 OK"), [(Str("X"), Str("y"))]),
        ("204 No Content", [("connection", "Keep-Alive,close"), ("DATE", "d"), ("date", "e")]),
        ("200 OK", [["Transfer-Encoding", "chunked"], ("Content-Length", "9" * 30)]),
        ("200 OK", [("Set-Cookie: admin=1; X", "v")]),
        ("200 OK", [("", "v"), ("X", "a\x00b")]),
        ("200 OK", [("X", "a\x00b"), ("X\r", "b")]),
        ("200 OK", [("X-\xe9", "v")]),
        ("200 OK", [("X", "\x7f")]),
        ("200 OK", [("X-!#$%&'*+-.^_`|~", "a\tb \xe9\x85")]),
        ("200 OK\x00", []),
        ("200 O\x1bK", [("X", "\x01")]),
    ],
)
def test_response_head_matches_the_model_on_examples(status, headers):
    assert outcome(response_head, status, headers) == outcome(model_response, status, headers)


header_text = st.text(
    alphabet=st.sampled_from(list("aZ -:\r\n\t\x00\x7f!~0123456789\xe9\u20ac")), max_size=10
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.one_of(
        st.sampled_from(["200 OK", "404 Not Found", "204", "304 x"]),
        st.text(alphabet=st.sampled_from(list("0123456789 aX\r\n\x00\t\xe9\u20ac")), max_size=8),
    ),
    headers=st.lists(
        st.tuples(
            st.one_of(header_text, st.sampled_from(["Content-Length", "Connection", "Date"])),
            st.one_of(header_text, st.sampled_from([" 12 ", "close", "0"])),
        ),
        max_size=5,
    ),
)
def test_response_head_matches_the_model(status, headers):
    assert outcome(response_head, status, headers) == outcome(model_response, status, headers)


# --- response_bytes and the Date ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 253402300799))
def test_http_date_is_the_imf_fixdate_of_python(timestamp):
    assert http_date(timestamp) == format_date_time(timestamp)


def test_http_date_now_and_out_of_range():
    before = int(time.time())
    now = http_date()
    after = int(time.time())
    assert now in {format_date_time(t) for t in range(before, after + 1)}
    with pytest.raises(ValueError, match="9999"):
        http_date(253402300800)
    with pytest.raises(OverflowError):
        http_date(-1)


def test_response_bytes_assembles_head_and_body():
    def head(status, headers=()):
        return response_head(status, list(headers))

    # A Date of the current second unless the application gave one.
    dated = head("200 OK", [("X", "y")]).response_bytes(5, False, 0, b"hello")
    status_line, _, rest = dated.partition(b"X: y\r\nDate: ")
    assert status_line == b"HTTP/1.1 200 OK\r\n"
    assert rest.endswith(b" GMT\r\nContent-Length: 5\r\n\r\nhello")
    assert len(rest) == len(b"Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\n\r\nhello")
    given = [("Date", "then")]
    data = head("200 OK", given).response_bytes(None, True, 1, b"")
    assert data == (
        b"HTTP/1.1 200 OK\r\nDate: then\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    data = head("204 No Content", given).response_bytes(None, False, 2, b"")
    assert data == b"HTTP/1.1 204 No Content\r\nDate: then\r\nConnection: keep-alive\r\n\r\n"
    with pytest.raises(ValueError, match="connection"):
        head("200 OK", given).response_bytes(None, False, 3, b"")
    with pytest.raises(TypeError):
        head("200 OK", given).response_bytes(None, False, 0, "body")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 9, 10, 99, 100, 2**64 - 1])))
def test_response_bytes_writes_any_content_length_in_decimal(length):
    data = response_head("200 OK", [("Date", "then")]).response_bytes(length, False, 0, b"")
    assert data == b"HTTP/1.1 200 OK\r\nDate: then\r\nContent-Length: %d\r\n\r\n" % length


def test_repeated_cookie_headers_join_as_one_cookie_list():
    # Every header whose name has COOKIE (Cookie, Cookie2) joins with "; ", as in gevent.
    head = b"GET / HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\nCookie2: c=3\r\nCookie2: d=4\r\n\r\n"
    env = request_environ(head, 100, BASE, LIMITS).environ
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_COOKIE2"] == "c=3; d=4"


def test_records_are_named_and_frozen_and_cycles_through_them_are_freed():
    import gc
    import weakref

    class Marker:
        pass

    head = request_environ(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 100, BASE, LIMITS)
    with pytest.raises(AttributeError):
        head.method = "POST"
    # A cycle through the record (its environ refers back to it) is found and freed.
    marker = Marker()
    head.environ["marker"] = marker
    head.environ["head"] = head
    freed = weakref.ref(marker)
    del head, marker
    gc.collect()
    assert freed() is None
    # A ResponseHead holds only exact str, bytes, int, bool or None (a str
    # subclass, even one whose __str__ returns itself, is copied): nothing
    # that could refer back to it, so the collector need not track it.

    class Text(str):
        def __str__(self):
            return self

    response = response_head(Text("200 OK"), [("Date", Text("d")), ("Connection", Text("x"))])
    assert not gc.is_tracked(response)
    assert (type(response.status), type(response.date), type(response.connection)) == (str,) * 3
    assert (response.status, response.date, response.connection) == ("200 OK", "d", "x")
    with pytest.raises(AttributeError):
        response.code = 500


@pytest.mark.parametrize(
    "status, bodiless",
    [
        ("100 Continue", True),
        ("101 Switching", True),
        ("199 X", True),
        ("200 OK", False),
        ("204 No Content", True),
        ("205 Reset", False),
        ("304 Not Modified", True),
        ("404 Not Found", False),
    ],
)
def test_response_head_tells_a_bodiless_status(status, bodiless):
    assert response_head(status, []).bodiless is bodiless


def test_response_head_tells_whether_the_application_framed_the_body():
    assert response_head("200 OK", [("X", "y")]).framed is False
    assert response_head("200 OK", [("content-length", "3")]).framed is True
    assert response_head("200 OK", [("Transfer-Encoding", "chunked")]).framed is True


def test_a_connections_parser_is_request_environ_with_its_settings_held():
    base = dict(BASE)
    parser = RequestParser(3, base, (10, 8192, 65536))
    head = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    got, want = parser.parse(head), request_environ(head, 3, base, (10, 8192, 65536))
    fields = ("method", "target", "version", "headers", "head_length", "environ")
    assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
    assert (got.content_length, got.chunked, got.close_connection) == (5, False, False)
    # The template is held, not copied: a key added in place is in the next environ.
    base["gunicorn.socket"] = "sock"
    assert parser.parse(head).environ["gunicorn.socket"] == "sock"
    assert parser.parse(b"GET / HTTP/1.1\r\nHost:") is None
    with pytest.raises(RequestError) as info:
        parser.parse(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert info.value.args == (413, "Content-Length 11 over the limit 10")
    with pytest.raises(TooManyHeaders):
        parser.parse(b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 4 + b"\r\n")
    with pytest.raises(TypeError, match="limits must be ints or None"):
        RequestParser(3, base, (10, "8192", 65536))
