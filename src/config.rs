//! The command line: every setting is a flag and a HOOKRELAY_* (or DATABASE_URL) variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::domain::{RetrySchedule, parse_duration};
use crate::store::PoolSettings;
use crate::store::cipher::SecretCipher;

#[derive(Debug, Parser)]
#[command(
    name = "hookrelay",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HOOKRELAY_COMMIT"), ")"),
    // Short: what it is, the subcommands, where to read on. `serve --help` lists every setting.
    help_template = "{about}\n\n{usage-heading} {usage}\n\nCommands:\n{subcommands}\n{after-help}",
    after_help = "Without a subcommand hookrelay runs `serve`. Every setting is a flag of \
        `hookrelay serve --help` and an environment variable; the README and /openapi.yaml \
        describe the API.\n\n  -h, --help     Print help\n  -V, --version  Print the version \
        and the git commit it was built from",
    about = "A multi-tenant webhook subscription service speaking the DevTune API v2 webhook API.",
    long_about = "A multi-tenant webhook subscription service speaking the DevTune API v2 webhook API.\n\n\
        Tenants register HTTPS endpoints for event types with `dtk_live_` API keys; hookrelay signs \
        and delivers every event to every subscribed endpoint. Without a subcommand it runs `serve`, \
        on a SQLite file hookrelay.db in the working directory unless DATABASE_URL says otherwise.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default). Applies migrations first; bootstraps an empty database.
    Serve(Box<ServeConfig>),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Provision accounts, projects and API keys; prints JSON on stdout.
    Admin(AdminArgs),
    /// Forward a pull webhook's deliveries to a local URL, signed as pushed webhooks are: real
    /// webhooks on a laptop, with no public URL and no tunnel.
    Listen(ListenArgs),
    /// Publish events through the API.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Read the project's webhooks through the API.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// Where the API client commands call, and with which key.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The hookrelay server to call.
    #[arg(
        long = "api",
        env = "HOOKRELAY_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// An API key of the project (`dtk_live_…`); the project is the key's.
    #[arg(long, env = "HOOKRELAY_API_KEY", hide_env_values = true)]
    pub key: String,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Prints one line per delivery (time, event type, delivery id, the local \
    answer, milliseconds); --json prints one JSON object per line instead. Ctrl-C forwards what \
    is held, acknowledges it and deletes the webhook listen created (never one given with \
    --webhook). Killed hard, nothing is lost: what was not acknowledged is delivered again once \
    its lease ends."
)]
pub struct ListenArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Comma-separated event types for the pull webhook listen creates.
    #[arg(long, value_delimiter = ',', required_unless_present = "webhook")]
    pub events: Vec<String>,
    /// Where to POST each delivery, e.g. http://localhost:3000/webhooks (loopback and private
    /// addresses are fine: it is your machine).
    #[arg(long)]
    pub forward_to: String,
    /// Use this existing pull webhook instead of creating one.
    #[arg(long, conflicts_with = "events")]
    pub webhook: Option<String>,
    /// One JSON object per delivery on stdout instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// How long each leased delivery is held before it is delivered again, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub lease: u64,
    /// Most deliveries taken per poll.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub limit: u64,
    /// How long the local receiver may take to answer, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub forward_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish an event to every subscribed webhook; prints the API's answer as JSON.
    Send {
        #[command(flatten)]
        api: ApiArgs,
        /// The event type, e.g. action.created.
        #[arg(long)]
        event: String,
        /// The event's data, a JSON object.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Publish at most once for this key (the API's Idempotency-Key header).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List the project's webhooks: id, mode, URL, events and whether attempts are made.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Database to use: postgres://user@host/db, or sqlite://path/to/file.db (created if missing).
    #[arg(
        long = "database-url",
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://hookrelay.db",
        // The URL may carry a password.
        hide_env_values = true
    )]
    pub url: String,

    /// Most database connections this process opens.
    #[arg(
        long = "db-max-connections",
        env = "HOOKRELAY_DB_MAX_CONNECTIONS",
        hide_env_values = true,
        default_value_t = 10
    )]
    pub max_connections: u32,

    /// How long a request waits for a free database connection (and, on SQLite, for another
    /// connection's write lock) before answering 503.
    #[arg(
        long = "db-acquire-timeout-ms",
        env = "HOOKRELAY_DB_ACQUIRE_TIMEOUT_MS",
        hide_env_values = true,
        default_value_t = 3000
    )]
    pub acquire_timeout_ms: u64,

    /// Encrypts webhook signing secrets at rest with AES-256-GCM: 32 random bytes, base64
    /// (e.g. `openssl rand -base64 32`). Without it secrets are stored in plain text.
    #[arg(long, env = "HOOKRELAY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,

    /// Earlier encryption keys, comma-separated, still accepted for reading after a key
    /// rotation until `hookrelay admin reencrypt` has resealed every secret.
    #[arg(
        long,
        env = "HOOKRELAY_ENCRYPTION_OLD_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub old_encryption_keys: Vec<String>,
}

