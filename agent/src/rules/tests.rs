//! Unit and golden tests. Goldens live in `testdata/*.rules` (rendered batches); the
//! `testdata/*.save` fixtures are `iptables-save` output captured from a scratch network
//! namespace after applying those batches with `iptables-restore --noflush`.
//! `KSHOCK_BLESS=1 cargo test -p kafka-shock-agent --lib rules` rewrites the goldens.

use std::collections::HashSet;
use std::path::PathBuf;

use super::*;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/rules/testdata")
        .join(name)
}

fn golden(name: &str, actual: &str) {
    let path = testdata(name);
    if std::env::var_os("KSHOCK_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with KSHOCK_BLESS=1)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs (bless with KSHOCK_BLESS=1)"
    );
}

fn fixture(name: &str) -> Actual {
    fixture_of(name, Table::Filter)
}

fn fixture_of(name: &str, table: Table) -> Actual {
    parse_save(&std::fs::read_to_string(testdata(name)).unwrap(), table)
}

fn injection(id: &str, signature: Signature, verdict: Verdict) -> Injection {
    Injection {
        id: id.to_owned(),
        ports: vec![9092],
        signature,
        verdict,
        probability: 100,
        source_cidrs: Vec::new(),
        layers: Layers::Signature,
    }
}

/// "reset every Produce to `orders` from `checkout-svc`".
fn produce_orders() -> Injection {
    injection(
        "6f1c2a8e-reset-orders-producer",
        Signature {
            api_keys: vec![0],
            client_id: Some(ClientIdPattern::Exact(b"checkout-svc".to_vec())),
            topics: vec![b"orders".to_vec()],
            ..Signature::default()
        },
        Verdict::Reject,
    )
}

/// "blackhole the Fetch requests of consumer group `billing`".
fn fetch_billing(probability: u8) -> Injection {
    Injection {
        probability,
        ..injection(
            "0b7d9f42-drop-billing-fetch",
            Signature {
                api_keys: vec![1],
                group_id: Some(b"billing".to_vec()),
                ..Signature::default()
            },
            Verdict::Drop,
        )
    }
}

/// Metadata from clients named `perf-*` in two networks, 30% of the time, on two ports.
fn metadata_probability() -> Injection {
    Injection {
        ports: vec![9093, 9092],
        probability: 30,
        source_cidrs: vec![
            "10.1.0.0/16".parse().unwrap(),
            "fd00:10::/64".parse().unwrap(),
        ],
        ..injection(
            "metadata-30",
            Signature {
                api_keys: vec![3],
                api_versions: Some((4, 12)),
                client_id: Some(ClientIdPattern::Prefix(b"perf-".to_vec())),
                ..Signature::default()
            },
            Verdict::Reject,
        )
    }
}

fn connection_flows() -> (Injection, Vec<Flow>) {
    let injection = Injection {
        layers: Layers::Connection,
        ..injection(
            "conn-regex-clients",
            Signature {
                api_keys: vec![0],
                client_id: Some(ClientIdPattern::Regex("^checkout-.*".to_owned())),
                ..Signature::default()
            },
            Verdict::Reject,
        )
    };
    let flows = vec![
        Flow {
            client: "[fd00:10::5]:40112".parse().unwrap(),
            broker: "[fd00:10::2]:9092".parse().unwrap(),
        },
        Flow {
            client: "[fd00:10::7]:51004".parse().unwrap(),
            broker: "[fd00:10::2]:9092".parse().unwrap(),
        },
        Flow {
            client: "10.1.0.5:40000".parse().unwrap(),
            broker: "10.1.0.2:9092".parse().unwrap(),
        },
    ];
    (injection, flows)
}

fn fresh(chain: &Chain) -> String {
    diff(std::slice::from_ref(chain), &Actual::default()).render()
}

#[test]
fn golden_produce_orders_from_checkout() {
    let compiled = compile(&produce_orders(), &[]);
    assert_eq!(
        compiled.exactness.gaps,
        [Gap::NoTopicIdsYet, Gap::TopicsWithinWindow]
    );
    // One api key × two encodings of the topic.
    assert_eq!(compiled.v4.rules.len(), 2);
    golden("produce_orders_checkout.v4.rules", &fresh(&compiled.v4));
    golden("produce_orders_checkout.v6.rules", &fresh(&compiled.v6));
}

