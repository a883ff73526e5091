//! The lab with kafka-shock deployed as pods ([`Product::deploy`]), and what the end-to-end
//! tests do with it as a user would: apply faults with kubectl and wait for their conditions,
//! produce as a client, count the KSHOCK chains in the brokers' network namespaces, and act on
//! an agent pod's process on its node (freeze it, kill it) as a hung or crashed agent would.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Component, Lab, NAMESPACE, Product};

/// The topic the tests' faults target.
pub const TOPIC: &str = "orders";
/// The client the tests' faults reset.
pub const VICTIM: &str = "checkout-svc";
/// A client no fault names.
pub const BYSTANDER: &str = "audit-svc";

/// A fault resetting Produce to [`TOPIC`] from [`VICTIM`] on every broker pod, with extra spec
/// lines `extra`.
pub fn reset_fault(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {{name: {name}, namespace: kafka}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/name: kafka}}}}
  match: {{apiKeys: [Produce], topics: [{TOPIC}], clientId: {{exact: {VICTIM}}}}}
  action: {{type: Reject}}
{extra}"
    )
}

/// The lab, its topics, and kafka-shock running as pods.
pub struct Stack {
    pub lab: Lab,
    pub product: Product,
}

impl Stack {
    /// A lab of `brokers` brokers with the topics `orders` and `payments`, and the product
    /// deployed from this run's release binaries.
    pub fn up(brokers: usize) -> Stack {
        Stack::up_with(brokers, &[])
    }

    /// [`Stack::up`] with chart values `KEY=VALUE`, e.g. `["agent.lease=6s"]`.
    pub fn up_with(brokers: usize, values: &[&str]) -> Stack {
        let lab = Stack::lab(brokers);
        let product =
            Product::deploy_with(&lab, values).unwrap_or_else(|error| panic!("deploy: {error}"));
        Stack { lab, product }
    }

    /// The lab and the chart without its workloads ([`Product::install`]): for a test that runs
    /// the operator and the agent as processes of its own (to signal them at chosen moments).
    pub fn installed(brokers: usize) -> Stack {
        let lab = Stack::lab(brokers);
        let product = Product::install(&lab).unwrap_or_else(|error| panic!("install: {error}"));
        Stack { lab, product }
    }

    fn lab(brokers: usize) -> Lab {
        let lab = Lab::up_with(brokers).unwrap_or_else(|error| panic!("lab up: {error}"));
        lab.create_topic(TOPIC, 1, 1).expect("topic");
        lab.create_topic("payments", 1, 1).expect("topic");
        lab
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        crate::stdout(self.lab.kubectl().args(args)).unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        crate::stdout(self.lab.kubectl().args(args)).map_err(|error| error.to_string())
    }

