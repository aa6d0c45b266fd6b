//! Clients that open connections and never finish a request: the header and body timeouts,
//! the idle keep-alive timeout and the connection cap keep the service answering everyone else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::process::{Server, hookrelay, provision_tenant};
use crate::common::receiver::eventually;
use crate::common::{Backend, TestApp, TestDb};

/// The start of a request whose headers never end.
const HALF_SENT: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";

fn socket_address(base_url: &str) -> SocketAddr {
    base_url
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address")
}

/// `count` connections that each sent part of a request's headers, or nothing when `half_sent`
/// is empty; held until dropped.
async fn hold(address: SocketAddr, count: usize, half_sent: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).await.expect("connects");
        if !half_sent.is_empty() {
            stream.write_all(half_sent).await.expect("writes");
        }
        held.push(stream);
    }
    held
}

/// Reads until the server closes the connection; `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, reading).await.ok()?;
    Some(received)
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_answered_while_1500_half_open_and_idle_connections_are_held() {
    // A header timeout far beyond the client's own 10 s timeout: an answer cannot come from a
    // held connection timing out.
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.connections.header_timeout_ms = 120_000;
    })
    .await;
    let address = socket_address(&app.address);
    let mut held = hold(address, 1_000, HALF_SENT).await;
    held.extend(hold(address, 500, b"").await);

    // Each connection counts as open once the server accepted it.
    eventually(Duration::from_secs(30), "1500 open connections", || async {
        (metric(&app, "hookrelay_http_connections_open").await >= 1_500.0).then_some(())
    })
    .await;
    let started = Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let list = app.get(&app.project_path("/webhooks")).await;
    assert_eq!(list.status(), StatusCode::OK);
    eprintln!(
        "two requests beside 1500 held connections took {:?}",
        started.elapsed()
    );
    drop(held);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.connections.header_timeout_ms = 300;
    })
    .await;
    let mut stream = TcpStream::connect(socket_address(&app.address))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the idle connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.connections.body_timeout_ms = 300;
    })
    .await;
    let mut stream = TcpStream::connect(socket_address(&app.address))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"type\":",
        app.project_path("/events"),
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server answers and closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let body: Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(body["error"], "request_timeout");
    assert_eq!(body["status"], 408);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_room_frees_as_they_go() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.connections.max_open = Some(20);
    })
    .await;
    let address = socket_address(&app.address);
    let held = hold(address, 20, HALF_SENT).await;

    let mut beyond = TcpStream::connect(address).await.unwrap();
    let refusal = closed_within(&mut beyond, Duration::from_secs(10))
        .await
        .expect("a connection beyond the cap is closed, not left waiting");
    let refusal = String::from_utf8_lossy(&refusal);
    assert!(
        refusal.is_empty() || refusal.starts_with("HTTP/1.1 503"),
        "{refusal}"
    );

    drop(held);
    eventually(
        Duration::from_secs(10),
        "a free connection slot",
        || async {
            let health = app.client.get(app.url("/healthz")).send().await.ok()?;
            (health.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    assert!(metric(&app, "hookrelay_http_connections_refused_total").await >= 1.0);
}

/// `ulimit -n` below the number of connections a client holds: without a header timeout the
/// server would run out of descriptors for good.
#[tokio::test]
async fn the_header_timeout_frees_a_server_whose_file_limit_a_client_exhausts() {
    const OPEN_FILES: usize = 200;
    let db = TestDb::create(Backend::Sqlite).await;
    let (project, key) = provision_tenant(&db.url);
    let mut command = hookrelay(&db.url);
    command
        .env("HOOKRELAY_BOOTSTRAP", "false")
        .env("HOOKRELAY_HEADER_TIMEOUT_MS", "1000")
        .env("HOOKRELAY_MAX_CONNECTIONS", "1000");
    let server = Server::start(limit_open_files(command, OPEN_FILES));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();

    let mut held = hold(socket_address(&server.address), OPEN_FILES + 100, HALF_SENT).await;
    let held_at = Instant::now();
    let list = format!("{}/api/v2/projects/{project}/webhooks", server.address);
    let deadline = Duration::from_millis(1000) + Duration::from_secs(1);
    eventually(deadline, "the list answered again", || async {
        let health = client
            .get(format!("{}/healthz", server.address))
            .send()
            .await
            .ok()?;
        let list = client.get(&list).bearer_auth(&key).send().await.ok()?;
        (health.status() == StatusCode::OK && list.status() == StatusCode::OK).then_some(())
    })
    .await;
    eprintln!("answered again {:?} after the hold", held_at.elapsed());
    assert!(
        closed_within(&mut held[0], Duration::from_secs(5))
            .await
            .is_some(),
        "the header timeout closed the held connection"
    );
}

/// Runs `command` under a shell that first lowers the open-file limit, soft and hard.
fn limit_open_files(command: std::process::Command, limit: usize) -> std::process::Command {
    let mut limited = std::process::Command::new("/bin/sh");
    limited
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\""))
        .arg(command.get_program())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(name, value)| Some((name, value?))),
        );
    limited
}