impl DatabaseConfig {
    /// The cipher for signing secrets at rest, from the configured keys.
    pub fn cipher(&self) -> Result<SecretCipher, String> {
        SecretCipher::from_base64(self.encryption_key.as_deref(), &self.old_encryption_keys)
    }

    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Log line format.
    #[arg(long = "log-format", global = true, env = "HOOKRELAY_LOG_FORMAT", hide_env_values = true, value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `hookrelay=debug,info`.
    #[arg(
        long = "log",
        env = "HOOKRELAY_LOG",
        hide_env_values = true,
        default_value = "info"
    )]
    pub filter: String,

    /// Export traces to this OpenTelemetry collector over OTLP/HTTP (JSON encoding), e.g.
    /// http://127.0.0.1:4318: a span per API request and per delivery attempt, each attempt in
    /// the trace of the publish that caused it and sending its own `traceparent`. Unset,
    /// nothing is exported.
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide_env_values = true
    )]
    pub otlp_endpoint: Option<String>,

    /// The service name exported traces carry.
    #[arg(
        long = "otel-service-name",
        env = "OTEL_SERVICE_NAME",
        hide_env_values = true,
        default_value = "hookrelay"
    )]
    pub service_name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseConfig,

    #[command(flatten, next_help_heading = "Operations")]
    pub log: LogConfig,

    /// Address and port to listen on.
    #[arg(
        help_heading = "Operations",
        long,
        env = "HOOKRELAY_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// On the first start against an empty database, create a default account, project and
    /// all-scope API key, and print the project id and the key once.
    #[arg(help_heading = "Operations", long, env = "HOOKRELAY_BOOTSTRAP", hide_env_values = true, default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub bootstrap: bool,

    /// Enables the /admin/v1 provisioning API, guarded by this value as a bearer token.
    #[arg(
        help_heading = "Security",
        long,
        env = "HOOKRELAY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Accept plain http:// webhook URLs (for local development).
    #[arg(help_heading = "Security", long, env = "HOOKRELAY_ALLOW_HTTP", hide_env_values = true, default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub allow_http: bool,

    /// Accept webhook URLs on loopback, private, link-local and similar addresses.
    #[arg(help_heading = "Security", long, env = "HOOKRELAY_ALLOW_PRIVATE_TARGETS", hide_env_values = true, default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub allow_private_targets: bool,

    /// Accept webhook URLs on any port (otherwise 80, 443, 8443 and 1024 and above).
    #[arg(help_heading = "Security", long, env = "HOOKRELAY_ALLOW_ANY_PORT", hide_env_values = true, default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub allow_any_port: bool,

    /// Failed authentications (API keys and the admin token) allowed per client address and
    /// minute; beyond them the client gets 429 without a database lookup. 0 turns this off.
    #[arg(
        help_heading = "Security",
        long,
        env = "HOOKRELAY_AUTH_FAILURES_PER_MINUTE",
        hide_env_values = true,
        default_value_t = 120
    )]
    pub auth_failures_per_minute: u32,

    /// Browser origins allowed to call the API (CORS), comma-separated, e.g.
    /// https://app.example.com; none by default.
    #[arg(help_heading = "Security", long, env = "HOOKRELAY_CORS_ORIGINS", hide_env_values = true, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Requests per minute allowed per API key; 0 turns rate limiting off.
    #[arg(
        help_heading = "Limits",
        long,
        env = "HOOKRELAY_RATE_LIMIT_PER_MINUTE",
        hide_env_values = true,
        default_value_t = 600
    )]
    pub rate_limit_per_minute: u32,

    /// Most active webhooks one project may have.
    #[arg(
        help_heading = "Limits",
        long,
        env = "HOOKRELAY_MAX_WEBHOOKS_PER_PROJECT",
        hide_env_values = true,
        default_value_t = 25
    )]
    pub max_webhooks_per_project: u32,

    /// Most active alert endpoints per project; they do not count against the webhook limit.
    #[arg(
        help_heading = "Limits",
        long,
        env = "HOOKRELAY_MAX_ALERT_ENDPOINTS_PER_PROJECT",
        hide_env_values = true,
        default_value_t = 5
    )]
    pub max_alert_endpoints_per_project: u32,

    /// Largest accepted event body in bytes; larger ones are answered 413.
    #[arg(help_heading = "Limits", long, env = "HOOKRELAY_MAX_EVENT_BYTES", hide_env_values = true, default_value_t = 256 * 1024)]
    pub max_event_bytes: usize,

    #[command(flatten, next_help_heading = "Limits")]
    pub connections: ConnectionConfig,

    #[command(flatten, next_help_heading = "Delivery")]
    pub delivery: DeliveryConfig,
}

