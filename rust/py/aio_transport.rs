//! The hot paths of `greenwheel.asyncio`'s socket transport in Rust: reading
//! into `Protocol.data_received` and `write()` when it can send at once.
//!
//! Why: a round trip of `tcp_echo_protocol` cost 21,800 instructions on
//! greenwheel's loop against 8,300 on uvloop (callgrind, both loops in one
//! run), and four Python frames of each round trip were asyncio's transport:
//! `_read_ready` and `_read_ready__data_received` per read, `write` per
//! write, with `socket.recv` / `socket.send` parsing their arguments.
//!
//! Ground rules:
//! - asyncio's `_SelectorSocketTransport` stays the specification and does
//!   everything else. [`TransportIO`]'s `read_ready` is the transport's
//!   `_read_ready` and does what `_read_ready__data_received` does (the
//!   same checks, the same calls, the same error messages) while the
//!   protocol is not a `BufferedProtocol`; its `write` is the transport's
//!   `write` and sends a non-empty `bytes` itself only when asyncio's
//!   `write` would send it at once (nothing buffered, no EOF written, no
//!   sendfile, connection not lost). Everything else goes to asyncio's own
//!   methods.
//! - It holds its transport, and the transport holds it (its bound
//!   `read_ready` is an instance attribute shadowing asyncio's
//!   `_read_ready`; it sits in the `_gw_writer` slot the class's native
//!   `write` reads, see [`install_transport_write`]): the Python side
//!   (`_asyncio_loop._SocketTransport`) lets go of it when the connection
//!   is lost, and it takes part in the cyclic GC meanwhile.
//! - One object for both paths, not a reader and a writer: a keep-alive
//!   request reads and then writes, and with many connections each object
//!   it touches is a cache line missed (callgrind --cache-sim, HTTP with
//!   100 connections).
//! - Those two methods are plain CPython methods (`raw_fn`): called as a
//!   `__call__` they cost a tuple, PyO3's argument parsing and its
//!   trampoline each time, about 300 instructions a call (callgrind).
//! - No borrow is held across a call into Python (there is no interior
//!   state but a `BoolCell`).
//! - The transport state they read (`_conn_lost`, `_eof`, `_empty_waiter`,
//!   `_buffer`, `_protocol`) is stored natively, in a [`TransportAttrs`]
//!   the transport's properties of those names read and write: a generic
//!   `getattr` cost about 220 instructions a name and a lookup in the
//!   instance `__dict__` about 160, and an echo round trip reads twelve
//!   (callgrind: 9,000 instructions a round trip with the dict, 7,400
//!   without).

use pyo3::exceptions::{
    PyAttributeError, PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError,
};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};
use pyo3::Borrowed;

use super::loop_::Loop;
use super::raw_fn::{guard, install_method, meth_o, ExactType, MethodDef};
use super::sockio::{recv_once, send_nowait};
use super::sync::{BoolCell, Guarded};
use crate::poller::READ;
use std::sync::atomic::{AtomicU8, Ordering};

