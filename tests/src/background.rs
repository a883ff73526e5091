use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::LabError;

/// Which output of a background process announces that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (which is then captured too).
    Stdout,
    /// Standard error; standard output stays where the caller sent it.
    Stderr,
}

/// Forwards each line of `output` to `sender` from a thread of its own.
fn forward(output: impl std::io::Read + Send + 'static, sender: std::sync::mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
}

/// A process a test runs alongside its traffic (a live sniffer, tcpdump): started, waited for
/// until it says it is ready, stopped with SIGINT like a user's Ctrl-C, and killed if the test
/// ends first, so no test leaves a process behind.
pub struct Background {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    described: String,
}

impl Background {
    /// Spawns `command` and waits up to `timeout` for a line containing `ready` on `watch`
    /// (an empty `ready` does not wait).
    pub fn start(
        command: &mut Command,
        watch: Stream,
        ready: &str,
        timeout: Duration,
    ) -> Result<Background, LabError> {
        let described = format!("{command:?}");
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        if watch == Stream::Stdout {
            command.stdout(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|source| LabError::Spawn {
            command: described.clone(),
            source,
        })?;
        let (sender, lines) = channel();
        if let Some(stdout) = child.stdout.take() {
            forward(stdout, sender.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward(stderr, sender);
        }
        let mut background = Background {
            child: Some(child),
            lines,
            seen: Vec::new(),
            described,
        };
        if ready.is_empty() {
            return Ok(background);
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match background.lines.recv_timeout(left) {
                Ok(line) => {
                    let is_ready = line.contains(ready);
                    background.seen.push(line);
                    if is_ready {
                        return Ok(background);
                    }
                }
                Err(_) => break,
            }
        }
        Err(LabError::NotReady {
            command: background.described.clone(),
            stderr: background.seen.join("\n"),
        })
    }

    /// Its process id, while it runs (to read its memory in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The lines it has written so far on the captured outputs.
    pub fn output(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    /// Waits up to `timeout` until `done` holds for the lines written so far.
    pub fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self.output()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// SIGKILL, as a crash would: the process gets no chance to clean up.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGINT, waits for the exit, and returns every line it wrote on the captured
    /// outputs.
    pub fn interrupt(self) -> Result<String, LabError> {
        self.interrupt_within(None)
    }

    /// [`Background::interrupt`], killing the process if it has not exited within `timeout`
    /// (then it is an error: it ignored the interrupt).
    pub fn interrupt_within(mut self, timeout: Option<Duration>) -> Result<String, LabError> {
        let Some(mut child) = self.child.take() else {
            return Ok(String::new());
        };
        crate::run(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
        let failed = |source| LabError::Spawn {
            command: self.described.clone(),
            source,
        };
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(failed)? {
                break status;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                let _ = child.kill();
                let _ = child.wait();
                self.drain_until_closed();
                return Err(LabError::NotReady {
                    command: format!(
                        "{} (did not exit within {timeout:?} of SIGINT)",
                        self.described
                    ),
                    stderr: self.seen.join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.drain_until_closed();
        let stderr = self.seen.join("\n");
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

impl Background {
    /// Collects the lines still on their way once the process has exited: the forwarding
    /// threads may not have read its last words yet. They end when the pipes close; a
    /// grandchild holding a pipe open is waited for five seconds at most.
    fn drain_until_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
    }
}

impl Drop for Background {
    /// A test that ends early still lets the process clean up after itself (SIGINT), and
    /// kills it if it has not exited within five seconds.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