/// What a client connection may take: time for its headers and body, and a share of the
/// process's file descriptors.
#[derive(Debug, Clone, Args)]
pub struct ConnectionConfig {
    /// How long a client has to send a request's headers, from connecting or from the previous
    /// response; an idle keep-alive connection is closed after it too.
    #[arg(long = "header-timeout-ms", env = "HOOKRELAY_HEADER_TIMEOUT_MS", hide_env_values = true, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// How long a client has to send a request's body once its headers arrived; a slower body
    /// is answered 408.
    #[arg(long = "body-timeout-ms", env = "HOOKRELAY_BODY_TIMEOUT_MS", hide_env_values = true, default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// Most client connections open at once; beyond it a new connection is closed at once.
    /// Default: what the open-file limit leaves after the database pool and deliveries, at
    /// most 10000.
    #[arg(long = "max-connections", env = "HOOKRELAY_MAX_CONNECTIONS", hide_env_values = true, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_open: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct DeliveryConfig {
    /// Run the delivery worker in this process; false serves the API alone.
    #[arg(long, env = "HOOKRELAY_WORKER", hide_env_values = true, default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub worker: bool,

    /// Deadline for one attempt, from connecting to the end of the response body.
    #[arg(
        long = "delivery-timeout-ms",
        env = "HOOKRELAY_DELIVERY_TIMEOUT_MS",
        hide_env_values = true,
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,

    /// The waits before each retry of a failed attempt, e.g. `500ms,2s,1m,10m,2h` (units ms,
    /// s, m, h, d), each plus up to 10% jitter; after the last, a failure is final. Default
    /// `1m,10m,100m`. Wins over --retry-max and --retry-base-ms.
    #[arg(long, env = "HOOKRELAY_RETRY_SCHEDULE", hide_env_values = true, value_parser = RetrySchedule::parse)]
    pub retry_schedule: Option<RetrySchedule>,

    /// Retries after a failed first attempt, waiting from --retry-base-ms and doubling
    /// (the older way to set the schedule; default 3 when only the base is set).
    #[arg(long, env = "HOOKRELAY_RETRY_MAX", hide_env_values = true)]
    pub retry_max: Option<u32>,

    /// Wait before the first retry when the schedule doubles (default 30000 when only
    /// --retry-max is set).
    #[arg(long, env = "HOOKRELAY_RETRY_BASE_MS", hide_env_values = true)]
    pub retry_base_ms: Option<u64>,

    /// A delivery whose receiver keeps throttling (429, or 503 with Retry-After) for this long
    /// fails, e.g. `24h` or `90m`.
    #[arg(long, env = "HOOKRELAY_THROTTLE_GIVE_UP", hide_env_values = true, default_value = "24h", value_parser = parse_duration)]
    pub throttle_give_up: Duration,

