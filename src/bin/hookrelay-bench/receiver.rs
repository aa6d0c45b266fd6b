//! The bench's webhook receiver on loopback: `/hook/{n}` answers at once, `/slow/{n}` five
//! seconds later; both verify and record every request in the ledger first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::BenchResult;
use crate::ledger::{Ledger, Verdict};

/// How long `/slow/{n}` waits before answering 200.
const SLOW_ANSWER: Duration = Duration::from_secs(5);
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
        let router = Router::new()
            .route("/hook/{n}", post(hook))
            .route("/slow/{n}", post(slow))
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
