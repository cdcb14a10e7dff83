//! The pure computation of each `greenwheel.pywsgi` request, done in one
//! call each way: a request head becomes the WSGI environ (with the server's
//! limits and the body framing decided), and `start_response`'s status and
//! headers become checked response-head bytes.
//!
//! Why here: in Python these steps were about 500 of the roughly 1,000
//! bytecodes a keep-alive hello world executed per request (counted with
//! `sys.settrace`), mostly string slicing, dict traffic and per-header loops.
//!
//! Ground rules:
//! - Behaviour is the Python handler's, to the message: the same checks in the
//!   same order, so the first problem found is the one reported. A refused
//!   request raises `RequestError(status, message)`; a bad response head
//!   raises `UnicodeError` / `ValueError` with gevent's wording.
//! - Request header names are ASCII (httparse accepts only token bytes);
//!   values and the target are latin-1 `str`, as PEP 3333 wants.
//! - Python semantics are kept where a user can see them: a value already in
//!   the base environ under a header's key is joined with Python's `+`, and
//!   `str` subclasses in a response head are converted with `str()`.
//! - Limits arrive as Python ints of any size; they saturate to `u64::MAX`
//!   rather than fail.
//! - Results are named: [`RequestHead`] and [`ResponseHead`] are frozen
//!   records whose fields are `Py` struct members, so Python reads each one
//!   straight from the object (no getter call), as cheaply as a tuple item.

use pyo3::exceptions::{PyTypeError, PyUnicodeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use std::mem::MaybeUninit;

use super::http::{header_slots, latin1, parse_head, with_bytes, MAX_HEADERS_LIMIT, STACK_HEADERS};
use super::sync::Guarded;
use pyo3::sync::PyOnceLock;

pyo3::create_exception!(
    greenwheel._core,
    RequestError,
    PyValueError,
    "A request the server refuses; args are (status, message)."
);

/// Environ keys of request headers that must not appear twice.
const SINGLETON_KEYS: [&str; 3] = ["CONTENT_LENGTH", "HTTP_HOST", "HTTP_TRANSFER_ENCODING"];

/// Longest Content-Length (in digits) a request may send: more cannot be a
/// real body size, and 18 digits always fit in an `i64`.
const MAX_CONTENT_LENGTH_DIGITS: usize = 18;

fn refuse(status: u16, message: String) -> PyErr {
    RequestError::new_err((status, message))
}

/// A limit given as a Python int (or None), saturating.
fn limit(obj: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    if obj.is_none() {
        return Ok(None);
    }
    match obj.extract::<u64>() {
        Ok(v) => Ok(Some(v)),
        Err(_) if obj.cast::<PyInt>().is_ok() => {
            // Negative limits are refused by the server's own checks; huge
            // ones mean "no limit".
            Ok(Some(if obj.lt(0)? { 0 } else { u64::MAX }))
        }
        Err(_) => Err(PyTypeError::new_err("limits must be ints or None")),
    }
}

/// The environ key of a request header, or None for a name with `_` (it would
/// collide with the `-` spelling, so it is dropped, as gevent does).
fn environ_key(name: &str) -> Option<String> {
    if name.contains('_') {
        return None;
    }
    let mut key = String::with_capacity(name.len() + 5);
    let upper = name.to_ascii_uppercase().replace('-', "_");
    if upper != "CONTENT_TYPE" && upper != "CONTENT_LENGTH" {
        key.push_str("HTTP_");
    }
    key.push_str(&upper);
    Some(key)
}

/// Python's `str.isspace()` for the characters of a latin-1 `str`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Whether the comma-separated header value lists `token` (ASCII, lower case).
fn lists_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|part| py_strip(part).eq_ignore_ascii_case(token))
}

