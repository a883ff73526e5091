use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::LabError;

/// Where lab.sh keeps its state; the same default as the script (`KSHOCK_LAB_STATE`).
fn state_dir() -> PathBuf {
    std::env::var_os("KSHOCK_LAB_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/kafka-shock-lab"))
}

/// The repository root, found from this crate's manifest so tests run from any directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The lab's one entry point.
pub fn lab_script() -> PathBuf {
    workspace_root().join("tests/lab/lab.sh")
}

/// The `kafka-shock` binary built next to this test binary (target/<profile>/kafka-shock).
/// `tests/run-all.sh` builds it before the tests run.
pub fn kafka_shock_bin() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe().map_err(|source| LabError::Spawn {
        command: "current_exe".into(),
        source,
    })?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("kafka-shock"))
        .unwrap_or_default();
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(LabError::MissingBinary(candidate))
    }
}

/// The directory of this test binary's profile (target/<profile>), where `cargo build
/// --workspace --bins` put kafka-shock and kafka-shock-operator. The lab builds the product's
/// images from them (stripped): the same binaries the CLI tests run, and no second, release
/// build of the workspace before the tests (`tests/run-all.sh` builds them first).
pub fn product_bin_dir() -> Result<PathBuf, LabError> {
    let agent = kafka_shock_bin()?;
    let dir = agent.parent().map(Path::to_path_buf).unwrap_or_default();
    let operator = dir.join("kafka-shock-operator");
    if operator.is_file() {
        Ok(dir)
    } else {
        Err(LabError::MissingBinary(operator))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// How long any one command the harness runs may take (a client, a lab step, kubectl): one
/// that hangs, such as a producer waiting on a broker that no longer answers, fails its test
/// with the command named instead of holding the whole run until CI's own deadline.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Runs a command to completion and turns a non-zero exit into an error carrying its stderr.
pub fn run(command: &mut Command) -> Result<Output, LabError> {
    run_within(command, None, COMMAND_DEADLINE)
}

/// Runs a command to completion and returns its standard output.
pub fn stdout(command: &mut Command) -> Result<String, LabError> {
    run(command).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command with `input` on its standard input and returns its standard output.
pub fn stdout_with_input(command: &mut Command, input: &str) -> Result<String, LabError> {
    run_within(command, Some(input), COMMAND_DEADLINE)
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` in a process group of its own, feeding it `input`, for at most `deadline`:
/// past it the whole group is killed and the error names the command.
pub fn run_within(
    command: &mut Command,
    input: Option<&str>,
    deadline: Duration,
) -> Result<Output, LabError> {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let described = format!("{command:?}");
    let spawn_error = |source| LabError::Spawn {
        command: described.clone(),
        source,
    };
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_owned();
        std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    }
    let drain = |mut pipe: Box<dyn Read + Send>| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send(bytes);
        });
        receiver
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break Some(status);
        }
        if started.elapsed() >= deadline {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A grandchild that left the group may still hold a pipe: wait a little, not forever.
    let collect = |receiver: std::sync::mpsc::Receiver<Vec<u8>>| {
        receiver
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Some(status) if status.success() => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        Some(status) => Err(LabError::CommandFailed {
            command: described,
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }),
        None => Err(LabError::TimedOut {
            command: described,
            after: deadline,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }),
    }
}

/// A directory of a test's own under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/kshock-<name>-<pid>`, created empty.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("kshock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::create_dir_all(&path);
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test's KafkaFault files, in a directory of its own.
pub struct FaultFiles(TempDir);

impl FaultFiles {
    pub fn new(name: &str) -> FaultFiles {
        FaultFiles(TempDir::new(&format!("faults-{name}")))
    }

    /// Writes the KafkaFault `name` (selecting `app: kafka`) with the spec lines `spec`.
    pub fn fault(&self, name: &str, spec: &str) -> PathBuf {
        let path = self.0.path().join(format!("{name}.yaml"));
        let manifest = format!(
            "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: kafka}}}}\n{spec}"
        );
        std::fs::write(&path, manifest).expect("fault file");
        path
    }
}

/// Tests of one binary run on parallel threads; only one of them may change the lab, and none
/// reads its environment file while another's `lab.sh up` writes it.
fn changing() -> std::sync::MutexGuard<'static, ()> {
    static LAB_CHANGE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LAB_CHANGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running lab, as described by the environment file lab.sh writes once it is up.
#[derive(Debug, Clone)]
pub struct Lab {
    env: HashMap<String, String>,
}

impl Lab {
    /// The default lab: one broker. Reuses a running lab of that shape.
    pub fn up() -> Result<Lab, LabError> {
        Lab::up_with(1)
    }

    /// A lab with `brokers` brokers (1 or 3); a running lab of another shape is taken down first.
    pub fn up_with(brokers: usize) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let _changing = changing();
        if let Ok(running) = Lab::read_env() {
            if running.brokers() == brokers && Lab::script(&["status"]).is_ok() {
                return Ok(running);
            }
            Lab::down()?;
        }
        Lab::script(&["up", "--brokers", &brokers.to_string()])?;
        Lab::read_env()
    }

    /// `lab.sh up` again on this running lab, as a second user or a bench would: it must find
    /// everything running and leave it so.
    pub fn up_again(&self) -> Result<(), LabError> {
        let _changing = changing();
        Lab::script(&["up", "--brokers", &self.brokers().to_string()]).map(drop)
    }

    /// Removes everything the lab made.
    pub fn down() -> Result<(), LabError> {
        Lab::script(&["down"]).map(drop)
    }

    fn script(args: &[&str]) -> Result<Output, LabError> {
        run(Command::new(lab_script()).args(args))
    }

    fn read_env() -> Result<Lab, LabError> {
        let path = state_dir().join("env");
        let text =
            std::fs::read_to_string(&path).map_err(|source| LabError::Env { path, source })?;
        let env = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Ok(Lab { env })
    }

    fn var(&self, key: &'static str) -> Result<&str, LabError> {
        self.env
            .get(key)
            .map(String::as_str)
            .ok_or(LabError::MissingEnv(key))
    }

    fn list(&self, key: &'static str) -> Vec<String> {
        self.var(key)
            .map(|value| value.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A setting of the lab's environment file that only some labs have (the three-broker
    /// lab's `KSHOCK_LAB_TLS_BOOTSTRAP`, `KSHOCK_LAB_TLS_CERT`, `KSHOCK_LAB_REPLICATION_PORT`;
    /// every lab's `KSHOCK_LAB_CONTROLLER_PORT`).
    pub fn setting(&self, key: &'static str) -> Result<&str, LabError> {
        self.var(key)
    }

    /// How many brokers this lab runs.
    pub fn brokers(&self) -> usize {
        self.list("KSHOCK_LAB_BROKERS")
            .first()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0)
    }

    /// The bootstrap list, "ip:port,ip:port", as clients take it.
    pub fn bootstrap(&self) -> &str {
        self.var("KSHOCK_LAB_BOOTSTRAP").unwrap_or_default()
    }

    /// Each broker's "ip:port", broker 0 first.
    pub fn broker_addrs(&self) -> Vec<String> {
        self.list("KSHOCK_LAB_BOOTSTRAP")
    }

    /// Each broker's network namespace (its "pod"), broker 0 first.
    pub fn broker_netns(&self) -> Vec<String> {
        self.list("KSHOCK_LAB_BROKER_NETNS")
    }

    /// The namespace clients run in.
    pub fn client_netns(&self) -> &str {
        self.var("KSHOCK_LAB_CLIENT_NETNS").unwrap_or_default()
    }

    /// The client namespace's IPv4 address, as brokers see it.
    pub fn client_ip(&self) -> &str {
        self.var("KSHOCK_LAB_CLIENT_IP").unwrap_or_default()
    }

    /// The lab's Kubernetes node names.
    pub fn nodes(&self) -> Vec<String> {
        self.list("KSHOCK_LAB_NODES")
    }

    /// An image every lab node holds without a registry (the pods' sandbox, `pause`): for a
    /// test's own pods, run with `imagePullPolicy: Never`.
    pub fn pause_image(&self) -> &str {
        self.var("KSHOCK_LAB_PAUSE_IMAGE").unwrap_or_default()
    }

    /// The Kubernetes namespace holding the broker pods.
    pub fn pod_namespace(&self) -> &str {
        self.var("KSHOCK_LAB_POD_NAMESPACE").unwrap_or_default()
    }

    /// The kube-apiserver URL.
    pub fn apiserver(&self) -> &str {
        self.var("KSHOCK_LAB_APISERVER").unwrap_or_default()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG").unwrap_or_default())
    }

    /// PATH with the lab's tools first: kubectl, helm, kafka-class, the Python client's venv.
    pub fn path(&self) -> &str {
        self.var("PATH").unwrap_or_default()
    }

    /// A command run in the client namespace with the lab's tools on PATH, e.g.
    /// `lab.client("kcat").args(["-b", lab.bootstrap(), "-L"])`.
    pub fn client(&self, program: &str) -> Command {
        self.in_netns(self.client_netns(), program)
    }

    /// Whether kcat, as client `client_id`, delivers two records to `topic` within
    /// `timeout_ms` (a new connection each call).
    pub fn kcat_delivers_within(&self, topic: &str, client_id: &str, timeout_ms: u32) -> bool {
        stdout_with_input(
            self.client("kcat").args([
                "-b",
                self.bootstrap(),
                "-t",
                topic,
                "-P",
                "-X",
                &format!("client.id={client_id}"),
                "-X",
                &format!("message.timeout.ms={timeout_ms}"),
            ]),
            "one\ntwo\n",
        )
        .is_ok()
    }

    /// A command run in network namespace `netns` with the lab's tools on PATH.
    pub fn in_netns(&self, netns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, "env"])
            .arg(format!("PATH={}", self.path()))
            .arg(program);
        command
    }

    /// A host command with the lab's tools on PATH and its KUBECONFIG.
    pub fn host(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("PATH", self.path())
            .env("KUBECONFIG", self.kubeconfig());
        command
    }

    /// `iptables-save` and `ip6tables-save` of broker 0's namespace, one after the other.
    pub fn broker_rules(&self) -> String {
        self.broker_rules_of(0)
    }

    /// `iptables-save` and `ip6tables-save` of broker `id`'s namespace, one after the other.
    pub fn broker_rules_of(&self, id: usize) -> String {
        ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|tool| {
                stdout(&mut self.in_netns(&self.broker_netns()[id], tool))
                    .unwrap_or_else(|error| panic!("{error}"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many KSHOCK chains (IPv4 and IPv6) broker 0's namespace holds.
    pub fn broker_chains(&self) -> usize {
        self.broker_chains_of(0)
    }

    /// How many KSHOCK chains (IPv4 and IPv6) broker `id`'s namespace holds.
    pub fn broker_chains_of(&self, id: usize) -> usize {
        self.broker_rules_of(id)
            .lines()
            .filter(|line| line.starts_with(":KSHOCK-"))
            .count()
    }

    /// The host pid of broker `id`'s JVM (in its pod's network namespace).
    pub fn broker_pid(&self, id: usize) -> u32 {
        let pids = stdout(Command::new("ip").args(["netns", "pids", &self.broker_netns()[id]]))
            .unwrap_or_else(|error| panic!("{error}"));
        pids.lines()
            .filter_map(|pid| pid.trim().parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "java")
            })
            .unwrap_or_else(|| panic!("no JVM in broker {id}'s namespace (pids {pids:?})"))
    }

    /// Names each broker pod's current network namespace `ksl-broker-N` again (`lab.sh netns`),
    /// after a test recreated broker pods itself (`kubectl delete pod`, a drain); waits until
    /// every broker answers.
    pub fn refresh_broker_netns(&self) -> Result<(), LabError> {
        Lab::script(&["netns"]).map(drop)
    }

    /// `lab.sh restart-broker ID`: deletes broker `id`'s pod and waits until the StatefulSet's
    /// new pod (new UID, new network namespace) serves and is named `ksl-broker-ID`.
    pub fn restart_broker(&self, id: usize) -> Result<(), LabError> {
        Lab::script(&["restart-broker", &id.to_string()]).map(drop)
    }

    /// Runs `tests/clients/<script>` with kafka-python in the client namespace against the
    /// bootstrap servers, then `args`, and parses the JSON report it prints.
    pub fn python_report(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let script = workspace_root().join("tests/clients").join(script);
        let report = stdout(
            self.client("python")
                .arg(&script)
                .arg(self.bootstrap())
                .args(args),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        serde_json::from_str(&report)
            .unwrap_or_else(|error| panic!("{script:?} printed no JSON report ({error}): {report}"))
    }

    /// kubectl against the lab's apiserver, as its admin.
    pub fn kubectl(&self) -> Command {
        self.host("kubectl")
    }

    /// Creates a topic (idempotent) with Kafka's own TopicCommand.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        replicas: u32,
    ) -> Result<(), LabError> {
        Lab::script(&[
            "topic",
            topic,
            &partitions.to_string(),
            &replicas.to_string(),
        ])
        .map(drop)
    }

    /// A kube client authenticated as the lab's admin.
    pub async fn kube_client(&self) -> Result<kube::Client, LabError> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .map_err(|error| LabError::Kubeconfig(error.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|error| LabError::Kubeconfig(error.to_string()))?;
        kube::Client::try_from(config).map_err(|error| LabError::Kubeconfig(error.to_string()))
    }
}

/// `count` random delays from zero to `max`, and the seed they came from (print it: the same
/// seed, given back in `KSHOCK_DELAY_SEED`, gives the same delays). For tests that interrupt
/// a process at random moments.
pub fn random_delays(count: usize, max: Duration) -> (u64, Vec<Duration>) {
    let seed = std::env::var("KSHOCK_DELAY_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9E37_79B9, |since| since.as_nanos() as u64)
        })
        | 1;
    let mut state = seed;
    let delays = (0..count)
        .map(|_| {
            // xorshift64: plenty for spreading delays.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let millis = max.as_millis() as u64 + 1;
            Duration::from_millis(state % millis)
        })
        .collect();
    (seed, delays)
}

/// Serialises the tests of one binary that change shared state in the lab, such as the rules
/// in a broker's namespace: libtest runs a binary's tests on parallel threads, and one test's
/// fault would otherwise be another's unexpected rule.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static SHARED_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SHARED_STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes the lab down when dropped, also when the test panics: for tests that change the
/// lab's shape or check that nothing is left behind.
#[must_use = "the lab goes down when this guard is dropped"]
pub struct LabDownGuard;

impl Drop for LabDownGuard {
    fn drop(&mut self) {
        if let Err(error) = Lab::down() {
            eprintln!("lab down failed: {error}");
        }
    }
}

/// Polls `probe` every 200 ms until it gives a value, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