    /// Most attempts in flight at once in this process.
    #[arg(
        long = "delivery-concurrency",
        env = "HOOKRELAY_DELIVERY_CONCURRENCY",
        hide_env_values = true,
        default_value_t = 256
    )]
    pub concurrency: usize,

    /// Most attempts in flight at once to one webhook.
    #[arg(
        long,
        env = "HOOKRELAY_ENDPOINT_CONCURRENCY",
        hide_env_values = true,
        default_value_t = 16
    )]
    pub endpoint_concurrency: usize,

    /// How long a claimed delivery stays with this instance before another may take it over
    /// (after a crash). Must exceed the delivery timeout.
    #[arg(
        long,
        env = "HOOKRELAY_LEASE_MS",
        hide_env_values = true,
        default_value_t = 60_000
    )]
    pub lease_ms: u64,

    /// Longest pause between looks for due deliveries when nothing wakes the worker.
    #[arg(
        long,
        env = "HOOKRELAY_POLL_INTERVAL_MS",
        hide_env_values = true,
        default_value_t = 1_000
    )]
    pub poll_interval_ms: u64,

    /// On shutdown, how long attempts in flight may finish before they are abandoned.
    #[arg(
        long,
        env = "HOOKRELAY_SHUTDOWN_GRACE_MS",
        hide_env_values = true,
        default_value_t = 10_000
    )]
    pub shutdown_grace_ms: u64,

    /// Disable a webhook whose every attempt has failed for this many hours (and at least
    /// HOOKRELAY_DISABLE_MIN_FAILURES times); a 410 Gone answer disables it at once.
    #[arg(
        long,
        env = "HOOKRELAY_DISABLE_AFTER_HOURS",
        hide_env_values = true,
        default_value_t = 72
    )]
    pub disable_after_hours: u32,

    /// The fewest failures in a row before a failing webhook is disabled.
    #[arg(
        long,
        env = "HOOKRELAY_DISABLE_MIN_FAILURES",
        hide_env_values = true,
        default_value_t = 20
    )]
    pub disable_min_failures: u32,

    /// Failures in a row after which a webhook's alert endpoints get `webhook.failing` (once
    /// per failure run; the first success after it sends `webhook.recovered`).
    #[arg(long, env = "HOOKRELAY_FAILING_AFTER", hide_env_values = true, default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failing_after: u32,

    /// Days to keep finished deliveries and their events; 0 keeps them forever.
    #[arg(
        long,
        env = "HOOKRELAY_RETENTION_DAYS",
        hide_env_values = true,
        default_value_t = 30
    )]
    pub retention_days: u32,
}

/// An admin token shorter than this is refused at start: it guards every tenant.
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

impl ServeConfig {
    /// The admin token, when one is set: an empty one counts as unset, a short one is an
    /// error that says how long it must be.
    pub fn admin_token(&self) -> Result<Option<&str>, String> {
        match self.admin_token.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(token) if token.chars().count() < MIN_ADMIN_TOKEN_CHARS => Err(format!(
                "HOOKRELAY_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters \
                 (it has {}); generate one with `openssl rand -hex 32`",
                token.chars().count()
            )),
            Some(token) => Ok(Some(token)),
        }
    }
}

impl DeliveryConfig {
    /// Checks the settings that only make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_ms <= self.timeout_ms {
            return Err(format!(
                "HOOKRELAY_LEASE_MS ({}) must exceed HOOKRELAY_DELIVERY_TIMEOUT_MS ({}), or a slow \
                 attempt could be taken over and sent twice",
                self.lease_ms, self.timeout_ms
            ));
        }
        if self.concurrency == 0 || self.endpoint_concurrency == 0 {
            return Err("delivery and endpoint concurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Seal every stored signing secret with the current HOOKRELAY_ENCRYPTION_KEY (after
    /// setting or rotating it; give the previous key in HOOKRELAY_ENCRYPTION_OLD_KEYS).
    Reencrypt,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints {"id": …}.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project in an account; prints {"id": …}.
    Create {
        /// The owning account's id.
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a project; prints {"id": …, "key": "dtk_live_…"} (the key only once).
    Create {
        /// The project the key acts on.
        #[arg(long)]
        project: String,
        /// Comma-separated scopes: webhooks.read, webhooks.write, events.write (default: all).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// List a project's API keys (never the keys themselves): prefix, scopes, created, last
    /// used and revoked times, as a JSON array.
    List {
        /// The project whose keys to list.
        #[arg(long)]
        project: String,
    },
    /// Revoke an API key: prints {"id": …, "revoked": true} once every instance refuses it.
    Revoke {
        /// The key's id (not the key itself).
        id: String,
    },
}

/// A browser origin: `scheme://host[:port]`, nothing after it, as the `Origin` header sends it.
fn parse_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an origin ({e})"))?;
    let origin = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || origin != raw.trim_end_matches('/') {
        return Err(format!(
            "{raw:?} is not an origin: give scheme://host[:port], e.g. https://app.example.com"
        ));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("https://app.example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:3000/").unwrap(),
            "http://localhost:3000"
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x.example",
            "*",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn boolean_flags_accept_bare_and_explicit_values() {
        let cli = Cli::try_parse_from(["hookrelay", "serve", "--allow-http", "--bootstrap=false"])
            .unwrap();
        let Some(Command::Serve(serve)) = cli.command else {
            panic!("expected serve");
        };
        assert!(serve.allow_http);
        assert!(!serve.bootstrap);
    }
}