/// `urllib.parse.unquote(path, encoding="latin-1")` for a latin-1 target's bytes.
fn unquote_latin1(path: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(hi), Some(lo)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// The path of a request target: an absolute-form target (a proxy request,
/// `http://host/path`) gives its path; `*` and authority-form pass through.
fn origin_path(path: &[u8]) -> &[u8] {
    if path.first() == Some(&b'/') {
        return path;
    }
    let head = &path[..path.len().min(8)];
    let lower = head.to_ascii_lowercase();
    if lower.starts_with(b"http://") || lower.starts_with(b"https://") {
        let after_scheme = path
            .windows(2)
            .position(|w| w == b"//")
            .map_or(0, |p| p + 2);
        return match path[after_scheme..].iter().position(|&b| b == b'/') {
            Some(slash) => &path[after_scheme + slash..],
            None => b"/",
        };
    }
    path
}

/// A parsed and checked request head: what `request_environ` returns.
///
/// Only `__traverse__`, no `__clear__`: the record is frozen (its fields
/// never change), and any cycle through it runs through `environ` or
/// `headers`, a dict and a list, which the collector clears.
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct RequestHead {
    /// The method, as sent (`'GET'`).
    #[pyo3(get)]
    pub(super) method: Py<PyString>,
    /// The request target exactly as sent (latin-1).
    #[pyo3(get)]
    pub(super) target: Py<PyString>,
    /// `'HTTP/1.0'` or `'HTTP/1.1'`.
    #[pyo3(get)]
    pub(super) version: Py<PyString>,
    /// The header fields as received: a list of `(name, value)` str pairs.
    #[pyo3(get)]
    pub(super) headers: Py<PyList>,
    /// Bytes of `data` the head took, its blank line included.
    #[pyo3(get)]
    pub(super) head_length: Py<PyAny>,
    /// A copy of the base environ with the request's keys.
    #[pyo3(get)]
    pub(super) environ: Py<PyDict>,
    /// The body's length (0 without one), None for a chunked body.
    #[pyo3(get)]
    pub(super) content_length: Py<PyAny>,
    /// Whether the body is `Transfer-Encoding: chunked`.
    #[pyo3(get)]
    pub(super) chunked: Py<PyBool>,
    /// Whether the client wants the connection closed after this request.
    #[pyo3(get)]
    pub(super) close_connection: Py<PyBool>,
    /// Whether the client waits for `100 Continue` before sending the body.
    #[pyo3(get)]
    pub(super) expect_continue: Py<PyBool>,
    /// Whether the request asks for a protocol upgrade: an `Upgrade` header,
    /// or `Connection: upgrade` (for Rust callers only).
    pub(super) upgrade: bool,
}

#[pymethods]
impl RequestHead {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.headers)?;
        visit.call(&self.environ)?;
        visit.call(&self.content_length)
    }
}

/// A checked and encoded `start_response(status, headers)`: what
/// `response_head` returns.
///
/// Not tracked by the cyclic GC, and kept on a free list: every field is an
/// exact `str`, `bytes`, `int`, `bool` or None (str subclasses are copied,
/// see [`exact_str`]), none of which can refer back to anything, so no cycle
/// can run through the record.  One is made per response; skipping the GC
/// header and the allocator is about 200 instructions of a keep-alive hello
/// world (callgrind, `benches/pywsgi_callgrind.py`).
#[pyclass(frozen, freelist = 64, module = "greenwheel._core")]
pub(crate) struct ResponseHead {
    /// The status as a native str (`'200 OK'`).
    #[pyo3(get)]
    pub(super) status: Py<PyString>,
    /// The status line's text as latin-1 bytes (`b'200 OK'`).
    #[pyo3(get)]
    pub(super) status_bytes: Py<PyBytes>,
    /// The status code, an int.
    #[pyo3(get)]
    pub(super) code: Py<PyAny>,
    /// Every header line, CRLF-terminated, as latin-1 bytes.
    #[pyo3(get)]
    pub(super) header_block: Py<PyBytes>,
    /// The Content-Length given, stripped (None when absent).
    #[pyo3(get)]
    pub(super) content_length: Py<PyAny>,
    /// That Content-Length as an int (None when absent).
    #[pyo3(get)]
    pub(super) content_length_value: Py<PyAny>,
    /// The Date given (None when absent).
    #[pyo3(get)]
    pub(super) date: Py<PyAny>,
    /// The Connection given (None when absent).
    #[pyo3(get)]
    pub(super) connection: Py<PyAny>,
    /// The Transfer-Encoding given (None when absent).
    #[pyo3(get)]
    pub(super) transfer_encoding: Py<PyAny>,
    /// Whether the Connection header lists `close`.
    #[pyo3(get)]
    pub(super) connection_close: Py<PyBool>,
    /// Whether the status forbids a body: 1xx, 204 and 304 (RFC 9110 6.4.1).
    #[pyo3(get)]
    pub(super) bodiless: Py<PyBool>,
    /// Whether the application framed the body itself: it gave a
    /// Content-Length or a Transfer-Encoding.
    #[pyo3(get)]
    pub(super) framed: Py<PyBool>,
}

fn py_bool(py: Python<'_>, value: bool) -> Py<PyBool> {
    PyBool::new(py, value).to_owned().unbind()
}

