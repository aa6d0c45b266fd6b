//! Sets up the tracing subscriber once: text or JSON lines on stderr, filtered by HOOKRELAY_LOG.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|error| {
        eprintln!(
            "invalid log filter {:?} ({error}); using \"info\"",
            config.filter
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.format {
        // The current span's fields once per line, not again in a list of every open span.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
