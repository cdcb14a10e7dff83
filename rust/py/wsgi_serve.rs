//! The native request loop of `greenwheel.pywsgi`: `serve_requests(handler,
//! clear, input_class)` serves a connection's usual keep-alive requests in
//! Rust, calling into Python only for the application (and for the wait on
//! the socket, the socket's own `_recv_within`).
//!
//! Why: a keep-alive hello world cost about 52,000 instructions per request
//! through the Python handler, against about 16,000 for a blocking-style
//! `StreamServer` handler doing the same recv and send (callgrind,
//! `benches/pywsgi_callgrind.py`); the difference was the handler's Python.
//!
//! Ground rules:
//! - The Python handler stays the specification and the home of every rule
//!   that is not the usual case. A request is served here only while it is
//!   the usual one: a head parsed whole, no body, no `Expect`, no upgrade;
//!   the application calls `start_response` without `exc_info` for a status
//!   with a body, and returns a list or tuple of `bytes` of at most
//!   [`WHOLE_BODY_MAX`] bytes that agrees with any Content-Length it gave,
//!   for a method other than HEAD; or returns another iterable (Werkzeug's,
//!   so Flask's) whose only non-empty item is `bytes` of the Content-Length
//!   it gave (`Connection::serve_iterable`).
//! - Anything else is handed over, at the point it is seen: before the
//!   application runs, the data goes back into the handler's `_rbuf` and
//!   `serve_requests` returns True (the handler's fused path serves that
//!   request, parsing it again); once the application was called, the
//!   request's state becomes the handler's (`WSGIHandler._adopt`, the same
//!   attributes the Python path sets) and the handler finishes it
//!   (`_respond`), and `serve_requests` returns False.
//! - Returns None when the connection is to be closed: an end of file, a
//!   reset, an idle timeout, a failed send, or a request that closes it.
//! - Parks an idle connection when asked (`park_after`): once it has waited
//!   that long for its next request, the loop calls `handler._park(left)`
//!   (`left`: what remains of the idle timeout) and returns what it returned.
//!   The handler then watches the socket from the hub and its greenlet ends,
//!   so an idle connection holds no greenlet (issue 19's idle memory).
//! - A response waits, before it is sent, for the other connections the
//!   same kernel poll found ready (`fastpath::_yield_to_poll`): one poll's
//!   responses leave in one burst, so the client is woken once for them,
//!   not once each. Nothing else delays a response.
//! - Only for handler classes that keep every hook of the request path and
//!   log nothing per request (checked by `WSGIHandler.handle`): nothing then
//!   observes the handler's per-request attributes, which this loop does not
//!   set.
//! - No `Guarded` borrow is held across a call into Python: the application,
//!   `start_response` and `write` may switch greenlets, or call back in.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyOSError, PyTimeoutError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyIterator, PyList, PyString, PyTuple};

use super::fastpath::_yield_to_poll;
use super::sockio::send_nowait;
use super::sync::{BoolCell, Guarded};
use super::watchers::IoWatcher;
use super::wsgi::{assemble, response_head, RequestHead, RequestParser, ResponseHead};
use pyo3::sync::PyOnceLock;

/// The largest body sent in the same write as its head, as the Python path
/// does (`process_result`); a larger one is handed over.
const WHOLE_BODY_MAX: usize = 65536;

/// Every how many requests the loop lets other greenlets run, when the next
/// request is always already there (pipelining, a fast client): the Python
/// path's rule (`_next_request_head`).
const FAIRNESS_EVERY: u32 = 32;

/// The request the application is running for: what `WSGIHandler._adopt`
/// needs to take it over.
struct Request {
    /// Kept as a Rust value: the Python object is made only if the handler
    /// takes the request over (about 300 instructions of every request).
    parsed: RequestHead,
    data: Py<PyBytes>,
    input: Py<PyAny>,
    app: Py<PyAny>,
}

/// The last usual `start_response(status, headers)` of the process,
/// checked: the exact `str` objects it was made of, and its
/// [`ResponseHead`]. One per process, not per connection, so that an idle
/// keep-alive connection costs nothing more for it (issue 19).
///
/// Why: an application usually answers with the same status and headers
/// request after request, and checking and encoding them again was about
/// 4,100 of a keep-alive hello world's 36,000 instructions (callgrind,
/// `benches/pywsgi_callgrind.py`); comparing the strings is about 200. A
/// `ResponseHead` is a pure function of the status and header texts and is
/// immutable, so handing out the same one again is invisible.
struct LastHead {
    status: Py<PyString>,
    headers: Vec<(Py<PyString>, Py<PyString>)>,
    head: Py<ResponseHead>,
}

