//! Non-blocking `recv`/`send` for cooperative sockets without exceptions.
//!
//! A cooperative socket tries the system call first and waits on the loop
//! only when it would block. In pure Python that "would block" arrives as a
//! raised and caught `BlockingIOError` on every wait, which costs more than
//! the system call. These helpers return `None` for EAGAIN instead.
//!
//! Ground rules:
//! - Only for non-blocking fds: the GIL is kept across the call (it cannot
//!   block), as the whole point is a cheap fast path.
//! - `EINTR` is retried after running Python signal handlers, like CPython's
//!   socket module (PEP 475); every other error is `OSError(errno, ...)`.
//! - The receive buffer is a per-thread scratch vector, so a large
//!   `bufsize` costs one copy of the bytes actually received, not an
//!   allocation of `bufsize`.

use std::cell::RefCell;
use std::io;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::os_error;

/// `MSG_NOSIGNAL` where the platform has it (elsewhere CPython's ignored
/// SIGPIPE already turns a closed peer into EPIPE).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const NO_SIGPIPE: i32 = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const NO_SIGPIPE: i32 = 0;

/// Largest single read; bigger requests are capped (a short read is allowed).
const MAX_RECV: usize = 1 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn would_block(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN)) || err.kind() == io::ErrorKind::WouldBlock
}

/// recv_nowait(fd, bufsize, flags=0)
/// --
///
/// `recv()` on a non-blocking fd: the bytes read (`b""` at EOF), or None if
/// it would block.
#[pyfunction]
#[pyo3(signature = (fd, bufsize, flags = 0))]
pub(crate) fn recv_nowait(
    py: Python<'_>,
    fd: i32,
    bufsize: isize,
    flags: i32,
) -> PyResult<Option<Py<PyBytes>>> {
    Ok(recv_once(py, fd, bufsize, flags)?.map(|(bytes, _)| bytes))
}

/// `recv_nowait`, also telling whether the read was short: some bytes, but
/// fewer than asked for, which means the kernel's receive queue was emptied.
/// (EOF is not short: the fd stays readable without a new edge.)
pub(crate) fn recv_once(
    py: Python<'_>,
    fd: i32,
    bufsize: isize,
    flags: i32,
) -> PyResult<Option<(Py<PyBytes>, bool)>> {
    if bufsize < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    let want = (bufsize as usize).min(MAX_RECV);
    loop {
        let got = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            if buf.len() < want {
                buf.resize(want, 0);
            }
            // SAFETY: `buf` has at least `want` writable bytes; recv writes at
            // most `want` bytes into it and does not retain the pointer.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), want, flags) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                let n = n as usize;
                Ok((PyBytes::new(py, &buf[..n]).unbind(), n > 0 && n < want))
            }
        });
        match got {
            Ok(read) => return Ok(Some(read)),
            Err(e) if would_block(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => py.check_signals()?,
            Err(e) => return Err(os_error(e)),
        }
    }
}

/// send_nowait(fd, data, flags=0)
/// --
///
/// `send()` on a non-blocking fd: the number of bytes sent, or None if it
/// would block.
#[pyfunction]
#[pyo3(signature = (fd, data, flags = 0))]
pub(crate) fn send_nowait(
    py: Python<'_>,
    fd: i32,
    data: &Bound<'_, PyAny>,
    flags: i32,
) -> PyResult<Option<usize>> {
    // A closed peer is an EPIPE error here, never a SIGPIPE (CPython ignores
    // SIGPIPE at start-up; embedders may not).
    let flags = flags | NO_SIGPIPE;
    let send = |bytes: &[u8]| -> PyResult<Option<usize>> {
        loop {
            // SAFETY: `bytes` is a valid readable slice for the whole call;
            // send does not retain the pointer.
            let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            if would_block(&e) {
                return Ok(None);
            }
            if e.kind() == io::ErrorKind::Interrupted {
                py.check_signals()?;
                continue;
            }
            return Err(os_error(e));
        }
    };
    if let Ok(b) = data.cast::<PyBytes>() {
        return send(b.as_bytes());
    }
    let buf: PyBuffer<u8> = PyBuffer::get(data)?;
    let bytes = buf.to_vec(py)?;
    send(&bytes)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(recv_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(send_nowait, m)?)?;
    Ok(())
}