#[test]
fn golden_fetch_group_billing() {
    let compiled = compile(&fetch_billing(100), &[]);
    assert_eq!(compiled.exactness.gaps, [Gap::GroupIdAnywhere]);
    golden("fetch_group_billing.v4.rules", &fresh(&compiled.v4));
}

#[test]
fn golden_probability_30() {
    let compiled = compile(&metadata_probability(), &[]);
    assert!(compiled.exactness.is_exact());
    // One v4 source × one multiport match × one api key.
    assert_eq!(compiled.v4.rules.len(), 1);
    assert_eq!(compiled.v6.rules.len(), 1);
    let text = fresh(&compiled.v4);
    assert!(text.contains("-m statistic --mode random --probability 0.30000 "));
    assert!(text.contains("-s 10.1.0.0/16 "));
    assert!(!text.contains("fd00"));
    golden("probability_30.v4.rules", &text);
}

#[test]
fn golden_connection_v6() {
    let (injection, flows) = connection_flows();
    let compiled = compile(&injection, &flows);
    assert!(compiled.exactness.signature_disabled());
    assert_eq!(compiled.v6.rules.len(), 2);
    assert_eq!(compiled.v4.rules.len(), 1);
    golden("connection_flows.v6.rules", &fresh(&compiled.v6));
}

#[test]
fn golden_sweep_keeps_only_wanted_chains() {
    let actual = fixture("two_chains.v4.save");
    let keep: HashSet<String> = [compile(&produce_orders(), &[]).v4.name].into();
    let batch = sweep(&actual, &keep);
    assert_eq!(batch.ops.len(), 3, "{batch:?}");
    golden("sweep.v4.rules", &batch.render());
    assert!(sweep(&actual, &actual.chains.keys().cloned().collect()).is_empty());
}

#[test]
fn golden_reconcile_one_changed_chain() {
    let actual = fixture("two_chains.v4.save");
    let desired = [
        compile(&produce_orders(), &[]).v4,
        compile(&fetch_billing(50), &[]).v4,
    ];
    let batch = diff(&desired, &actual);
    let changed = &desired[1].name;
    assert_eq!(batch.ops.first(), Some(&Op::Flush(changed.clone())));
    assert!(
        batch
            .ops
            .iter()
            .all(|op| matches!(op, Op::Flush(c) | Op::Append(c, _) if c == changed))
    );
    golden("reconcile_changed.v4.rules", &batch.render());
    // After applying it, the kernel holds what is desired.
    assert!(diff(&desired, &fixture("two_chains_reconciled.v4.save")).is_empty());
}

#[test]
fn in_sync_diffs_to_nothing() {
    let desired_v4 = [
        compile(&produce_orders(), &[]).v4,
        compile(&fetch_billing(100), &[]).v4,
    ];
    assert!(diff(&desired_v4, &fixture("two_chains.v4.save")).is_empty());
    let (injection, flows) = connection_flows();
    let desired_v6 = [
        compile(&produce_orders(), &[]).v6,
        compile(&injection, &flows).v6,
    ];
    assert!(diff(&desired_v6, &fixture("two_chains.v6.save")).is_empty());
}

#[test]
fn parse_save_reads_our_chains_and_jumps_only() {
    let actual = fixture("two_chains.v4.save");
    assert_eq!(actual.chains.len(), 2);
    assert_eq!(actual.jumps.len(), 2);
    assert!(actual.jumps.iter().all(|jump| jump.from == "INPUT"));
    let produce = compile(&produce_orders(), &[]).v4;
    let rules = &actual.chains[&produce.name];
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0].comment.as_deref(),
        Some(produce.rules[0].comment())
    );
    assert_eq!(rules[0].target.as_deref(), Some("REJECT"));
    assert!(
        rules[0]
            .text
            .contains("--hex-string \"|000c636865636b6f75742d737663|\"")
    );
}

