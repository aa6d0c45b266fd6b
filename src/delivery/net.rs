//! Resolving webhook hosts and refusing the ones that land on non-public addresses.

use std::time::Duration;

use crate::domain::forbidden_reason;

/// Resolution is a best-effort early warning at registration; it must not stall the request.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses a host name that resolves to a loopback, private, link-local or similar address.
/// A name that does not resolve (yet) is accepted: the same check runs again at send time.
pub async fn refuse_private_resolution(host: &str, port: u16) -> Result<(), String> {
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let Ok(Ok(addresses)) = lookup else {
        return Ok(());
    };
    for address in addresses {
        if let Some(reason) = forbidden_reason(address.ip()) {
            return Err(format!(
                "must point at a public host; {host} resolves to {}, a {reason} address",
                address.ip()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_by_name_is_refused() {
        let error = refuse_private_resolution("localhost", 443)
            .await
            .unwrap_err();
        assert!(error.contains("loopback"), "{error}");
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_left_to_the_send_time_check() {
        assert!(refuse_private_resolution("name.invalid", 443).await.is_ok());
    }
}
