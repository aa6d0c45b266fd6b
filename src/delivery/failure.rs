//! What a tenant sees of an exchange that failed: the kind of failure, never the network's
//! details (addresses, ports, resolver and OS messages), so attempt errors cannot map a
//! network for whoever registered the URL. The full chain goes to the log.

use std::error::Error;
use std::io::ErrorKind;

use crate::report::append_causes;

/// A resolved address the network policy forbids; `reason` names the range, not the address.
#[derive(Debug, thiserror::Error)]
#[error("refused: {host} resolves to {ip}, a {reason} address")]
pub(crate) struct RefusedAddress {
    pub host: String,
    pub ip: std::net::IpAddr,
    pub reason: &'static str,
}

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}")]
pub(crate) struct LookupFailed {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

/// The tenant-visible sentence and the full chain for the log.
pub(crate) struct Described {
    pub coarse: String,
    pub full: String,
}

pub(crate) fn describe(error: &reqwest::Error) -> Described {
    let mut full = String::from(if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
    append_causes(&mut full, error);
    Described {
        coarse: coarse(error),
        full,
    }
}

fn coarse(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut cause: Option<&(dyn Error + 'static)> = error.source();
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<RefusedAddress>() {
            return format!("refused: the host resolves to a {} address", refused.reason);
        }
        if current.is::<LookupFailed>() {
            return "DNS lookup failed".into();
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return tls_failure(tls).into();
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(kind) = io_failure(io.kind()) {
                return kind.into();
            }
            // An io::Error's `source` skips the error it wraps, which is where TLS failures sit.
            if let Some(wrapped) = io.get_ref() {
                cause = Some(wrapped);
                continue;
            }
        }
        if let Some(http) = current.downcast_ref::<hyper::Error>() {
            if http.is_parse() {
                return "invalid HTTP response".into();
            }
            if http.is_incomplete_message() {
                return "connection closed before a complete response".into();
            }
        }
        cause = current.source();
    }
    if error.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

fn tls_failure(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => "TLS error: certificate",
        _ => "TLS error: handshake",
    }
}

fn io_failure(kind: ErrorKind) -> Option<&'static str> {
    Some(match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "connection reset"
        }
        ErrorKind::TimedOut => "timed out",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "host unreachable",
        ErrorKind::UnexpectedEof => "connection closed before a complete response",
        _ => return None,
    })
}