/// The method as a `str`: the common ones are interned once (a new object
/// for every request was an allocation and a free per request), any other
/// made as received.
fn method_str<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => pyo3::intern!(py, "GET").clone(),
        "HEAD" => pyo3::intern!(py, "HEAD").clone(),
        "POST" => pyo3::intern!(py, "POST").clone(),
        "PUT" => pyo3::intern!(py, "PUT").clone(),
        "DELETE" => pyo3::intern!(py, "DELETE").clone(),
        "OPTIONS" => pyo3::intern!(py, "OPTIONS").clone(),
        "PATCH" => pyo3::intern!(py, "PATCH").clone(),
        other => PyString::new(py, other),
    }
}

/// Sets REQUEST_METHOD, QUERY_STRING, PATH_INFO and SERVER_PROTOCOL.
fn set_request_keys(
    env: &Bound<'_, PyDict>,
    method: &Bound<'_, PyString>,
    target: &[u8],
    protocol: &Bound<'_, PyString>,
) -> PyResult<()> {
    let py = env.py();
    env.set_item(pyo3::intern!(py, "REQUEST_METHOD"), method)?;
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    let query = if query.is_empty() {
        pyo3::intern!(py, "").clone()
    } else {
        latin1(py, query)
    };
    env.set_item(pyo3::intern!(py, "QUERY_STRING"), query)?;
    let path = origin_path(path);
    let path_info = if path.contains(&b'%') {
        latin1(py, &unquote_latin1(path))
    } else {
        latin1(py, path)
    };
    env.set_item(pyo3::intern!(py, "PATH_INFO"), path_info)?;
    env.set_item(pyo3::intern!(py, "SERVER_PROTOCOL"), protocol)?;
    Ok(())
}

fn get_str(env: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<Option<String>> {
    match env.get_item(key)? {
        None => Ok(None),
        Some(v) => Ok(Some(v.str()?.to_string())),
    }
}

/// request_environ(data, max_headers, base_env, limits)
/// --
///
/// Parse the request head at the start of `data` into the WSGI environ.
/// `limits` is `(max_body_size, max_request_line, max_header_size)`.
/// Returns None if the head is incomplete, else a `RequestHead`, whose
/// `environ` is a copy of `base_env` with the header keys, REQUEST_METHOD,
/// QUERY_STRING, PATH_INFO and SERVER_PROTOCOL.
#[pyfunction]
pub(crate) fn request_environ<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    max_headers: usize,
    base_env: &Bound<'py, PyDict>,
    limits: (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>),
) -> PyResult<Option<RequestHead>> {
    let settings = Settings::new(max_headers, &limits)?;
    parse_environ(py, data, &settings, base_env, None)
}

/// How many distinct header names the process remembers (see
/// [`NameCache`]); names past these are converted on every request, as
/// before the cache.
const NAME_CACHE_SIZE: usize = 64;

/// The process's [`NameCache`]. The GIL orders its users; `Guarded` makes
/// it `Sync`, and a user that finds it busy converts without it.
static NAMES: PyOnceLock<Guarded<NameCache>> = PyOnceLock::new();

/// A header name as received, with the `str` objects a request makes of it:
/// the name itself (for the header list) and its environ key.
struct KnownName {
    raw: Box<[u8]>,
    name: Py<PyString>,
    /// None for a name with `_` (dropped from the environ, see [`environ_key`]).
    key: Option<Py<PyString>>,
}

/// The header names requests use, with their `str` objects: one per
/// process (see [`NAMES`]).
///
/// Why: clients send the same few names on every request, and making two
/// new `str` objects per header (and hashing the key again when it goes into
/// the environ) was about a third of `parse`'s instructions; a cached key's
/// hash is computed once (callgrind, `benches/pywsgi_callgrind.py`). `str`
/// objects are immutable, so sharing them between requests is invisible to
/// applications. One per process rather than per connection: an idle
/// keep-alive connection should cost no more than before (issue 19), and a
/// short connection gets the names of the ones before it.
#[derive(Default)]
struct NameCache {
    names: Vec<KnownName>,
}

impl NameCache {
    /// The name and key objects of `raw`, made (and remembered, while there
    /// is room) on first use.
    fn get(&mut self, py: Python<'_>, raw: &str) -> (Py<PyString>, Option<Py<PyString>>) {
        if let Some(known) = self.names.iter().find(|k| &*k.raw == raw.as_bytes()) {
            return (
                known.name.clone_ref(py),
                known.key.as_ref().map(|k| k.clone_ref(py)),
            );
        }
        let name = PyString::new(py, raw).unbind();
        let key = environ_key(raw).map(|k| PyString::new(py, &k).unbind());
        if self.names.len() < NAME_CACHE_SIZE {
            self.names.push(KnownName {
                raw: raw.as_bytes().into(),
                name: name.clone_ref(py),
                key: key.as_ref().map(|k| k.clone_ref(py)),
            });
        }
        (name, key)
    }
}

