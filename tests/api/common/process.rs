//! The `hookrelay` binary as a child process: started, read, terminated or killed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");

pub fn hookrelay(database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("HOOKRELAY_LOG_FORMAT", "json")
        .env("HOOKRELAY_LISTEN", "127.0.0.1:0");
    command
}

/// An account, a project and an all-scope key made with the admin CLI: (project id, key).
pub fn provision_tenant(database_url: &str) -> (String, String) {
    let provision = |args: &[&str]| -> Value {
        let output = hookrelay(database_url)
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let account = provision(&["account", "create", "--name", "tenant"]);
    let account = account["id"].as_str().unwrap().to_owned();
    let project = provision(&["project", "create", "--account", &account, "--name", "p"]);
    let project = project["id"].as_str().unwrap().to_owned();
    let key = provision(&["key", "create", "--project", &project]);
    (project, key["key"].as_str().unwrap().to_owned())
}

/// A `serve` process, its address once it listens, and its stdout for after it exits.
/// Dropping it kills the process, so a failing test leaves nothing running.
pub struct Server {
    child: Option<Child>,
    pub address: String,
    logs: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the test stops listening, so the server never blocks on stderr.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            address: String::new(),
            logs: received,
        };
        let listening = server.next_log(|entry| entry["message"] == "hookrelay listening");
        let address = listening["address"].as_str().expect("an address field");
        server.address = format!("http://{address}");
        server
    }

    /// The next JSON log line that `wanted` accepts, failing the test after a minute.
    pub fn next_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(60))
                .expect("the server logs the line looked for");
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if wanted(&entry) {
                    return entry;
                }
            }
        }
    }

    /// Sends SIGTERM and returns (exit success, everything printed on stdout).
    pub fn terminate(mut self) -> (bool, String) {
        let mut child = self.child.take().expect("the server runs");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = child.wait().expect("the server exits");
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut stdout)
            .expect("stdout is text");
        (status.success(), stdout)
    }
}

impl Server {
    /// SIGKILL: no shutdown, no cleanup, as in a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("the server can be killed");
            child.wait().expect("the killed server is reaped");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