impl LastHead {
    /// Whether `status` and `headers` (exact `str`s in a list or tuple of
    /// 2-tuples, nothing else) have the texts this head was made of.
    fn matches(&self, status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> bool {
        let py = status.py();
        let same_str = |a: &Py<PyString>, b: &Bound<'_, PyAny>| -> bool {
            if a.as_ptr() == b.as_ptr() {
                return true;
            }
            match b.cast_exact::<PyString>() {
                Ok(b) => a
                    .bind(py)
                    .to_str()
                    .ok()
                    .is_some_and(|a| b.to_str().ok() == Some(a)),
                Err(_) => false,
            }
        };
        if !same_str(&self.status, status) {
            return false;
        }
        let same_pair = |(name, value): &(Py<PyString>, Py<PyString>), item: Bound<'_, PyAny>| {
            item.cast_exact::<PyTuple>().is_ok_and(|t| {
                t.len() == 2
                    && t.get_item(0).is_ok_and(|n| same_str(name, &n))
                    && t.get_item(1).is_ok_and(|v| same_str(value, &v))
            })
        };
        if let Ok(list) = headers.cast_exact::<PyList>() {
            list.len() == self.headers.len()
                && self
                    .headers
                    .iter()
                    .zip(list.iter())
                    .all(|(p, i)| same_pair(p, i))
        } else if let Ok(tuple) = headers.cast_exact::<PyTuple>() {
            tuple.len() == self.headers.len()
                && self
                    .headers
                    .iter()
                    .zip(tuple.iter())
                    .all(|(p, i)| same_pair(p, i))
        } else {
            false
        }
    }

    /// The record of a checked `start_response`, if its arguments are of
    /// the exact types [`LastHead::matches`] compares.
    fn of(
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        head: &Py<ResponseHead>,
    ) -> Option<LastHead> {
        let py = status.py();
        let exact =
            |o: &Bound<'_, PyAny>| o.cast_exact::<PyString>().ok().map(|s| s.clone().unbind());
        let mut pairs = Vec::new();
        let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = headers.cast_exact::<PyList>() {
            list.iter().collect()
        } else {
            headers.cast_exact::<PyTuple>().ok()?.iter().collect()
        };
        for item in items {
            let t = item.cast_exact::<PyTuple>().ok()?;
            if t.len() != 2 {
                return None;
            }
            pairs.push((exact(&t.get_item(0).ok()?)?, exact(&t.get_item(1).ok()?)?));
        }
        Some(LastHead {
            status: exact(status)?,
            headers: pairs,
            head: head.clone_ref(py),
        })
    }
}

/// The process's [`LastHead`]; a user that finds it busy goes without.
static LAST_HEAD: PyOnceLock<Guarded<Option<LastHead>>> = PyOnceLock::new();

/// The `start_response` callable the application gets from the native loop.
///
/// While the request is the usual one it only records the checked head
/// (`_core.response_head`); anything else (exc_info, a status without a
/// body, a call after the handler took the request over) takes the request
/// over and calls the handler's own `start_response`.
#[pyclass(frozen, module = "greenwheel._core", name = "start_response")]
pub(crate) struct StartResponse {
    handler: Py<PyAny>,
    /// Set while the application runs in the native loop.
    request: Guarded<Option<Request>>,
    /// The last `start_response(status, headers)` recorded, with `headers`.
    head: Guarded<Option<(Py<ResponseHead>, Py<PyAny>)>>,
    /// The handler took the current request over.
    adopted: BoolCell,
    /// The `write` callable every call returns (made on first use).
    write: Guarded<Option<Py<Write>>>,
    /// Set once the native loop sent the head and body of a result it
    /// iterates ([`Connection::serve_iterable`]): the bytes sent. The
    /// handler then takes the request over with its headers sent. Every
    /// way out of `serve_iterable` clears it (or ends the connection, and
    /// with it this `start_response`).
    sent: Guarded<Option<usize>>,
}