/// Whether an error is one asyncio lets through (`SystemExit`,
/// `KeyboardInterrupt`) rather than handing it to `_fatal_error`.
pub(crate) fn passes_through(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// `transport._fatal_error(exc, message)`, unless the error passes through.
fn fatal(transport: &Bound<'_, PyAny>, err: PyErr, message: &'static str) -> PyResult<()> {
    let py = transport.py();
    if passes_through(py, &err) {
        return Err(err);
    }
    transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
    Ok(())
}

/// The transport attributes the native paths read, stored natively.
///
/// Why: read from the instance `__dict__`, each cost about 160
/// instructions (a dict lookup through `PyDict_GetItemWithError`), and an
/// echo round trip reads twelve: a fifth of its cost (callgrind). Here a
/// read is a lock-free borrow of a field.
///
/// `_SocketTransport` makes `_conn_lost`, `_eof`, `_empty_waiter`,
/// `_buffer` and `_protocol` properties that read and write these fields,
/// so asyncio's own code (which assigns them: `self._conn_lost += 1`, ...)
/// and the native paths see one copy. A field not assigned yet raises
/// `AttributeError`, as the missing instance attribute did.
///
/// Laid out (`repr(C)`) with what a request reads first: the five `known`
/// bytes, then `_protocol` (each read) and `_buffer` (each write), in the
/// object's first 56 bytes; the three other values, of which a request
/// reads only the `known` bytes, after them. With its GC header the object
/// is a 120-byte allocation: in pymalloc's 128-byte blocks (after the
/// 48-byte pool header) the object starts on a cache line, so a request
/// touches one line of it. As five 24-byte (value, known) pairs it touched
/// all three, each a miss with many connections (callgrind --cache-sim,
/// keep-alive HTTP).
#[pyclass(frozen, module = "greenwheel._core")]
#[repr(C)]
pub(crate) struct TransportAttrs {
    /// Per attribute (by index: [`PROTOCOL`], ...): [`UNKNOWN`],
    /// [`FALSY`], [`TRUTHY`] or [`NONE`], set with the value. asyncio
    /// keeps bools, ints and None in `_conn_lost`, `_eof` and
    /// `_empty_waiter`, whose truth cannot change: read here, a write's
    /// three tests cost a load each instead of a borrow and a truth test
    /// (about 45 instructions a test, callgrind).
    known: [AtomicU8; ATTRS],
    /// The values, by the same index.
    values: [Guarded<Option<Py<PyAny>>>; ATTRS],
}

/// How many attributes `TransportAttrs` holds, and their indexes.
const ATTRS: usize = 5;
const PROTOCOL: usize = 0;
const BUFFER: usize = 1;
const CONN_LOST: usize = 2;
const EOF: usize = 3;
const EMPTY_WAITER: usize = 4;

impl TransportAttrs {
    /// The attribute at `index`.
    fn at(&self, index: usize) -> Attr<'_> {
        Attr {
            value: &self.values[index],
            known: &self.known[index],
        }
    }
}

/// One attribute: its value, and what is known of it without looking.
struct Attr<'a> {
    value: &'a Guarded<Option<Py<PyAny>>>,
    /// See `TransportAttrs::known`.
    known: &'a AtomicU8,
}

/// Not assigned, or a value whose truth is tested when read (its
/// `__bool__` may run Python code, and may change its answer).
const UNKNOWN: u8 = 0;
/// False, or an int equal to 0.
const FALSY: u8 = 1;
/// True, or a non-zero int.
const TRUTHY: u8 = 2;
/// None.
const NONE: u8 = 3;

impl Attr<'_> {
    /// What `value` is known to be (see the field `known`).
    fn classify(value: &Bound<'_, PyAny>) -> u8 {
        let p = value.as_ptr();
        // SAFETY: `p` is live (borrowed); the singletons are compared by
        // address; `PyObject_IsTrue` cannot fail or run Python code for an
        // exact int.
        unsafe {
            if p == ffi::Py_None() {
                NONE
            } else if p == ffi::Py_True() {
                TRUTHY
            } else if p == ffi::Py_False() {
                FALSY
            } else if ffi::PyLong_CheckExact(p) != 0 {
                if ffi::PyObject_IsTrue(p) > 0 {
                    TRUTHY
                } else {
                    FALSY
                }
            } else {
                UNKNOWN
            }
        }
    }

    /// Assign. The old value is released after the borrow ends (its
    /// release may run Python code). (asyncio never deletes these.)
    fn set(&self, value: &Bound<'_, PyAny>) {
        let old = self.value.replace(Some(value.clone().unbind()));
        self.known.store(Self::classify(value), Ordering::Relaxed);
        drop(old);
    }

    fn clear(&self) {
        if let Ok(mut v) = self.value.try_borrow_mut() {
            let taken = v.take();
            drop(v);
            self.known.store(UNKNOWN, Ordering::Relaxed);
            drop(taken);
        }
    }
}

/// A field's value (a new reference: the borrow ends before the caller
/// can run Python code with it), or asyncio's `AttributeError`.
fn read_attr<'py>(py: Python<'py>, field: Attr<'_>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let value = field.value.borrow().as_ref().map(|v| v.clone_ref(py));
    match value {
        Some(v) => Ok(v.into_bound(py)),
        None => Err(missing(name)),
    }
}

