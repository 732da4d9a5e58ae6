//! The guard around every gRPC call: what a call does when it goes wrong
//! outside its handler's own error handling.
//!
//! # Contract
//! - **Over-size requests.** Each request message's 5-byte gRPC prefix is read
//!   as the body streams in; a message declaring more than the limit
//!   (`MaxRequestBytes`) is refused with [`RequestError::TooLarge`]
//!   (`INVALID_ARGUMENT`, naming the size and the limit) before any of it is
//!   buffered. tonic's own limit (set to the same value) would answer
//!   `OUT_OF_RANGE` after the fact; it is never reached first.
//! - **Panics.** A panic while a call is served — in `Service::call`, in the
//!   handler's future, or while its response body (a Monitor stream) is
//!   polled — is caught here, logged at error level with the method, and
//!   answered [`RequestError::Panicked`] (`INTERNAL`, naming the method): as a
//!   trailers-only response when nothing was sent yet, else as the trailers
//!   that end the body. The process, the connection and other calls go on.
//!   Where the panic happened is logged by the process's panic hook
//!   ([`install_panic_hook`]), which also covers threads outside any call.
//!
//! gRPC codes are chosen by [`flowserver_proto::ErrorKind`] only.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flowserver_proto::{RequestError, to_status};
use futures_util::FutureExt as _;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

/// Applies [`Guard`] to a service (the whole tonic router).
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    max_request_bytes: usize,
}

impl GuardLayer {
    pub fn new(max_request_bytes: usize) -> GuardLayer {
        GuardLayer { max_request_bytes }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, max_request_bytes: self.max_request_bytes }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    max_request_bytes: usize,
}

type GuardFuture<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Guard<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = GuardFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = method_of(request.uri().path());
        let limit = self.max_request_bytes;
        let request = request.map(|body| Body::new(LimitedBody { inner: body, sizes: MessageSizes::new(limit) }));
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let future = match called {
                Ok(future) => future,
                Err(payload) => return Ok(panicked(&method, payload.as_ref()).into_http()),
            };
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(response)) => {
                    Ok(response.map(|body| Body::new(GuardedBody { inner: body, method, ended: false })))
                }
                Ok(Err(error)) => Err(error),
                Err(payload) => Ok(panicked(&method, payload.as_ref()).into_http()),
            }
        })
    }
}

/// `flowserver.v1.FlowServer/Start` for the path `/flowserver.v1.FlowServer/Start`.
fn method_of(path: &str) -> String {
    path.strip_prefix('/').unwrap_or(path).to_owned()
}

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Logs a caught panic of `method` and returns its answer.
fn panicked(method: &str, payload: &(dyn std::any::Any + Send)) -> Status {
    let message = panic_text(payload);
    tracing::error!(method, panic = message, "a gRPC call panicked; answered INTERNAL");
    to_status(&RequestError::Panicked { method: method.to_owned(), message: message.to_owned() })
}

/// The sizes of the gRPC messages in a request body, read from their
/// 5-byte prefixes (compression flag, big-endian length) as bytes arrive in
/// chunks of any size. Sans-I/O.
#[derive(Debug, Clone)]
pub struct MessageSizes {
    limit: usize,
    prefix: [u8; 5],
    prefix_filled: usize,
    /// Bytes of the current message still to pass.
    body_left: u64,
}

impl MessageSizes {
    pub fn new(limit: usize) -> MessageSizes {
        MessageSizes { limit, prefix: [0; 5], prefix_filled: 0, body_left: 0 }
    }

    /// Reads `chunk`; the declared size of the first message over the limit is the error.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), u64> {
        while !chunk.is_empty() {
            if self.body_left > 0 {
                let skip = usize::try_from(self.body_left).map_or(chunk.len(), |left| left.min(chunk.len()));
                chunk = chunk.get(skip..).unwrap_or_default();
                // `skip` is at most `body_left` (it is `body_left` or a smaller chunk length).
                self.body_left -= skip as u64;
                continue;
            }
            let wanted = self.prefix.len() - self.prefix_filled;
            let (head, rest) = chunk.split_at_checked(wanted.min(chunk.len())).unwrap_or((chunk, &[]));
            if let Some(slot) = self.prefix.get_mut(self.prefix_filled..self.prefix_filled + head.len()) {
                slot.copy_from_slice(head);
            }
            self.prefix_filled += head.len();
            chunk = rest;
            if self.prefix_filled == self.prefix.len() {
                self.prefix_filled = 0;
                let [_compressed, a, b, c, d] = self.prefix;
                let size = u64::from(u32::from_be_bytes([a, b, c, d]));
                if usize::try_from(size).map_or(true, |size| size > self.limit) {
                    return Err(size);
                }
                self.body_left = size;
            }
        }
        Ok(())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A request body that fails with [`RequestError::TooLarge`] at the prefix
/// of an over-size message, before its bytes reach tonic.
struct LimitedBody {
    inner: Body,
    sizes: MessageSizes,
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(size) = this.sizes.feed(data)
        {
            let error = RequestError::TooLarge { size, limit: this.sizes.limit() };
            tracing::warn!(%error, "gRPC request refused");
            return Poll::Ready(Some(Err(to_status(&error))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends with `INTERNAL` trailers if polling it panics.
struct GuardedBody {
    inner: Body,
    method: String,
    ended: bool,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let inner = &mut this.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_frame(cx))) {
            Ok(polled) => polled,
            Err(payload) => {
                this.ended = true;
                let status = panicked(&this.method, payload.as_ref());
                let mut trailers = http::HeaderMap::new();
                match status.add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Err(status) => Poll::Ready(Some(Err(status))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

/// Logs every panic, on any thread (tokio workers, glommio shards, helper
/// threads), through tracing at error level with its thread and location,
/// so it reaches the log files and not only stderr. `RUST_BACKTRACE` adds a
/// backtrace as usual.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let location = location.as_deref().unwrap_or("unknown");
        let message = panic_text(info.payload());
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, location, panic = message, %backtrace, "panic");
        } else {
            tracing::error!(thread, location, panic = message, "panic");
        }
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower_layer::Layer as _;
    use tower_service::Service as _;

    use super::*;

    /// A tiny PRNG for the chunking loops (xorshift64*).
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        bytes.resize(5 + len, 0x2a);
        bytes
    }

    #[test]
    fn message_sizes_are_read_across_any_chunking() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut stream = Vec::new();
        for len in [0, 1, 5, 100, 1000] {
            stream.extend(message(len));
        }
        let over = message(1001);
        for _ in 0..500 {
            let mut sizes = MessageSizes::new(1000);
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + random.below(rest.len()));
                assert_eq!(sizes.feed(chunk), Ok(()));
                rest = tail;
            }
            let cut = random.below(5) + 1;
            if cut == 5 {
                assert_eq!(sizes.feed(&over[..cut]), Err(1001));
            } else {
                assert_eq!(sizes.feed(&over[..cut]), Ok(()));
                assert_eq!(sizes.feed(&over[cut..]), Err(1001));
            }
        }
        // Random bytes never panic it; the first prefix decides.
        for _ in 0..500 {
            let bytes: Vec<u8> = (0..random.below(64)).map(|_| random.below(256) as u8).collect();
            let _ = MessageSizes::new(16).feed(&bytes);
        }
        assert_eq!(MessageSizes::new(16 << 20).feed(&[0, 0xff, 0xff, 0xff, 0xff]), Err(u64::from(u32::MAX)));
    }