/// A server's limits for request heads, converted from Python ints.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    max_headers: usize,
    max_body: Option<u64>,
    max_line: u64,
    max_head: u64,
}

impl Settings {
    fn new(
        max_headers: usize,
        limits: &(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>),
    ) -> PyResult<Self> {
        Ok(Settings {
            max_headers: max_headers.clamp(1, MAX_HEADERS_LIMIT),
            max_body: limit(&limits.0)?,
            max_line: limit(&limits.1)?.unwrap_or(u64::MAX),
            max_head: limit(&limits.2)?.unwrap_or(u64::MAX),
        })
    }
}

/// RequestParser(max_headers, base_env, limits)
/// --
///
/// `request_environ` for one connection: `parse(data)` is
/// `request_environ(data, max_headers, base_env, limits)`, with the
/// arguments converted once.  `base_env` is held, not copied: a change made
/// to it in place shows in the next request's environ.
///
/// Why: converting the limits (three Python ints in a tuple) and passing
/// four arguments was about 500 instructions of every keep-alive request.
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct RequestParser {
    pub(super) settings: Settings,
    pub(super) base_env: Py<PyDict>,
    /// The environ key that gets the request target exactly as sent (the
    /// handler's `raw_uri_key`, gunicorn's `RAW_URI`), if any.
    pub(super) raw_uri_key: Option<Py<PyString>>,
}

#[pymethods]
impl RequestParser {
    #[new]
    #[pyo3(signature = (max_headers, base_env, limits, raw_uri_key = None))]
    fn new(
        max_headers: usize,
        base_env: Bound<'_, PyDict>,
        limits: (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>),
        raw_uri_key: Option<Bound<'_, PyString>>,
    ) -> PyResult<Self> {
        Ok(RequestParser {
            settings: Settings::new(max_headers, &limits)?,
            base_env: base_env.unbind(),
            raw_uri_key: raw_uri_key.map(Bound::unbind),
        })
    }

    /// parse(data)
    /// --
    ///
    /// `request_environ(data, ...)` with this connection's settings.
    fn parse<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Option<RequestHead>> {
        self.parse_head(py, data)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.base_env)
    }
}

impl RequestParser {
    /// `parse(data)`, for Rust callers.
    pub(super) fn parse_head<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Option<RequestHead>> {
        let raw_uri_key = self.raw_uri_key.as_ref().map(|k| k.bind(py));
        parse_environ(
            py,
            data,
            &self.settings,
            self.base_env.bind(py),
            raw_uri_key,
        )
    }
}

