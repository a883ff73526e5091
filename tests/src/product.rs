//! kafka-shock itself on the lab: the Helm chart installed and kubeconfigs holding tokens of
//! the chart's own ServiceAccounts (both by `lab.sh product up`, which the demo and the
//! benchmarks use too), and the freshly built operator and agent run with them — so every test
//! of the product also shows its RBAC is enough.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Background, Lab, LabError, Stream, lab_script, stdout};

/// The Helm release `lab.sh product up` installs (tests/tests/helm_chart.rs uses `kafka-shock`;
/// this one's cluster-scoped names are `kshock-lab-kafka-shock-*`, so the two never collide).
pub const RELEASE: &str = "kshock-lab";

/// The namespace of that release. It is never deleted: with no controller-manager in the lab
/// a deleted namespace stays Terminating.
pub const NAMESPACE: &str = "kafka-shock-lab";

/// The log line the operator writes once it sees the cluster's faults.
pub const OPERATOR_READY: &str = "operator: watching";

/// The log line the agent writes once it watches its node's injections.
pub const AGENT_READY: &str = "agent: watching";

/// A part of kafka-shock with a ServiceAccount of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The operator (Deployment).
    Operator,
    /// The node agent (DaemonSet).
    Agent,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Operator => "operator",
            Component::Agent => "agent",
        }
    }

    /// The chart's ServiceAccount for this component in release [`RELEASE`].
    pub fn service_account(self) -> String {
        format!("{RELEASE}-kafka-shock-{}", self.name())
    }
}

/// kafka-shock installed on a lab.
pub struct Product {
    lab: Lab,
    operator_kubeconfig: PathBuf,
    agent_kubeconfig: PathBuf,
}

impl Product {
    /// `lab.sh product up`: `helm upgrade --install` of the chart as release [`RELEASE`] in
    /// [`NAMESPACE`] (idempotent; the CRDs of this checkout applied, so a reused lab never keeps
    /// stale ones), then a kubeconfig per component with a TokenRequest token of its
    /// ServiceAccount. The chart's Deployment and DaemonSet never run in the lab (no kubelet);
    /// the tests run the binaries.
    pub fn install(lab: &Lab) -> Result<Product, LabError> {
        Product::install_with(lab, &[])
    }

