//! Getting events to receivers: the publishing handle, the queue protocol, the worker that
//! admits, sends and records, signing, and the HTTP client with its address policy.

pub mod client;
mod failure;
mod group_commit;
pub mod publisher;
pub mod queue;
pub mod replay;
pub mod signer;
pub mod worker;

pub use publisher::Publisher;
pub use queue::Queue;
pub use worker::{Worker, WorkerOptions, WorkerSettings};
