use std::path::PathBuf;

/// What can go wrong while driving the lab; each variant says which command failed and why,
/// so a red test points at the lab step rather than at a missing value.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed with {status}:\n{stderr}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`{command}` did not finish within {after:?} and was killed; its stderr:\n{stderr}")]
    TimedOut {
        command: String,
        after: std::time::Duration,
        stderr: String,
    },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("could not read the lab environment {path}: {source}")]
    Env {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the lab environment has no {0}")]
    MissingEnv(&'static str),
    #[error("the lab's kubeconfig is unusable: {0}")]
    Kubeconfig(String),
    #[error(
        "{0} is not built: run `cargo build --workspace --bins` (tests/run-all.sh does); the lab builds the product's images from it too"
    )]
    MissingBinary(PathBuf),
    #[error("`{command}` did not become ready; its stderr:\n{stderr}")]
    NotReady { command: String, stderr: String },
    #[error("the lab harness needs root (network namespaces); run the tests as root")]
    NotRoot,
}