/// The truth of a field's value (`bool(transport.<name>)`): known for
/// the values asyncio keeps there (see `Attr::known`); anything else is
/// tested after the borrow ends (its `__bool__` may run Python code).
fn attr_truthy(py: Python<'_>, field: Attr<'_>, name: &str) -> PyResult<bool> {
    match field.known.load(Ordering::Relaxed) {
        FALSY | NONE => return Ok(false),
        TRUTHY => return Ok(true),
        _ => {}
    }
    read_attr(py, field, name)?.is_truthy()
}

/// Whether a field holds None (`transport.<name> is None`).
fn attr_is_none(field: Attr<'_>, name: &str) -> PyResult<bool> {
    match field.known.load(Ordering::Relaxed) {
        NONE => return Ok(true),
        FALSY | TRUTHY => return Ok(false),
        _ => {}
    }
    match field.value.borrow().as_ref() {
        // SAFETY: comparing addresses only.
        Some(v) => Ok(v.as_ptr() == unsafe { ffi::Py_None() }),
        None => Err(missing(name)),
    }
}

/// `not transport.<name>` (asyncio's test of its write buffer), under the
/// borrow for the `bytearray` asyncio keeps there (3.11; empty when its
/// size field is 0), else after it (a `__bool__` or `__len__` may run
/// Python code).
fn attr_falsy(py: Python<'_>, field: Attr<'_>, name: &str) -> PyResult<bool> {
    let other = {
        let value = field.value.borrow();
        let Some(v) = value.as_ref() else {
            return Err(missing(name));
        };
        // SAFETY: `v` is a live object; an exact bytearray's `ob_size` is
        // its length.
        unsafe {
            if ffi::PyByteArray_CheckExact(v.as_ptr()) != 0 {
                return Ok(ffi::Py_SIZE(v.as_ptr()) == 0);
            }
        }
        v.clone_ref(py)
    };
    Ok(!other.bind(py).is_truthy()?)
}

/// The length of a `bytes` object, read from its header.
fn bytes_len(data: &Bound<'_, PyBytes>) -> usize {
    // SAFETY: a live bytes object's `ob_size` is its length (never negative).
    unsafe { ffi::Py_SIZE(data.as_ptr()) as usize }
}

#[cold]
fn missing(name: &str) -> PyErr {
    PyAttributeError::new_err(format!(
        "'_SocketTransport' object has no attribute '{name}'"
    ))
}

macro_rules! attr_accessors {
    ($($field:ident, $get:ident, $set:ident, $name:literal;)*) => {
        #[pymethods]
        impl TransportAttrs {
            #[new]
            fn new() -> Self {
                TransportAttrs {
                    known: std::array::from_fn(|_| AtomicU8::new(UNKNOWN)),
                    values: std::array::from_fn(|_| Guarded::new(None)),
                }
            }

            $(
                #[getter($name)]
                fn $get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    read_attr(py, self.at($field), $name)
                }

                #[setter($name)]
                fn $set(&self, value: Bound<'_, PyAny>) {
                    self.at($field).set(&value)
                }
            )*

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                for value in &self.values {
                    if let Ok(v) = value.try_borrow() {
                        if let Some(v) = v.as_ref() {
                            visit.call(v)?;
                        }
                    }
                }
                Ok(())
            }

            fn __clear__(&self) {
                for index in 0..self.values.len() {
                    self.at(index).clear();
                }
            }
        }
    };
}

attr_accessors! {
    CONN_LOST, get_conn_lost, set_conn_lost, "_conn_lost";
    EOF, get_eof, set_eof, "_eof";
    EMPTY_WAITER, get_empty_waiter, set_empty_waiter, "_empty_waiter";
    BUFFER, get_buffer, set_buffer, "_buffer";
    PROTOCOL, get_protocol, set_protocol, "_protocol";
}

/// What the native paths hold of their transport.
struct State {
    transport: Py<PyAny>,
    attrs: Py<TransportAttrs>,
}