fn parse_environ<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    settings: &Settings,
    base_env: &Bound<'py, PyDict>,
    raw_uri_key: Option<&Bound<'py, PyString>>,
) -> PyResult<Option<RequestHead>> {
    let Settings {
        max_headers,
        max_body,
        max_line,
        max_head,
    } = *settings;
    with_bytes(data, |bytes| {
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, max_headers);
        let Some((req, consumed)) = parse_head(bytes, slots)? else {
            return Ok(None);
        };
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Ok(None);
        };
        if (target.len() + method.len() + 10) as u64 > max_line {
            return Err(refuse(
                414,
                format!("request line longer than {max_line} bytes"),
            ));
        }
        if consumed as u64 > max_head {
            return Err(refuse(
                431,
                format!("request head larger than {max_head} bytes"),
            ));
        }

        let env = base_env.copy()?;
        let list = PyList::empty(py);
        let names = NAMES.get_or_init(py, || Guarded::new(NameCache::default()));
        for h in req.headers.iter() {
            // The borrow ends before any dict operation (which could run a
            // replaced value's __del__).
            let (name, key_obj) = match names.try_borrow_mut() {
                Ok(mut cache) => cache.get(py, h.name),
                Err(_) => NameCache::default().get(py, h.name),
            };
            let value = latin1(py, h.value);
            list.append((name.bind(py), &value))?;
            let Some(key_obj) = key_obj else {
                continue;
            };
            let key_obj = key_obj.into_bound(py);
            match env.get_item(&key_obj)? {
                None => env.set_item(&key_obj, &value)?,
                Some(old) => {
                    let key = key_obj.to_str()?;
                    if SINGLETON_KEYS.contains(&key) {
                        return Err(refuse(400, format!("duplicate {} header", h.name)));
                    }
                    // Cookie headers (Cookie, Cookie2) are joined as one cookie
                    // list, as gevent joins every header whose name has COOKIE.
                    let sep = if key.contains("COOKIE") { "; " } else { "," };
                    env.set_item(&key_obj, old.add(sep)?.add(&value)?)?;
                }
            }
        }

        let te = get_str(&env, pyo3::intern!(py, "HTTP_TRANSFER_ENCODING"))?;
        let cl = env.get_item(pyo3::intern!(py, "CONTENT_LENGTH"))?;
        let (content_length, chunked): (Option<Bound<'py, PyAny>>, bool) = match te {
            Some(te) => {
                if cl.is_some() {
                    return Err(refuse(
                        400,
                        "both Content-Length and Transfer-Encoding".to_owned(),
                    ));
                }
                if minor == 0 {
                    return Err(refuse(
                        400,
                        "Transfer-Encoding in an HTTP/1.0 request".to_owned(),
                    ));
                }
                if !te.eq_ignore_ascii_case("chunked") {
                    let shown = PyString::new(py, &te).repr()?;
                    return Err(refuse(
                        400,
                        format!("unsupported Transfer-Encoding {shown}"),
                    ));
                }
                (None, true)
            }
            None => match cl {
                None => (Some(0u64.into_pyobject(py)?.into_any()), false),
                Some(cl) => {
                    let text = cl.str()?.to_string();
                    let digits = !text.is_empty()
                        && text.len() <= MAX_CONTENT_LENGTH_DIGITS
                        && text.bytes().all(|b| b.is_ascii_digit());
                    let length = if digits {
                        text.parse::<u64>().ok()
                    } else {
                        None
                    };
                    let Some(length) = length else {
                        return Err(refuse(
                            400,
                            format!("invalid Content-Length {}", cl.repr()?),
                        ));
                    };
                    if let Some(max_body) = max_body {
                        if length > max_body {
                            return Err(refuse(
                                413,
                                format!("Content-Length {length} over the limit {max_body}"),
                            ));
                        }
                    }
                    (Some(length.into_pyobject(py)?.into_any()), false)
                }
            },
        };

        let conn = get_str(&env, pyo3::intern!(py, "HTTP_CONNECTION"))?;
        // What the handler's fused path checks to skip get_environ, found
        // here where the Connection value is at hand.
        let upgrade = conn
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("upgrade"))
            || env.contains(pyo3::intern!(py, "HTTP_UPGRADE"))?;
        let (close, expect_continue) = if minor == 1 {
            let close = conn.as_deref().is_some_and(|c| lists_token(c, "close"));
            let expect = get_str(&env, pyo3::intern!(py, "HTTP_EXPECT"))?;
            let expect = expect.is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            (close, expect)
        } else {
            let keep = conn
                .as_deref()
                .is_some_and(|c| lists_token(c, "keep-alive"));
            (!keep, false)
        };

        let method = method_str(py, method);
        let protocol = if minor == 1 {
            pyo3::intern!(py, "HTTP/1.1")
        } else {
            pyo3::intern!(py, "HTTP/1.0")
        };
        set_request_keys(&env, &method, target.as_bytes(), protocol)?;
        let target = latin1(py, target.as_bytes());
        if let Some(key) = raw_uri_key {
            env.set_item(key, &target)?;
        }
        Ok(Some(RequestHead {
            method: method.unbind(),
            target: target.unbind(),
            version: protocol.clone().unbind(),
            headers: list.unbind(),
            head_length: consumed.into_pyobject(py)?.into_any().unbind(),
            environ: env.unbind(),
            content_length: content_length.map_or_else(|| py.None(), Bound::unbind),
            chunked: py_bool(py, chunked),
            close_connection: py_bool(py, close),
            expect_continue: py_bool(py, expect_continue),
            upgrade,
        }))
    })
}

/// `str(obj)` for a `str` subclass, `obj` itself for a `str`; else None.
fn native_str<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Some(s.clone()));
    }
    if obj.cast::<PyString>().is_ok() {
        return Ok(Some(obj.str()?));
    }
    Ok(None)
}

/// `s` as an exact `str`: a subclass (whose `__str__` may return one) is
/// copied, so that a [`ResponseHead`] holds nothing that could refer back to it.
fn exact_str<'py>(s: Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
    if s.is_exact_instance_of::<PyString>() {
        return Ok(s);
    }
    Ok(PyString::new(s.py(), s.to_str()?))
}

