//! Getting events to receivers: signing, the HTTP client, the network policy, retries, the
//! worker that drives them, and retention of the delivery log.

pub mod client;
pub mod net;
pub mod retention;
pub mod retry;
pub mod signer;
pub mod worker;
