//! The lab's test clients (tests/clients), for the tests that inject Kafka-level faults: the
//! Java toolkit `tests/clients/java/kafka-client`, run in the client namespace, whose report is
//! JSON lines ending with the operation's `result`, and kafka-python's
//! `tests/clients/kafka_python_api.py` through [`Lab::python_report`]. What each operation does
//! and which error to inject to see it: tests/clients/README.md.

use std::process::Command;

use serde_json::Value;

use crate::{Lab, workspace_root};

/// What one run of the Java test clients printed: its event lines, the `result` last.
#[derive(Debug, Clone)]
pub struct ClientReport {
    events: Vec<Value>,
}

impl ClientReport {
    /// Reads the JSON lines of a run; an error when a line is not JSON or no result came.
    pub fn parse(stdout: &str) -> Result<ClientReport, String> {
        let events = stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|error| format!("not JSON ({error}): {line}"))
            })
            .collect::<Result<Vec<Value>, _>>()?;
        match events.last() {
            Some(last) if last["event"] == "result" => Ok(ClientReport { events }),
            _ => Err(format!("no result line in:\n{stdout}")),
        }
    }

    /// The `result` line: `op`, `ok`, `error`, the operation's own fields and `wire`.
    pub fn result(&self) -> &Value {
        &self.events[self.events.len() - 1]
    }

    /// The Kafka error name the operation ended with ("NONE" when it succeeded).
    pub fn error(&self) -> &str {
        self.result()["error"].as_str().unwrap_or_default()
    }

    /// The events of one kind: "send", "record", "rebalance", "response", "log", ...
    pub fn events<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |event| event["event"] == kind)
    }
}

impl Lab {
    /// The Java test clients in the client namespace, running operation `args` (e.g.
    /// `["api", "Produce", "--expect", "NOT_LEADER_OR_FOLLOWER"]`) against this lab's brokers.
    pub fn java_client(&self, args: &[&str]) -> Command {
        let runner = workspace_root().join("tests/clients/java/kafka-client");
        let mut command = self.client(&runner.to_string_lossy());
        command.args(args).args(["--bootstrap", self.bootstrap()]);
        command
    }

    /// Runs [`Lab::java_client`] to its end and reads its report; panics with the client's
    /// stderr if it could not run or printed no result.
    pub fn java_report(&self, args: &[&str]) -> ClientReport {
        let stdout = crate::stdout(&mut self.java_client(args))
            .unwrap_or_else(|error| panic!("kafka-client {args:?}: {error}"));
        ClientReport::parse(&stdout)
            .unwrap_or_else(|error| panic!("kafka-client {args:?}: {error}"))
    }
}
