//! From a user's fault to what a session enforces in one network namespace: the rule
//! compiler's input, the matcher the sniffer applies, and which kinds of rules carry the fault
//! (Auto: Proxy for the Kafka-level actions, Inline for a Delay or a match the kernel cannot
//! express at all, else the signature when it is exact, plus connection rules as a backstop
//! when not).

use std::time::Duration;

use kafka_shock_crds::matching::api_key_by_name;
use kafka_shock_crds::{
    Action, ActionType, Cidr, Enforcement, FaultMatch, FaultTerms, Handover, SourcesError,
    SpecError,
};

use crate::fault::{MatchError, RequestMatcher};
use crate::rules::{
    ClientIdPattern, Compiled, Flow, Injection, Layers, Signature, Verdict, compile, inline_queue,
};

/// Why a fault cannot be enforced; nothing is installed when planning fails.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the fault is invalid:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<SpecError>),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error("spec.match.sourceCIDRs: {0}")]
    Cidr(String),
    /// A sourceSelector not resolved to addresses (the CLI has no pods), or selecting none.
    #[error(transparent)]
    Sources(#[from] SourcesError),
}

/// A fault, ready to compile into rules and to match sniffed requests.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    injection: Injection,
    enforcement: Enforcement,
    topics: Vec<String>,
    /// Delay's hold and its largest random extra (zero for other actions).
    delay: (Duration, Duration),
    /// The NFQUEUE number of the Inline chain: first the id's hash, then what the Inline enforcer
    /// managed to bind.
    queue: u16,
    /// Proxy: the action as the user wrote it (the proxy reads its error, throttle, target).
    action: Action,
    /// Proxy: what happens to the connections opened before the fault.
    handover: Handover,
    /// Proxy: the port the proxy listens on in the namespace, once it does (0 before).
    proxy_port: u16,
    /// The user's match, evaluated on sniffed requests (Connection mode, and reporting).
    pub matcher: RequestMatcher,
    /// The user's match as written (the proxy builds its own matcher from it).
    matching: FaultMatch,
}