/// The first two items of a header entry, unpacked as `name, value = entry`.
fn unpack_pair<'py>(entry: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(t) = entry.cast_exact::<PyTuple>() {
        if t.len() == 2 {
            return Ok((t.get_item(0)?, t.get_item(1)?));
        }
    }
    // Anything else unpacks as Python would, with Python's own errors.
    let builtins = entry.py().import(pyo3::intern!(entry.py(), "builtins"))?;
    let items = builtins.getattr("tuple")?.call1((entry,)).map_err(|err| {
        if err.is_instance_of::<PyTypeError>(entry.py()) {
            let kind = entry
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("cannot unpack non-iterable {kind} object"))
        } else {
            err
        }
    })?;
    let items = items.cast_into::<PyTuple>()?;
    match items.len() {
        2 => Ok((items.get_item(0)?, items.get_item(1)?)),
        n if n > 2 => Err(PyValueError::new_err(
            "too many values to unpack (expected 2)",
        )),
        n => Err(PyValueError::new_err(format!(
            "not enough values to unpack (expected 2, got {n})"
        ))),
    }
}

fn has_cr_lf(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// An RFC 9110 token (a field name): one or more `tchar`.  Anything else in a
/// response header name (a colon, a space, NUL, a non-ASCII letter) would let
/// the application write a different header than the one it named.
fn is_token(s: &str) -> bool {
    // Branch-free over the bytes (a table lookup each): names are short, and
    // this runs for every header of every response.
    !s.is_empty() && s.bytes().fold(true, |ok, b| ok & TCHAR[usize::from(b)])
}

/// `TCHAR[b]`: whether byte `b` is an RFC 9110 `tchar`.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Whether `s` has a control character a field value or reason phrase cannot
/// carry (RFC 9110 allows HTAB, SP, VCHAR and obs-text).  UTF-8 bytes of
/// non-ASCII characters are all 0x80 or above, so bytes are enough.
fn has_control(s: &str) -> bool {
    // Without early exit, so that the compiler can vectorize it.
    s.bytes().fold(false, |bad, b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// Appends `s` encoded as latin-1; false if it has a character above U+00FF.
fn push_latin1(out: &mut Vec<u8>, s: &str) -> bool {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
        return true;
    }
    for c in s.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => return false,
        }
    }
    true
}

fn unicode_error(args: impl pyo3::PyErrArguments + 'static) -> PyErr {
    PyUnicodeError::new_err(args)
}