impl State {
    fn attrs(&self) -> &TransportAttrs {
        self.attrs.get()
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.transport)?;
        visit.call(&self.attrs)
    }
}

/// A socket transport's `_read_ready` and `write`.
#[pyclass(frozen, module = "greenwheel._core")]
pub(crate) struct TransportIO {
    state: State,
    /// The transport's socket (`_sock_fd`, fixed for its life).
    fd: i32,
    /// Bytes asked for per read (`max_size`).
    max_size: isize,
    /// The protocol is not a `BufferedProtocol` (set by `set_protocol`):
    /// reads go to `data_received`, here. Otherwise the transport's
    /// `_read_ready_cb` reads.
    data_path: BoolCell,
    /// The greenwheel loop watching the fd, told when a read emptied it
    /// (`Loop::io_drained`: no `epoll_ctl` before the next wait). None for
    /// sockets whose short reads do not mean an empty queue.
    gw_loop: Option<Py<Loop>>,
    /// asyncio's `_SelectorSocketTransport.write`, for every write not sent
    /// here at once.
    base_write: Py<PyAny>,
}

#[pymethods]
impl TransportIO {
    #[new]
    #[pyo3(signature = (transport, attrs, fd, max_size, base_write, gw_loop = None))]
    fn new(
        transport: Py<PyAny>,
        attrs: Py<TransportAttrs>,
        fd: i32,
        max_size: isize,
        base_write: Py<PyAny>,
        gw_loop: Option<Py<Loop>>,
    ) -> PyResult<Self> {
        Ok(TransportIO {
            state: State { transport, attrs },
            fd,
            max_size,
            data_path: BoolCell::new(false),
            gw_loop,
            base_write,
        })
    }

    /// Whether reads go to `data_received` (not a `BufferedProtocol`).
    #[getter]
    fn get_data_path(&self) -> bool {
        self.data_path.get()
    }

    #[setter]
    fn set_data_path(&self, value: bool) {
        self.data_path.set(value);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.state.traverse(&visit)?;
        if let Some(lp) = &self.gw_loop {
            visit.call(lp)?;
        }
        visit.call(&self.base_write)
    }
}

impl TransportIO {
    /// `transport._read_ready()`.
    pub(crate) fn read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.state.transport.bind(py);
        if !self.data_path.get() {
            transport.getattr(intern!(py, "_read_ready_cb"))?.call0()?;
            return Ok(());
        }
        let attrs = self.state.attrs();
        if attr_truthy(py, attrs.at(CONN_LOST), "_conn_lost")? {
            return Ok(());
        }
        let data = match recv_once(py, self.fd, self.max_size, 0) {
            Ok(Some((data, short))) => {
                // A short read of a stream socket emptied its queue. (EOF
                // is not short: asyncio stops reading there.)
                if short {
                    self.drained(py);
                }
                data
            }
            // EAGAIN (recv_once retries EINTR itself).
            Ok(None) => {
                self.drained(py);
                return Ok(());
            }
            Err(err) => return fatal(transport, err, "Fatal read error on socket transport"),
        };
        if bytes_len(data.bind(py)) == 0 {
            transport.call_method0(intern!(py, "_read_ready__on_eof"))?;
            return Ok(());
        }
        let protocol = read_attr(py, attrs.at(PROTOCOL), "_protocol")?;
        match protocol.call_method1(intern!(py, "data_received"), (data,)) {
            Ok(_) => Ok(()),
            Err(err) => fatal(
                transport,
                err,
                "Fatal error: protocol.data_received() call failed.",
            ),
        }
    }

    /// The socket's receive queue is empty now (see the field `gw_loop`).
    fn drained(&self, py: Python<'_>) {
        if let Some(lp) = &self.gw_loop {
            lp.bind(py).get().io_drained(self.fd, READ);
        }
    }
}