impl StartResponse {
    /// Makes the running request the handler's (`WSGIHandler._adopt`); a
    /// no-op once done, or outside a request.
    fn adopt(&self, py: Python<'_>) -> PyResult<()> {
        if self.adopted.get() {
            return Ok(());
        }
        let request = self.request.replace(None);
        let head = self.head.replace(None);
        let Some(request) = request else {
            return Ok(());
        };
        self.adopted.set(true);
        let env = request.parsed.environ.clone_ref(py);
        let (head, headers) = match head {
            Some((h, hs)) => (h.into_any(), hs),
            None => (py.None(), py.None()),
        };
        let args = PyTuple::new(
            py,
            [
                Py::new(py, request.parsed)?.into_any(),
                request.data.into_any(),
                env.into_any(),
                request.input,
                request.app,
                // When the handler takes over rather than when the request
                // came: the start time only goes into the access log, which
                // is off on connections the native loop serves.
                unix_time().into_pyobject(py)?.into_any().unbind(),
                head,
                headers,
            ],
        )?;
        let handler = self.handler.bind(py);
        handler.call_method1(intern!(py, "_adopt"), args)?;
        let sent = self.sent.replace(None);
        if let Some(sent) = sent {
            // What the Python path's write() leaves after sending a head
            // and the whole Content-Length of body.
            handler.setattr(intern!(py, "headers_sent"), true)?;
            handler.setattr(intern!(py, "response_length"), sent)?;
            handler.setattr(intern!(py, "_cl_left"), 0)?;
        }
        Ok(())
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        // After the native loop sent the head, a call is the handler's: it
        // refuses it (or re-raises exc_info), as after any sent head.
        let active = this.request.borrow().is_some() && this.sent.borrow().is_none();
        let with_exc = match exc_info {
            Some(e) => e.is_truthy()?,
            None => false,
        };
        if active && !with_exc {
            let last = LAST_HEAD.get_or_init(py, || Guarded::new(None));
            let cached = match last.try_borrow() {
                Ok(last) => match last.as_ref() {
                    Some(last) if last.matches(status, headers) => Some(last.head.clone_ref(py)),
                    _ => None,
                },
                Err(_) => None,
            };
            let head = match cached {
                Some(head) => head,
                None => {
                    // The Python version's checks and their errors, in Rust.
                    let head = Py::new(py, response_head(py, status, headers)?)?;
                    if let Ok(mut slot) = last.try_borrow_mut() {
                        let old =
                            std::mem::replace(&mut *slot, LastHead::of(status, headers, &head));
                        drop(slot);
                        drop(old);
                    }
                    head
                }
            };
            if !head.get().bodiless.bind(py).is_true() {
                let old = this.head.replace(Some((head, headers.clone().unbind())));
                drop(old);
                let made = this.write.borrow().as_ref().map(|w| w.clone_ref(py));
                let write = match made {
                    Some(write) => write,
                    None => {
                        let write = Py::new(
                            py,
                            Write {
                                start_response: slf.clone().unbind(),
                            },
                        )?;
                        let old = this.write.replace(Some(write.clone_ref(py)));
                        drop(old);
                        write
                    }
                };
                return Ok(write.into_any());
            }
        }
        this.adopt(py)?;
        let handler = this.handler.bind(py);
        let exc_info = exc_info.map_or_else(|| py.None(), |e| e.clone().unbind());
        Ok(handler
            .call_method1(intern!(py, "start_response"), (status, headers, exc_info))?
            .unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.handler)?;
        // Skipped (not an error) if the value is being changed right now.
        if let Ok(request) = self.request.try_borrow() {
            if let Some(r) = request.as_ref() {
                visit.call(&r.parsed.headers)?;
                visit.call(&r.parsed.environ)?;
                visit.call(&r.parsed.content_length)?;
                visit.call(&r.input)?;
                visit.call(&r.app)?;
            }
        }
        if let Ok(head) = self.head.try_borrow() {
            if let Some((_, headers)) = head.as_ref() {
                visit.call(headers)?;
            }
        }
        if let Ok(write) = self.write.try_borrow() {
            if let Some(write) = write.as_ref() {
                visit.call(write)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let request = self.request.replace(None);
        let head = self.head.replace(None);
        let write = self.write.replace(None);
        drop((request, head, write));
    }
}

/// The `write` callable the native `start_response` returns: a body written
/// this way is the handler's to frame, so the request is taken over first.
#[pyclass(frozen, module = "greenwheel._core", name = "write")]
pub(crate) struct Write {
    start_response: Py<StartResponse>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let sr = self.start_response.get();
        sr.adopt(py)?;
        Ok(sr
            .handler
            .bind(py)
            .call_method1(intern!(py, "write"), (data,))?
            .unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.start_response)
    }
}

/// The body of a usual response: a list or tuple of exact `bytes`.
enum Body<'py> {
    One(Bound<'py, PyBytes>),
    Joined(Vec<u8>),
}

impl Body<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::One(b) => b.as_bytes(),
            Body::Joined(v) => v,
        }
    }
}

fn whole_body<'py>(result: &Bound<'py, PyAny>) -> Option<Body<'py>> {
    fn join<'py>(items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>) -> Option<Body<'py>> {
        let mut items = items.peekable();
        if items.len() == 1 {
            return items
                .next()?
                .cast_into_exact::<PyBytes>()
                .ok()
                .map(Body::One);
        }
        let mut joined = Vec::new();
        for item in items {
            joined.extend_from_slice(item.cast_exact::<PyBytes>().ok()?.as_bytes());
            if joined.len() > WHOLE_BODY_MAX {
                return None;
            }
        }
        Some(Body::Joined(joined))
    }
    if let Ok(list) = result.cast_exact::<PyList>() {
        join(list.iter())
    } else if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        join(tuple.iter())
    } else {
        None
    }
}

/// The response bytes of a usual response, or None to hand it over.
fn usual_response<'py>(
    py: Python<'py>,
    parsed: &RequestHead,
    head: &ResponseHead,
    result: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
    if parsed.method.bind(py).to_str()? == "HEAD" {
        return Ok(None);
    }
    let Some(body) = whole_body(result) else {
        return Ok(None);
    };
    let body = body.bytes();
    if body.len() > WHOLE_BODY_MAX {
        return Ok(None);
    }
    let declared = head.content_length_value.bind(py);
    if !declared.is_none() && declared.extract::<u64>().ok() != Some(body.len() as u64) {
        // More or fewer bytes than promised: the handler logs or closes.
        return Ok(None);
    }
    response_bytes(py, parsed, head, body).map(Some)
}