#[test]
fn parse_save_ignores_other_tables_and_odd_lines() {
    let text = "*nat\n:KSHOCK-000000000000 - [0:0]\n-A PREROUTING -j KSHOCK-000000000000\nCOMMIT\n\
                *filter\n:INPUT ACCEPT [0:0]\n:KSHOCK-AAAAAAAAAAAA - [0:0]\n-A INPUT\ngarbage\n\
                -A INPUT -m comment --comment \"a \\\"q\\\" b\" -j KSHOCK-AAAAAAAAAAAA\nCOMMIT\n";
    let actual = parse_save(text, Table::Filter);
    assert_eq!(
        actual.chains.keys().collect::<Vec<_>>(),
        ["KSHOCK-AAAAAAAAAAAA"]
    );
    assert_eq!(actual.jumps.len(), 1);
    assert_eq!(actual.jumps[0].rule.comment.as_deref(), Some("a \"q\" b"));
    let nat = parse_save(text, Table::Nat);
    assert_eq!(nat.table, Table::Nat);
    assert_eq!(
        nat.chains.keys().collect::<Vec<_>>(),
        ["KSHOCK-000000000000"]
    );
    assert_eq!(nat.jumps[0].from, "PREROUTING");
}

#[test]
fn a_table_diffs_only_its_own_chains_and_jumps_from_its_own_builtin() {
    let filter = compile(&produce_orders(), &[]).v4;
    let nat = Chain {
        table: Table::Nat,
        ..filter.clone()
    };
    let desired = [filter.clone(), nat];
    let empty_nat = Actual {
        table: Table::Nat,
        ..Actual::default()
    };
    let batch = diff(&desired, &empty_nat);
    let text = batch.render();
    assert!(text.starts_with("*nat\n"), "{text}");
    assert!(text.contains("-I PREROUTING "), "{text}");
    assert!(!text.contains("INPUT"), "{text}");
    assert_eq!(
        text.matches(&format!(":{} ", filter.name)).count(),
        1,
        "{text}"
    );
    // The filter table's own diff holds only the filter chain, jumped to from INPUT.
    let text = diff(&desired, &Actual::default()).render();
    assert!(
        text.starts_with("*filter\n") && text.contains("-I INPUT "),
        "{text}"
    );
    assert!(!text.contains("PREROUTING"), "{text}");
    // A nat chain nobody wants is swept from PREROUTING.
    let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:KSHOCK-0123456789AB - [0:0]\n\
         -A PREROUTING -p tcp -m comment --comment kshock:x:1 -j KSHOCK-0123456789AB\nCOMMIT\n";
    let text = sweep(&parse_save(saved, Table::Nat), &HashSet::new()).render();
    assert!(
        text.starts_with("*nat\n-D PREROUTING -p tcp") && text.contains("-X KSHOCK-0123456789AB"),
        "{text}"
    );
}

#[test]
fn diff_fixes_jumps() {
    let chain = compile(&produce_orders(), &[]).v4;
    let jump = chain.jumps[0].render();
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:{name} - [0:0]\n\
         -A INPUT {jump}\n-A INPUT {jump}\n-A OUTPUT {jump}\n{rules}COMMIT\n",
        name = chain.name,
        rules = chain
            .rules
            .iter()
            .map(|rule| format!("-A {} {}\n", chain.name, rule.render()))
            .collect::<String>(),
    );
    let batch = diff(
        std::slice::from_ref(&chain),
        &parse_save(&text, Table::Filter),
    );
    assert_eq!(
        batch.ops,
        [
            Op::Delete("INPUT".to_owned(), jump.clone()),
            Op::Delete("OUTPUT".to_owned(), jump.clone())
        ]
    );
    let missing = text.replace(&format!("-A INPUT {jump}\n"), "");
    let batch = diff(
        std::slice::from_ref(&chain),
        &parse_save(&missing, Table::Filter),
    );
    assert_eq!(batch.ops.len(), 2, "{batch:?}");
    assert_eq!(
        batch.ops[1],
        Op::Insert("INPUT".to_owned(), chain.jumps[0].clone())
    );
}

