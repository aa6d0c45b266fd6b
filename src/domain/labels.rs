//! What a tenant writes about a webhook for its own use: a description and string metadata.

use std::collections::BTreeMap;

const MAX_DESCRIPTION_CHARS: usize = 256;
const MAX_METADATA_ENTRIES: usize = 16;
const MAX_METADATA_CHARS: usize = 256;

/// Control characters would garble logs and lists, and Postgres cannot store NUL at all.
fn has_control(text: &str, allow_line_breaks: bool) -> bool {
    text.chars()
        .any(|c| c.is_control() && !(allow_line_breaks && matches!(c, '\n' | '\r' | '\t')))
}

pub fn check_description(text: &str) -> Result<String, String> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if has_control(text, true) {
        return Err("must not contain control characters other than line breaks and tabs".into());
    }
    Ok(text.to_owned())
}

/// String keys and values, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            if key.is_empty() || key.chars().count() > MAX_METADATA_CHARS {
                return Err(format!("keys must be 1 to {MAX_METADATA_CHARS} characters"));
            }
            if value.chars().count() > MAX_METADATA_CHARS {
                return Err(format!(
                    "the value of {key:?} is longer than {MAX_METADATA_CHARS} characters"
                ));
            }
            if has_control(key, false) || has_control(value, false) {
                return Err("keys and values must not contain control characters".into());
            }
            map.insert(key.to_owned(), value.to_owned());
        }
        if map.len() > MAX_METADATA_ENTRIES {
            return Err(format!("must have at most {MAX_METADATA_ENTRIES} entries"));
        }
        Ok(Self(map))
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a map of strings serializes")
    }

    pub fn from_json(stored: &str) -> Result<Self, String> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(stored).map_err(|e| format!("stored metadata: {e}"))?;
        Ok(Self(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold() {
        assert!(check_description(&"d".repeat(256)).is_ok());
        assert!(check_description(&"d".repeat(257)).is_err());
        let sixteen: Vec<(String, String)> =
            (0..16).map(|n| (format!("k{n}"), "v".into())).collect();
        assert!(Metadata::parse(sixteen.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_ok());
        let seventeen: Vec<(String, String)> =
            (0..17).map(|n| (format!("k{n}"), "v".into())).collect();
        assert!(Metadata::parse(seventeen.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_err());
        assert!(Metadata::parse([("", "v")]).is_err());
        assert!(check_description("two\nlines\tok").is_ok());
        assert!(check_description("nul\0").is_err());
        assert!(Metadata::parse([("k", "a\u{1b}[31m")]).is_err());
        assert!(Metadata::parse([("k\0", "v")]).is_err());
        assert!(Metadata::parse([("k", "v".repeat(257).as_str())]).is_err());
    }
}