/// The head and `body` of a response whose body is whole and agrees with
/// any Content-Length the application gave, and whether the connection
/// closes after it (`_make_head` for that case).
fn response_bytes<'py>(
    py: Python<'py>,
    parsed: &RequestHead,
    head: &ResponseHead,
    body: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, bool)> {
    let close =
        parsed.close_connection.bind(py).is_true() || head.connection_close.bind(py).is_true();
    let connection = if !head.connection.bind(py).is_none() {
        0
    } else if close {
        1
    } else if parsed.version.bind(py).to_str()? == "HTTP/1.0" {
        2
    } else {
        0
    };
    let length = if head.framed.bind(py).is_true() {
        None
    } else {
        Some(body.len() as u64)
    };
    let bytes = assemble(
        py,
        head.status_bytes.bind(py).as_bytes(),
        head.header_block.bind(py).as_bytes(),
        head.date.bind(py).is_none(),
        length,
        false,
        connection,
        body,
    )?;
    Ok((bytes, close))
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether a parsed request is the usual one: no body, no `Expect`, no
/// upgrade (the conditions of the handler's fused path for skipping
/// `get_environ`).
fn usual_request(py: Python<'_>, parsed: &RequestHead) -> bool {
    let no_body = parsed
        .content_length
        .bind(py)
        .cast::<PyInt>()
        .is_ok_and(|n| n.extract::<u64>().ok() == Some(0));
    no_body && !parsed.expect_continue.bind(py).is_true() && !parsed.upgrade
}

/// What a step of the loop decided.
enum Next {
    /// Serve the next request.
    Again,
    /// Return this to the handler (see `serve_requests`).
    Done(Py<PyAny>),
}

fn done(py: Python<'_>, value: Option<bool>) -> PyResult<Next> {
    Ok(Next::Done(match value {
        None => py.None(),
        Some(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
    }))
}

/// One `serve_requests` call's state: what it reads from the handler once.
///
/// Kept on the heap, with each step out of line (`#[inline(never)]`), so
/// that the frame below the wait for the next request is small: a waiting
/// greenlet keeps its C stack, and an idle keep-alive connection is mostly
/// its waiting greenlet (issue 19's idle-connection memory).
struct Connection {
    handler: Py<PyAny>,
    inputs: Inputs,
    sock: Py<PyAny>,
    server: Py<PyAny>,
    parser: Py<RequestParser>,
    watcher: Py<IoWatcher>,
    hub: Py<PyAny>,
    timed_out: Py<PyTuple>,
    start_response: Py<StartResponse>,
    fd: i32,
    recv_size: isize,
    first: bool,
    clear: bool,
    /// Seconds of waiting for a request after which the connection parks
    /// (None: never).
    park_after: Option<f64>,
    served: u32,
    /// The bytes received and not served yet start at `pos`.
    data: Py<PyBytes>,
    pos: usize,
}

/// Where a connection's bodiless requests get their `wsgi.input`.
struct Inputs {
    /// `serve_requests`' `input_class` (pywsgi's `Input`).
    class: Py<PyAny>,
    /// `Input.__init__`, which re-arms `spare`.
    init: Py<PyAny>,
    /// The last request's input (see `next`).
    spare: Option<Py<PyAny>>,
}

impl Inputs {
    /// A bodiless request's `wsgi.input`: `Input(handler, 0)`.
    ///
    /// When only this connection still holds the last request's input (the
    /// application and its environ let go of it), that object serves again:
    /// no one can tell it from a new one. A fresh one cost 1.9k of 21.9k
    /// instructions per hello-world request (a type call, `__init__`, an
    /// allocation and a deallocation; benches/pywsgi_callgrind.py,
    /// 2026-12-05), running `__init__` on the old one again 1.1k of that.
    /// Reading a bodiless input changes none of its state, so `__init__`
    /// runs again only if someone assigned one of its public attributes.
    /// A connection waiting for its next request keeps it: 75 bytes
    /// (compare.py's idle keep-alive row, 3.66 -> 3.74 KB, same run).
    #[inline(never)]
    fn next<'py>(&mut self, handler: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = handler.py();
        let input = match self.spare.take() {
            // One reference: ours. `wsgi.input` has no `__weakref__` slot,
            // so nothing else can reach it.
            Some(spare) if spare.get_refcnt(py) == 1 => {
                let spare = spare.into_bound(py);
                if !untouched_bodiless(&spare)? {
                    self.init.bind(py).call1((&spare, handler, 0))?;
                }
                spare
            }
            _ => self.class.bind(py).call1((handler, 0))?,
        };
        self.spare = Some(input.clone().unbind());
        Ok(input)
    }
}

/// Whether a bodiless `wsgi.input` is as `__init__(handler, 0)` left it, as
/// far as its public attributes tell: its reads change none of them (nor its
/// private ones), so only an assignment from outside could have.
fn untouched_bodiless(input: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = input.py();
    // Small ints and False are singletons: `is` compares the values.
    let zero = 0i32.into_pyobject(py)?;
    Ok(input.getattr(intern!(py, "position"))?.is(&zero)
        && input.getattr(intern!(py, "content_length"))?.is(&zero)
        && input
            .getattr(intern!(py, "chunked_input"))?
            .is(PyBool::new(py, false).as_any()))
}

impl Connection {
    #[inline(never)]
    fn new(
        py: Python<'_>,
        handler: &Bound<'_, PyAny>,
        clear: bool,
        input_class: &Bound<'_, PyAny>,
        park_after: Option<f64>,
    ) -> PyResult<Box<Connection>> {
        let sock = handler.getattr(intern!(py, "socket"))?;
        // The socket's read watcher and hub: the wait for a request is the
        // socket's `_recv_within`, called here without its Python frame.
        let mut watcher = sock.getattr(intern!(py, "_read_event"))?;
        if watcher.is_none() {
            watcher = sock.call_method1(intern!(py, "_watcher"), (crate::poller::READ,))?;
        }
        let timed_out = PyTuple::new(
            py,
            [
                py.import(intern!(py, "socket"))?
                    .getattr(intern!(py, "timeout"))?,
                intern!(py, "timed out").clone().into_any(),
            ],
        )?;
        let start_response = Py::new(
            py,
            StartResponse {
                handler: handler.clone().unbind(),
                request: Guarded::new(None),
                head: Guarded::new(None),
                adopted: BoolCell::new(false),
                write: Guarded::new(None),
                sent: Guarded::new(None),
            },
        )?;
        Ok(Box::new(Connection {
            handler: handler.clone().unbind(),
            inputs: Inputs {
                class: input_class.clone().unbind(),
                init: input_class.getattr(intern!(py, "__init__"))?.unbind(),
                spare: None,
            },
            server: handler.getattr(intern!(py, "server"))?.unbind(),
            parser: handler
                .getattr(intern!(py, "_parser"))?
                .cast_into::<RequestParser>()?
                .unbind(),
            watcher: watcher.cast_into::<IoWatcher>()?.unbind(),
            hub: sock.getattr(intern!(py, "hub"))?.unbind(),
            timed_out: timed_out.unbind(),
            start_response,
            fd: sock.call_method0(intern!(py, "fileno"))?.extract()?,
            recv_size: handler.getattr(intern!(py, "_recv_size"))?.extract()?,
            first: handler.getattr(intern!(py, "_first"))?.is_truthy()?,
            clear,
            park_after,
            served: 0,
            data: handler.getattr(intern!(py, "_rbuf"))?.cast_into()?.unbind(),
            pos: handler.getattr(intern!(py, "_rpos"))?.extract()?,
            sock: sock.unbind(),
        }))
    }

    /// Before a wait: what the handler kept of its last request, and the
    /// timeout of this wait.
    #[inline(never)]
    fn before_wait(&mut self, py: Python<'_>) -> PyResult<Option<f64>> {
        let handler = self.handler.bind(py);
        if self.clear {
            // What the handler kept of its last request (its environ, input,
            // result, headers) is done with: an idle connection holds none
            // of it while it waits.
            let none = py.None();
            for name in [
                intern!(py, "wsgi_input"),
                intern!(py, "environ"),
                intern!(py, "_env"),
                intern!(py, "result"),
                intern!(py, "_headers_msg"),
            ] {
                handler.setattr(name, &none)?;
            }
            handler.setattr(intern!(py, "_header_list"), PyTuple::empty(py))?;
            self.clear = false;
        }
        // The first request of a connection gets header_timeout, later ones
        // the idle keep-alive timeout (as _next_request_head).
        let server = self.server.bind(py);
        let timeout = if self.first {
            self.first = false;
            handler.setattr(intern!(py, "_first"), false)?;
            server.getattr(intern!(py, "header_timeout"))?
        } else {
            server.getattr(intern!(py, "keepalive_timeout"))?
        };
        timeout.extract()
    }

    /// The next request's bytes (at `data[pos..]`), waited for if none are
    /// buffered; Done(None) at the end of the connection.
    fn receive(&mut self, py: Python<'_>) -> PyResult<Next> {
        self.served = self.served.wrapping_add(1);
        if self.served % FAIRNESS_EVERY == 0 {
            py.import(intern!(py, "greenwheel._hub"))?
                .getattr(intern!(py, "sleep"))?
                .call1((0,))?;
        }
        if self.pos < self.data.bind(py).as_bytes().len() {
            return Ok(Next::Again);
        }
        let limit = self.before_wait(py)?;
        // Parking applies only when it comes before the idle timeout.
        let park_after = self
            .park_after
            .filter(|after| limit.map_or(true, |limit| *after < limit));
        let watcher = self.watcher.bind(py);
        let got = IoWatcher::recv_within(
            watcher,
            self.hub.bind(py),
            self.recv_size,
            park_after.or(limit),
            self.timed_out.bind(py),
        );
        match got {
            Ok(data) if !data.bind(py).as_bytes().is_empty() => {
                self.data = data;
                self.pos = 0;
                Ok(Next::Again)
            }
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) && park_after.is_some() => {
                let left = limit.zip(park_after).map(|(limit, after)| limit - after);
                self.park(py, left)
            }
            // The end, an idle timeout, a reset...: just close.
            Ok(_) => done(py, None),
            Err(e) if e.is_instance_of::<PyOSError>(py) => done(py, None),
            Err(e) => Err(e),
        }
    }

    /// Parks the idle connection: everything received was served, and the
    /// handler watches the socket from the hub (`_park`) once this returns.
    #[inline(never)]
    fn park(&mut self, py: Python<'_>, left: Option<f64>) -> PyResult<Next> {
        let handler = self.handler.bind(py);
        handler.setattr(intern!(py, "_rbuf"), PyBytes::new(py, b""))?;
        handler.setattr(intern!(py, "_rpos"), 0)?;
        let parked = handler.call_method1(intern!(py, "_park"), (left,))?;
        Ok(Next::Done(parked.unbind()))
    }

    /// Serves the request at `data[pos..]`, or hands it over.
    #[inline(never)]
    fn serve_one(&mut self, py: Python<'_>) -> PyResult<Next> {
        let handler = self.handler.bind(py);
        if self.pos > 0 {
            let rest = PyBytes::new(py, &self.data.bind(py).as_bytes()[self.pos..]);
            self.data = rest.unbind();
            self.pos = 0;
        }
        let data = self.data.bind(py).clone();
        let hand_back = || -> PyResult<Next> {
            handler.setattr(intern!(py, "_rbuf"), &data)?;
            handler.setattr(intern!(py, "_rpos"), 0)?;
            done(py, Some(true))
        };
        let parsed = match self.parser.get().parse_head(py, data.as_any()) {
            Ok(Some(parsed)) => parsed,
            // Incomplete or refused: the handler reads the rest, or answers.
            _ => return hand_back(),
        };
        if !usual_request(py, &parsed) {
            return hand_back();
        }
        let head_length: usize = parsed.head_length.extract(py)?;
        let env = parsed.environ.clone_ref(py).into_bound(py);
        let input = self.inputs.next(handler)?;
        env.set_item(intern!(py, "wsgi.input"), &input)?;
        let app = self.server.bind(py).getattr(intern!(py, "application"))?;
        let start_response = self.start_response.bind(py);
        let sr = start_response.get();
        sr.adopted.set(false);
        let old = sr.request.replace(Some(Request {
            parsed,
            data: data.clone().unbind(),
            input: input.unbind(),
            app: app.clone().unbind(),
        }));
        drop(old);
        let result = match app.call1((&env, start_response)) {
            Ok(result) => result,
            Err(err) => {
                sr.adopt(py)?;
                let step = handler.getattr(intern!(py, "_reraise"))?;
                handler.call_method1(intern!(py, "_respond"), (step, err.into_value(py)))?;
                return done(py, Some(false));
            }
        };
        if !result.is_exact_instance_of::<PyList>()
            && !result.is_exact_instance_of::<PyTuple>()
            && !sr.adopted.get()
            && sr.head.borrow().is_some()
            && self.not_head(py)
        {
            return self.serve_iterable(py, &result, head_length);
        }
        let recorded = if sr.adopted.get() {
            None
        } else {
            sr.head.borrow().as_ref().map(|(h, _)| h.clone_ref(py))
        };
        let request = sr.request.replace(None);
        let response = match (recorded, &request) {
            (Some(head), Some(request)) => {
                usual_response(py, &request.parsed, head.get(), &result)?
            }
            _ => None,
        };
        let Some((bytes, close)) = response else {
            let old = sr.request.replace(request);
            drop(old);
            sr.adopt(py)?;
            let step = handler.getattr(intern!(py, "_finish_application"))?;
            handler.call_method1(intern!(py, "_respond"), (step, result))?;
            return done(py, Some(false));
        };
        let head = sr.head.replace(None);
        drop((request, head));
        self.pos = head_length;
        if !self.send(py, &bytes)? {
            return done(py, None);
        }
        if close {
            return done(py, None);
        }
        Ok(Next::Again)
    }

    /// Sends a response's `bytes`, once the rest of the kernel poll that
    /// woke this connection was dispatched (`_yield_to_poll`); false if the
    /// connection failed (an `OSError`).
    #[inline]
    fn send(&self, py: Python<'_>, bytes: &Bound<'_, PyBytes>) -> PyResult<bool> {
        _yield_to_poll(py)?;
        let total = bytes.as_bytes().len();
        let sent = match send_nowait(py, self.fd, bytes.as_any(), 0) {
            Ok(n) => n.unwrap_or(0),
            Err(e) if e.is_instance_of::<PyOSError>(py) => return Ok(false),
            Err(e) => return Err(e),
        };
        if sent < total {
            // The kernel's buffer is full: the socket's sendall waits.
            let rest = PyBytes::new(py, &bytes.as_bytes()[sent..]);
            match self
                .sock
                .bind(py)
                .call_method1(intern!(py, "sendall"), (rest,))
            {
                Ok(_) => {}
                Err(e) if e.is_instance_of::<PyOSError>(py) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether the running request's method is not HEAD.
    fn not_head(&self, py: Python<'_>) -> bool {
        let sr = self.start_response.bind(py).get();
        let request = sr.request.borrow();
        request
            .as_ref()
            .is_some_and(|r| r.parsed.method.bind(py).to_str().ok() != Some("HEAD"))
    }

    /// Serves a result that is not a list or tuple (Werkzeug's, so Flask's;
    /// a generator...), for a request that is not HEAD and whose
    /// application called `start_response`: the Python path's
    /// `process_result` loop (`for data in result: write(data)`), step for
    /// step, while each step is the usual one.
    ///
    /// Usual: the first non-empty item is exact `bytes` of exactly the
    /// Content-Length the application gave (at most [`WHOLE_BODY_MAX`]);
    /// its head and it go out in one write, as `write` sends them; then
    /// every further item is an empty `bytes` until the end; then `close()`.
    /// An empty result with `Content-Length: 0` is usual too (the head
    /// alone, as `write(b"")` sends it).
    ///
    /// Anything else is handed over where it is seen ([`Self::resume`]):
    /// the handler gets the request (with its head sent, if it was), and
    /// serves the item in hand, the error got, or the rest of the iterator,
    /// as if it had iterated the result itself from the start. `close()`
    /// is then the handler's, so it is called once whatever happens.
    ///
    /// Why: Flask's result is Werkzeug's `ClosingIterator`; handed over,
    /// a Flask request took the Python path's adopt, `_respond`,
    /// `process_result` and `write` (callgrind, `benches/pywsgi_callgrind.py
    /// --app flask`).
    #[inline(never)]
    fn serve_iterable(
        &mut self,
        py: Python<'_>,
        result: &Bound<'_, PyAny>,
        head_length: usize,
    ) -> PyResult<Next> {
        let sr = self.start_response.bind(py).get();
        let mut iter = match result.try_iter() {
            Ok(iter) => iter,
            Err(e) => return self.resume(py, Some(result), None, None, Some(e)),
        };
        let mut close = false;
        let mut sent = false;
        loop {
            let item = match iter.next() {
                None => None,
                Some(Ok(item)) => Some(item),
                Some(Err(e)) => return self.resume(py, Some(result), None, None, Some(e)),
            };
            if sr.adopted.get() {
                // The application called write(), or start_response with
                // exc_info: the handler serves the rest.
                let rest = item.is_some().then_some(&iter);
                return self.resume(py, Some(result), item, rest, None);
            }
            let Some(item) = item else { break };
            let body = match item.cast_exact::<PyBytes>() {
                // Skipped, as the Python path skips a false item.
                Ok(b) if b.as_bytes().is_empty() => continue,
                Ok(b) if !sent => b.clone(),
                // A second non-empty item, or not bytes.
                _ => return self.resume(py, Some(result), Some(item), Some(&iter), None),
            };
            match self.whole_response(py, body.as_bytes())? {
                Some((bytes, closes)) => {
                    sent = true;
                    close = closes;
                    sr.sent.replace(Some(bytes.as_bytes().len()));
                    self.pos = head_length;
                    if !self.send_closing(py, &bytes, result)? {
                        return self.close_failed(py, result);
                    }
                }
                None => return self.resume(py, Some(result), Some(item), Some(&iter), None),
            }
        }
        if !sent {
            // Nothing but empty items: usual only if the head promised no body.
            match self.whole_response(py, b"")? {
                Some((bytes, closes)) => {
                    close = closes;
                    sr.sent.replace(Some(bytes.as_bytes().len()));
                    self.pos = head_length;
                    if !self.send_closing(py, &bytes, result)? {
                        return self.close_failed(py, result);
                    }
                }
                None => return self.resume(py, Some(result), None, None, None),
            }
        }
        // The request is still the running one while close() runs, as in
        // the Python path's `_finish_application`.
        if let Err(e) = close_result(result) {
            return self.resume(py, None, None, None, Some(e));
        }
        if sr.adopted.get() {
            return self.resume(py, None, None, None, None);
        }
        let request = sr.request.replace(None);
        let head = sr.head.replace(None);
        let sent = sr.sent.replace(None);
        drop((request, head, sent));
        if close {
            return done(py, None);
        }
        Ok(Next::Again)
    }

    /// The response bytes for `body` under the running request's last
    /// recorded head, if `body` is all of the Content-Length it gave (and
    /// no more than [`WHOLE_BODY_MAX`]); with whether the connection
    /// closes after it.
    fn whole_response<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
    ) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        let sr = self.start_response.bind(py).get();
        let head = sr.head.borrow().as_ref().map(|(h, _)| h.clone_ref(py));
        let Some(head) = head else {
            return Ok(None);
        };
        let declared = head.get().content_length_value.bind(py);
        if body.len() > WHOLE_BODY_MAX
            || declared.is_none()
            || declared.extract::<u64>().ok() != Some(body.len() as u64)
        {
            return Ok(None);
        }
        // Taken out and put back: no borrow is held while the bytes are made.
        let Some(request) = sr.request.replace(None) else {
            return Ok(None);
        };
        let made = response_bytes(py, &request.parsed, head.get(), body);
        let old = sr.request.replace(Some(request));
        drop(old);
        made.map(Some)
    }

    /// [`Self::send`] for a result that is still to be closed: closed here
    /// if the send raised (a kill while it waited), as the Python path's
    /// `finally` closes it; a `close()` that raises too raises in its place,
    /// with the first exception as its context, as that `finally` would.
    fn send_closing(
        &self,
        py: Python<'_>,
        bytes: &Bound<'_, PyBytes>,
        result: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let err = match self.send(py, bytes) {
            Ok(sent) => return Ok(sent),
            Err(err) => err,
        };
        match close_result(result) {
            Ok(()) => Err(err),
            Err(closing) => {
                closing
                    .value(py)
                    .setattr(intern!(py, "__context__"), err.into_value(py))?;
                Err(closing)
            }
        }
    }

    /// The send failed (the client went away): as the Python path, close
    /// the result, and the connection, without reporting an error.
    fn close_failed(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<Next> {
        let sr = self.start_response.bind(py).get();
        let request = sr.request.replace(None);
        let head = sr.head.replace(None);
        let sent = sr.sent.replace(None);
        drop((request, head, sent));
        match close_result(result) {
            Err(e) if !e.is_instance_of::<pyo3::exceptions::PyException>(py) => Err(e),
            _ => done(py, None),
        }
    }

    /// Hands the running request over to the handler part way through
    /// [`Self::serve_iterable`]: the handler serves, with its own
    /// `process_result`, a `_Resumed` of `item` (taken, not sent), then
    /// `error` or the rest of `rest`, and closes `result`.
    fn resume(
        &self,
        py: Python<'_>,
        result: Option<&Bound<'_, PyAny>>,
        item: Option<Bound<'_, PyAny>>,
        rest: Option<&Bound<'_, PyIterator>>,
        error: Option<PyErr>,
    ) -> PyResult<Next> {
        let sr = self.start_response.bind(py).get();
        sr.adopt(py)?;
        let resumed = py
            .import(intern!(py, "greenwheel._pywsgi_handler"))?
            .getattr(intern!(py, "_Resumed"))?
            .call1((
                result.map_or_else(|| py.None(), |r| r.clone().unbind()),
                PyList::new(py, item)?,
                rest.map_or_else(|| py.None(), |r| r.clone().into_any().unbind()),
                error.map_or_else(|| py.None(), |e| e.into_value(py).into_any()),
            ))?;
        let handler = self.handler.bind(py);
        let step = handler.getattr(intern!(py, "_finish_application"))?;
        handler.call_method1(intern!(py, "_respond"), (step, resumed))?;
        done(py, Some(false))
    }
}

/// `getattr(result, "close", None)`, called if there (PEP 3333).
fn close_result(result: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = result.py();
    if let Some(close) = result.getattr_opt(intern!(py, "close"))? {
        close.call0()?;
    }
    Ok(())
}

/// serve_requests(handler, clear, input_class, park_after=None)
/// --
///
/// Serve the usual requests of `handler`'s connection (see the module
/// docs). `clear`: the handler served the last request, whose state it
/// drops before waiting for the next. `input_class` makes each request's
/// `wsgi.input` (`Input(handler, 0)`). `park_after`: seconds of waiting for
/// a request after which the connection parks (None: never). Returns None to
/// close the connection, True for a request in `_rbuf` that the handler
/// serves, False after a request the handler finished, or what
/// `handler._park(left)` returned when the connection parked.
#[pyfunction]
#[pyo3(signature = (handler, clear, input_class, park_after = None))]
pub(crate) fn serve_requests(
    py: Python<'_>,
    handler: &Bound<'_, PyAny>,
    clear: bool,
    input_class: &Bound<'_, PyAny>,
    park_after: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let mut conn = Connection::new(py, handler, clear, input_class, park_after)?;
    let outcome = loop {
        match conn.receive(py) {
            Ok(Next::Again) => {}
            Ok(Next::Done(value)) => break Ok(value),
            Err(err) => break Err(err),
        }
        match conn.serve_one(py) {
            Ok(Next::Again) => {}
            Ok(Next::Done(value)) => break Ok(value),
            Err(err) => break Err(err),
        }
    };
    // The start_response and its write refer to each other: let go of the
    // write now, so that the handler (which an application holding on to
    // start_response keeps) is freed by reference counting, not left for
    // the cyclic collector.
    let start_response = conn.start_response.bind(py).get();
    let write = start_response.write.replace(None);
    drop(write);
    outcome
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(serve_requests, m)?)?;
    m.add_class::<StartResponse>()?;
    m.add_class::<Write>()?;
    Ok(())
}