#[test]
fn owned_chains_lists_ids() {
    let owned = owned_chains(&fixture("two_chains.v4.save"));
    assert_eq!(owned.len(), 2);
    let ids: Vec<_> = owned.iter().flat_map(|chain| chain.ids.clone()).collect();
    assert!(
        ids.contains(&"6f1c2a8e-reset-orders-producer".to_owned()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"0b7d9f42-drop-billing-fetch".to_owned()),
        "{ids:?}"
    );
    assert!(
        owned
            .iter()
            .all(|chain| chain.jumps.len() == 1 && chain.jumps[0].starts_with("INPUT -p tcp"))
    );
}

#[test]
fn chain_names_are_stable_fnv1a() {
    // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the name keeps the low 48 bits.
    assert_eq!(chain_name("a"), "KSHOCK-DC4C8601EC8C");
    assert!(chain_name(&"x".repeat(10_000)).len() <= 28);
    assert_ne!(chain_name("a b"), chain_name("a_b"));
}

#[test]
fn ids_are_sanitised_for_comments() {
    assert_eq!(sanitise_id("ns/name 1\"\n"), "ns_name_1__");
    assert_eq!(sanitise_id(""), "_");
    assert_eq!(sanitise_id(&"é".repeat(300)).len(), 200);
}

#[test]
fn u32_programs() {
    let v4 = compile(&produce_orders(), &[]).v4;
    assert!(v4.rules[0].render().contains(
        "-m u32 --u32 4&0x1FFF=0&&0>>22&0x3C@12>>26&0x3C@0=0xA:0x7FFFFFFF&&0>>22&0x3C@12>>26&0x3C@4=0x00000000:0x00007FFF "
    ));
    let v6 = compile(&fetch_billing(100), &[]).v6;
    assert!(v6.rules[0].render().contains(
        "-m u32 --u32 4>>8&0xFF=6&&52>>26&0x3C@40=0xA:0x7FFFFFFF&&52>>26&0x3C@44=0x00010000:0x00017FFF "
    ));
    let any = injection(
        "any",
        Signature {
            api_versions: Some((-3, 9)),
            ..Signature::default()
        },
        Verdict::Drop,
    );
    assert!(
        compile(&any, &[]).v4.rules[0]
            .render()
            .contains("@4&0x8000FFFF=0x0:0x9 ")
    );
}

#[test]
fn impossible_signatures_compile_to_no_rules() {
    for signature in [
        Signature {
            api_versions: Some((5, 4)),
            ..Signature::default()
        },
        Signature {
            api_keys: vec![-1],
            ..Signature::default()
        },
        Signature {
            topics: vec![vec![b'x'; 200]],
            ..Signature::default()
        },
    ] {
        let compiled = compile(&injection("x", signature, Verdict::Drop), &[]);
        assert!(compiled.v4.rules.is_empty() && compiled.v6.rules.is_empty());
        assert_eq!(compiled.v4.jumps.len(), 1);
    }
}

#[test]
fn string_bounds_follow_header_sizes() {
    let rule = compile(&produce_orders(), &[]).v4.rules[0].render();
    // Client id (int16 length + 12 bytes) at payload 12: 40+12 .. 120+12+14.
    assert!(rule.contains("--from 52 --to 146 "), "{rule}");
    // Topic after the 12-byte client id: from 40+14+12, to 120+14+12+512+8.
    assert!(
        rule.contains("--hex-string \"|00 06 6f 72 64 65 72 73|\" --from 66 --to 666 "),
        "{rule}"
    );
    let v6 = compile(&produce_orders(), &[]).v6.rules[1].render();
    assert!(v6.contains("--from 72 --to 126 "), "{v6}");
    assert!(
        v6.contains("\"|07 6f 72 64 65 72 73|\" --from 86 --to 645 "),
        "{v6}"
    );
    let prefix = compile(&metadata_probability(), &[]).v4.rules[0].render();
    assert!(
        prefix.contains("\"|70 65 72 66 2d|\" --from 54 --to 139 "),
        "{prefix}"
    );
}

