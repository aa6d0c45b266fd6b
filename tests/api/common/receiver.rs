//! A webhook receiver on loopback: hands every request to the test and answers as scripted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Waits, then answers with the status.
    Slow(Duration, u16),
    Redirect(String),
    /// Answers the status with this body.
    Body(u16, Vec<u8>),
    /// Answers the status (429 or 503) with this `Retry-After`, or none.
    Throttle(u16, Option<&'static str>),
    /// Answers 200 to at most this many requests in any second, 429 (no `Retry-After`) to
    /// the rest.
    PerSecond(usize),
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: mpsc::UnboundedSender<Received>,
    /// Requests being answered now, and the most there ever were at once.
    open: AtomicUsize,
    most_open: AtomicUsize,
    /// When each request answered 200 by `Reply::PerSecond` arrived, the last second's.
    accepted: Mutex<VecDeque<Instant>>,
}

/// Counts one request as open until it is answered.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_open.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Receiver {
    pub base_url: String,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Received>,
    stop: CancellationToken,
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _open = Open::new(&shared);
    let reply = {
        let next = shared.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| shared.default.lock().unwrap().clone())
    };
    let _ = shared.requests.send(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::Slow(wait, code) => {
            tokio::time::sleep(wait).await;
            StatusCode::from_u16(code).unwrap().into_response()
        }
        Reply::Redirect(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Reply::Body(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::Throttle(code, retry_after) => {
            let mut response = StatusCode::from_u16(code).unwrap().into_response();
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, value.parse().unwrap());
            }
            response
        }
        Reply::PerSecond(limit) => {
            let now = Instant::now();
            let mut accepted = shared.accepted.lock().unwrap();
            while accepted
                .front()
                .is_some_and(|t| now - *t >= Duration::from_secs(1))
            {
                accepted.pop_front();
            }
            if accepted.len() < limit {
                accepted.push_back(now);
                StatusCode::OK.into_response()
            } else {
                StatusCode::TOO_MANY_REQUESTS.into_response()
            }
        }
    }
}

impl Receiver {
    /// Listens on 127.0.0.1 on a free port and answers 200 unless told otherwise.
    pub async fn start() -> Receiver {
        let (sender, requests) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Status(200)),
            requests: sender,
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
            accepted: Mutex::new(VecDeque::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new().fallback(receive).with_state(shared.clone());
        let stop = CancellationToken::new();
        tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        Receiver {
            base_url,
            shared,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The next replies, in order, before the default applies again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    pub fn reply_by_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    /// The most requests this receiver was answering at one time.
    pub fn most_open(&self) -> usize {
        self.shared.most_open.load(Ordering::SeqCst)
    }

    /// The next request, or `None` if none comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.requests.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request, failing the test if none arrives within `timeout`.
    pub async fn expect(&mut self, timeout: Duration) -> Received {
        self.next(timeout)
            .await
            .unwrap_or_else(|| panic!("no webhook arrived within {timeout:?}"))
    }

    /// Requests that already arrived, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut arrived = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            arrived.push(request);
        }
        arrived
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `condition` until it holds, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
