//! How a webhook's deliveries leave the service: pushed to its URL by a worker, or pulled by a
//! poller over the API.

use super::EndpointUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeliveryMode {
    /// A worker POSTs each delivery to the webhook's URL.
    #[default]
    Push,
    /// A poller leases deliveries from `…/poll` and reports each outcome to `…/poll/ack`.
    Pull,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Push => "push",
            DeliveryMode::Pull => "pull",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [DeliveryMode::Push, DeliveryMode::Pull]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

/// Where a new webhook's deliveries go: a push webhook has a URL, a pull webhook has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Push(EndpointUrl),
    Pull,
}

impl Destination {
    pub fn mode(&self) -> DeliveryMode {
        match self {
            Destination::Push(_) => DeliveryMode::Push,
            Destination::Pull => DeliveryMode::Pull,
        }
    }

    pub fn url(&self) -> Option<&EndpointUrl> {
        match self {
            Destination::Push(url) => Some(url),
            Destination::Pull => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_back_what_they_write_and_nothing_else() {
        for mode in [DeliveryMode::Push, DeliveryMode::Pull] {
            assert_eq!(DeliveryMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(DeliveryMode::parse("PULL"), None);
        assert_eq!(DeliveryMode::parse(""), None);
    }
}