    pub fn apply(&self, manifest: &str) {
        crate::stdout_with_input(self.lab.kubectl().args(["apply", "-f", "-"]), manifest)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// `kubectl wait` for `what` in namespace `kafka`.
    pub fn wait(&self, what: &str, condition: &str, timeout: &str) {
        self.kubectl(&[
            "wait",
            "-n",
            "kafka",
            what,
            &format!("--for={condition}"),
            &format!("--timeout={timeout}"),
        ]);
    }

    /// KSHOCK chains (IPv4 and IPv6) in every broker's namespace together.
    pub fn chains(&self) -> usize {
        (0..self.lab.brokers())
            .map(|id| self.lab.broker_chains_of(id))
            .sum()
    }

    /// Waits until [`Stack::chains`] is `wanted`, polling to a deadline.
    pub fn wait_for_chains(&self, wanted: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.chains() != wanted {
            assert!(
                Instant::now() < deadline,
                "the brokers' namespaces hold {} KSHOCK chains, not {wanted}, after {within:?}",
                self.chains()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether kcat delivers two records to `topic` as `client_id` within 3 s.
    pub fn delivers(&self, topic: &str, client_id: &str) -> bool {
        self.delivers_within(topic, client_id, 3000)
    }

    /// Whether kcat delivers two records to `topic` as `client_id` within `timeout_ms`.
    pub fn delivers_within(&self, topic: &str, client_id: &str, timeout_ms: u32) -> bool {
        self.lab.kcat_delivers_within(topic, client_id, timeout_ms)
    }

    /// Waits up to 20 s until the count at `jsonpath` of fault `name`'s status is above 0.
    pub fn wait_status_count(&self, name: &str, jsonpath: &str) {
        crate::wait_for(
            Duration::from_secs(20),
            &format!("{name}'s {jsonpath} above 0"),
            || {
                let count = self.kubectl(&[
                    "get",
                    "kf",
                    "-n",
                    "kafka",
                    name,
                    "-o",
                    &format!("jsonpath={jsonpath}"),
                ]);
                (count.parse::<u64>().unwrap_or(0) > 0).then_some(())
            },
        );
    }

    /// `kafka-shock rules` in broker `id`'s namespace: the chains, their owners and leases.
    pub fn rules(&self, id: usize) -> String {
        let bin = crate::kafka_shock_bin().unwrap_or_else(|error| panic!("{error}"));
        crate::stdout(Command::new(bin).args(["rules", "--netns", &self.lab.broker_netns()[id]]))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Whether `what` exists in namespace `kafka`.
    pub fn exists(&self, what: &str) -> bool {
        self.try_kubectl(&["get", "-n", "kafka", what, "-o", "name"])
            .is_ok()
    }

    pub fn set_paused(&self, fault: &str, paused: bool) {
        let patch = format!(r#"{{"spec":{{"paused":{paused}}}}}"#);
        self.kubectl(&[
            "patch",
            "kf",
            "-n",
            "kafka",
            fault,
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    pub fn delete_fault(&self, name: &str) {
        self.kubectl(&["delete", "-n", "kafka", "kf", name, "--wait=false"]);
    }

    /// A jsonpath of the injection of fault `fault` for broker pod `pod`.
    pub fn injection(&self, fault: &str, pod: &str, jsonpath: &str) -> String {
        self.kubectl(&[
            "get",
            "kfi",
            "-n",
            "kafka",
            &format!("{fault}-{pod}"),
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    }

    /// A jsonpath of broker pod `kafka-broker-<id>`.
    pub fn broker_pod(&self, id: usize, jsonpath: &str) -> String {
        self.kubectl(&[
            "get",
            "pod",
            "-n",
            "kafka",
            &format!("kafka-broker-{id}"),
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    }

    /// The node broker `id` runs on.
    pub fn broker_node(&self, id: usize) -> String {
        self.broker_pod(id, "{.spec.nodeName}")
    }

    /// The name of the agent pod on `node` (running, not being deleted).
    pub fn agent_pod(&self, node: &str) -> String {
        let selector = format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component=agent",
            crate::RELEASE
        );
        let listed = self.kubectl(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "--field-selector",
            &format!("spec.nodeName={node},status.phase=Running"),
            "-o",
            "json",
        ]);
        let listed: serde_json::Value =
            serde_json::from_str(&listed).unwrap_or_else(|error| panic!("{error}: {listed}"));
        let names: Vec<&str> = listed["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|pod| pod["metadata"]["name"].as_str())
            .collect();
        match names[..] {
            [name] => name.to_owned(),
            _ => panic!("not one running agent pod on {node}: {names:?}"),
        }
    }

    /// What the agent on `node` has logged.
    pub fn agent_log(&self, node: &str) -> String {
        self.kubectl(&["logs", "-n", NAMESPACE, &self.agent_pod(node)])
    }

    /// How the agent on `node` found the network namespace of injection `injection` when it
    /// last started enforcing it, from its log line
    /// `enforcing injection=kafka/<name> netns=/proc/<pid>/ns/net found_by=<how>`.
    pub fn found_by(&self, node: &str, injection: &str) -> String {
        let log = self.agent_log(node);
        let wanted = format!("enforcing injection=kafka/{injection} ");
        log.lines()
            .rfind(|line| line.contains(&wanted))
            .and_then(|line| line.split_once("found_by="))
            .map(|(_, how)| how.trim().to_owned())
            .unwrap_or_else(|| panic!("the agent on {node} never enforced {injection}:\n{log}"))
    }

    /// How often the kubelet has restarted the agent container on `node`.
    pub fn agent_restarts(&self, node: &str) -> u32 {
        self.kubectl(&[
            "get",
            "pod",
            "-n",
            NAMESPACE,
            &self.agent_pod(node),
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])
        .parse()
        .unwrap_or_else(|error| panic!("restartCount: {error}"))
    }

    /// The host pid of the `kafka-shock agent` process in the agent pod on `node`: the process
    /// of a container of that pod (its cgroup path names the pod's UID) running kafka-shock.
    pub fn agent_pid(&self, node: &str) -> u32 {
        let uid = self.kubectl(&[
            "get",
            "pod",
            "-n",
            NAMESPACE,
            &self.agent_pod(node),
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let in_pod = format!("/pod{uid}/");
        let found: Vec<u32> = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
                read("comm").is_ok_and(|comm| comm.trim() == "kafka-shock")
                    && read("cgroup").is_ok_and(|cgroup| cgroup.contains(&in_pod))
            })
            .collect();
        match found[..] {
            [pid] => pid,
            _ => panic!("not one kafka-shock process in agent pod {uid} on {node}: {found:?}"),
        }
    }

    /// Stops the agent process on `node` (SIGSTOP) until the returned guard is dropped: an
    /// agent that is there but does nothing, as a hung one.
    pub fn freeze_agent(&self, node: &str) -> Frozen {
        let pid = self.agent_pid(node);
        signal(pid, "STOP");
        Frozen(Some(pid))
    }

    /// The kubeconfig of `component`'s ServiceAccount.
    pub fn kubeconfig_of(&self, component: Component) -> std::path::PathBuf {
        self.product
            .kubeconfig_for(component)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Leave no fault for the next test: with the agents running, deleting every fault
        // takes its rules out first.
        let _ = self.try_kubectl(&["delete", "kf", "--all", "-n", "kafka", "--timeout=30s"]);
    }
}

fn signal(pid: u32, name: &str) {
    crate::run(Command::new("kill").args([format!("-{name}"), pid.to_string()]))
        .unwrap_or_else(|error| panic!("{error}"));
}

/// A process stopped with SIGSTOP; dropping this lets it go on (SIGCONT), also when the test
/// panics, so a frozen agent never outlives its test.
pub struct Frozen(Option<u32>);

impl Frozen {
    /// SIGKILL while stopped: the agent ends with no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "KILL");
        }
    }

    /// Lets the process go on now.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}
