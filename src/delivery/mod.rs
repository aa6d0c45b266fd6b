//! Getting events to receivers: the network policy for webhook targets.

pub mod net;
