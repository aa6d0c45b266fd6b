//! Webhook endpoint URLs: absolute, https (unless allowed otherwise), public hosts only.

use std::fmt;

use url::{Host, Url};

use super::address::forbidden_reason;

const MAX_CHARS: usize = 2048;

/// What a deployment allows as webhook targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    /// Plain http endpoints, for local development.
    pub allow_http: bool,
    /// Loopback, private and link-local targets, for local development and tests.
    pub allow_private: bool,
    /// Any port; otherwise 80, 443, 8443 and 1024 and above, so webhooks cannot probe the
    /// well-known services of a host.
    pub allow_any_port: bool,
}

/// A validated endpoint URL. Names are checked again at resolution time by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    pub fn parse(raw: &str, policy: UrlPolicy) -> Result<Self, String> {
        if raw.chars().count() > MAX_CHARS {
            return Err(format!("must be at most {MAX_CHARS} characters"));
        }
        // The limit is on what the client sent, as DevTune documents it: normalising (a trailing
        // slash, percent-encoding) may lengthen the stored form past it.
        let url = Url::parse(raw).map_err(|e| format!("must be an absolute URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err("must use https".into()),
            other => return Err(format!("must use https, not {other}")),
        }
        let host = url.host().ok_or_else(|| "must include a host".to_owned())?;
        // Credentials in a URL end up in logs, lists and the dashboard.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "must not carry credentials (user:password@); send them as a header the \
                 receiver checks instead"
                    .into(),
            );
        }
        let port = url.port_or_known_default().unwrap_or(443);
        if !(policy.allow_any_port || matches!(port, 80 | 443 | 8443) || port >= 1024) {
            return Err(format!(
                "must use port 80, 443, 8443 or 1024 and above, not {port} \
                 (HOOKRELAY_ALLOW_ANY_PORT=true lifts this on a private installation)"
            ));
        }
        if !policy.allow_private {
            if let Some(reason) = host_reason(&host) {
                return Err(format!(
                    "must point at a public host; {host} is a {reason} address"
                ));
            }
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host name to resolve, when the URL names a host rather than an IP literal.
    pub fn domain(&self) -> Option<&str> {
        self.0.domain()
    }

    pub fn port_or_default(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

/// A webhook URL with every query value replaced by `***`, keys kept, for readers who may not
/// see credentials a tenant put in a query string. A URL without a query is left as it is.
pub fn redact_query(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.query().is_none() {
        return url.to_owned();
    }
    let keys: Vec<String> = parsed
        .query_pairs()
        .map(|(key, _)| key.into_owned())
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(keys.iter().map(|key| (key.as_str(), "***")));
    parsed.into()
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_str().fmt(f)
    }
}

fn host_reason(host: &Host<&str>) -> Option<&'static str> {
    match host {
        Host::Ipv4(ip) => forbidden_reason((*ip).into()),
        Host::Ipv6(ip) => forbidden_reason((*ip).into()),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("loopback")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_private: false,
        allow_any_port: false,
    };

    #[test]
    fn accepts_a_public_https_url() {
        let url = EndpointUrl::parse("https://your-app.com/webhooks/devtune", STRICT).unwrap();
        assert_eq!(url.as_str(), "https://your-app.com/webhooks/devtune");
        assert_eq!(url.domain(), Some("your-app.com"));
        assert_eq!(url.port_or_default(), 443);
    }

    #[test]
    fn rejects_relative_plain_http_and_other_schemes() {
        assert!(EndpointUrl::parse("/webhooks", STRICT).is_err());
        assert!(
            EndpointUrl::parse("http://example.com/", STRICT)
                .unwrap_err()
                .contains("https")
        );
        assert!(EndpointUrl::parse("ftp://example.com/", STRICT).is_err());
        let lenient = UrlPolicy {
            allow_http: true,
            ..STRICT
        };
        assert!(EndpointUrl::parse("http://example.com/", lenient).is_ok());
    }

    #[test]
    fn rejects_urls_longer_than_2048_characters() {
        let base = "https://example.com/";
        let ok = format!("{base}{}", "a".repeat(2048 - base.len()));
        assert!(EndpointUrl::parse(&ok, STRICT).is_ok());
        assert!(EndpointUrl::parse(&format!("{ok}a"), STRICT).is_err());
    }

    #[test]
    fn the_limit_counts_what_the_client_sent_not_the_normalised_form() {
        // "https://bbb…" is stored as "https://bbb…/": 2048 characters sent, 2049 stored.
        let sent = format!("https://{}", "b".repeat(2040));
        assert_eq!(sent.len(), 2048);
        let url = EndpointUrl::parse(&sent, STRICT).unwrap();
        assert_eq!(url.as_str().len(), 2049);
    }

    #[test]
    fn rejects_private_literals_in_every_spelling() {
        for raw in [
            "https://127.0.0.1/",
            "https://0x7f000001/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://0.0.0.0/",
        ] {
            assert!(
                EndpointUrl::parse(raw, STRICT).is_err(),
                "{raw} should be refused"
            );
        }
    }

    #[test]
    fn internationalised_names_are_judged_after_idna_mapping() {
        assert!(
            EndpointUrl::parse(
                "https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/",
                STRICT
            )
            .is_err()
        );
        let url = EndpointUrl::parse("https://b\u{fc}cher.example/", STRICT).unwrap();
        assert_eq!(url.domain(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn private_targets_pass_when_the_policy_allows_them() {
        let lenient = UrlPolicy {
            allow_http: true,
            allow_private: true,
            allow_any_port: false,
        };
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/hook", lenient).is_ok());
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        for raw in [
            "https://user:pass@93.184.215.14/",
            "https://user@93.184.215.14/",
            "https://:pw@93.184.215.14/",
        ] {
            let error = EndpointUrl::parse(raw, STRICT).unwrap_err();
            assert!(error.contains("credentials"), "{raw}: {error}");
        }
        assert!(EndpointUrl::parse("https://93.184.215.14/hook?token=abc", STRICT).is_ok());
    }

    #[test]
    fn only_web_ports_and_unprivileged_ones_unless_any_port_is_allowed() {
        for ok in [
            "https://93.184.215.14/",
            "https://93.184.215.14:8443/",
            "https://93.184.215.14:1024/",
        ] {
            assert!(EndpointUrl::parse(ok, STRICT).is_ok(), "{ok}");
        }
        for refused in [
            "https://93.184.215.14:22/",
            "https://93.184.215.14:25/",
            "https://93.184.215.14:1023/",
        ] {
            let error = EndpointUrl::parse(refused, STRICT).unwrap_err();
            assert!(error.contains("port"), "{refused}: {error}");
        }
        let any = UrlPolicy {
            allow_any_port: true,
            ..STRICT
        };
        assert!(EndpointUrl::parse("https://93.184.215.14:22/", any).is_ok());
    }

    #[test]
    fn query_values_are_redacted_and_keys_kept() {
        assert_eq!(
            redact_query("https://93.184.215.14/hook?token=s3cret&env=prod"),
            "https://93.184.215.14/hook?token=***&env=***"
        );
        assert_eq!(
            redact_query("https://93.184.215.14/hook"),
            "https://93.184.215.14/hook"
        );
    }
}
