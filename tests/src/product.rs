//! kafka-shock itself on the lab, in the two ways `lab.sh product` installs it:
//!
//! - [`Product::deploy`]: as a cluster runs it. The agent and operator images are built from
//!   this run's binaries and imported into every node's containerd, and the Helm chart
//!   runs the operator Deployment and the agent DaemonSet as pods under the kubelets. The
//!   end-to-end tests use this.
//! - [`Product::install`]: the chart's CRDs, accounts and RBAC without its workloads, and
//!   kubeconfigs holding tokens of the chart's own ServiceAccounts, with which a test runs the
//!   freshly built operator or agent as a host process it starts, stops and measures itself, so
//!   every such test also shows the chart's RBAC is enough.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Background, Lab, LabError, Stream, lab_script, stdout};

/// The Helm release `lab.sh product up` installs (tests/tests/helm_chart.rs uses `kafka-shock`;
/// this one's cluster-scoped names are `kshock-lab-kafka-shock-*`, so the two never collide).
pub const RELEASE: &str = "kshock-lab";

/// The namespace of that release (kept between tests: deleting it would delete the tokens of
/// the kubeconfigs the tests hold).
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

    /// The name of this component's objects in release [`RELEASE`]: its Deployment or
    /// DaemonSet, its ServiceAccount, and (with `-metrics`) its metrics Service.
    pub fn object_name(self) -> String {
        format!("{RELEASE}-kafka-shock-{}", self.name())
    }

    /// The chart's ServiceAccount for this component in release [`RELEASE`].
    pub fn service_account(self) -> String {
        self.object_name()
    }
}

/// kafka-shock installed on a lab.
pub struct Product {
    lab: Lab,
    operator_kubeconfig: PathBuf,
    agent_kubeconfig: PathBuf,
    /// What `lab.sh product deploy` printed: each component's image and image id.
    printed: String,
}

impl Product {
    /// `lab.sh product up`: `helm upgrade --install` of the chart as release [`RELEASE`] in
    /// [`NAMESPACE`] without its workloads (idempotent; the CRDs of this checkout applied, so a
    /// reused lab never keeps stale ones; running agent pods are stopped, so they remove their
    /// rules), then a kubeconfig per component with a TokenRequest token of its ServiceAccount.
    pub fn install(lab: &Lab) -> Result<Product, LabError> {
        Product::install_with(lab, &[])
    }

    /// [`Product::install`] with extra `helm` arguments, e.g. `["--set", "allowedPorts={9092}"]`.
    /// The next plain [`Product::install`] puts the chart's defaults back.
    pub fn install_with(lab: &Lab, helm_args: &[&str]) -> Result<Product, LabError> {
        let mut args = vec!["product", "up"];
        args.extend(helm_args);
        Product::lab_product(lab, &args)
    }

    /// `lab.sh product deploy <bin dir>`: the agent and operator images built from the
    /// binaries beside this test binary ([`crate::product_bin_dir`]) and imported into every
    /// node's containerd, then `helm upgrade --install` of the chart with its workloads, waiting
    /// until the operator and one agent per node are ready. Idempotent: unchanged binaries are
    /// neither rebuilt nor imported again, and running pods stay.
    pub fn deploy(lab: &Lab) -> Result<Product, LabError> {
        Product::deploy_with(lab, &[])
    }

    /// [`Product::deploy`] with chart values `KEY=VALUE` (`helm --set`), e.g.
    /// `["agent.lease=6s"]`; the next deploy without them puts the chart's defaults back.
    pub fn deploy_with(lab: &Lab, values: &[&str]) -> Result<Product, LabError> {
        let bin_dir = crate::product_bin_dir()?.to_string_lossy().into_owned();
        let mut args = vec!["product", "deploy", &bin_dir];
        for value in values {
            args.extend(["--set", value]);
        }
        Product::lab_product(lab, &args)
    }

    fn lab_product(lab: &Lab, args: &[&str]) -> Result<Product, LabError> {
        // Tests of one binary run on parallel threads; helm refuses concurrent upgrades.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _installing = INSTALLING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let printed = stdout(
            Command::new(lab_script())
                .args(args)
                .env("KSHOCK_LAB_RELEASE", RELEASE)
                .env("KSHOCK_LAB_RELEASE_NAMESPACE", NAMESPACE),
        )?;
        let mut product = Product {
            lab: lab.clone(),
            operator_kubeconfig: PathBuf::new(),
            agent_kubeconfig: PathBuf::new(),
            printed,
        };
        product.operator_kubeconfig = PathBuf::from(product.printed("KSHOCK_OPERATOR_KUBECONFIG")?);
        product.agent_kubeconfig = PathBuf::from(product.printed("KSHOCK_AGENT_KUBECONFIG")?);
        Ok(product)
    }

    /// A `KEY=value` line `lab.sh product` printed.
    fn printed(&self, key: &str) -> Result<&str, LabError> {
        self.printed
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| {
                LabError::Kubeconfig(format!("lab.sh product printed no {key}: {}", self.printed))
            })
    }

    /// The image a deployed component runs (`ghcr.io/kafka-shock/agent:0.1.0`) and its id
    /// (`sha256:…`, the config digest a pod's status reports as its imageID), as built and
    /// imported by [`Product::deploy`].
    pub fn image(&self, component: Component) -> Result<(&str, &str), LabError> {
        let prefix = format!("KSHOCK_{}_IMAGE", component.name().to_uppercase());
        Ok((
            self.printed(&prefix)?,
            self.printed(&format!("{prefix}_ID"))?,
        ))
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