/// response_head(status, headers)
/// --
///
/// Check a WSGI `start_response(status, headers)` and encode it: gevent's
/// checks, then header names must be tokens and no value nor the status may
/// hold a control character (ValueError). Returns a `ResponseHead`.
#[pyfunction]
pub(crate) fn response_head<'py>(
    py: Python<'py>,
    status: &Bound<'py, PyAny>,
    headers: &Bound<'py, PyAny>,
) -> PyResult<ResponseHead> {
    let Some(status) = native_str(status)? else {
        return Err(unicode_error("The status string must be a native string"));
    };
    let status_text = status.to_str()?;
    if has_cr_lf(status_text) {
        return Err(PyValueError::new_err((
            "carriage return or newline in status",
            status.clone().unbind(),
        )));
    }
    // The first three characters are ASCII digits exactly when the first
    // three bytes are.
    let raw = status_text.as_bytes();
    let valid = raw.len() >= 3
        && raw[..3].iter().all(u8::is_ascii_digit)
        && raw.get(3).map_or(true, |&b| b == b' ');
    if !valid {
        return Err(PyValueError::new_err(format!(
            "Invalid status {}: must be a three-digit code and a reason",
            status.repr()?
        )));
    }
    let code = raw[..3]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));

    // One pass: types (the first bad entry raises), then the checks that
    // gevent makes over the whole list, in its order.
    let mut pairs: Vec<(Bound<'py, PyString>, Bound<'py, PyString>)> = Vec::new();
    for entry in headers.try_iter()? {
        let (name, value) = unpack_pair(&entry?)?;
        let (Some(n), Some(v)) = (native_str(&name)?, native_str(&value)?) else {
            let message = if native_str(&name)?.is_none() {
                "The header must be a native string"
            } else {
                "The value must be a native string"
            };
            return Err(unicode_error((message, name.unbind(), value.unbind())));
        };
        pairs.push((n, v));
    }
    let mut texts: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for (n, v) in &pairs {
        texts.push((n.to_str()?, v.to_str()?));
    }
    // Whether each name is a token and each value free of control bytes
    // (refused below, after gevent's checks); either also rules CR/LF out.
    let mut clean: Vec<(bool, bool)> = Vec::with_capacity(texts.len());
    for ((name, value), (n, v)) in texts.iter().zip(&pairs) {
        let (token, plain) = (is_token(name), !has_control(value));
        clean.push((token, plain));
        if !token && has_cr_lf(name) {
            return Err(PyValueError::new_err((
                "carriage return or newline in header name",
                n.clone().unbind(),
            )));
        }
        if !plain && has_cr_lf(value) {
            return Err(PyValueError::new_err((
                "carriage return or newline in header value",
                v.clone().unbind(),
            )));
        }
    }
    let mut block = Vec::with_capacity(texts.iter().map(|(n, v)| n.len() + v.len() + 4).sum());
    let mut special: [Option<usize>; 4] = [None; 4];
    for (i, (name, value)) in texts.iter().enumerate() {
        if !(push_latin1(&mut block, name) && {
            block.extend_from_slice(b": ");
            push_latin1(&mut block, value)
        }) {
            let (n, v) = &pairs[i];
            return Err(unicode_error((
                "Non-latin1 header",
                n.repr()?.unbind(),
                v.repr()?.unbind(),
            )));
        }
        // After gevent's checks (so their errors stay theirs), what it lets
        // through but HTTP does not.
        let (token, plain) = clean[i];
        if !token {
            return Err(PyValueError::new_err((
                "header name is not a token",
                pairs[i].0.clone().unbind(),
            )));
        }
        if !plain {
            return Err(PyValueError::new_err((
                "control character in header value",
                pairs[i].1.clone().unbind(),
            )));
        }
        block.extend_from_slice(b"\r\n");
        for (slot, wanted) in ["content-length", "date", "connection", "transfer-encoding"]
            .iter()
            .enumerate()
        {
            if name.eq_ignore_ascii_case(wanted) {
                special[slot] = Some(i); // the last one given wins
            }
        }
    }
    let mut status_bytes = Vec::with_capacity(status_text.len());
    if !push_latin1(&mut status_bytes, status_text) {
        return Err(unicode_error((
            "Non-latin1 status",
            status.repr()?.unbind(),
        )));
    }
    if has_control(status_text) {
        return Err(PyValueError::new_err((
            "control character in status",
            status.clone().unbind(),
        )));
    }

    let value_of = |slot: usize| special[slot].map(|i| pairs[i].1.clone());
    let (cl_text, cl_value) = match special[0] {
        None => (None, None),
        Some(i) => {
            let stripped = py_strip(texts[i].1);
            if stripped.is_empty() || !stripped.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PyValueError::new_err(format!(
                    "Invalid Content-Length header {}",
                    PyString::new(py, stripped).repr()?
                )));
            }
            let value = match stripped.parse::<u64>() {
                Ok(n) => n.into_pyobject(py)?.into_any(),
                Err(_) => py.get_type::<PyInt>().call1((stripped,))?, // beyond u64
            };
            (Some(PyString::new(py, stripped)), Some(value))
        }
    };
    let connection = value_of(2);
    let close = special[2].is_some_and(|i| lists_token(texts[i].1, "close"));
    let opt = |v: Option<Bound<'py, PyString>>| -> PyResult<Py<PyAny>> {
        Ok(match v {
            None => py.None(),
            Some(s) => exact_str(s)?.into_any().unbind(),
        })
    };
    Ok(ResponseHead {
        status: exact_str(status)?.unbind(),
        status_bytes: PyBytes::new(py, &status_bytes).unbind(),
        code: code.into_pyobject(py)?.into_any().unbind(),
        header_block: PyBytes::new(py, &block).unbind(),
        content_length: opt(cl_text)?,
        content_length_value: cl_value.map_or_else(|| py.None(), Bound::unbind),
        date: opt(value_of(1))?,
        connection: opt(connection)?,
        transfer_encoding: opt(value_of(3))?,
        connection_close: py_bool(py, close),
        bodiless: py_bool(py, code < 200 || code == 204 || code == 304),
        framed: py_bool(py, special[0].is_some() || special[3].is_some()),
    })
}

/// Length of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE_LEN: usize = 29;

/// 9999-12-31T23:59:59Z: the last second an IMF-fixdate's four-digit year can show.
const LAST_FOUR_DIGIT_YEAR_SECOND: u64 = 253_402_300_799;

/// The IMF-fixdate (RFC 9110) of `secs` seconds after the Unix epoch.
fn http_date(secs: u64) -> [u8; HTTP_DATE_LEN] {
    // 1970-01-01 was a Thursday.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Civil date from a day count: shift the epoch to 0000-03-01 so that
    // leap days end each 400-year era's years, then split eras, years of
    // the era, and days of the year (March-based months of 153-day pairs).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = [0u8; HTTP_DATE_LEN];
    let text = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year.min(9999), // only past LAST_FOUR_DIGIT_YEAR_SECOND; never reached
        hh,
        mm,
        ss
    );
    let n = text.len().min(HTTP_DATE_LEN);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    debug_assert_eq!(text.len(), HTTP_DATE_LEN);
    out
}

