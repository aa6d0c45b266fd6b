//! Error messages for logs and delivery records: an error followed by all of its causes.

use std::error::Error;

/// `error: cause: cause of the cause…`, one line.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    append_causes(&mut text, error);
    text
}

/// Appends `: cause` for every source of `error`, not `error` itself.
pub fn append_causes(text: &mut String, error: &dyn Error) {
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn lists_the_error_and_its_causes() {
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
        let mut text = String::from("failed");
        append_causes(&mut text, &error);
        assert_eq!(text, "failed: inner");
    }
}
