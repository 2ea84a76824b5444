//! The HTTP listener's bounds: at most [`crate::HttpConfig::max_connections`] connections at
//! once (the next waits in the kernel's backlog, holding none of the engine's descriptors), and
//! a connection on which nothing moves either way for [`crate::HttpConfig::idle_timeout`] is
//! closed. 1,100 connections that sent nothing (slowloris) once used up the engine's
//! descriptors, and an honest download on the peer port failed meanwhile.
//!
//! Hand-written because neither axum nor hyper-util bound the connections of `axum::serve`;
//! this plugs into it as an [`axum::serve::Listener`]. A streaming answer keeps its connection
//! alive by moving bytes; a paused player whose connection moves nothing for the idle timeout is
//! closed and reconnects with a `Range` request, as players do.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// The engine's HTTP connections: a count shared with the state (for `/metrics`).
#[derive(Debug, Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Connections {
        let max = max.max(1);
        Connections {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// The most at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// A TCP listener that accepts only while a connection may be opened.
pub struct CappedListener {
    inner: TcpListener,
    conns: Connections,
    idle: Duration,
}

impl CappedListener {
    /// `inner` bounded by `conns`, closing connections idle for `idle`.
    pub fn new(inner: TcpListener, conns: Connections, idle: Duration) -> CappedListener {
        CappedListener { inner, conns, idle }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Capped, SocketAddr) {
        loop {
            let Ok(permit) = self.conns.permits.clone().acquire_owned().await else {
                // Never closed; wait as if full.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (Capped::new(stream, permit, self.idle), addr);
                }
                Err(e) => {
                    // Out of descriptors and the like: the permit goes back; try again soon.
                    tracing::debug!("HTTP accept failed: {e}");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: its place among the connections, and its idle clock.
pub struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Capped {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle: Duration) -> Capped {
        Capped {
            stream,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Bytes moved: the idle clock starts again.
    fn moved(&mut self) {
        let at = peercdn_engine::clock::tokio_now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    /// What a poll of the stream gave, seen by the idle clock: `moved` bytes start it again;
    /// a pending poll is an error once the connection has been idle too long.
    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        moved: bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                if moved {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_idle(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }

    /// Nothing moved now: an error once the connection has been idle too long (the idle clock
    /// wakes the task then).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP connection idle: nothing moved either way",
            )
        })
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        let moved = matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.track(cx, poll, moved)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.track(cx, poll, moved)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.track(cx, poll, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
