//! Accepting client connections. A cap on how many are open, a deadline for each request's
//! headers (which also ends idle keep-alive connections) and one for its body keep clients that
//! never finish from holding the file descriptors every other client needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::instruments;

/// The cap when the open-file limit leaves room for more (or cannot be read).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

/// Below this many connections, the open-file limit is worth a warning at start.
const LOW_CONNECTION_CAP: u32 = 1_024;

/// Descriptors kept for what is not a client connection: the listener, logs, SQLite's files,
/// the runtime's own.
const FIXED_RESERVE: u64 = 64;

/// How a refused client learns why, when its socket takes the bytes at once.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
retry-after: 1\r\ncontent-length: 0\r\n\r\n";

/// Accept failures and refusals are logged at most this often; the metrics count every one.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Pause after an accept error that is not the client's, such as running out of descriptors,
/// so the loop does not spin while the header timeout frees some.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For a request's headers, counted from the connection's start or the previous response.
    pub header_timeout: Duration,
    /// For a request's body, counted from its headers.
    pub body_timeout: Duration,
    pub max_connections: u32,
    /// How long open connections may finish their requests once shutdown begins.
    pub drain: Duration,
}

/// When a request's body must have arrived, put on the request as its headers are read.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub at: Instant,
    pub allowed: Duration,
}

/// The connection cap and, when the open-file limit makes it low or short of what was asked
/// for, the warning to log.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectionCap {
    pub max_connections: u32,
    pub warning: Option<String>,
}

/// `reserved` descriptors are kept for the database pool and outgoing deliveries; clients get
/// what the limit leaves, or `configured` when set.
pub fn connection_cap(
    configured: Option<u32>,
    open_file_limit: Option<u64>,
    reserved: u64,
) -> ConnectionCap {
    let Some(limit) = open_file_limit else {
        return ConnectionCap {
            max_connections: configured.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            warning: None,
        };
    };
    let left = limit.saturating_sub(reserved + FIXED_RESERVE);
    let left = u32::try_from(left).unwrap_or(u32::MAX);
    match configured {
        Some(asked) if asked > left => ConnectionCap {
            max_connections: asked,
            warning: Some(format!(
                "HOOKRELAY_MAX_CONNECTIONS is {asked}, but the open-file limit ({limit}) leaves \
                 room for about {left} client connections next to the database pool and \
                 deliveries; raise the limit (ulimit -n) or lower HOOKRELAY_MAX_CONNECTIONS"
            )),
        },
        Some(asked) => ConnectionCap {
            max_connections: asked,
            warning: None,
        },
        None => {
            // A limit too small for the reserve still gets a quarter of it for clients: a
            // service that accepts nothing is worse than one that may run short.
            let floor = u32::try_from(limit / 4).unwrap_or(u32::MAX).max(1);
            let max_connections = left.max(floor).min(DEFAULT_MAX_CONNECTIONS);
            let warning = (max_connections < LOW_CONNECTION_CAP).then(|| {
                format!(
                    "the open-file limit is {limit}, so hookrelay accepts at most \
                     {max_connections} client connections at once; raise it (ulimit -n, or \
                     LimitNOFILE in a systemd unit) for more"
                )
            });
            ConnectionCap {
                max_connections,
                warning,
            }
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit, as a server that holds many
/// sockets should, and returns the soft limit now in force (`None` where there is none).
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(u64::MAX) => None,
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            None
        }
    }
}

/// True at most once per `WARN_EVERY`, for warnings that could otherwise flood the log.
struct Occasionally {
    last: Option<Instant>,
}

impl Occasionally {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < WARN_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then gives open connections
/// `limits.drain` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut accept_warning = Occasionally { last: None };
    let mut refusal_warning = Occasionally { last: None };
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) if is_peer_error(&error) => continue,
            Err(error) => {
                if accept_warning.due() {
                    tracing::warn!(%error, "cannot accept connections; retrying");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            instruments::connection_refused();
            if refusal_warning.due() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "refusing connections: HOOKRELAY_MAX_CONNECTIONS are open"
                );
            }
            refuse(&stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            builder.clone(),
            stream,
            peer,
            router.clone(),
            limits.body_timeout,
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    let everyone = open.acquire_many(limits.max_connections);
    if tokio::time::timeout(limits.drain, everyone).await.is_err() {
        tracing::warn!(
            open = limits.max_connections as usize - open.available_permits(),
            "closing connections still open after the shutdown grace period"
        );
    }
}

/// Errors of one connection that came and went before it was accepted; the next is fine.
fn is_peer_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

fn refuse(stream: &TcpStream) {
    // Best effort: a full socket buffer or a reset only means the client sees the close alone.
    let _ = stream.try_write(REFUSAL);
}

async fn serve_connection(
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    body_timeout: Duration,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    instruments::connection_opened();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(BodyDeadline {
            at: Instant::now() + body_timeout,
            allowed: body_timeout,
        });
        router.clone().call(request)
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
    instruments::connection_closed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_what_the_file_limit_leaves_up_to_the_default() {
        let roomy = connection_cap(None, Some(1_048_576), 600);
        assert_eq!(roomy.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(roomy.warning, None);

        let common = connection_cap(None, Some(1_024), 600);
        assert_eq!(common.max_connections, 1_024 - 600 - FIXED_RESERVE as u32);
        assert!(common.warning.unwrap().contains("ulimit -n"));
    }

    #[test]
    fn a_limit_below_the_reserve_still_leaves_a_quarter_for_clients() {
        let cap = connection_cap(None, Some(256), 600);
        assert_eq!(cap.max_connections, 64);
        assert!(cap.warning.is_some());
    }

    #[test]
    fn a_configured_cap_is_kept_and_warned_about_only_beyond_the_limit() {
        assert_eq!(
            connection_cap(Some(500), Some(100_000), 600),
            ConnectionCap {
                max_connections: 500,
                warning: None
            }
        );
        let beyond = connection_cap(Some(5_000), Some(1_024), 600);
        assert_eq!(beyond.max_connections, 5_000);
        assert!(
            beyond
                .warning
                .unwrap()
                .contains("HOOKRELAY_MAX_CONNECTIONS is 5000")
        );
    }

    #[test]
    fn an_unknown_limit_takes_the_configured_cap_or_the_default() {
        assert_eq!(connection_cap(None, None, 600).max_connections, 10_000);
        assert_eq!(connection_cap(Some(7), None, 600).max_connections, 7);
    }
}
