//! Readiness poller: epoll on Linux, kqueue on macOS/BSD, through `mio`.
//!
//! Why mio and not `polling`: a loop pass here must cost one `epoll_wait`.
//! mio's `Poll::poll` is exactly that, while `polling` re-arms a timerfd and its
//! notifier around every wait (four more syscalls per pass, on the hottest
//! path of a server). mio's registrations are edge-triggered, so this module
//! rebuilds libev's level-triggered watcher semantics on top of them:
//!
//! Ground rules:
//! - Descriptors are owned by Python objects, never by the poller. The poller
//!   keys registrations by raw fd and never closes one.
//! - [`Poller::arm`] (re-)registers with `EPOLL_CTL_MOD`/`EV_ADD`, which makes the
//!   kernel re-evaluate readiness, so a watcher started on an fd that is
//!   already readable fires at once (level semantics at start). The loop calls
//!   `arm` again after dispatching an fd whose watchers stay active, which
//!   gives level semantics for persistent watchers as well.
//! - Stopping interest is lazy: the registration stays, and stray edges for an
//!   fd nobody waits on are dropped by the caller. [`Poller::forget`] removes
//!   it for real (call it before the fd is closed).
//! - A closed fd reused by a new file is handled: `ENOENT` on modify falls back
//!   to add, `EEXIST` on add falls back to modify.
//! - Files epoll cannot watch (regular files, `EPERM`) are "always ready", as
//!   libev treats them: they are reported on every pass and force a zero timeout.
//! - Errors and hang-ups report both READ and WRITE so every waiter wakes and
//!   finds the condition itself. They are also remembered per fd
//!   ([`Poller::hung_up`]) until the fd is forgotten or its number is
//!   registered afresh: a peer's FIN or RST comes with one edge only, so a
//!   caller that reads the data queued before it must not conclude the
//!   kernel's queue is empty and wait for another edge.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::unix::io::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// Event mask bit: readable (or hung up / in error).
pub const READ: u8 = 1;
/// Event mask bit: writable (or hung up / in error).
pub const WRITE: u8 = 2;
/// Every valid event bit.
pub const ALL: u8 = READ | WRITE;

/// The waker's token; fds are non-negative so they never collide with it.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// How many kernel events one `poll` call can return.
const EVENTS_CAPACITY: usize = 1024;

/// Hashes file descriptors for the maps keyed by fd (here and in the loop).
///
/// Every wait on a socket looks its fd up several times (the loop's watcher
/// table, the registration, the hang-up set), and std's SipHash costs more
/// than the rest of such a lookup. Fds are small integers the kernel hands
/// out, never chosen by a peer, so there is no flooding to resist: one
/// multiplication by an odd constant (Fibonacci hashing) spreads them. The
/// low bits of the product, which pick the bucket, are a bijection of the
/// fd's low bits (distinct fds in a small table never collide), and the high
/// bits, which the table keeps as a tag, depend on every bit of the fd.
#[derive(Clone, Copy, Default)]
pub struct FdHasher(u64);

/// 2^64 / golden ratio, odd.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_i32(&mut self, n: i32) {
        // Reinterpret the bits: a negative fd never reaches a map, and if it
        // did it would only hash like another number.
        self.0 = (self.0 ^ u64::from(n as u32)).wrapping_mul(FIBONACCI);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `i32` keys use this hasher; any other key still hashes
        // correctly, a byte at a time.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }
}

/// A map keyed by fd, hashed with [`FdHasher`].
pub type FdMap<V> = HashMap<RawFd, V, BuildHasherDefault<FdHasher>>;
/// A set of fds, hashed with [`FdHasher`].
pub type FdSet = HashSet<RawFd, BuildHasherDefault<FdHasher>>;

/// One ready descriptor reported by [`Poller::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub fd: RawFd,
    pub events: u8,
}