thread_local! {
    /// The Date of the current second; it changes once a second, requests
    /// come thousands of times a second.
    static DATE_CACHE: std::cell::Cell<(u64, [u8; HTTP_DATE_LEN])> =
        const { std::cell::Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
}

fn current_http_date() -> [u8; HTTP_DATE_LEN] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|cache| {
        let (at, date) = cache.get();
        if at == now {
            return date;
        }
        let date = http_date(now);
        cache.set((now, date));
        date
    })
}

/// http_date(timestamp=None)
/// --
///
/// The IMF-fixdate for `timestamp` (seconds since the epoch; now if None).
#[pyfunction]
#[pyo3(name = "http_date", signature = (timestamp = None))]
fn http_date_bytes<'py>(py: Python<'py>, timestamp: Option<u64>) -> PyResult<Bound<'py, PyBytes>> {
    let date = match timestamp {
        Some(t) if t > LAST_FOUR_DIGIT_YEAR_SECOND => {
            return Err(PyValueError::new_err(format!(
                "timestamp {t} is after the year 9999"
            )))
        }
        Some(t) => http_date(t),
        None => current_http_date(),
    };
    Ok(PyBytes::new(py, &date))
}

#[pymethods]
impl ResponseHead {
    /// response_bytes(content_length, chunked, connection, body)
    /// --
    ///
    /// The response head (and `body` after it) as one bytes object: this
    /// head's status line and header lines, a `Date` of the current second
    /// unless the application gave one, then `Content-Length` (an int, or
    /// None for no such line), `Transfer-Encoding: chunked` if `chunked`,
    /// `Connection: close` (`connection` 1) or `keep-alive` (2) or nothing
    /// (0), and the blank line.
    fn response_bytes<'py>(
        &self,
        py: Python<'py>,
        content_length: Option<u64>,
        chunked: bool,
        connection: u8,
        body: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        assemble(
            py,
            self.status_bytes.as_bytes(py),
            self.header_block.as_bytes(py),
            self.date.is_none(py),
            content_length,
            chunked,
            connection,
            body,
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn assemble<'py>(
    py: Python<'py>,
    status: &[u8],
    header_block: &[u8],
    date: bool,
    content_length: Option<u64>,
    chunked: bool,
    connection: u8,
    body: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    // "Content-Length: " and up to 20 digits and CRLF, on the stack.
    let mut length_line = [0u8; 38];
    let length: &[u8] = match content_length {
        None => b"",
        Some(n) => {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut rest = n;
            loop {
                at -= 1;
                digits[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            let prefix = b"Content-Length: ";
            let number = &digits[at..];
            let end = prefix.len() + number.len() + 2;
            length_line[..prefix.len()].copy_from_slice(prefix);
            length_line[prefix.len()..end - 2].copy_from_slice(number);
            length_line[end - 2..end].copy_from_slice(b"\r\n");
            &length_line[..end]
        }
    };
    let connection: &[u8] = match connection {
        0 => b"",
        1 => b"Connection: close\r\n",
        2 => b"Connection: keep-alive\r\n",
        other => {
            return Err(PyValueError::new_err(format!(
                "connection must be 0, 1 or 2, not {other}"
            )))
        }
    };
    let date_line = if date {
        Some(current_http_date())
    } else {
        None
    };
    let parts: [&[u8]; 11] = [
        b"HTTP/1.1 ",
        status,
        b"\r\n",
        header_block,
        if date_line.is_some() { b"Date: " } else { b"" },
        date_line.as_ref().map_or(&b""[..], |d| &d[..]),
        if date_line.is_some() { b"\r\n" } else { b"" },
        length,
        if chunked {
            b"Transfer-Encoding: chunked\r\n"
        } else {
            b""
        },
        connection,
        b"\r\n",
    ];
    let head: usize = parts.iter().map(|p| p.len()).sum();
    PyBytes::new_with(py, head + body.len(), |out| {
        let mut at = 0;
        for part in parts.iter().chain(std::iter::once(&body)) {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(())
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(request_environ, m)?)?;
    m.add_function(wrap_pyfunction!(response_head, m)?)?;
    m.add_function(wrap_pyfunction!(http_date_bytes, m)?)?;
    m.add("RequestError", m.py().get_type::<RequestError>())?;
    m.add_class::<RequestHead>()?;
    m.add_class::<ResponseHead>()?;
    m.add_class::<RequestParser>()?;
    Ok(())
}
