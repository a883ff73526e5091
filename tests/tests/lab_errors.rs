//! `lab.sh` fails clearly, and before it creates anything, when it cannot do its job: not root,
//! a port or bridge already in use, a package registry out of reach (the message names the
//! step). These tests use their own state directory, ports and bridge name, so they never
//! disturb a running lab.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use lab::{TempDir, lab_script};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// `lab.sh up` in an isolated state directory, on free ports, with extra environment.
fn isolated_up(state: &Path, extra: &[(&str, String)]) -> Output {
    let mut command = Command::new(lab_script());
    command
        .arg("up")
        .env("KSHOCK_LAB_STATE", state)
        .env("KSHOCK_LAB_BRIDGE", "ksl-brerr")
        .env("KSHOCK_LAB_APISERVER_PORT", free_port().to_string())
        .env("KSHOCK_LAB_ETCD_PORT", free_port().to_string());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.output().expect("run lab.sh")
}

fn failed_with(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "lab.sh succeeded; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

fn netns_names() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn up_as_non_root_says_root_is_needed() {
    // A copy of the lab's scripts in a world-readable place: the checkout itself may sit
    // below a directory that user `nobody` cannot enter.
    let copy = TempDir::new("nonroot");
    let lab_dir = lab_script()
        .parent()
        .map(Path::to_path_buf)
        .expect("lab dir");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&lab_dir)
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(copied.success());
    let readable = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(copy.path())
        .status()
        .expect("chmod");
    assert!(readable.success());
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(copy.path().join("lab/lab.sh"))
        .arg("up")
        .output()
        .expect("setpriv");
    failed_with(&output, "must run as root");
}

#[test]
fn up_with_the_apiserver_port_taken_names_the_port_and_creates_nothing() {
    let state = TempDir::new("port");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let before = netns_names();
    let output = isolated_up(
        state.path(),
        &[("KSHOCK_LAB_APISERVER_PORT", port.to_string())],
    );
    failed_with(
        &output,
        &format!("port {port} (kube-apiserver) is already in use"),
    );
    assert_eq!(netns_names(), before, "a failed up created namespaces");
    assert!(!state.path().join("env").exists());
}

#[test]
fn up_with_a_foreign_bridge_of_the_same_name_refuses() {
    let state = TempDir::new("bridge");
    let created = Command::new("ip")
        .args(["link", "add", "ksl-brerr", "type", "bridge"])
        .status()
        .expect("ip link add");
    assert!(created.success());
    let output = isolated_up(state.path(), &[]);
    let _ = Command::new("ip")
        .args(["link", "delete", "ksl-brerr"])
        .status();
    failed_with(
        &output,
        "bridge ksl-brerr already exists and was not made by this lab",
    );
}

#[test]
fn up_over_a_half_made_lab_says_to_take_it_down_first() {
    let state = TempDir::new("half-made");
    // What an `up` killed halfway leaves: state of its own, no env file.
    std::fs::write(state.path().join("bridge"), "ksl-brerr\n").expect("state file");
    let before = netns_names();
    let output = isolated_up(state.path(), &[]);
    failed_with(&output, "holds a lab left half made");
    failed_with(&output, "run 'lab.sh down' first");
    assert_eq!(netns_names(), before, "a refused up created namespaces");
}

/// A build step whose registry is unreachable fails with a message naming that step.
fn build_offline(cache: &Path, env: &[(&str, String)]) -> Output {
    let mut command = Command::new(lab_script());
    command.arg("build").env("KSHOCK_CACHE", cache);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run lab.sh build")
}

#[test]
fn unreachable_maven_central_names_the_kafka_step() {
    let cache = TempDir::new("maven");
    let repo = cache.path().join("m2");
    let output = build_offline(
        cache.path(),
        &[(
            "KSHOCK_MVN_ARGS",
            format!("-o -Dmaven.repo.local={}", repo.display()),
        )],
    );
    failed_with(
        &output,
        "step \"fetch Kafka 4.1.1 jars from Maven Central\" failed",
    );
}

#[test]
fn unreachable_go_proxy_names_the_kubernetes_step() {
    let cache = TempDir::new("goproxy");
    // The Kafka step is already done in this cache, so the Go step is the first to need a registry.
    let libs = cache.path().join("kafka-4.1.1/libs");
    std::fs::create_dir_all(&libs).expect("libs dir");
    std::fs::write(libs.join("kafka_2.13-4.1.1.jar"), b"").expect("marker");
    let output = build_offline(
        cache.path(),
        &[
            ("GOPROXY", "http://127.0.0.1:9".to_owned()),
            ("GOFLAGS", "-mod=mod -modcacherw".to_owned()),
            (
                "GOMODCACHE",
                cache.path().join("gomod").display().to_string(),
            ),
        ],
    );
    failed_with(
        &output,
        "step \"build kube-apiserver, kubectl and etcd v1.34.4 from the Go module proxy\" failed",
    );
}
