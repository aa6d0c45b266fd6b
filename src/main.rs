//! The `hookrelay` binary: parse the command line, set up logging, run until a signal.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use hookrelay::clock::Clock;
use hookrelay::config::{Cli, Command, EventsCommand, LogFormat, ServeConfig, WebhooksCommand};
use hookrelay::report::error_chain;
use hookrelay::{App, cli, remote, telemetry, tenancy};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve(Box::new(cli.serve))) {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(args) => cli::migrate(&args.database)
            .await
            .map(|()| eprintln!("migrations applied")),
        Command::Admin(args) => cli::admin(&args).await.map(|out| println!("{out}")),
        Command::Listen(args) => remote::listen(&args).await,
        Command::Events(EventsCommand::Send {
            api,
            event,
            data,
            idempotency_key,
        }) => remote::send_event(&api, &event, &data, idempotency_key.as_deref())
            .await
            .map(|answer| println!("{answer}")),
        Command::Webhooks(WebhooksCommand::List { api, json }) => remote::list_webhooks(&api, json)
            .await
            .map(|listed| println!("{listed}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), cli::CliError> {
    let telemetry = telemetry::init(&config.log);
    let app = App::build(&config).await?;
    if config.bootstrap {
        if let Some(tenant) =
            tenancy::bootstrap(app.store().as_ref(), Clock::system().now()).await?
        {
            // Printed, never logged: the key is shown this once and must not reach log storage.
            // With JSON logs stdout is one JSON object too, for tools that read it; like the
            // text form it goes to stdout, never into the log stream on stderr.
            match config.log.format {
                LogFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "message": "hookrelay created a default project and an API key with \
                                    every scope; this key is shown only now",
                        "projectId": tenant.project_id.to_string(),
                        "apiKey": tenant.key.key.expose(),
                    })
                ),
                LogFormat::Text => println!(
                    "\nhookrelay created a default project and an API key with every scope.\n\
                     This key is shown only now; store it somewhere safe.\n\n  \
                     export HOOKRELAY_PROJECT_ID={}\n  export HOOKRELAY_API_KEY={}\n",
                    tenant.project_id,
                    tenant.key.key.expose()
                ),
            }
            tracing::info!(project_id = %tenant.project_id, key_id = %tenant.key.id, "bootstrapped an empty database");
        }
    }
    if config.admin_token.is_none() {
        tracing::info!("admin API disabled (set HOOKRELAY_ADMIN_TOKEN to enable /admin/v1)");
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    tracing::info!(address = %app.local_addr(), "hookrelay listening");
    app.run(shutdown).await;
    tracing::info!("hookrelay stopped");
    telemetry.shutdown().await;
    Ok(())
}

/// Registers the handlers before returning, so a signal that arrives once the server says it
/// listens always triggers a graceful shutdown rather than the default kill.
#[cfg(unix)]
fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutdown signal received; finishing requests in flight");
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(not(unix))]
fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; finishing requests in flight");
        shutdown.cancel();
    });
    Ok(())
}