#[test]
fn topic_ids_add_alternatives() {
    let mut produce = produce_orders();
    produce.signature.topic_ids = vec![[0xAB; 16]];
    let compiled = compile(&produce, &[]);
    assert_eq!(compiled.exactness.gaps, [Gap::TopicsWithinWindow]);
    assert_eq!(compiled.v4.rules.len(), 3);
    assert!(
        compiled.v4.rules[2]
            .render()
            .contains(&format!("|{}|", ["ab"; 16].join(" ")))
    );
}

#[test]
fn cartesian_product_and_ports() {
    let mut many = produce_orders();
    many.signature.api_keys = vec![0, 1, 0];
    many.signature.transactional_id = Some(b"tx".to_vec());
    many.ports = (9000..9020).collect();
    many.source_cidrs = vec![
        "10.0.0.0/8".parse().unwrap(),
        "192.168.1.7/24".parse().unwrap(),
    ];
    let compiled = compile(&many, &[]);
    // 2 sources × 2 port chunks × 2 keys × 2 topic encodings × 2 transactional encodings.
    assert_eq!(compiled.v4.rules.len(), 32);
    assert!(compiled.v6.rules.is_empty());
    assert_eq!(compiled.v4.jumps.len(), 2);
    assert!(
        compiled
            .v4
            .rules
            .iter()
            .any(|r| r.render().contains("-s 192.168.1.0/24 "))
    );
    assert_eq!(
        compiled.exactness.gaps,
        [
            Gap::NoTopicIdsYet,
            Gap::TopicsWithinWindow,
            Gap::TransactionalIdAnywhere
        ]
    );
}

/// The characters a rendered batch may hold at all: fixed flags, numbers, addresses, u32
/// programs, hex, sanitised ids.
fn assert_only_safe_text(text: &str) {
    for (number, line) in text.lines().enumerate() {
        assert!(
            line.chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._:/,|=&@>-[]*\"!".contains(c)),
            "line {number}: {line:?}"
        );
        // Quotes only ever wrap a hex string, or one of our comments as iptables-save printed
        // it (in `-D` lines).
        let hex = |q: &str| {
            q.len() >= 2
                && q.starts_with('|')
                && q.ends_with('|')
                && q[1..q.len() - 1]
                    .split(' ')
                    .all(|h| h.len() == 2 && h.chars().all(|c| c.is_ascii_hexdigit()))
        };
        let comment = |q: &str| q.starts_with(COMMENT_PREFIX) && !q.contains(' ');
        let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(quoted.iter().all(|q| hex(q) || comment(q)), "{line}");
    }
}

#[test]
fn hostile_strings_only_reach_the_text_as_hex() {
    let hostile: Vec<u8> = b"a\" -j ACCEPT\n-A INPUT |x| --to 1 'q' \\ \xff\xfe\x00".to_vec();
    let mut evil = Injection {
        id: "id\" -j ACCEPT\nCOMMIT\n*nat --comment |x|".to_owned(),
        ..produce_orders()
    };
    evil.signature.client_id = Some(ClientIdPattern::Exact(hostile.clone()));
    evil.signature.topics = vec![hostile.clone(), b"--".to_vec()];
    evil.signature.group_id = Some(hostile.clone());
    evil.signature.transactional_id = Some(b" ".to_vec());
    let compiled = compile(&evil, &[]);
    assert!(!compiled.exactness.signature_disabled());
    let text = fresh(&compiled.v4) + &fresh(&compiled.v6);
    assert_only_safe_text(&text);
    assert!(!text.contains("-j ACCEPT") && !text.contains("*nat") && !text.contains("'"));
    let hex: Vec<String> = hostile.iter().map(|b| format!("{b:02x}")).collect();
    assert!(text.contains(&hex.join(" ")));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.iter().filter(|line| **line == "COMMIT").count(), 2);
    assert!(lines.iter().all(|line| {
        ["*filter", "COMMIT", ":KSHOCK-", "-A KSHOCK-", "-I INPUT "]
            .iter()
            .any(|start| line.starts_with(start))
    }));

    let long = vec![b'"'; 32 * 1024];
    let mut huge = produce_orders();
    huge.signature.client_id = Some(ClientIdPattern::Exact(long.clone()));
    huge.signature.topics = vec![long.clone()];
    let compiled = compile(&huge, &[]);
    assert!(
        compiled
            .exactness
            .gaps
            .contains(&Gap::ClientIdTooLong { len: long.len() })
    );
    assert!(
        compiled
            .exactness
            .gaps
            .contains(&Gap::TopicTooLong { index: 0 })
    );
    assert!(compiled.v4.rules.is_empty());
    assert_only_safe_text(&fresh(&compiled.v4));

    let mut prefix = produce_orders();
    prefix.signature.client_id = Some(ClientIdPattern::Prefix(long));
    assert!(compile(&prefix, &[]).exactness.signature_disabled());
}

