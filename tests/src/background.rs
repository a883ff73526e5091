use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::LabError;

/// A process a test runs alongside its traffic (a live sniffer, tcpdump): started, waited for
/// until it says it is ready, stopped with SIGINT like a user's Ctrl-C, and killed if the test
/// ends first, so no test leaves a process behind.
pub struct Background {
    child: Option<Child>,
    stderr_lines: Receiver<String>,
    stderr_seen: Vec<String>,
    described: String,
}

impl Background {
    /// Spawns `command` and waits up to `timeout` for a stderr line containing `ready`.
    pub fn start(
        command: &mut Command,
        ready: &str,
        timeout: Duration,
    ) -> Result<Background, LabError> {
        let described = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: described.clone(),
                source,
            })?;
        let (sender, stderr_lines) = channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut background = Background {
            child: Some(child),
            stderr_lines,
            stderr_seen: Vec::new(),
            described,
        };
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match background.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let is_ready = line.contains(ready);
                    background.stderr_seen.push(line);
                    if is_ready {
                        return Ok(background);
                    }
                }
                Err(_) => break,
            }
        }
        Err(LabError::NotReady {
            command: background.described.clone(),
            stderr: background.stderr_seen.join("\n"),
        })
    }

    /// Sends SIGINT, waits for the exit, and returns everything it wrote on stderr.
    pub fn interrupt(mut self) -> Result<String, LabError> {
        let Some(mut child) = self.child.take() else {
            return Ok(String::new());
        };
        crate::run(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
        let status = child.wait().map_err(|source| LabError::Spawn {
            command: self.described.clone(),
            source,
        })?;
        self.stderr_seen.extend(self.stderr_lines.try_iter());
        let stderr = self.stderr_seen.join("\n");
        if status.success() {
            Ok(stderr)
        } else {
            Err(LabError::CommandFailed {
                command: self.described.clone(),
                status,
                stderr,
            })
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
