//! The `hookrelay serve` child process: started with the bench's settings on a fresh
//! database, polled until ready, stopped with SIGTERM.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;

use crate::BenchResult;

/// Flags every server gets besides its database, address, admin token and worker switch.
/// Delivery settings are left at their defaults on purpose: they are what is measured.
const FIXED_FLAGS: &[(&str, &str)] = &[
    ("--bootstrap", "false"),
    ("--allow-http", "true"),
    ("--allow-private-targets", "true"),
    ("--rate-limit-per-minute", "0"),
    ("--max-webhooks-per-project", "100000"),
    ("--log", "warn"),
];

const READY_DEADLINE: Duration = Duration::from_secs(60);
/// The server's own shutdown grace is 10 s by default; this leaves room beyond it.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

pub struct Server {
    child: Child,
    pub base_url: String,
    pub admin_token: String,
    /// When the process was spawned: the backlog drain is timed from here.
    pub spawned_at: Instant,
    log_path: PathBuf,
}

/// A port nothing listens on right now: the OS picked it free and the listener is gone.
pub fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The command with the inherited environment stripped of the server's own variables, so
/// every setting is either a flag below or the default.
fn serve_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text == "DATABASE_URL" || name_text.starts_with("HOOKRELAY_") {
            command.env_remove(&name);
        }
    }
    command.arg("serve");
    command
}

impl Server {
    /// Starts a server on `database_url` and waits until `/readyz` answers 200.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        worker: bool,
        log_path: PathBuf,
        http: &reqwest::Client,
    ) -> BenchResult<Self> {
        let port = free_port()?;
        let admin_token = random_token();
        let log = File::create(&log_path)?;
        let mut command = serve_command(bin);
        command
            .args(["--database-url", database_url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", &admin_token])
            .args(["--worker", if worker { "true" } else { "false" }]);
        for (flag, value) in FIXED_FLAGS {
            command.args([flag, value]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            admin_token,
            spawned_at: Instant::now(),
            log_path,
        };
        server.wait_ready(http).await?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> BenchResult<()> {
        let url = format!("{}/readyz", self.base_url);
        while self.spawned_at.elapsed() < READY_DEADLINE {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "the server exited before it was ready ({status}); see {}",
                    self.log_path.display()
                )
                .into());
            }
            let ready = http.get(&url).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "the server was not ready within {READY_DEADLINE:?}; see {}",
            self.log_path.display()
        )
        .into())
    }

    /// Sends SIGTERM and waits for the process to exit; kills it if it outstays the deadline.
    pub async fn stop(mut self) -> BenchResult<()> {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let asked = Instant::now();
        while asked.elapsed() < STOP_DEADLINE {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Err(format!(
            "the server did not stop within {STOP_DEADLINE:?} of SIGTERM and was killed; see {}",
            self.log_path.display()
        )
        .into())
    }
}

impl Drop for Server {
    /// A scenario that failed half-way must not leave a server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every `serve` setting as the bench runs it: its own flags over the defaults that
/// `serve --help` lists.
pub fn settings(bin: &Path) -> BenchResult<Vec<(String, String)>> {
    let help = serve_command(bin).arg("--help").output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    let mut settings: Vec<(String, String)> = Vec::new();
    for line in help.lines().map(str::trim) {
        if let Some(flag) = line.strip_prefix("--") {
            let name = flag.split_whitespace().next().unwrap_or(flag);
            if name != "help" {
                settings.push((format!("--{name}"), "unset".to_owned()));
            }
        } else if let Some(default) = line
            .strip_prefix("[default: ")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            if let Some(last) = settings.last_mut() {
                last.1 = default.to_owned();
            }
        }
    }
    let per_start = [
        ("--database-url", "a fresh database per scenario"),
        ("--listen", "127.0.0.1:<free port>"),
        ("--admin-token", "random per start"),
        ("--worker", "true (false while the backlog is queued)"),
    ];
    let ours = per_start.iter().chain(FIXED_FLAGS);
    for (flag, value) in ours {
        match settings.iter_mut().find(|(name, _)| name == flag) {
            Some(setting) => setting.1 = (*value).to_owned(),
            None => settings.push(((*flag).to_owned(), (*value).to_owned())),
        }
    }
    Ok(settings)
}