impl FaultPlan {
    /// Validates `terms` and plans them under the injection id `id` (chain name and rule
    /// comments). A `sourceSelector` must have been resolved to addresses first (the agent
    /// does it with the operator's `sourceIPs`); the CLI has no pods, so it is refused there.
    pub fn new(id: &str, terms: &FaultTerms) -> Result<FaultPlan, PlanError> {
        terms.validate().map_err(PlanError::Invalid)?;
        terms.match_.with_selected_sources(None)?;
        let verdict = match terms.action.type_ {
            ActionType::Reject => Verdict::Reject,
            ActionType::Drop => Verdict::Drop,
            ActionType::Delay => Verdict::Delay,
            ActionType::Error
            | ActionType::Throttle
            | ActionType::Corrupt
            | ActionType::Duplicate => Verdict::Proxy,
        };
        if !terms.enforcement.can_act(terms.action.type_)
            || (verdict == Verdict::Delay && !terms.enforcement.can_delay())
        {
            return Err(PlanError::Unsupported(
                "terms.enforcement cannot carry out terms.action.type",
            ));
        }
        let delay = (
            terms.action.delay().unwrap_or_default(),
            terms.action.jitter().unwrap_or_default(),
        );
        let matched = &terms.match_;
        let client_id =
            matched
                .client_id
                .as_ref()
                .and_then(|id| match (&id.exact, &id.prefix, &id.regex) {
                    (Some(exact), _, _) => Some(ClientIdPattern::Exact(exact.as_bytes().to_vec())),
                    (None, Some(prefix), _) => {
                        Some(ClientIdPattern::Prefix(prefix.as_bytes().to_vec()))
                    }
                    (None, None, Some(regex)) => Some(ClientIdPattern::Regex(regex.clone())),
                    (None, None, None) => None,
                });
        let signature = Signature {
            api_keys: matched
                .api_keys
                .iter()
                .filter_map(|name| api_key_by_name(name))
                .map(|key| key as i16)
                .collect(),
            api_versions: matched
                .api_versions
                .map(|range| (range.min.unwrap_or(0), range.max.unwrap_or(i16::MAX))),
            client_id,
            topics: matched
                .topics
                .iter()
                .map(|topic| topic.as_bytes().to_vec())
                .collect(),
            topic_ids: Vec::new(),
            group_id: matched
                .group_id
                .as_ref()
                .map(|group| group.as_bytes().to_vec()),
            transactional_id: matched
                .transactional_id
                .as_ref()
                .map(|id| id.as_bytes().to_vec()),
        };
        let source_cidrs = matched
            .source_cidrs
            .iter()
            .map(|cidr| {
                cidr.parse::<Cidr>()
                    .map_err(|error| PlanError::Cidr(format!("{cidr}: {error}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(FaultPlan {
            injection: Injection {
                id: id.to_owned(),
                ports: terms.ports.clone(),
                signature,
                verdict,
                probability: terms.action.probability,
                source_cidrs,
                layers: Layers::Signature,
            },
            enforcement: if terms.is_proxy() {
                Enforcement::Proxy
            } else {
                terms.enforcement
            },
            topics: matched.topics.clone(),
            delay,
            queue: inline_queue(id),
            action: terms.action.clone(),
            handover: terms.handover(),
            proxy_port: 0,
            matcher: RequestMatcher::new(matched)?,
            matching: matched.clone(),
        })
    }

    /// The topic names the fault matches, whose ids the sniffer should learn.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The ids learned for the fault's topics.
    pub fn topic_ids(&self) -> &[[u8; 16]] {
        &self.injection.signature.topic_ids
    }

    /// The ids learned, each standing for the fault's first topic (matching only asks whether
    /// a request names any of the fault's topics); none for a fault without topics.
    pub fn topic_ids_named(&self) -> Vec<([u8; 16], String)> {
        match self.topics.first() {
            Some(name) => self
                .topic_ids()
                .iter()
                .map(|id| (*id, name.clone()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The injection id.
    pub fn id(&self) -> &str {
        &self.injection.id
    }

    /// Adds topic ids learned for the fault's topics; true when any was new, so the rules
    /// must be compiled again.
    pub fn learn_topic_ids(&mut self, ids: impl IntoIterator<Item = [u8; 16]>) -> bool {
        let known = &mut self.injection.signature.topic_ids;
        let before = known.len();
        for id in ids {
            if !known.contains(&id) {
                known.push(id);
            }
        }
        known.sort_unstable();
        known.len() != before
    }

    /// Which kinds of rule carry the fault: as the user chose; for Auto, Proxy for a
    /// Kafka-level action (resolved when planned), Inline when the action is Delay or the
    /// kernel cannot express the match at all (a regex client id, ids too long for a pattern),
    /// else the signature alone when it is exact, else the signature plus connection rules.
    pub fn layers(&self) -> Layers {
        let inline = Layers::Inline { queue: self.queue };
        match self.enforcement {
            Enforcement::Signature => Layers::Signature,
            Enforcement::Connection => Layers::Connection,
            Enforcement::Inline => inline,
            Enforcement::Proxy => Layers::Proxy {
                port: self.proxy_port,
                reset_established: self.handover == Handover::Reset,
            },
            Enforcement::Auto => {
                let exactness = compile(&self.injection, &[]).exactness;
                if self.injection.verdict == Verdict::Delay || exactness.signature_disabled() {
                    inline
                } else if exactness.is_exact() {
                    Layers::Signature
                } else {
                    Layers::Both
                }
            }
        }
    }

    /// Whether the agent decides every packet itself (NFQUEUE) rather than the kernel's rules.
    pub fn is_inline(&self) -> bool {
        matches!(self.layers(), Layers::Inline { .. })
    }

    /// Whether a transparent proxy in the namespace carries the fault (Proxy enforcement).
    pub fn is_proxy(&self) -> bool {
        self.enforcement == Enforcement::Proxy
    }

    /// Records the port the proxy listens on; the rules compiled afterwards redirect there.
    pub fn set_proxy_port(&mut self, port: u16) {
        self.proxy_port = port;
    }

    /// The match as the user wrote it.
    pub fn matching(&self) -> &FaultMatch {
        &self.matching
    }

    /// The action as the user wrote it.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// What happens to the connections opened before a Proxy fault.
    pub fn handover(&self) -> Handover {
        self.handover
    }

    /// The NFQUEUE number the Inline chain sends segments to.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Records the queue number the Inline enforcer bound (the first choice may be taken); the
    /// rules compiled afterwards send segments there.
    pub fn set_queue(&mut self, queue: u16) {
        self.queue = queue;
    }

    /// What is done to a hit request.
    pub fn verdict(&self) -> Verdict {
        self.injection.verdict
    }

    /// Delay's hold and the largest random extra added to it (zero for other actions).
    pub fn delay(&self) -> (Duration, Duration) {
        self.delay
    }

    /// The broker ports.
    pub fn ports(&self) -> &[u16] {
        &self.injection.ports
    }

    /// Whether connections caught by the sniffer get rules of their own.
    pub fn cuts_connections(&self) -> bool {
        matches!(self.layers(), Layers::Connection | Layers::Both)
    }

    /// Percent of matching requests hit (the sniffer's per-request draw in Connection mode).
    pub fn probability(&self) -> u8 {
        self.injection.probability
    }

    /// The rules for the current knowledge (learned topic ids and group members) and the
    /// caught `flows`. A group's members get signature rules of their own (their client id,
    /// from their address): the requests that carry no group id, like Fetch, are then hit in
    /// the kernel from a member's first request on every new connection, not only once the
    /// sniffer has seen one.
    pub fn compile(&self, flows: &[Flow]) -> Compiled {
        let mut injection = self.injection.clone();
        injection.layers = self.layers();
        let mut compiled = compile(&injection, flows);
        if self.is_inline() || self.is_proxy() {
            // The Inline decider and the proxy see every request; members need no rules of
            // their own.
            return compiled;
        }
        for (address, client_id) in self.matcher.group_members() {
            let Some(client_id) = client_id else { continue };
            let source = Cidr::host(*address);
            let mut member = self.injection.clone();
            member.layers = Layers::Signature;
            member.signature.group_id = None;
            member.signature.client_id =
                Some(ClientIdPattern::Exact(client_id.as_bytes().to_vec()));
            member.source_cidrs = vec![source];
            let rules = compile(&member, &[]);
            compiled.v4.rules.extend(rules.v4.rules);
            compiled.v6.rules.extend(rules.v6.rules);
        }
        compiled
    }
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::KafkaFaultSpec;

    use super::*;
    use crate::rules::{Family, Gap};

    /// The terms of the fault spec `yaml`.
    fn spec(yaml: &str) -> FaultTerms {
        serde_yaml::from_str::<KafkaFaultSpec>(yaml)
            .expect("spec yaml")
            .terms
    }

    const RESET_ORDERS: &str = "
selector: {matchLabels: {app: kafka}}
match: {apiKeys: [Produce], clientId: {exact: checkout-svc}, topics: [orders]}
action: {type: Reject}
";

    #[test]
    fn learned_topic_ids_join_the_signature() {
        let mut plan = FaultPlan::new("t1", &spec(RESET_ORDERS)).expect("plan");
        // Topics are searched within a window, so Auto keeps connection rules as a backstop.
        assert_eq!(plan.layers(), Layers::Both);
        let before = plan.compile(&[]);
        assert!(before.exactness.gaps.contains(&Gap::NoTopicIdsYet));
        assert!(plan.learn_topic_ids([[7u8; 16]]));
        assert!(!plan.learn_topic_ids([[7u8; 16]]), "already known");
        let after = plan.compile(&[]);
        assert!(!after.exactness.gaps.contains(&Gap::NoTopicIdsYet));
        assert!(
            after.v4.rules.len() > before.v4.rules.len(),
            "rules for the topic id"
        );
    }

    #[test]
    fn an_exact_signature_is_enough_for_auto() {
        let produce_from = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {apiKeys: [Produce], clientId: {exact: checkout-svc}}
action: {type: Reject}
",
        );
        let plan = FaultPlan::new("t5", &produce_from).expect("plan");
        assert_eq!(plan.layers(), Layers::Signature);
        assert!(!plan.cuts_connections());
    }

    #[test]
    fn group_members_get_signature_rules_for_their_fetches() {
        let blackhole = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {apiKeys: [Fetch], groupId: billing}
action: {type: Drop}
",
        );
        let mut plan = FaultPlan::new("t6", &blackhole).expect("plan");
        let before = plan.compile(&[]).v4.rules.len();
        let mut join = crate::sniffer::event::test_request("JoinGroup", "consumer-billing", &[]);
        join.group_id = Some("billing".into());
        assert!(plan.matcher.observe(&join));
        let after = plan.compile(&[]);
        assert!(after.v4.rules.len() > before, "a rule for the member");
        let member_rule = after.v4.rules.last().expect("rule").render();
        assert!(member_rule.contains("-s 10.77.0.100/32"), "{member_rule}");
        assert!(
            member_rule.contains("63 6f 6e 73 75 6d 65 72"),
            "client id bytes: {member_rule}"
        );
        assert!(member_rule.contains("-j DROP"), "{member_rule}");
    }

    #[test]
    fn a_regex_client_id_needs_connection_rules() {
        let regex = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {clientId: {regex: '^svc-[0-9]+$'}}
action: {type: Drop}
enforcement: Connection
",
        );
        let plan = FaultPlan::new("t2", &regex).expect("plan");
        assert_eq!(plan.layers(), Layers::Connection);
        assert!(plan.cuts_connections());
    }

    #[test]
    fn an_unresolved_source_selector_is_refused_and_a_resolved_one_is_enforced_by_address() {
        let isolate = spec(
            "
selector: {matchLabels: {app: kafka}}
ports: [9091]
match: {sourceSelector: {matchLabels: {app: kafka}}}
action: {type: Drop}
",
        );
        let error = FaultPlan::new("s1", &isolate).expect_err("no pods in the CLI");
        assert!(
            error.to_string().contains("sourceCIDRs"),
            "says what to use instead: {error}"
        );
        let resolved = FaultTerms {
            match_: isolate
                .match_
                .with_selected_sources(Some(&["10.77.0.11".to_owned()]))
                .expect("resolved"),
            ..isolate.clone()
        };
        let plan = FaultPlan::new("s1", &resolved).expect("plan");
        let rules: Vec<String> = plan
            .compile(&[])
            .v4
            .rules
            .iter()
            .map(|r| r.render())
            .collect();
        assert!(!rules.is_empty());
        assert!(
            rules.iter().all(|rule| rule.contains("-s 10.77.0.11/32")),
            "every rule names the selected pod: {rules:?}"
        );
        assert!(
            plan.compile(&[]).v6.rules.is_empty(),
            "no IPv6 source selected"
        );
    }

    #[test]
    fn invalid_and_unsupported_faults_are_refused_with_their_field() {
        let invalid = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {clientId: {regex: '('}}
action: {type: Reject, probability: 100}
",
        );
        let error = FaultPlan::new("t3", &invalid).expect_err("invalid regex");
        assert!(
            error.to_string().contains("spec.match.clientId.regex"),
            "{error}"
        );
        let delay = spec(
            "
selector: {matchLabels: {app: kafka}}
action: {type: Delay, delay: 500ms}
enforcement: Signature
",
        );
        let error = FaultPlan::new("t4", &delay).expect_err("delay");
        assert!(error.to_string().contains("Inline"), "{error}");
    }

    #[test]
    fn auto_goes_inline_for_delay_and_for_regexes() {
        let delay = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {apiKeys: [Produce], topics: [orders]}
action: {type: Delay, delay: 500ms, jitter: 20ms}
",
        );
        let plan = FaultPlan::new("t7", &delay).expect("plan");
        assert_eq!(
            plan.layers(),
            Layers::Inline {
                queue: plan.queue()
            }
        );
        assert_eq!(
            plan.delay(),
            (Duration::from_millis(500), Duration::from_millis(20))
        );
        assert!(!plan.cuts_connections());
        let regex = spec(
            "
selector: {matchLabels: {app: kafka}}
match: {clientId: {regex: '^svc-[0-9]+$'}}
action: {type: Reject}
",
        );
        assert!(FaultPlan::new("t8", &regex).expect("plan").is_inline());
    }

    #[test]
    fn an_inline_chain_queues_the_broker_ports_and_resets_marked_segments() {
        let reset = spec(
            "
selector: {matchLabels: {app: kafka}}
ports: [9092, 9093]
match: {apiKeys: [Produce], sourceCIDRs: [10.77.0.0/24]}
action: {type: Reject}
enforcement: Inline
",
        );
        let mut plan = FaultPlan::new("t9", &reset).expect("plan");
        plan.set_queue(4242);
        let compiled = plan.compile(&[]);
        let rules: Vec<String> = compiled.v4.rules.iter().map(|rule| rule.render()).collect();
        assert_eq!(rules.len(), 3, "{rules:#?}");
        assert!(
            rules[0].starts_with("-s 127.0.0.1/32 -d 127.0.0.1/32 -p udp -m udp --dport 44242 ")
                && rules[0].ends_with("-j NFQUEUE --queue-num 4242 --queue-bypass"),
            "the Inline enforcer's wake-up: {}",
            rules[0]
        );
        assert!(
            rules[1].starts_with("-p tcp -m mark --mark 0x4b531092 ")
                && rules[1].ends_with("-j REJECT --reject-with tcp-reset"),
            "{}",
            rules[1]
        );
        assert!(
            rules[2].starts_with("-s 10.77.0.0/24 -p tcp -m multiport --dports 9092,9093 ")
                && rules[2].ends_with("-j NFQUEUE --queue-num 4242 --queue-bypass"),
            "{}",
            rules[2]
        );
        assert!(
            compiled
                .v6
                .rules
                .iter()
                .all(|rule| !rule.render().contains("NFQUEUE")),
            "no IPv6 source: nothing queued"
        );
        // The broker ports, and the Inline enforcer's wake-up datagrams.
        assert_eq!(compiled.v4.jumps.len(), 2);
        assert!(
            compiled.v4.jumps[1]
                .render()
                .contains("-p udp -m udp --dport 44242")
        );
    }

    #[test]
    fn auto_goes_proxy_for_kafka_level_actions_with_a_redirect_and_a_handover() {
        let error = spec(
            "
selector: {matchLabels: {app: kafka}}
ports: [9092, 9093]
match: {apiKeys: [Produce], topics: [orders], sourceCIDRs: [10.77.0.0/24, fd00:77::/64]}
action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER, probability: 50}
",
        );
        let mut plan = FaultPlan::new("p1", &error).expect("plan");
        assert!(plan.is_proxy() && !plan.is_inline() && !plan.cuts_connections());
        assert_eq!(plan.verdict(), Verdict::Proxy);
        assert_eq!(plan.action().error_code(), Some(6));
        plan.set_proxy_port(41234);
        assert_eq!(
            plan.layers(),
            Layers::Proxy {
                port: 41234,
                reset_established: true
            }
        );
        let compiled = plan.compile(&[]);
        let (nat4, nat6) = compiled.nat.as_ref().expect("nat chains");
        let redirect = |chain: &crate::rules::Chain| -> Vec<String> {
            chain.rules.iter().map(|rule| rule.render()).collect()
        };
        assert_eq!(nat4.table, crate::rules::Table::Nat);
        assert_eq!(nat4.name, compiled.v4.name);
        let v4 = redirect(nat4);
        assert_eq!(v4.len(), 1, "{v4:#?}");
        assert!(
            v4[0].starts_with("-s 10.77.0.0/24 -p tcp -m multiport --dports 9092,9093 ")
                && v4[0].ends_with("-j REDIRECT --to-ports 41234"),
            "{v4:#?}"
        );
        assert!(redirect(nat6)[0].starts_with("-s fd00:77::/64 "));
        assert!(
            nat4.jumps[0]
                .render()
                .starts_with("-p tcp -m multiport --dports 9092,9093 ")
        );
        // The handover resets what was not redirected, never the proxy's upstream.
        let reset = redirect(&compiled.v4);
        assert_eq!(reset.len(), 1);
        assert!(
            reset[0].contains("! -i lo -p tcp")
                && reset[0].contains("--ctstate ESTABLISHED")
                && reset[0].ends_with("tcp-reset"),
            "{reset:#?}"
        );
        assert!(
            compiled.v4.jumps[0]
                .render()
                .contains("-m mark ! --mark 0x4b500000")
        );
        assert_eq!(compiled.rule_count(), 4);
        assert_eq!(compiled.chains(Family::V6).len(), 2);
        let gentle = spec(
            "
selector: {matchLabels: {app: kafka}}
action: {type: Throttle, throttleTime: 2s}
enforcement: Proxy
handover: NewConnectionsOnly
",
        );
        let plan = FaultPlan::new("p2", &gentle).expect("plan");
        let compiled = plan.compile(&[]);
        assert!(compiled.v4.rules.is_empty() && compiled.nat.is_some());
        assert_eq!(plan.action().throttle_time(), Some(Duration::from_secs(2)));
        // Delay under Proxy holds requests in the proxy: no kernel rule but the redirect.
        let delay = spec(
            "
selector: {matchLabels: {app: kafka}}
action: {type: Delay, delay: 1s}
enforcement: Proxy
",
        );
        let plan = FaultPlan::new("p3", &delay).expect("plan");
        assert!(plan.is_proxy());
        let compiled = plan.compile(&[]);
        assert!(
            compiled
                .exactness
                .gaps
                .iter()
                .all(|gap| !gap.disables_signature())
        );
        assert_eq!(compiled.rule_count(), 4, "two resets and two redirects");
    }
}
