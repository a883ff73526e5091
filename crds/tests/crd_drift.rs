//! Fails when the CRD YAML checked in under `crds/` differs from what the types generate, so a
//! change to the API cannot ship without its manifests (fix: `cargo run -p kafka-shock-crds
//! --bin crdgen`).

use std::{fs, path::Path};

use kafka_shock_crds::crd_files;

#[test]
fn checked_in_crds_match_the_generated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in crd_files().expect("CRDs render") {
        let path = dir.join(file.name);
        let checked_in = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            checked_in == file.yaml,
            "{} differs from the generated CRD; run `cargo run -p kafka-shock-crds --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(crd_files().unwrap(), crd_files().unwrap());
}
