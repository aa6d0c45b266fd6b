//! Getting events to receivers: the publishing handle, the queue protocol, the worker that
//! admits, sends and records, signing, the HTTP client and its address policy, and retention
//! of the delivery log.

pub mod client;
mod group_commit;
pub mod publisher;
pub mod queue;
pub mod retention;
pub mod signer;
pub mod worker;

pub use publisher::Publisher;
pub use queue::Queue;
pub use worker::{Worker, WorkerOptions, WorkerSettings};