impl TransportIO {
    /// `transport.write(data)`.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let transport = self.state.transport.bind(py);
        let whole = match data.cast_exact::<PyBytes>() {
            Ok(bytes) if bytes_len(bytes) != 0 && self.sends_at_once(py)? => bytes,
            _ => {
                self.base_write.bind(py).call1((transport, data))?;
                return Ok(());
            }
        };
        let total = bytes_len(whole);
        match send_nowait(py, self.fd, whole.as_any(), 0) {
            Ok(Some(n)) if n == total => Ok(()),
            // Sent in part or not at all: asyncio's write sends or buffers
            // the rest (and watches for writability).
            Ok(sent) => {
                let sent = sent.unwrap_or(0);
                let rest = if sent == 0 {
                    whole.clone()
                } else {
                    PyBytes::new(py, &whole.as_bytes()[sent..])
                };
                self.base_write.bind(py).call1((transport, rest))?;
                Ok(())
            }
            Err(err) => fatal(transport, err, "Fatal write error on socket transport"),
        }
    }

    /// Whether asyncio's `write` would try to send `data` at once: nothing
    /// buffered, no EOF written, no sendfile, the connection not lost.
    fn sends_at_once(&self, py: Python<'_>) -> PyResult<bool> {
        let a = self.state.attrs();
        Ok(!attr_truthy(py, a.at(EOF), "_eof")?
            && attr_is_none(a.at(EMPTY_WAITER), "_empty_waiter")?
            && !attr_truthy(py, a.at(CONN_LOST), "_conn_lost")?
            && attr_falsy(py, a.at(BUFFER), "_buffer")?)
    }
}

static READ_READY_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"read_ready".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: read_ready_raw,
    },
    ml_flags: ffi::METH_NOARGS,
    ml_doc: c"read_ready($self, /)\n--\n\nThe transport's `_read_ready`: read into \
`data_received` (or let `_read_ready_cb` read, for a BufferedProtocol)."
        .as_ptr(),
});

static WRITE_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"write".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: write_raw,
    },
    ml_flags: ffi::METH_O,
    ml_doc: c"write($self, data, /)\n--\n\nThe transport's `write`: send at once when \
asyncio's would, else hand `data` to asyncio's `write`."
        .as_ptr(),
});

/// `_SocketTransport.write`: a method of the transport class itself, so
/// that `transport.write(data)` is a specialised method call in Python
/// code. As an instance attribute shadowing the class's (a bound method of
/// the writer), each `transport.write` lookup took CPython's generic path
/// (`_PyObject_GetMethod`: the type's attribute, then the instance dict),
/// about 180 instructions, twice a round trip.
static TRANSPORT_WRITE_DEF: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"write".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: transport_write_raw,
    },
    ml_flags: ffi::METH_O,
    ml_doc: c"write($self, data, /)\n--\n\nasyncio's `write`: sent at once natively when \
asyncio's would send at once (the transport's `_gw_writer`), else asyncio's `write`."
        .as_ptr(),
});

/// Where `transport_write_raw` finds a transport's writer: the class's
/// `_gw_writer` slot, and asyncio's `write` for when it holds none.
struct WriterSlot {
    /// The slot's member descriptor (kept alive: `member` points into it).
    _descr: Py<PyAny>,
    /// Its `PyMemberDef`, as an address (`*mut` is not `Sync`).
    member: usize,
    /// `_SelectorSocketTransport.write`.
    base_write: Py<PyAny>,
}

static WRITER_SLOT: PyOnceLock<WriterSlot> = PyOnceLock::new();

