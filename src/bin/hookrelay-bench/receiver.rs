//! The bench's webhook receiver on loopback: `/hook/{n}` answers at once, `/slow/{n}` five
//! seconds later and `/lagging/{n}` two seconds later; each verifies and records every request
//! in the ledger first. `/limited/{n}` takes at most 50 requests in any second and answers the
//! rest `429` with `Retry-After: 1`, recording only what it took.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::BenchResult;
use crate::ledger::{Ledger, Verdict};

/// How long `/slow/{n}` waits before answering 200.
const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// How long `/lagging/{n}` waits before answering 200.
const LAGGING_ANSWER: Duration = Duration::from_secs(2);
/// Most requests `/limited/{n}` takes in any second.
pub const LIMITED_PER_SECOND: usize = 50;
/// Webhook bodies here are a few hundred bytes; anything near this is not ours.
const MAX_BODY_BYTES: usize = 1 << 20;

pub struct Receiver {
    ledger: Arc<Ledger>,
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver for hooks `0..hooks` on a free loopback port.
    pub async fn start(hooks: usize) -> BenchResult<Self> {
        let ledger = Arc::new(Ledger::new(hooks));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let taken: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let router = Router::new()
            .route("/hook/{n}", post(hook))
            .route("/slow/{n}", post(slow))
            .route("/lagging/{n}", post(lagging))
            .route(
                "/limited/{n}",
                post(move |state, path, request| limited(taken.clone(), state, path, request)),
            )
            .with_state(ledger.clone());
        // Small responses on kept-alive connections: Nagle would only add delay.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("receiver stopped: {error}");
            }
        });
        Ok(Self {
            ledger,
            address,
            task,
        })
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The URL of a hook that answers 200 at once.
    pub fn url(&self, hook: u32) -> String {
        format!("http://{}/hook/{hook}", self.address)
    }

    /// The URL of a hook that answers 200 after five seconds.
    pub fn slow_url(&self, hook: u32) -> String {
        format!("http://{}/slow/{hook}", self.address)
    }

    /// The URL of a hook that answers 200 after two seconds.
    pub fn lagging_url(&self, hook: u32) -> String {
        format!("http://{}/lagging/{hook}", self.address)
    }

    /// The URL of a hook that throttles beyond `LIMITED_PER_SECOND`.
    pub fn limited_url(&self, hook: u32) -> String {
        format!("http://{}/limited/{hook}", self.address)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(ledger): State<Arc<Ledger>>,
    Path(n): Path<u32>,
    request: Request,
) -> StatusCode {
    receive(&ledger, n, request).await
}

async fn slow(
    State(ledger): State<Arc<Ledger>>,
    Path(n): Path<u32>,
    request: Request,
) -> StatusCode {
    let status = receive(&ledger, n, request).await;
    tokio::time::sleep(SLOW_ANSWER).await;
    status
}

async fn lagging(
    State(ledger): State<Arc<Ledger>>,
    Path(n): Path<u32>,
    request: Request,
) -> StatusCode {
    let status = receive(&ledger, n, request).await;
    tokio::time::sleep(LAGGING_ANSWER).await;
    status
}

/// Takes the request if fewer than `LIMITED_PER_SECOND` were taken in the last second.
async fn limited(
    taken: Arc<Mutex<VecDeque<Instant>>>,
    State(ledger): State<Arc<Ledger>>,
    Path(n): Path<u32>,
    request: Request,
) -> Response {
    let room = {
        let now = Instant::now();
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        while taken
            .front()
            .is_some_and(|t| now - *t >= Duration::from_secs(1))
        {
            taken.pop_front();
        }
        let room = taken.len() < LIMITED_PER_SECOND;
        if room {
            taken.push_back(now);
        }
        room
    };
    if !room {
        let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    receive(&ledger, n, request).await.into_response()
}

/// Records the request once its whole body is in; a bad signature is refused like a real
/// receiver would, so it also shows up as a missing delivery.
async fn receive(ledger: &Ledger, hook: u32, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::BAD_REQUEST;
    };
    let at = Instant::now();
    let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
    let verdict = ledger.record(
        hook,
        header("x-devtune-signature"),
        header("x-devtune-delivery"),
        &body,
        at,
    );
    match verdict {
        Verdict::First | Verdict::Duplicate => StatusCode::OK,
        Verdict::Invalid => StatusCode::UNAUTHORIZED,
        Verdict::Malformed => StatusCode::BAD_REQUEST,
    }
}
