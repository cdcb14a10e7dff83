//! HTTP/1.x request-head and chunk-size parsing for `greenwheel.pywsgi`,
//! through the `httparse` crate.
//!
//! Why httparse: it is a zero-copy, SIMD-accelerated parser used by hyper,
//! strict about what it accepts (no obsolete line folding in requests, no
//! bare CR, no whitespace before the colon), and it never allocates, so the
//! only cost here is building the Python objects the WSGI environ needs.
//!
//! Ground rules:
//! - Incomplete input is `None`, never an error: the caller reads more.
//! - Malformed input raises `HttpParseError` (a `ValueError`); more headers
//!   than allowed raises its subclass `TooManyHeaders` (431 material).
//! - Header names and values become `str` decoded as latin-1, as PEP 3333
//!   requires for the environ; every byte value is representable.

use std::mem::MaybeUninit;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

pyo3::create_exception!(
    greenwheel._core,
    HttpParseError,
    PyValueError,
    "A malformed HTTP request head or chunk size."
);
pyo3::create_exception!(
    greenwheel._core,
    TooManyHeaders,
    HttpParseError,
    "The request has more header fields than the server allows."
);

/// Upper bound for `max_headers`, so a caller's typo cannot make us reserve
/// a huge stack-free buffer.
pub(super) const MAX_HEADERS_LIMIT: usize = 10_000;

pub(super) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // One pass with CPython's own decoder (it copies ASCII as it is), where
    // decoding as UTF-8 took three (ASCII check, UTF-8 check, decode).
    // SAFETY: `bytes` is valid for `bytes.len()` bytes during the call, which
    // copies them; the length of a slice fits in `Py_ssize_t`; a null
    // `errors` is the default ("strict"), and latin-1 decodes every byte.
    let ptr = unsafe {
        pyo3::ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as pyo3::ffi::Py_ssize_t,
            std::ptr::null(),
        )
    };
    if ptr.is_null() {
        // Only a failed allocation; PyString::new reports it the usual way.
        PyErr::take(py);
        let s: String = bytes.iter().map(|&b| b as char).collect();
        return PyString::new(py, &s);
    }
    // SAFETY: a non-null result of PyUnicode_DecodeLatin1 is a new reference
    // to a str.
    unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked() }
}

pub(super) fn with_bytes<R>(
    data: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(b) = data.cast::<pyo3::types::PyBytes>() {
        return f(b.as_bytes());
    }
    let buf: PyBuffer<u8> = PyBuffer::get(data)?;
    let bytes = buf.to_vec(data.py())?;
    f(&bytes)
}

/// Header slots a parse keeps on the stack: the server's default limit is
/// 100.  A heap buffer of initialized empty headers cost a malloc, a free and
/// a write to every slot, for every request.
pub(super) const STACK_HEADERS: usize = 128;

/// A header slot for httparse to fill: uninitialized until it writes one.
pub(super) type HeaderSlot<'b> = MaybeUninit<httparse::Header<'b>>;

/// Room for a parse with at most `n` headers: `n` slots of `stack` when they
/// fit, else of `heap` (grown here).
pub(super) fn header_slots<'s, 'b>(
    stack: &'s mut [HeaderSlot<'b>; STACK_HEADERS],
    heap: &'s mut Vec<HeaderSlot<'b>>,
    n: usize,
) -> &'s mut [HeaderSlot<'b>] {
    if n <= STACK_HEADERS {
        &mut stack[..n]
    } else {
        heap.resize(n, MaybeUninit::uninit());
        &mut heap[..]
    }
}

/// Parses a request head into `headers` (whose length is the header limit):
/// None while incomplete, else the request and the head's length.
pub(super) fn parse_head<'h, 'b>(
    bytes: &'b [u8],
    headers: &'h mut [HeaderSlot<'b>],
) -> PyResult<Option<(httparse::Request<'h, 'b>, usize)>> {
    let max_headers = headers.len();
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, headers) {
        Ok(httparse::Status::Complete(n)) => Ok(Some((req, n))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(TooManyHeaders::new_err(format!(
            "more than {max_headers} header fields"
        ))),
        Err(e) => Err(HttpParseError::new_err(format!("invalid request: {e}"))),
    }
}

/// parse_request(data, max_headers=100)
/// --
///
/// Parse an HTTP/1.x request head at the start of `data` (bytes-like).
/// Returns None if the head is incomplete, else
/// `(method, target, minor_version, [(name, value), ...], head_length)`.
#[pyfunction]
#[pyo3(signature = (data, max_headers = 100))]
pub(crate) fn parse_request<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    max_headers: usize,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let max_headers = max_headers.clamp(1, MAX_HEADERS_LIMIT);
    with_bytes(data, |bytes| {
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, max_headers);
        let Some((req, consumed)) = parse_head(bytes, slots)? else {
            return Ok(None);
        };
        let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
            return Ok(None);
        };
        let list = PyList::empty(py);
        for h in req.headers.iter() {
            list.append((latin1(py, h.name.as_bytes()), latin1(py, h.value)))?;
        }
        Ok(Some(PyTuple::new(
            py,
            [
                PyString::new(py, method).into_any(),
                latin1(py, path.as_bytes()).into_any(),
                minor.into_pyobject(py)?.into_any(),
                list.into_any(),
                consumed.into_pyobject(py)?.into_any(),
            ],
        )?))
    })
}

/// parse_chunk_size(data)
/// --
///
/// Parse a chunked-encoding size line at the start of `data`. Returns None if
/// incomplete, else `(line_length, chunk_size)`.
/// Control bytes (other than HTAB) in the line are refused: httparse lets any
/// byte through in an extension, and a bare LF there ends the line for a
/// lenient front end, which then frames the body differently: a request
/// hidden in the body would be served behind its back (smuggling).
#[pyfunction]
pub(crate) fn parse_chunk_size(data: &Bound<'_, PyAny>) -> PyResult<Option<(usize, u64)>> {
    let invalid = || Err(HttpParseError::new_err("invalid chunk size line"));
    with_bytes(data, |bytes| match httparse::parse_chunk_size(bytes) {
        Ok(httparse::Status::Complete((n, size))) => {
            // The line is bytes[..n], its CRLF included.
            let line = bytes.get(..n.saturating_sub(2)).unwrap_or_default();
            if line.iter().all(|&b| chunk_line_byte(b)) {
                Ok(Some((n, size)))
            } else {
                invalid()
            }
        }
        Ok(httparse::Status::Partial) => {
            // All of `bytes` is the unfinished line; a last CR may begin its
            // CRLF.  A bad byte is refused now rather than after more reads.
            let line = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if line.iter().all(|&b| chunk_line_byte(b)) {
                Ok(None)
            } else {
                invalid()
            }
        }
        Err(_) => invalid(),
    })
}

/// What a chunk size line may hold before its CRLF: the size, BWS, and
/// extensions of tokens and quoted strings (RFC 9112 7.1.1), that is HTAB,
/// SP, VCHAR and obs-text: no other control byte.
fn chunk_line_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_request, m)?)?;
    m.add_function(wrap_pyfunction!(parse_chunk_size, m)?)?;
    m.add("HttpParseError", m.py().get_type::<HttpParseError>())?;
    m.add("TooManyHeaders", m.py().get_type::<TooManyHeaders>())?;
    Ok(())
}