/// `install_transport_write(cls, base_write)`: makes `cls.write` the native
/// write, which sends through the `TransportIO` in the instance's
/// `_gw_writer` slot (declared in `cls.__slots__`) and calls `base_write`
/// (asyncio's `write`) when the slot holds anything else. Once per process.
#[pyfunction]
pub(crate) fn install_transport_write(
    cls: &Bound<'_, PyType>,
    base_write: Py<PyAny>,
) -> PyResult<()> {
    let py = cls.py();
    let descr = cls
        .getattr(intern!(py, "__dict__"))?
        .get_item(intern!(py, "_gw_writer"))?;
    // SAFETY: reading the type of a live object.
    let is_member =
        unsafe { ffi::Py_TYPE(descr.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) };
    if !is_member {
        return Err(PyTypeError::new_err(
            "_gw_writer must be a slot of the class",
        ));
    }
    // SAFETY: a PyMemberDescr_Type object is a PyMemberDescrObject, whose
    // `d_member` is the class's `PyMemberDef` (pyo3-ffi types the field as
    // a `PyGetSetDef` pointer; CPython's is a `PyMemberDef` pointer), which
    // lives as long as the class, which the descriptor keeps alive.
    let member = unsafe { (*descr.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member } as usize;
    let mut fresh = false;
    WRITER_SLOT.get_or_init(py, || {
        fresh = true;
        WriterSlot {
            _descr: descr.clone().unbind(),
            member,
            base_write,
        }
    });
    if !fresh {
        return Err(PyRuntimeError::new_err(
            "the transport write is installed already",
        ));
    }
    install_method(cls, &TRANSPORT_WRITE_DEF)
}

unsafe extern "C" fn transport_write_raw(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_O methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: CPython passes a METH_O method its own arguments, borrowed
        // for the call.
        let (transport, data) =
            unsafe { (Borrowed::from_ptr(py, slf), Borrowed::from_ptr(py, arg)) };
        let Some(slot) = WRITER_SLOT.get(py) else {
            return Err(PyRuntimeError::new_err(
                "the transport write is not installed",
            ));
        };
        // SAFETY: the method descriptor only calls this with an instance of
        // the class whose slot `member` describes (or of a subclass, which
        // has the slot at the same offset); PyMember_GetOne returns a new
        // reference, or NULL with an AttributeError for an empty slot.
        let writer = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyMember_GetOne(
                    slf.cast::<std::ffi::c_char>(),
                    slot.member as *mut ffi::PyMemberDef,
                ),
            )
        };
        if let Ok(writer) = writer {
            // SAFETY: `writer` is live (owned here).
            if let Ok(this) = unsafe { IO_TYPE.cast(py, writer.as_ptr()) } {
                return this.get().write(py, &data);
            }
        }
        slot.base_write.bind(py).call1((transport, data))?;
        Ok(())
    })
}

/// The reader whose `read_ready` the bound method `callback` is, if it is
/// one (`transport._read_ready`, which asyncio registers with
/// `add_reader`): the loop's reader handle then calls it directly (see
/// `HandleCore::run`).
pub(crate) fn bound_read_ready(callback: &Bound<'_, PyAny>) -> Option<Py<TransportIO>> {
    let p = callback.as_ptr();
    // SAFETY: `p` is live (borrowed) and the GIL is held; an exact
    // `builtin_function_or_method` is a `PyCFunctionObject`, whose `m_ml`
    // is the method's definition and `m_self` the object it is bound to
    // (NULL for a module-less function).
    unsafe {
        if ffi::PyCFunction_CheckExact(p) == 0 {
            return None;
        }
        let func = p.cast::<ffi::PyCFunctionObject>();
        if !std::ptr::eq(
            (*func).m_ml.cast_const(),
            std::ptr::addr_of!(READ_READY_DEF.0),
        ) {
            return None;
        }
        let bound = (*func).m_self;
        if bound.is_null() {
            return None;
        }
        let reader = IO_TYPE.cast(callback.py(), bound).ok()?;
        Some(reader.to_owned().unbind())
    }
}

/// The class's type object, for the raw methods' `self` check (the class
/// is final).
static IO_TYPE: ExactType<TransportIO> = ExactType::new();

unsafe extern "C" fn read_ready_raw(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls METH_NOARGS methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    guard(py, || {
        // SAFETY: `slf` is borrowed for the call.
        let this = unsafe { IO_TYPE.cast(py, slf) }?;
        this.get().read_ready(py)
    })
}

unsafe extern "C" fn write_raw(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a METH_O method its own arguments.
    unsafe { meth_o(&IO_TYPE, slf, arg, |py, this, data| this.write(py, &data)) }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<TransportAttrs>()?;
    m.add_class::<TransportIO>()?;
    m.add_function(wrap_pyfunction!(install_transport_write, m)?)?;
    IO_TYPE.install(py, &[&READ_READY_DEF, &WRITE_DEF])
}