#[test]
fn every_golden_is_safe_text() {
    for entry in std::fs::read_dir(testdata("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "rules") {
            assert_only_safe_text(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The lease end of the leased fixture, and the one a renewal gives.
const LEASED_UNTIL: u64 = 1_796_304_845;
const RENEWED_UNTIL: u64 = LEASED_UNTIL + 10;

#[test]
fn leased_jumps_carry_the_time_match_and_chain_rules_do_not() {
    let compiled = compile(&produce_orders(), &[]).lease_until(Some(LEASED_UNTIL));
    let jump = compiled.v4.jumps[0].render();
    assert!(
        jump.contains("-m time --datestop 2026-12-03T13:34:05 -m comment"),
        "{jump}"
    );
    assert!(
        compiled
            .v4
            .rules
            .iter()
            .all(|rule| rule.datestop().is_none())
    );
    // The lease is not part of the stamp: the comment, and so the sync check, is unchanged.
    let unleased = compile(&produce_orders(), &[]);
    assert_eq!(
        compiled.v4.jumps[0].comment(),
        unleased.v4.jumps[0].comment()
    );
    assert!(!unleased.v4.jumps[0].render().contains("-m time"));
    golden("leased.v4.rules", &fresh(&compiled.v4));
}

/// `leased.v4.save` is `leased.v4.rules` applied in a scratch namespace holding two other
/// INPUT rules, then `iptables-save`: the fault's jump is INPUT's rule number 2.
#[test]
fn a_lease_is_renewed_in_place_in_one_batch() {
    let actual = fixture("leased.v4.save");
    let leased = compile(&produce_orders(), &[]).lease_until(Some(LEASED_UNTIL));
    assert!(diff(std::slice::from_ref(&leased.v4), &actual).is_empty());
    let owned = owned_chains(&actual);
    assert_eq!(owned[0].lease, ChainLease::Until(LEASED_UNTIL));

    let renewed = compile(&produce_orders(), &[]).lease_until(Some(RENEWED_UNTIL));
    let batch = diff(std::slice::from_ref(&renewed.v4), &actual);
    let old = actual.jumps[0].rule.text.clone();
    assert_eq!(actual.jumps[0].position, 2);
    assert_eq!(
        batch.ops,
        [Op::Renew {
            chain: "INPUT".into(),
            position: 2,
            old: old.clone(),
            rule: renewed.v4.jumps[0].clone(),
        }]
    );
    assert_eq!(
        batch.render(),
        format!(
            "*filter\n-I INPUT 2 {}\n-D INPUT {old}\nCOMMIT\n",
            renewed.v4.jumps[0].render()
        )
    );
    // Where the time match is missing, the jumps go without a lease, in place too.
    let unleased = compile(&produce_orders(), &[]);
    let batch = diff(std::slice::from_ref(&unleased.v4), &actual);
    assert!(
        matches!(&batch.ops[..], [Op::Renew { position: 2, .. }]),
        "{batch:?}"
    );
}

#[test]
fn renewals_come_before_anything_that_moves_rule_numbers() {
    let leased = compile(&produce_orders(), &[]).lease_until(Some(LEASED_UNTIL));
    let jump = leased.v4.jumps[0].render();
    // A stray duplicate jump above ours, and ours to renew.
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:{name} - [0:0]\n-A INPUT -p udp -j {name}\n-A INPUT {jump}\n{rules}COMMIT\n",
        name = leased.v4.name,
        rules = leased
            .v4
            .rules
            .iter()
            .map(|rule| format!("-A {} {}\n", leased.v4.name, rule.render()))
            .collect::<String>(),
    );
    let renewed = compile(&produce_orders(), &[]).lease_until(Some(RENEWED_UNTIL));
    let batch = diff(
        std::slice::from_ref(&renewed.v4),
        &parse_save(&text, Table::Filter),
    );
    assert!(
        matches!(&batch.ops[..], [Op::Renew { position: 2, .. }, Op::Delete(chain, text)] if chain == "INPUT" && text.starts_with("-p udp")),
        "{batch:?}"
    );
}

#[test]
fn the_lease_probe_applies_and_sweeps_like_any_chain() {
    let probe = lease_probe("cli.1.2.0.f", LEASED_UNTIL);
    let install = fresh(&probe);
    assert!(
        install.contains("-m time --datestop 2026-12-03T13:34:05"),
        "{install}"
    );
    let actual = parse_save(
        &format!(
            "*filter\n:{name} - [0:0]\n-A {name} {rule}\nCOMMIT\n",
            name = probe.name,
            rule = probe.rules[0].render()
        ),
        Table::Filter,
    );
    let owned = owned_chains(&actual);
    assert_eq!(owned[0].ids, ["cli.1.2.0.f"]);
    assert_eq!(owned[0].lease, ChainLease::NoJump);
    assert_eq!(
        sweep(&actual, &HashSet::new()).render(),
        format!("*filter\n-F {0}\n-X {0}\nCOMMIT\n", probe.name)
    );
}

/// "answer Produce to orders with an error, through the proxy on port 41234".
fn proxy_orders() -> Injection {
    Injection {
        layers: Layers::Proxy {
            port: 41234,
            reset_established: true,
        },
        ..injection(
            "5e2a77c1-proxy-orders",
            Signature {
                api_keys: vec![0],
                topics: vec![b"orders".to_vec()],
                ..Signature::default()
            },
            Verdict::Proxy,
        )
    }
}

/// `leased_nat.v4.save` is the nat batch of [`proxy_orders`] leased until `LEASED_UNTIL`
/// (`diff` against an empty nat table), applied with `iptables-restore --noflush` in a scratch
/// namespace, then `iptables -t nat -I PREROUTING 1 -p udp --dport 53 -j ACCEPT` and
/// `iptables-save -t nat`: the redirect's jump is PREROUTING's rule number 2.
#[test]
fn a_proxy_redirect_is_leased_and_renewed_in_place_like_any_jump() {
    let leased = compile(&proxy_orders(), &[]).lease_until(Some(LEASED_UNTIL));
    let (nat, _) = leased.nat.as_ref().expect("a Proxy fault has nat chains");
    assert!(nat.rules.iter().all(|rule| rule.datestop().is_none()));
    assert!(
        nat.jumps.iter().all(|jump| jump
            .render()
            .contains("-m time --datestop 2026-12-03T13:34:05")),
        "{:?}",
        nat.jumps
    );
    let install = diff(
        std::slice::from_ref(nat),
        &Actual {
            table: Table::Nat,
            ..Actual::default()
        },
    );
    assert!(install.render().starts_with("*nat\n"));

    let actual = fixture_of("leased_nat.v4.save", Table::Nat);
    assert!(diff(std::slice::from_ref(nat), &actual).is_empty());
    assert_eq!(
        owned_chains(&actual)[0].lease,
        ChainLease::Until(LEASED_UNTIL)
    );
    let renewed = compile(&proxy_orders(), &[]).lease_until(Some(RENEWED_UNTIL));
    let (renewed_nat, _) = renewed.nat.as_ref().expect("nat chains");
    let batch = diff(std::slice::from_ref(renewed_nat), &actual);
    let old = actual.jumps[0].rule.text.clone();
    assert_eq!(actual.jumps[0].position, 2);
    assert_eq!(
        batch.render(),
        format!(
            "*nat\n-I PREROUTING 2 {}\n-D PREROUTING {old}\nCOMMIT\n",
            renewed_nat.jumps[0].render()
        )
    );
}
