//! Writes the CRD manifests of kafka-shock into `crds/`, or checks that they are up to date.
//!
//! ```text
//! cargo run -p kafka-shock-crds --bin crdgen             # (re)write crds/*.yaml
//! cargo run -p kafka-shock-crds --bin crdgen -- --check  # exit 1 if crds/*.yaml differ
//! ```
//! `--dir DIR` writes to or checks another directory (default: this crate's directory).

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use kafka_shock_crds::crd_files;

const USAGE: &str = "usage: crdgen [--check] [--dir DIR]";

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--dir" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => return usage_error("--dir needs a directory"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    match run(&dir, check) {
        Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
        Ok(stale) => {
            for path in stale {
                eprintln!(
                    "crdgen: {} differs from the generated CRD; run `cargo run -p kafka-shock-crds --bin crdgen` and commit it",
                    path.display()
                );
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("crdgen: {error}");
            ExitCode::from(2)
        }
    }
}

fn usage_error(problem: &str) -> ExitCode {
    eprintln!("crdgen: {problem}\n{USAGE}");
    ExitCode::from(2)
}

/// Writes (or, with `check`, compares) every manifest; returns the files that differ.
fn run(dir: &Path, check: bool) -> Result<Vec<PathBuf>, String> {
    let files = crd_files().map_err(|e| format!("cannot render the CRDs: {e}"))?;
    let mut stale = Vec::new();
    for file in files {
        let path = dir.join(file.name);
        if check {
            // A missing file is as stale as a different one.
            if fs::read_to_string(&path).ok().as_deref() != Some(file.yaml.as_str()) {
                stale.push(path);
            }
        } else {
            fs::write(&path, &file.yaml)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(stale)
}
