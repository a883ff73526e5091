//! Topic id to name, learned from responses that carry both.
//!
//! Modern clients address topics by id (Fetch v13+, ShareFetch, …), but a
//! person reads names, and faults are written with names. Ids are learned
//! per broker address, as seen, and any broker's knowledge is used when the
//! addressed broker taught nothing (ids are cluster-wide UUIDs).

use std::net::SocketAddr;

use uuid::Uuid;

use crate::FastMap;

/// Brokers remembered at once.
const MAX_BROKERS: usize = 1024;
/// Topics remembered per broker.
const MAX_TOPICS_PER_BROKER: usize = 100_000;

/// A bounded map of topic ids to names, per broker address.
#[derive(Debug, Default)]
pub struct TopicIds {
    by_broker: FastMap<SocketAddr, FastMap<Uuid, String>>,
}

impl TopicIds {
    /// Records that `broker` named topic `id` as `name`. Beyond the bounds,
    /// new knowledge is ignored, which leaves ids unresolved, never wrong.
    pub fn learn(&mut self, broker: SocketAddr, id: Uuid, name: &str) {
        if id.is_nil() || name.is_empty() {
            return;
        }
        if !self.by_broker.contains_key(&broker) && self.by_broker.len() >= MAX_BROKERS {
            return;
        }
        let topics = self.by_broker.entry(broker).or_default();
        if topics.len() < MAX_TOPICS_PER_BROKER || topics.contains_key(&id) {
            topics.insert(id, name.to_owned());
        }
    }

    /// The name of topic `id` as `broker` (else any broker) taught it.
    pub fn resolve(&self, broker: SocketAddr, id: Uuid) -> Option<&str> {
        self.by_broker
            .get(&broker)
            .and_then(|topics| topics.get(&id))
            .or_else(|| self.by_broker.values().find_map(|topics| topics.get(&id)))
            .map(String::as_str)
    }

    /// Every id any broker gave `name`, sorted: what a fault on that topic must also match
    /// on the wire, since newer requests name topics by id only.
    pub fn ids_of(&self, name: &str) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .by_broker
            .values()
            .flat_map(|topics| topics.iter())
            .filter(|(_, known)| known.as_str() == name)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_from_the_broker_then_any() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:9092".parse().expect("a"),
            "10.0.0.2:9092".parse().expect("b"),
        );
        let id = Uuid::from_u128(7);
        let mut ids = TopicIds::default();
        assert_eq!(ids.resolve(a, id), None);
        ids.learn(a, id, "orders");
        ids.learn(a, Uuid::nil(), "ignored");
        assert_eq!(ids.resolve(a, id), Some("orders"));
        assert_eq!(ids.resolve(b, id), Some("orders"));
        ids.learn(b, id, "orders");
        assert_eq!(ids.ids_of("orders"), vec![id]);
        assert!(ids.ids_of("other").is_empty());
    }
}
