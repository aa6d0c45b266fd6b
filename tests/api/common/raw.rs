//! Receivers that misbehave at the TCP level, which a well-behaved HTTP server cannot imitate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Sends the headers, then one byte of the body a second.
    SlowBody,
    /// Answers 200 with a 100 MB body, as fast as the client reads.
    HugeBody,
    /// Resets the connection as soon as the request arrives.
    Reset,
    /// Answers anything, TLS included, with bytes that are not a protocol.
    Garbage,
}

pub struct RawServer {
    pub port: u16,
    /// Body bytes this server managed to write.
    pub written: Arc<AtomicU64>,
    accept: AbortHandle,
}

const HUGE: u64 = 100 * 1024 * 1024;

async fn read_request(stream: &mut TcpStream) {
    let mut buffer = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
}

async fn serve(mut stream: TcpStream, misbehaviour: Misbehaviour, written: Arc<AtomicU64>) {
    match misbehaviour {
        Misbehaviour::SlowBody => {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 60\r\n\r\n")
                .await;
            for _ in 0..60 {
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Misbehaviour::HugeBody => {
            read_request(&mut stream).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b'y'; 64 * 1024];
            let mut sent = 0;
            while sent < HUGE {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len() as u64;
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Misbehaviour::Reset => {
            read_request(&mut stream).await;
            // A zero linger makes the close a reset instead of an orderly shutdown.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Misbehaviour::Garbage => {
            let _ = stream
                .write_all(&[0x15, 0x03, 0x03, 0xff, 0xff, 0x00, 0x13])
                .await;
            read_request(&mut stream).await;
        }
    }
}

impl RawServer {
    pub async fn start(misbehaviour: Misbehaviour) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, misbehaviour, counter.clone()));
            }
        })
        .abort_handle();
        RawServer {
            port,
            written,
            accept,
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
