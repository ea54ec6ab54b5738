//! `shipshape serve`: the monitor as a service (see `shipshape-web`).

use std::process::ExitCode;
use std::time::Duration;

use shipshape_core::Error;
use shipshape_core::infra::clock::Duration as ConfigDuration;
use shipshape_monitor::monitor::Monitor;
use shipshape_web::{AppState, Limits, ReadAccess, Settings, random_hex, read_token_file};

use crate::cli::{LogFormat, LogLevel, ReadAuth, ServeArgs};
use crate::context::Context;

/// `shipshape serve [--bind ADDR] [--token-file PATH] [--max-body BYTES] [--eval-interval D]`.
pub fn run(context: &Context, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let operators = match &args.operators {
        Some(path) => context.start_dir.join(path),
        None => shipshape_web::operators::default_path(&workspace.root),
    };
    let named = shipshape_web::operators::load(&operators)?.operators.len();
    if !args.bind.ip().is_loopback() && args.token_file.is_none() && named == 0 {
        return Err(Error::Usage(format!(
            "--bind {}: not a loopback address; serving beyond this machine needs named operators (`shipshape operator add NAME`) or --token-file",
            args.bind
        ))
        .into());
    }
    let eval_interval = match &args.eval_interval {
        Some(text) => text
            .parse::<ConfigDuration>()
            .map_err(|e| Error::Usage(format!("--eval-interval `{text}`: {e}")))?
            .seconds(),
        None => workspace.config.monitoring.eval_interval.0.seconds(),
    };
    if eval_interval <= 0 {
        return Err(Error::Usage("--eval-interval must be greater than zero".into()).into());
    }
    let (token, generated) = match &args.token_file {
        Some(path) => (read_token_file(&context.start_dir.join(path))?, false),
        None => (random_hex(32)?, true),
    };
    let read_access = match args.read_auth {
        ReadAuth::Open => ReadAccess::Open,
        ReadAuth::Token => ReadAccess::Token,
        ReadAuth::Auto if args.bind.ip().is_loopback() => ReadAccess::Open,
        ReadAuth::Auto => ReadAccess::Token,
    };
    init_logging(args.log_format, args.log_level);
    let monitor = Monitor::open(workspace)?;
    let state = AppState::with_access(monitor, context.clock(), token.clone(), operators, read_access)?;
    let positive = |flag: &str, text: &str| -> anyhow::Result<Duration> {
        let seconds =
            text.parse::<ConfigDuration>().map_err(|e| Error::Usage(format!("{flag} `{text}`: {e}")))?.seconds();
        if seconds <= 0 {
            return Err(Error::Usage(format!("{flag} must be greater than zero")).into());
        }
        Ok(Duration::from_secs(seconds as u64))
    };
    if args.max_connections == 0 {
        return Err(Error::Usage("--max-connections must be at least 1".into()).into());
    }
    let limits = Limits {
        header_timeout: positive("--header-timeout", &args.header_timeout)?,
        idle_timeout: positive("--idle-timeout", &args.idle_timeout)?,
        body_timeout: positive("--body-timeout", &args.body_timeout)?,
        max_connections: args.max_connections,
        max_body: args.max_body,
    };
    let settings = Settings {
        limits,
        eval_interval: Duration::from_secs(eval_interval as u64),
        delivery_interval: Duration::from_secs(10),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.bind).await.map_err(|source| Error::Io {
            path: args.bind.to_string().into(),
            action: "listening on",
            source,
        })?;
        let address = listener.local_addr()?;
        println!("listening on http://{address}");
        if generated {
            // Printed once, to the terminal that started the server; never written to disk or logged again.
            eprintln!("operator token (this run only; give --token-file for a stable one): {token}");
        }
        context.note(format!(
            "dashboard: http://{address}/ ; evaluating every {eval_interval} s; stop with Ctrl-C or SIGTERM"
        ));
        use std::io::Write;
        std::io::stdout().flush()?;
        shipshape_web::serve(listener, state, settings, shutdown_signal()).await?;
        eprintln!("shut down cleanly: every acknowledged event is stored");
        anyhow::Ok(())
    })?;
    super::ok()
}

/// `serve`'s log on stderr, through `tracing`: text lines or JSON objects, at `level` and above.
fn init_logging(format: LogFormat, level: LogLevel) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(true);
    // A second call (tests running serve twice in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