/// What [`Poller::poll`] observed besides fd readiness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// The waker was triggered (from any thread) since the last poll.
    pub woken: bool,
    /// The wait was cut short by a signal (`EINTR`).
    pub interrupted: bool,
}

/// See the module documentation.
pub struct Poller {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// fds known to the kernel, with the interest last registered.
    registered: FdMap<u8>,
    /// fds the kernel refused with `EPERM`, with the interest asked for.
    always_ready: FdMap<u8>,
    /// fds for which a hang-up or error was reported (sticky; see the module
    /// docs). A stale entry only makes [`Poller::hung_up`] over-cautious.
    hung_up: FdSet,
}

fn to_interest(mask: u8) -> Option<Interest> {
    match mask & ALL {
        READ => Some(Interest::READABLE),
        WRITE => Some(Interest::WRITABLE),
        ALL => Some(Interest::READABLE | Interest::WRITABLE),
        _ => None,
    }
}

fn invalid_fd() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl Poller {
    /// Creates an epoll/kqueue instance with its cross-thread waker.
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Poller {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            waker,
            registered: FdMap::default(),
            always_ready: FdMap::default(),
            hung_up: FdSet::default(),
        })
    }

    /// The waker; `wake()` on it is safe from any thread.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The epoll/kqueue descriptor.
    pub fn fileno(&self) -> RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// Number of descriptors currently registered with the kernel.
    pub fn registered_len(&self) -> usize {
        self.registered.len()
    }

    /// Registers (or re-registers) `fd` for `mask`, re-evaluating readiness.
    ///
    /// `mask` must be non-empty. A negative or closed fd gives `EBADF`.
    pub fn arm(&mut self, fd: RawFd, mask: u8) -> io::Result<()> {
        let interest =
            to_interest(mask).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if fd < 0 {
            return Err(invalid_fd());
        }
        if let Some(m) = self.always_ready.get_mut(&fd) {
            *m = mask;
            return Ok(());
        }
        let registry = self.poll.registry();
        let token = Token(fd as usize);
        let result = if self.registered.contains_key(&fd) {
            match registry.reregister(&mut SourceFd(&fd), token, interest) {
                // The fd was closed and its number reused: the kernel forgot it.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.hung_up.remove(&fd);
                    registry.register(&mut SourceFd(&fd), token, interest)
                }
                other => other,
            }
        } else {
            self.hung_up.remove(&fd);
            match registry.register(&mut SourceFd(&fd), token, interest) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    registry.reregister(&mut SourceFd(&fd), token, interest)
                }
                other => other,
            }
        };
        match result {
            Ok(()) => {
                self.registered.insert(fd, mask);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                // Regular files and the like: always ready, as in libev.
                self.registered.remove(&fd);
                self.always_ready.insert(fd, mask);
                Ok(())
            }
            Err(e) => {
                self.registered.remove(&fd);
                Err(e)
            }
        }
    }

    /// Whether the kernel registration of `fd` already includes `mask`.
    pub fn covers(&self, fd: RawFd, mask: u8) -> bool {
        self.registered.get(&fd).is_some_and(|m| m & mask == mask)
    }

    /// Whether a hang-up or error was reported for `fd` since it was
    /// registered: then a short read does not mean the receive queue is
    /// empty (an EOF or error may be left, and no edge will announce it).
    pub fn hung_up(&self, fd: RawFd) -> bool {
        self.hung_up.contains(&fd)
    }

    /// Stops reporting `fd` as "always ready" (no-op for kernel registrations,
    /// which are dropped lazily; see the module docs).
    pub fn disarm(&mut self, fd: RawFd) {
        self.always_ready.remove(&fd);
    }

    /// Removes every trace of `fd`; call before the fd is closed.
    /// Returns whether the poller knew it.
    pub fn forget(&mut self, fd: RawFd) -> bool {
        self.hung_up.remove(&fd);
        let known_always = self.always_ready.remove(&fd).is_some();
        match self.registered.remove(&fd) {
            Some(_) => {
                // An error here means the kernel already dropped it (closed fd).
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                true
            }
            None => known_always,
        }
    }

    /// Waits up to `timeout` (None = forever) and appends ready fds to `out`.
    ///
    /// `EINTR` is not an error: it returns with `interrupted` set so the
    /// caller can run signal handlers promptly.
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Ready>,
    ) -> io::Result<PollOutcome> {
        let timeout = if self.always_ready.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let mut outcome = PollOutcome::default();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                outcome.interrupted = true;
            }
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                outcome.woken = true;
                continue;
            }
            let failed = event.is_error();
            if failed || event.is_read_closed() || event.is_write_closed() {
                self.hung_up.insert(event.token().0 as RawFd);
            }
            let mut mask = 0;
            if event.is_readable() || event.is_read_closed() || failed {
                mask |= READ;
            }
            if event.is_writable() || event.is_write_closed() || failed {
                mask |= WRITE;
            }
            if mask != 0 {
                out.push(Ready {
                    fd: event.token().0 as RawFd,
                    events: mask,
                });
            }
        }
        out.extend(
            self.always_ready
                .iter()
                .map(|(&fd, &events)| Ready { fd, events }),
        );
        Ok(outcome)
    }

    /// After `fork()`: the child shares the parent's epoll instance and waker,
    /// so build new ones and re-register every known fd. Returns the new waker.
    /// Fds that no longer exist are dropped silently.
    pub fn reinit(&mut self) -> io::Result<Arc<Waker>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let old = std::mem::take(&mut self.registered);
        self.poll = poll;
        self.waker = Arc::clone(&waker);
        for (fd, mask) in old {
            // Failures mean the fd is gone in the child; its watchers will
            // notice on their next operation.
            let _ = self.arm(fd, mask);
        }
        Ok(waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn poll_once(p: &mut Poller, ms: u64) -> (Vec<Ready>, PollOutcome) {
        let mut out = Vec::new();
        let outcome = p
            .poll(Some(Duration::from_millis(ms)), &mut out)
            .expect("poll");
        (out, outcome)
    }

    #[test]
    fn readable_after_write_and_level_at_arm() {
        let mut p = Poller::new().expect("poller");
        let (mut a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        p.arm(b.as_raw_fd(), READ).expect("arm");
        let (out, _) = poll_once(&mut p, 0);
        assert!(out.is_empty(), "nothing written yet: {out:?}");
        a.write_all(b"x").expect("write");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(
            out,
            vec![Ready {
                fd: b.as_raw_fd(),
                events: READ
            }]
        );
        // Edge-triggered: no new edge, no event ...
        let (out, _) = poll_once(&mut p, 0);
        assert!(out.is_empty());
        // ... but re-arming re-evaluates: data is still there, so it fires.
        p.arm(b.as_raw_fd(), READ).expect("rearm");
        let (out, _) = poll_once(&mut p, 0);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn writable_and_both() {
        let mut p = Poller::new().expect("poller");
        let (a, _b) = UnixStream::pair().expect("pair");
        p.arm(a.as_raw_fd(), ALL).expect("arm");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(
            out,
            vec![Ready {
                fd: a.as_raw_fd(),
                events: WRITE
            }]
        );
    }

    #[test]
    fn hangup_reports_both() {
        let mut p = Poller::new().expect("poller");
        let (a, b) = UnixStream::pair().expect("pair");
        p.arm(a.as_raw_fd(), READ).expect("arm");
        drop(b);
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].events & READ, READ);
    }

    #[test]
    fn hangup_is_remembered_until_forgotten_or_registered_afresh() {
        let mut p = Poller::new().expect("poller");
        let (mut a, b) = UnixStream::pair().expect("pair");
        let fd = b.as_raw_fd();
        p.arm(fd, READ).expect("arm");
        a.write_all(b"x").expect("write");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(out.len(), 1);
        assert!(!p.hung_up(fd), "data alone is no hang-up");
        drop(a);
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(out.len(), 1);
        assert!(p.hung_up(fd));
        p.arm(fd, READ).expect("re-arm the same file");
        assert!(p.hung_up(fd), "re-arming keeps what the kernel said");
        assert!(p.forget(fd));
        assert!(!p.hung_up(fd));
        p.arm(fd, READ).expect("register afresh");
        assert!(!p.hung_up(fd), "until a poll reports it again");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(out.len(), 1);
        assert!(p.hung_up(fd));
    }

    #[test]
    fn waker_from_another_thread() {
        let mut p = Poller::new().expect("poller");
        let waker = p.waker();
        let t = std::thread::spawn(move || waker.wake().expect("wake"));
        let mut out = Vec::new();
        let outcome = p
            .poll(Some(Duration::from_secs(10)), &mut out)
            .expect("poll");
        t.join().expect("join");
        assert!(outcome.woken);
        assert!(out.is_empty());
    }

    #[test]
    fn bad_fds_are_errors_not_panics() {
        let mut p = Poller::new().expect("poller");
        let e = p.arm(-1, READ).expect_err("negative fd");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // Not a just-closed fd: cargo runs tests on parallel threads, and
        // another test may be handed the same number before `arm` runs (CI
        // saw exactly that). Numbers are handed out lowest-first, so one just
        // below `i32::MAX` is never open in this process.
        let never_open = i32::MAX - 1;
        let e = p.arm(never_open, READ).expect_err("fd that is not open");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        assert!(p.arm(0, 0).is_err(), "empty mask");
        assert!(!p.forget(12345));
    }

    #[test]
    fn regular_files_are_always_ready() {
        let mut p = Poller::new().expect("poller");
        let f = std::fs::File::open("/proc/self/status")
            .or_else(|_| std::fs::File::open("Cargo.toml"))
            .expect("open a regular file");
        p.arm(f.as_raw_fd(), READ).expect("arm");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(
            out,
            vec![Ready {
                fd: f.as_raw_fd(),
                events: READ
            }]
        );
        p.disarm(f.as_raw_fd());
        let (out, _) = poll_once(&mut p, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn fd_number_reuse_after_close() {
        use std::os::unix::io::{FromRawFd, IntoRawFd};
        let mut p = Poller::new().expect("poller");
        let (a, _b) = UnixStream::pair().expect("pair");
        let fd = a.into_raw_fd();
        p.arm(fd, READ).expect("arm");
        // Reuse the number for another file without telling the poller, as a
        // Python program closing a socket behind our back would.
        let (c, mut d) = UnixStream::pair().expect("pair");
        // SAFETY: `fd` is owned by this test (taken with into_raw_fd) and `c`
        // is open; dup2 atomically closes the old file behind `fd`.
        let rc = unsafe { libc::dup2(c.as_raw_fd(), fd) };
        assert_eq!(rc, fd);
        // SAFETY: `fd` now refers to a valid open descriptor owned only here.
        let reused = unsafe { UnixStream::from_raw_fd(fd) };
        p.arm(fd, READ).expect("re-arm a reused fd number");
        d.write_all(b"y").expect("write");
        let (out, _) = poll_once(&mut p, 1000);
        assert!(out.contains(&Ready { fd, events: READ }), "{out:?}");
        assert!(p.forget(fd));
        drop(reused);
    }

    #[test]
    fn forget_and_reinit() {
        let mut p = Poller::new().expect("poller");
        let (mut a, b) = UnixStream::pair().expect("pair");
        p.arm(b.as_raw_fd(), READ).expect("arm");
        let old_fd = p.fileno();
        let _waker = p.reinit().expect("reinit");
        assert_ne!(p.fileno(), -1);
        let _ = old_fd;
        a.write_all(b"z").expect("write");
        let (out, _) = poll_once(&mut p, 1000);
        assert_eq!(out.len(), 1, "registration survives reinit");
        assert!(p.forget(b.as_raw_fd()));
        assert_eq!(p.registered_len(), 0);
    }
}
