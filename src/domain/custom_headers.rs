//! Headers a tenant adds to every attempt of a webhook, e.g. an `X-Api-Key` its receiver
//! expects. Their values may be credentials: stored sealed, shown masked.

use std::collections::BTreeMap;

/// Most headers one webhook may add.
pub const MAX_HEADERS: usize = 20;
const MAX_NAME_LEN: usize = 64;
const MAX_VALUE_BYTES: usize = 1024;

/// Names the service sets itself, or that would break the request.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];
const RESERVED_PREFIXES: [&str; 2] = ["x-devtune-", "webhook-"];

/// Header names (lowercase) and values, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomHeaders(BTreeMap<String, String>);

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl CustomHeaders {
    /// Checks every pair; the message names the first bad header.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut headers = BTreeMap::new();
        for (name, value) in pairs {
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(is_token_char) {
                return Err(format!(
                    "{name:?} is not a header name (1 to {MAX_NAME_LEN} letters, digits and !#$%&'*+-.^_`|~)"
                ));
            }
            if RESERVED.contains(&lower.as_str())
                || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                return Err(format!(
                    "{name} is set by hookrelay itself and cannot be overridden"
                ));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "the value of {name} is longer than {MAX_VALUE_BYTES} bytes"
                ));
            }
            // Visible ASCII, spaces and tabs: what every HTTP stack sends as a header value.
            if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
                return Err(format!(
                    "the value of {name} must be visible ASCII text without line breaks"
                ));
            }
            if headers.insert(lower, value.to_owned()).is_some() {
                return Err(format!("{name} is given twice"));
            }
        }
        if headers.len() > MAX_HEADERS {
            return Err(format!("at most {MAX_HEADERS} headers"));
        }
        Ok(Self(headers))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The headers with each value reduced to its last 4 characters, as reads show them.
    pub fn masked(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), mask(value)))
            .collect()
    }

    /// The stored form (before sealing): a JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a map of strings serializes")
    }

    pub fn from_json(stored: &str) -> Result<Self, String> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(stored).map_err(|e| format!("stored headers: {e}"))?;
        Self::parse(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// `…` and the value's last 4 characters (all of a shorter value is hidden).
pub fn mask(value: &str) -> String {
    let count = value.chars().count();
    if count <= 4 {
        return "\u{2026}".into();
    }
    let tail: String = value.chars().skip(count - 4).collect();
    format!("\u{2026}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_headers_are_kept_lowercase_and_masked_on_reads() {
        let headers = CustomHeaders::parse([("X-Api-Key", "secret-value-1234")]).unwrap();
        assert!(headers.contains("x-api-key"));
        assert_eq!(headers.masked()["x-api-key"], "\u{2026}1234");
        let stored = headers.to_json();
        assert_eq!(CustomHeaders::from_json(&stored).unwrap(), headers);
        assert_eq!(mask("abc"), "\u{2026}");
    }

    #[test]
    fn reserved_names_and_bad_values_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Content-Type",
            "Transfer-Encoding",
            "Connection",
            "User-Agent",
            "X-DevTune-Signature",
            "webhook-id",
            "bad name",
            "",
            "a:b",
        ] {
            assert!(CustomHeaders::parse([(name, "v")]).is_err(), "{name:?}");
        }
        for value in [
            "a\r\nb",
            "a\nb",
            "a\0b",
            &"x".repeat(1025),
            "caf\u{e9}",
            "a\u{1}b",
            "a\u{7f}",
        ] {
            assert!(
                CustomHeaders::parse([("x-ok", value)]).is_err(),
                "{value:?}"
            );
        }
        let too_many: Vec<(String, String)> =
            (0..21).map(|n| (format!("x-h{n}"), "v".into())).collect();
        assert!(
            CustomHeaders::parse(too_many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_err()
        );
        assert!(
            CustomHeaders::parse([("x-a", "1"), ("X-A", "2")]).is_err(),
            "twice"
        );
    }
}