    /// What the inner service does with a call.
    #[derive(Clone, Copy)]
    enum Inner {
        PanicInCall,
        PanicInFuture,
        PanicInBody,
        ReadBody,
    }

    impl tower_service::Service<http::Request<Body>> for Inner {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            match *self {
                Inner::PanicInCall => panic!("broken in call"),
                Inner::PanicInFuture => Box::pin(async { panic!("broken in the handler {}", 7) }),
                Inner::PanicInBody => Box::pin(async { Ok(http::Response::new(Body::new(PanickingBody))) }),
                Inner::ReadBody => Box::pin(async move {
                    let mut body = request.into_body();
                    let mut status = Status::ok("read whole");
                    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                        if let Err(error) = frame {
                            status = error;
                            break;
                        }
                    }
                    Ok(status.into_http())
                }),
            }
        }
    }

    struct PanickingBody;

    impl HttpBody for PanickingBody {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            panic!("broken while streaming")
        }
    }

    /// Runs `inner` behind the guard with `body`; returns the status of the
    /// answer (from its head, else from its trailers) and the log.
    fn call(inner: Inner, body: Vec<u8>) -> (Status, String) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let log = log.clone();
            move || LogWriter(log.clone())
        };
        let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
        let status = tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut guard = GuardLayer::new(1000).layer(inner);
                let request = http::Request::builder()
                    .uri("/flowserver.v1.FlowServer/Start")
                    .body(Body::new(one_chunk(body)))
                    .unwrap();
                let response = guard.call(request).await.unwrap();
                if let Some(status) = Status::from_header_map(response.headers()) {
                    return status;
                }
                let mut body = response.into_body();
                while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    if let Some(status) = frame.unwrap().trailers_ref().and_then(Status::from_header_map) {
                        return status;
                    }
                }
                panic!("no status in the answer")
            })
        });
        let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        (status, log)
    }

    fn one_chunk(bytes: Vec<u8>) -> impl HttpBody<Data = Bytes, Error = Status> + Send + 'static {
        OneChunk(Some(Bytes::from(bytes)))
    }

    struct OneChunk(Option<Bytes>);

    impl HttpBody for OneChunk {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.take().map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    struct LogWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_anywhere_in_a_call_is_answered_internal_and_logged_with_the_method() {
        for (inner, text) in [
            (Inner::PanicInCall, "broken in call"),
            (Inner::PanicInFuture, "broken in the handler 7"),
            (Inner::PanicInBody, "broken while streaming"),
        ] {
            let (status, log) = call(inner, Vec::new());
            assert_eq!(status.code(), tonic::Code::Internal, "{text}");
            assert_eq!(
                status.message(),
                format!(
                    "internal error in flowserver.v1.FlowServer/Start: {text}; this is a bug, the server log has its location"
                )
            );
            assert!(log.contains("ERROR"), "{log}");
            assert!(log.contains("a gRPC call panicked; answered INTERNAL"), "{log}");
            assert!(log.contains("method=\"flowserver.v1.FlowServer/Start\""), "{log}");
            assert!(log.contains(&format!("panic=\"{text}\"")), "{log}");
        }
    }

    #[test]
    fn an_over_size_message_is_refused_at_its_prefix() {
        let (status, _) = call(Inner::ReadBody, message(1000));
        assert_eq!((status.code(), status.message()), (tonic::Code::Ok, "read whole"));
        let (status, log) = call(Inner::ReadBody, message(1001));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "request message of 1001 bytes exceeds the server's limit of 1000 bytes (MaxRequestBytes in flow_server.json)"
        );
        assert!(log.contains("gRPC request refused"), "{log}");
    }
}
