//! Getting events to receivers: the publishing handle, the queue protocol, the worker that
//! admits, sends and records, pull delivery to pollers, how answers are judged, signing, and
//! the HTTP client with its address policy.

pub mod client;
mod failure;
mod group_commit;
pub mod publisher;
pub mod pull;
pub mod queue;
pub mod replay;
pub mod signer;
pub mod verdict;
pub mod worker;

pub use publisher::Publisher;
pub use pull::Puller;
pub use queue::Queue;
pub use worker::{Worker, WorkerOptions, WorkerSettings};
