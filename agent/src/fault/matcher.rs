//! Whether a decoded request is one a fault hits: the user's `match` evaluated on a sniffed
//! request, with stream context the kernel rules lack (the whole header, regex client ids,
//! topics named by id and resolved). Connection enforcement acts on it, and `inject` prints it.

use kafka_shock_crds::{Cidr, FaultMatch};
use regex::Regex;

use crate::sniffer::event::Event;

/// Why a match cannot be evaluated (checked again here, since a CLI file skips the API server).
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error("spec.match.clientId.regex: invalid regex: {0}")]
    Regex(#[from] regex::Error),
    #[error("spec.match.sourceCIDRs: {0}")]
    Cidr(#[from] kafka_shock_crds::matching::CidrError),
}

#[derive(Debug, Clone)]
enum ClientIdMatcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

/// Clients remembered as members of the fault's group.
const MAX_GROUP_MEMBERS: usize = 10_000;

/// A fault's match, compiled once, plus what it learned from the stream: which clients belong
/// to the fault's group. Fetch and Produce carry no group id, so "the Fetches of group G" are
/// the Fetches of clients (address and client id) seen in requests that name G.
#[derive(Debug, Clone)]
pub struct RequestMatcher {
    group_members: std::collections::HashSet<(std::net::IpAddr, Option<String>)>,
    apis: Vec<String>,
    versions: (i16, i16),
    client_id: Option<ClientIdMatcher>,
    topics: Vec<String>,
    group_id: Option<String>,
    transactional_id: Option<String>,
    sources: Vec<Cidr>,
}

impl RequestMatcher {
    pub fn new(spec: &FaultMatch) -> Result<RequestMatcher, MatchError> {
        let client_id = match &spec.client_id {
            None => None,
            Some(id) => match (&id.exact, &id.prefix, &id.regex) {
                (Some(exact), _, _) => Some(ClientIdMatcher::Exact(exact.clone())),
                (None, Some(prefix), _) => Some(ClientIdMatcher::Prefix(prefix.clone())),
                (None, None, Some(regex)) => Some(ClientIdMatcher::Regex(Regex::new(regex)?)),
                (None, None, None) => None,
            },
        };
        let versions = spec
            .api_versions
            .map(|range| (range.min.unwrap_or(0), range.max.unwrap_or(i16::MAX)))
            .unwrap_or((0, i16::MAX));
        Ok(RequestMatcher {
            group_members: Default::default(),
            apis: spec.api_keys.clone(),
            versions,
            client_id,
            topics: spec.topics.clone(),
            group_id: spec.group_id.clone(),
            transactional_id: spec.transactional_id.clone(),
            sources: spec
                .source_cidrs
                .iter()
                .map(|cidr| cidr.parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// Learns from a request that names the fault's group that its client is a member;
    /// true when the member is new.
    pub fn observe(&mut self, request: &Event) -> bool {
        self.group_id.is_some()
            && request.group_id == self.group_id
            && self.group_members.len() < MAX_GROUP_MEMBERS
            && self
                .group_members
                .insert((request.client.ip(), request.client_id.clone()))
    }

    /// The members of the fault's group seen so far: client address and client id.
    pub fn group_members(&self) -> impl Iterator<Item = &(std::net::IpAddr, Option<String>)> {
        self.group_members.iter()
    }

    /// Whether every condition the match sets holds for `request`.
    pub fn matches(&self, request: &Event) -> bool {
        let api = self.apis.is_empty() || self.apis.iter().any(|api| *api == request.api);
        let version = (self.versions.0..=self.versions.1).contains(&request.api_version);
        let client_id = match (&self.client_id, request.client_id.as_deref()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(ClientIdMatcher::Exact(exact)), Some(id)) => id == exact,
            (Some(ClientIdMatcher::Prefix(prefix)), Some(id)) => id.starts_with(prefix.as_str()),
            (Some(ClientIdMatcher::Regex(regex)), Some(id)) => regex.is_match(id),
        };
        let topics = self.topics.is_empty()
            || request
                .topics
                .iter()
                .any(|topic| self.topics.contains(topic));
        let group = match (&self.group_id, &request.group_id) {
            (None, _) => true,
            (Some(wanted), Some(named)) => wanted == named,
            (Some(_), None) => self
                .group_members
                .contains(&(request.client.ip(), request.client_id.clone())),
        };
        let transaction =
            self.transactional_id.is_none() || request.transactional_id == self.transactional_id;
        let source = self.sources.is_empty()
            || self
                .sources
                .iter()
                .any(|cidr| cidr.contains(request.client.ip()));
        api && version && client_id && topics && group && transaction && source
    }
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::{ApiVersionRange, ClientIdMatch};

    use super::*;

    fn produce(client_id: &str, topic: &str) -> Event {
        crate::sniffer::event::test_request("Produce", client_id, &[topic])
    }

    fn matcher(spec: FaultMatch) -> RequestMatcher {
        RequestMatcher::new(&spec).expect("valid match")
    }

    #[test]
    fn an_empty_match_hits_everything() {
        assert!(matcher(FaultMatch::default()).matches(&produce("a", "t")));
    }

    #[test]
    fn every_set_condition_must_hold() {
        let reset_orders = matcher(FaultMatch {
            api_keys: vec!["Produce".into()],
            api_versions: Some(ApiVersionRange {
                min: Some(3),
                max: Some(13),
            }),
            client_id: Some(ClientIdMatch {
                exact: Some("checkout-svc".into()),
                ..Default::default()
            }),
            topics: vec!["orders".into()],
            source_cidrs: vec!["10.77.0.0/24".into()],
            ..Default::default()
        });
        assert!(reset_orders.matches(&produce("checkout-svc", "orders")));
        assert!(!reset_orders.matches(&produce("checkout-svc", "other")));
        assert!(!reset_orders.matches(&produce("billing", "orders")));
        let mut fetch = produce("checkout-svc", "orders");
        fetch.api = "Fetch".into();
        assert!(!reset_orders.matches(&fetch));
        let mut old = produce("checkout-svc", "orders");
        old.api_version = 2;
        assert!(!reset_orders.matches(&old));
        let mut elsewhere = produce("checkout-svc", "orders");
        elsewhere.client = "192.0.2.1:1".parse().expect("addr");
        assert!(!reset_orders.matches(&elsewhere));
        let mut anonymous = produce("checkout-svc", "orders");
        anonymous.client_id = None;
        assert!(!reset_orders.matches(&anonymous));
    }

    #[test]
    fn prefix_regex_group_and_transaction() {
        let by_prefix = matcher(FaultMatch {
            client_id: Some(ClientIdMatch {
                prefix: Some("checkout-".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(by_prefix.matches(&produce("checkout-7", "t")));
        assert!(!by_prefix.matches(&produce("xcheckout-7", "t")));
        let by_regex = matcher(FaultMatch {
            client_id: Some(ClientIdMatch {
                regex: Some("^svc-[0-9]+$".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(by_regex.matches(&produce("svc-12", "t")));
        assert!(!by_regex.matches(&produce("svc-x", "t")));
        let billing = matcher(FaultMatch {
            group_id: Some("billing".into()),
            transactional_id: Some("tx".into()),
            ..Default::default()
        });
        let mut join = produce("c", "t");
        join.group_id = Some("billing".into());
        assert!(!billing.matches(&join), "the transactional id is missing");
        join.transactional_id = Some("tx".into());
        assert!(billing.matches(&join));
    }

    #[test]
    fn fetches_of_a_group_are_those_of_its_members() {
        let mut billing = matcher(FaultMatch {
            api_keys: vec!["Fetch".into()],
            group_id: Some("billing".into()),
            ..Default::default()
        });
        let mut fetch = produce("consumer-1", "t");
        fetch.api = "Fetch".into();
        assert!(!billing.matches(&fetch), "not known as a member yet");
        let mut join = produce("consumer-1", "t");
        join.api = "JoinGroup".into();
        join.group_id = Some("billing".into());
        assert!(billing.observe(&join), "a new member");
        assert!(!billing.observe(&join), "known already");
        assert!(billing.matches(&fetch));
        let mut other_member = fetch.clone();
        other_member.client_id = Some("consumer-2".into());
        assert!(!billing.matches(&other_member));
        let mut elsewhere = join.clone();
        elsewhere.group_id = Some("shipping".into());
        elsewhere.client_id = Some("consumer-3".into());
        assert!(!billing.observe(&elsewhere));
        let mut shipping_fetch = fetch.clone();
        shipping_fetch.client_id = Some("consumer-3".into());
        assert!(!billing.matches(&shipping_fetch));
    }

    #[test]
    fn bad_regex_and_cidr_name_their_field() {
        let regex = RequestMatcher::new(&FaultMatch {
            client_id: Some(ClientIdMatch {
                regex: Some("(".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            regex
                .expect_err("bad regex")
                .to_string()
                .starts_with("spec.match.clientId.regex")
        );
        let cidr = RequestMatcher::new(&FaultMatch {
            source_cidrs: vec!["10.0.0.0".into()],
            ..Default::default()
        });
        assert!(
            cidr.expect_err("bad cidr")
                .to_string()
                .starts_with("spec.match.sourceCIDRs")
        );
    }
}