    /// [`Product::install`] with extra `helm` arguments, e.g. `["--set", "allowedPorts={9092}"]`.
    /// The next plain [`Product::install`] puts the chart's defaults back.
    pub fn install_with(lab: &Lab, helm_args: &[&str]) -> Result<Product, LabError> {
        // Tests of one binary run on parallel threads; helm refuses concurrent upgrades.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _installing = INSTALLING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let printed = stdout(
            Command::new(lab_script())
                .args(["product", "up"])
                .args(helm_args)
                .env("KSHOCK_LAB_RELEASE", RELEASE)
                .env("KSHOCK_LAB_RELEASE_NAMESPACE", NAMESPACE),
        )?;
        let path_of = |key: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(PathBuf::from)
                .ok_or_else(|| {
                    LabError::Kubeconfig(format!("lab.sh product up printed no {key}: {printed}"))
                })
        };
        Ok(Product {
            lab: lab.clone(),
            operator_kubeconfig: path_of("KSHOCK_OPERATOR_KUBECONFIG")?,
            agent_kubeconfig: path_of("KSHOCK_AGENT_KUBECONFIG")?,
        })
    }

    /// A kubeconfig for the lab's API server (and its CA) holding a token of `component`'s own
    /// ServiceAccount (TokenRequest), not the admin's.
    pub fn kubeconfig_for(&self, component: Component) -> Result<PathBuf, LabError> {
        Ok(match component {
            Component::Operator => self.operator_kubeconfig.clone(),
            Component::Agent => self.agent_kubeconfig.clone(),
        })
    }

    /// kubectl against the lab as `component`'s ServiceAccount, e.g. to do what the agent does.
    pub fn kubectl_as(&self, component: Component) -> Result<Command, LabError> {
        let mut kubectl = self.lab.kubectl();
        kubectl.env("KUBECONFIG", self.kubeconfig_for(component)?);
        Ok(kubectl)
    }

    /// The flags the installed chart passes `component` beyond where it serves /metrics and
    /// its node's name (those the chart's values add, e.g. `--allowed-ports=9092`), read from
    /// the stored Deployment or DaemonSet, so a test runs the binary as the chart would.
    pub fn chart_flags(&self, component: Component) -> Result<Vec<String>, LabError> {
        let (kind, field) = match component {
            Component::Operator => ("deployment", "args"),
            Component::Agent => ("daemonset", "command"),
        };
        let name = format!("{RELEASE}-kafka-shock-{}", component.name());
        let printed = stdout(self.lab.kubectl().args([
            "get",
            kind,
            &name,
            "-n",
            NAMESPACE,
            "-o",
            &format!("jsonpath={{.spec.template.spec.containers[0].{field}}}"),
        ]))?;
        let argv: Vec<String> = serde_json::from_str(&printed)
            .map_err(|error| LabError::Kubeconfig(format!("{kind} {name}: {error}: {printed}")))?;
        Ok(argv
            .into_iter()
            .filter(|arg| {
                arg.starts_with("--")
                    && !arg.starts_with("--metrics-addr")
                    && !arg.starts_with("--node-name")
            })
            .collect())
    }

    /// Runs the freshly built `kafka-shock-operator` as the chart's operator ServiceAccount,
    /// with /metrics on a free loopback port; ready once it logs [`OPERATOR_READY`].
    pub fn start_operator(&self) -> Result<Background, LabError> {
        self.start_operator_on(free_loopback_addr()?)
    }

    /// [`Product::start_operator`] with /metrics and /healthz on `metrics_addr` (see
    /// [`free_loopback_addr`] and [`http_get`]).
    pub fn start_operator_on(&self, metrics_addr: SocketAddr) -> Result<Background, LabError> {
        self.start_operator_with(metrics_addr, &[])
    }

    /// [`Product::start_operator_on`] with `flags` too (e.g. [`Product::chart_flags`]).
    pub fn start_operator_with(
        &self,
        metrics_addr: SocketAddr,
        flags: &[String],
    ) -> Result<Background, LabError> {
        let mut command = Command::new(operator_bin()?);
        command
            .env("KUBECONFIG", self.kubeconfig_for(Component::Operator)?)
            .env("KAFKA_SHOCK_LOG", "info")
            .arg(format!("--metrics-addr={metrics_addr}"))
            .args(flags);
        Background::start(
            &mut command,
            Stream::Stderr,
            OPERATOR_READY,
            Duration::from_secs(30),
        )
    }

    /// Runs `kafka-shock agent` for lab node `node` as the chart's agent ServiceAccount, with
    /// /metrics on a free loopback port; ready once it logs [`AGENT_READY`].
    pub fn start_agent(&self, node: &str) -> Result<Background, LabError> {
        self.start_agent_on(node, free_loopback_addr()?)
    }

    /// [`Product::start_agent`] with /metrics on `metrics_addr`.
    pub fn start_agent_on(
        &self,
        node: &str,
        metrics_addr: SocketAddr,
    ) -> Result<Background, LabError> {
        self.start_agent_with::<&str>(node, metrics_addr, &[])
    }

    /// [`Product::start_agent_on`] with more flags, e.g. `["--lease", "6s"]` or
    /// [`Product::chart_flags`].
    pub fn start_agent_with<S: AsRef<std::ffi::OsStr>>(
        &self,
        node: &str,
        metrics_addr: SocketAddr,
        flags: &[S],
    ) -> Result<Background, LabError> {
        Background::start(
            &mut self.agent_command(node, metrics_addr, flags)?,
            Stream::Stderr,
            AGENT_READY,
            Duration::from_secs(30),
        )
    }
}

impl Product {
    /// The command [`Product::start_agent_with`] runs, for a test that starts it its own way.
    pub fn agent_command<S: AsRef<std::ffi::OsStr>>(
        &self,
        node: &str,
        metrics_addr: SocketAddr,
        flags: &[S],
    ) -> Result<Command, LabError> {
        let mut command = Command::new(crate::kafka_shock_bin()?);
        command
            .env("KUBECONFIG", self.kubeconfig_for(Component::Agent)?)
            .env("PATH", self.lab.path())
            .args(["agent", "--node-name", node])
            .arg(format!("--metrics-addr={metrics_addr}"))
            .args(flags);
        Ok(command)
    }
}

/// The `kafka-shock-operator` binary built next to this test binary. `tests/run-all.sh` builds
/// it (`cargo build --workspace --bins`) before the tests run.
pub fn operator_bin() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe().map_err(|source| LabError::Spawn {
        command: "current_exe".into(),
        source,
    })?;
    let candidate = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|profile_dir| profile_dir.join("kafka-shock-operator"))
        .unwrap_or_default();
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(LabError::Spawn {
            command: candidate.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not built: run `cargo build -p kafka-shock-operator` (tests/run-all.sh does)",
            ),
        })
    }
}

/// A loopback address with a port nobody listens on right now.
pub fn free_loopback_addr() -> Result<SocketAddr, LabError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|source| LabError::Spawn {
            command: "bind 127.0.0.1:0".into(),
            source,
        })
}

/// `GET path` from `addr` (e.g. /metrics, /healthz): the body, when the status is 200. Plain
/// HTTP/1.1, so the tests need no HTTP client crate.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, LabError> {
    let command = format!("GET http://{addr}{path}");
    let failed = |source| LabError::Spawn {
        command: command.clone(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(failed)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(failed)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(failed)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(failed)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.1 200") {
        Ok(body.to_owned())
    } else {
        Err(LabError::NotReady {
            command,
            stderr: head.to_owned(),
        })
    }
}
