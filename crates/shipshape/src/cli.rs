//! The command line: clap types only. Each subcommand's `run` lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, documented in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   a check failed (verification mismatch, tampering, changed artifact)
  2   bad input (malformed or unsafe file, unknown key, bad flag) or nothing to work on yet
  3   another shipshape process holds the workspace or target lock
  4   a deploy failed its post-deploy checks and was rolled back, or evaluate rolled back automatically
  5   unfinished: a deploy or rollback passed its commit point (production serves the new release)
      but could not record it, or status found an interrupted one: run `shipshape recover`
  6   alerts of the active release are firing (status; evaluate --fail-on firing|pending)
  70  an internal error: a bug in shipshape (please report it)
  74  an operating-system error (disk full, I/O error)
  75  the monitoring database failed (busy past its timeout, corrupt, full)";

/// Signed, atomic, reversible releases of configs and models, with a 48-hour watch after every deploy.
#[derive(Debug, Parser)]
#[command(name = "shipshape", version, about, long_about = None, after_help = EXIT_CODES, disable_help_subcommand = true)]
pub struct Cli {
    /// Run as if started in DIR: shipshape.toml is searched for from there upwards.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,

    /// Print only results and errors: no progress bars, no notes.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create shipshape.toml, the release/ folders and a Makefile in DIR (never overwriting a file).
    #[command(after_help = "Example:\n  shipshape init my-workspace")]
    Init(InitArgs),
    /// Inventory every artifact with its SHA-256 and git metadata into release/audit_<time>/bundle.yaml.
    #[command(after_help = "Example:\n  shipshape audit\n  shipshape audit --json")]
    Audit(AuditArgs),
    /// Run the promotion checklist and the dry-run backtest on an audit bundle; writes its validation.yaml.
    #[command(
        after_help = "Example:\n  shipshape validate\n  shipshape validate --dry-run\n  shipshape validate --checklist release/strict-checklist.toml --json"
    )]
    Validate(ValidateArgs),
    /// Score an outcome-events file (JSON lines or CSV): hit ratio, precision and Sharpe per strategy.
    #[command(
        after_help = "Example:\n  shipshape score data/backtest/events.jsonl\n  shipshape score events.csv --skip-bad --json"
    )]
    Score(ScoreArgs),
    /// Make a release manifest from an audit bundle, copying every artifact into the object store.
    #[command(
        after_help = "Example:\n  shipshape manifest --type minor --deployer alice --ticket SQNT-123 --ticket SQNT-124"
    )]
    Manifest(ManifestArgs),
    /// Sign a manifest for a role with an SSH key, or import a signature made with `ssh-keygen -Y sign`.
    #[command(
        after_help = "Examples:\n  shipshape approve release/manifests/release_20251012_190000.yaml --role risk-manager --key ~/.ssh/id_ed25519\n  ssh-keygen -Y sign -n risk-manager@shipshape -f ~/.ssh/id_ed25519 release/manifests/release_20251012_190000.yaml\n  shipshape approve release/manifests/release_20251012_190000.yaml --role risk-manager --signature release/manifests/release_20251012_190000.yaml.sig"
    )]
    Approve(ApproveArgs),
    /// Check a manifest: strict parse, audit bundle, validation, hash chain, store objects, backups, approvals, expiry.
    #[command(
        after_help = "Example:\n  shipshape verify\n  shipshape verify release/manifests/release_20251012_190000.yaml --artifacts --json"
    )]
    Verify(VerifyArgs),
    /// Deploy a verified, approved manifest into the [deploy] target: atomic, journaled, checked.
    #[command(
        after_help = "Example:\n  shipshape deploy --dry-run\n  shipshape deploy release/manifests/release_20251012_190000.yaml --yes"
    )]
    Deploy(DeployArgs),
    /// Roll the target back to the previous release (or any earlier one with --to).
    #[command(
        after_help = "Example:\n  shipshape rollback --reason \"hit ratio regression\"\n  shipshape rollback --to release_20251005_180000 --yes"
    )]
    Rollback(RollbackArgs),
    /// Finish or undo a deploy or rollback that was interrupted (crash, kill, power loss).
    #[command(after_help = "Example:\n  shipshape recover")]
    Recover,
    /// Show the active release, its monitoring window, and whether the target matches it.
    #[command(after_help = "Example:\n  shipshape status\n  shipshape status --deep --json")]
    Status(StatusArgs),
    /// List every deploy, rollback and failure, with who, when and why.
    #[command(after_help = "Example:\n  shipshape history\n  shipshape history --json")]
    History(HistoryArgs),
    /// Store outcome events (JSON lines or CSV, or - for stdin) in the monitor database; idempotent on event id.
    #[command(
        after_help = "Example:\n  shipshape ingest data/live/events.jsonl\n  tail -n 1000 trades.csv | shipshape ingest - --format csv --json"
    )]
    Ingest(IngestArgs),
    /// Run one evaluation pass: judge the active release's metrics, step alerts, notify, maybe auto-rollback.
    #[command(after_help = "Example:\n  shipshape evaluate\n  shipshape evaluate --at 2025-10-13T09:00:00Z --json")]
    Evaluate(EvaluateArgs),
    /// List alerts with metric, strategy, severity, state, value, baseline, threshold, samples, mode and release.
    #[command(after_help = "Example:\n  shipshape alerts\n  shipshape alerts --state firing --json")]
    Alerts(AlertsArgs),
    /// Run the monitor over historical events in simulated time and print every alert it would have raised.
    #[command(
        after_help = "Example:\n  shipshape replay --events data/backtest/events.jsonl --release-at 2025-10-01T09:00:00Z"
    )]
    Replay(ReplayArgs),
    /// Serve the dashboard and the monitor: HTTP event ingestion, evaluation every eval_interval, notifications, JSON API, /metrics.
    #[command(
        after_help = "Example:\n  shipshape serve                       # http://127.0.0.1:8080/, token printed at start\n  shipshape serve --bind 127.0.0.1:9000 --token-file /etc/shipshape/token --eval-interval 1m\n\nState-changing requests need `Authorization: Bearer <token>`; the API is in docs/api.md."
    )]
    Serve(ServeArgs),
    /// Release analytics from the history: deploy frequency, change failure rate, mean time to restore (30 and 90 days).
    #[command(after_help = "Example:\n  shipshape analytics\n  shipshape analytics --json")]
    Analytics(AnalyticsArgs),
    /// What changes between two releases: artifacts added, removed and changed (sizes, hashes), and a
    /// unified diff of small text files, from the store. Default: the active release vs the newest manifest.
    #[command(
        after_help = "Example:\n  shipshape diff                       # active -> newest manifest\n  shipshape diff release_20251012_190000 newest --json"
    )]
    Diff(DiffArgs),
    /// Prune what [retention] lets go: old release directories (symlink mode), finished journals,
    /// history entries (archived, still shown by `history --all`) and raw events older than the
    /// longest window (their minute/hour aggregates are kept). Never the active or last known good release.
    #[command(after_help = "Example:\n  shipshape gc --dry-run\n  shipshape gc --json")]
    Gc(GcArgs),
    /// What the monitoring policy will do for a trade rate: each detector's detection delay for a
    /// range of drops and its false alarms in quiet operation, simulated (seconds of CPU).
    #[command(
        after_help = "Example:\n  shipshape calibrate --trade-rate 3000 --baseline 0.62\n  shipshape calibrate --metric swing_precision --trade-rate 120 --baseline 0.6 --json"
    )]
    Calibrate(CalibrateArgs),
    /// Upload a release (its artifacts and signed records) to the remote store of [fleet] store, by
    /// hash: what the store has is not sent again, so an interrupted publish resumes.
    #[command(
        after_help = "Example:\n  shipshape publish                     # the newest manifest\n  shipshape publish release_20251012_190000 --json\n\nThe store is [fleet] store in shipshape.toml: s3://bucket/prefix, file:///dir or a directory (docs/fleet.md)."
    )]
    Publish(PublishArgs),
    /// Download a release from the remote store into this workspace, checking every byte against
    /// the signed manifest, then verify it against this host's own trust root.
    #[command(after_help = "Example:\n  shipshape fetch release_20251012_190000\n  shipshape fetch --list")]
    Fetch(FetchArgs),
    /// Make a published release the desired release of an environment, if its policy holds (for an
    /// environment that requires another: the release ran there for the soak time, every host
    /// healthy, no alert firing). Agents apply it.
    #[command(
        after_help = "Example:\n  shipshape promote release_20251012_190000 --to staging --yes\n  shipshape promote release_20251012_190000 --to production --note \"soaked 24h\" --yes"
    )]
    Promote(PromoteArgs),
    /// The pull agent of one host: reconciles the host with its environment's desired release —
    /// fetch, verify against this host's own trust root, apply atomically, report — on every
    /// pointer move and on a timer. Keeps running what it has when the registry or store is away.
    #[command(
        after_help = "Example:\n  shipshape agent --env production --host prod-1\n  shipshape agent --env staging --once --json\n\nA systemd unit is in docs/fleet.md."
    )]
    Agent(AgentArgs),
    /// Named operators of `serve`: each with a role (viewer, engine, operator) and a token stored
    /// only as an argon2id hash in release/operators.toml. `add` prints the new token once.
    #[command(
        after_help = "Example:\n  shipshape operator add alice --role operator\n  shipshape operator add trading-engine --role engine\n  shipshape operator list\n  shipshape operator remove alice\n\nRoles: viewer reads; engine reads and sends events; operator also evaluates and rolls back.\nRotating a token: remove, then add again (docs/runbooks/deployment.md)."
    )]
    Operator(OperatorArgs),
    /// Canary releases by capital share: the candidate trades a slice of capital beside the stable
    /// release, compared with it in the same market, stepped up or aborted by the evidence.
    #[command(
        after_help = "Example:\n  shipshape canary start release_20251020_090000 --steps 10,25,50,100 --step-after 6h --min-trades 200 --yes\n  shipshape canary status\n  shipshape canary evaluate        # schedule it (serve does the same on its timer)\n  shipshape canary abort --note 'slippage on the candidate'\n\nThe engine reads <target>.allocation.yaml (docs/canary.md)."
    )]
    Canary(CanaryArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  shipshape completions bash > ~/.local/share/bash-completion/completions/shipshape\n  shipshape completions zsh > ~/.zfunc/_shipshape"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of shipshape, or of one command (shipshape-deploy(1), …).
    #[command(
        after_help = "Example:\n  shipshape man > shipshape.1 && man ./shipshape.1\n  shipshape man deploy > shipshape-deploy.1"
    )]
    Man(ManArgs),
    /// Print the help of shipshape, or of a command (the same as `shipshape COMMAND --help`).
    #[command(after_help = "Example:\n  shipshape help deploy")]
    Help(HelpArgs),
    /// Run the pipeline on a fresh copy of the bundled example workspace, printing each step.
    #[command(after_help = "Example:\n  shipshape demo\n  shipshape demo --dir /tmp/sensequant-demo")]
    Demo(DemoArgs),
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The workspace directory (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How big a change a release is.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReleaseTypeArg {
    /// A large change.
    Major,
    /// The usual release.
    Minor,
    /// An urgent fix.
    Hotfix,
}

/// `manifest`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Release type.
    #[arg(long = "type", value_enum, default_value = "minor")]
    pub release_type: ReleaseTypeArg,
    /// Audit bundle directory (default: the newest release/audit_*).
    #[arg(long, value_name = "PATH")]
    pub bundle: Option<PathBuf>,
    /// Who prepares the release, recorded as the manifest's `deployment.prepared_by` (default:
    /// [release] deployer, then $USER). Who deploys it is recorded by the deploy.
    #[arg(long, visible_alias = "prepared-by", value_name = "NAME")]
    pub deployer: Option<String>,
    /// Environment (default: [release] environment).
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// CI build id to record.
    #[arg(long, value_name = "ID")]
    pub build_id: Option<String>,
    /// A ticket this release addresses (repeatable).
    #[arg(long = "ticket", value_name = "ID")]
    pub tickets: Vec<String>,
    /// Add your own approval in the same step: sign with this SSH private key (needs --sign-role).
    #[arg(long, value_name = "KEY", requires = "sign_role")]
    pub sign: Option<PathBuf>,
    /// The role you approve for with --sign.
    #[arg(long, value_name = "ROLE", requires = "sign")]
    pub sign_role: Option<String>,
    /// Make the manifest even if the bundle's validation is missing or failed (recorded in the manifest).
    #[arg(long)]
    pub allow_unvalidated: bool,
    /// Make the manifest even if it holds exactly the artifacts of the newest manifest (refused
    /// otherwise: it would release nothing new).
    #[arg(long)]
    pub allow_identical: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Audit bundle directory (default: the newest release/audit_*).
    #[arg(long, value_name = "PATH")]
    pub bundle: Option<PathBuf>,
    /// A TOML file of [[checklist]] items to use instead of the configured checklist.
    #[arg(long, value_name = "FILE")]
    pub checklist: Option<PathBuf>,
    /// Skip malformed backtest event lines (counted and reported) instead of failing (overrides [backtest] skip_bad).
    #[arg(long)]
    pub skip_bad: bool,
    /// List what would run, run nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The events file (.csv for CSV, anything else JSON lines).
    pub events: PathBuf,
    /// Skip malformed lines (counted and reported) instead of failing on the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Confidence of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Annualise Sharpe by the square root of this many periods (e.g. 252); default per trade.
    #[arg(long, value_name = "N")]
    pub sharpe_periods: Option<f64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest: a path, a release id, or `newest` (the default).
    pub manifest: Option<PathBuf>,
    /// Also hash the workspace files and compare them with the manifest.
    #[arg(long)]
    pub artifacts: bool,
    /// Check integrity only (hashes, chain, validation record), not approvals, expiry or anti-rollback.
    #[arg(long)]
    pub integrity_only: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The manifest to approve: a path, a release id, or `newest`.
    pub manifest: PathBuf,
    /// The role you approve for (a role in the policy, e.g. risk-manager).
    #[arg(long)]
    pub role: String,
    /// Sign here with this OpenSSH private key (unencrypted; for a passphrase-protected key use ssh-keygen and --signature).
    #[arg(long, value_name = "PATH", conflicts_with = "signature")]
    pub key: Option<PathBuf>,
    /// Sign through your gpg with this OpenPGP key (id or fingerprint; listed for the role in the policy).
    #[arg(long, value_name = "KEYID", conflicts_with_all = ["key", "signature"])]
    pub gpg: Option<String>,
    /// Import a signature made elsewhere: `ssh-keygen -Y sign -n <role>@shipshape -f KEY MANIFEST`, or `gpg --armor --detach-sign MANIFEST`.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Your name (default: the key's comment).
    #[arg(long)]
    pub name: Option<String>,
    /// Your email: the principal of your key in allowed_signers (default: looked up there).
    #[arg(long)]
    pub email: Option<String>,
}

/// `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The manifest: a path, a release id, or `newest` (default: the newest *approved* one; newer
    /// unapproved ones are named in a warning).
    pub manifest: Option<PathBuf>,
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
    /// Show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The release to return to (default: the last known good release — the newest that ran here,
    /// passed its checks and was not rolled back).
    #[arg(long, value_name = "RELEASE_ID")]
    pub to: Option<String>,
    /// Roll back an environment of the fleet instead of this machine's target: its pointer moves to
    /// its last known good release (or --to, when that was good there); its agents apply it.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Why, for the history.
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
    /// Show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Re-hash every target file instead of trusting unchanged file metadata.
    #[arg(long)]
    pub deep: bool,
    /// The fleet instead of this machine: an environment's desired release and every host's
    /// observed release, health, heartbeat and drift (`all` for every environment).
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// Include the entries `shipshape gc` archived (data/monitoring/releases/history-archive/).
    #[arg(long)]
    pub all: bool,
}

/// `calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// One metric (default: every configured metric that can be simulated).
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// Trades per hour (default: measured from the last 7 days of stored events).
    #[arg(long, value_name = "N")]
    pub trade_rate: Option<f64>,
    /// The metric's baseline (default: the active release's).
    #[arg(long, value_name = "P")]
    pub baseline: Option<f64>,
    /// The standard deviation of one trade's return (of the field's value for field_mean), for
    /// metrics simulated with normal values: mean_return, sharpe, win_loss, field_mean (default:
    /// measured from the last 7 days of stored events).
    #[arg(long, value_name = "SD")]
    pub sd: Option<f64>,
    /// Drops to simulate, comma-separated, measured as the metric's `drop` is: relative (0.1 = 10 %
    /// worse) or absolute (in the metric's unit). Default: 3, 5, 10, 20, 40 % relative; half to
    /// eight times the heightened threshold absolute.
    #[arg(long, value_name = "LIST")]
    pub drops: Option<String>,
    /// Runs per drop.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub trials: u32,
    /// Hours simulated after each deploy.
    #[arg(long, default_value_t = 6.0)]
    pub hours: f64,
    /// Days of quiet operation (no regression) simulated for the false-alarm rate.
    #[arg(long, default_value_t = 90.0)]
    pub quiet_days: f64,
    /// The first run's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Predict a canary instead: the candidate trading this fraction of capital (0.1 = 10 %),
    /// judged as `[canary]` says on a ratio metric — hours to an abort for each gap in `--gaps`,
    /// hours to non-inferiority for an equal candidate, and its false aborts. Needs --trade-rate
    /// and --baseline (or stored events and an active release to measure them from).
    #[arg(long, value_name = "FRACTION")]
    pub canary: Option<f64>,
    /// With --canary: how much worse the candidate's hit ratio is, comma-separated absolute
    /// gaps (default 0.02,0.05,0.1).
    #[arg(long, value_name = "LIST")]
    pub gaps: Option<String>,
    /// With --canary: hours simulated per run.
    #[arg(long, default_value_t = 48.0)]
    pub canary_hours: f64,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The release id (published with `shipshape publish`).
    #[arg(value_name = "RELEASE")]
    pub release: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Why, for the history.
    #[arg(long)]
    pub note: Option<String>,
    /// Do not ask for confirmation (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
    /// Check the policy; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `canary`.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CanaryAction,
    /// With `[fleet]`: the environment whose canary this is (a property of the environment in the
    /// registry, applied by every host's agent) instead of this workspace's target.
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `canary start|status|evaluate|promote|abort|log`.
#[derive(Debug, Subcommand)]
pub enum CanaryAction {
    /// Start a canary of an approved release beside the active (stable) one.
    Start {
        /// The candidate: a release id or a manifest path.
        release: PathBuf,
        /// The candidate's capital shares in percent, step by step, ending at 100 (default:
        /// `[canary] steps`, 10,25,50,100).
        #[arg(long, value_name = "PERCENTS")]
        steps: Option<String>,
        /// The least time a step lasts before it may advance: at least one full trading session
        /// (default: `[canary] step_after`, 4h).
        #[arg(long, value_name = "DURATION")]
        step_after: Option<String>,
        /// The least candidate trades in a step before it may advance (default: `[canary]
        /// min_trades`, 200).
        #[arg(long, value_name = "N")]
        min_trades: Option<u64>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// The canary under way: releases, fractions, the comparison per metric, the next decision.
    Status,
    /// Judge the candidate now: abort on harm, step up when non-inferior after the step's time and
    /// trades, else hold.
    Evaluate {
        /// Judge as of this time (RFC 3339; default now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Step up now whatever the evidence says (recorded with who and why).
    Promote {
        /// Why (recorded).
        #[arg(long)]
        note: Option<String>,
    },
    /// Give all capital back to the stable release and end the canary (the stable is untouched).
    Abort {
        /// Why (recorded).
        #[arg(long)]
        note: Option<String>,
    },
    /// Every start, step, decision and end, with its statistics.
    Log,
}

/// `operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: OperatorAction,
    /// The operators file (default: release/operators.toml in the workspace).
    #[arg(long, global = true, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `operator add|remove|list`.
#[derive(Debug, Subcommand)]
pub enum OperatorAction {
    /// Add an operator and print their new token (once: only its hash is kept).
    Add {
        /// Their name (letters, digits, `.`, `_`, `-`, `@`), as history and logs show it.
        name: String,
        /// viewer (reads), engine (reads, sends events) or operator (everything).
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Remove an operator: their token stops working at once, also in a running `serve`.
    Remove {
        /// Their name.
        name: String,
    },
    /// List the operators (names, roles, token ids, when added; never a token).
    List,
}

/// `agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The environment this host serves.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// This host's name in the environment (default: the machine's host name).
    #[arg(long)]
    pub host: Option<String>,
    /// The target directory (default: [deploy] target).
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// One reconcile pass, then exit (0 in sync or applied, 1 refused or failed, 74 degraded).
    #[arg(long)]
    pub once: bool,
    /// Print each pass as a JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The release: a manifest path, a release id, or `newest` (default).
    #[arg(value_name = "RELEASE", default_value = "newest")]
    pub manifest: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The release id.
    #[arg(value_name = "RELEASE", required_unless_present = "list")]
    pub release: Option<String>,
    /// List the releases in the store instead.
    #[arg(long, conflicts_with = "release")]
    pub list: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Show what would go; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The events file, or - for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The encoding (default: `.csv` files are CSV; otherwise judged from the first line).
    #[arg(long, value_enum)]
    pub format: Option<EventFormat>,
    /// Skip bad lines (reported) instead of refusing the whole input.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An events encoding.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EventFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Evaluate as of this time (RFC 3339) instead of now (SHIPSHAPE_NOW also pins the clock).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Queue notifications but do not deliver them now (`serve` or the next `evaluate` will).
    #[arg(long)]
    pub no_deliver: bool,
    /// Print the pass as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 6 when, after the pass, an alert of the active release is firing (`firing`), or firing
    /// or pending (`pending`): for cron and CI.
    #[arg(long, value_enum, value_name = "STATE")]
    pub fail_on: Option<FailOn>,
}

/// What `evaluate --fail-on` fails on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailOn {
    /// An alert is firing.
    Firing,
    /// An alert is firing or pending.
    Pending,
}

/// `alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts in this state.
    #[arg(long, value_enum)]
    pub state: Option<AlertStateArg>,
    /// Only alerts of this release.
    #[arg(long, value_name = "RELEASE_ID")]
    pub release: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An alert state to filter on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlertStateArg {
    /// Breaching, not yet for long enough.
    Pending,
    /// Alerts that are firing now.
    Firing,
    /// Resolved after firing.
    Resolved,
    /// Breached briefly but never fired.
    Cleared,
    /// Closed because production left the release (a rollback, or a newer deploy).
    Superseded,
}

/// `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Historical outcome events (JSON lines or CSV).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// A simulated deploy (RFC 3339); repeat for several releases.
    #[arg(long = "release-at", value_name = "TIME", required = true)]
    pub release_at: Vec<String>,
    /// Baselines from the newest manifest's validation or from the events before each deploy
    /// (default: [monitoring] baseline).
    #[arg(long, value_enum)]
    pub baseline: Option<BaselineArg>,
    /// Skip bad lines instead of refusing the file.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where baselines come from.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BaselineArg {
    /// The validation backtest.
    Validation,
    /// The trailing window before each deploy.
    Trailing,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, required_unless_present = "list_roles")]
    pub shell: Option<clap_complete::Shell>,
    /// Print the roles of this workspace's approval policy, one per line (what the scripts offer
    /// after `--role` and `--sign-role`; nothing outside a workspace).
    #[arg(long, hide = true)]
    pub list_roles: bool,
}

/// `analytics`.
#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, alias = "listen", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub bind: std::net::SocketAddr,
    /// File holding the operator token (one line, at least 32 characters). Without it a token is
    /// generated at start and printed once. A non-loopback address needs it or named operators.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The named operators' file (`shipshape operator add`; default release/operators.toml),
    /// re-read when it changes.
    #[arg(long, value_name = "PATH")]
    pub operators: Option<PathBuf>,
    /// Largest request body in bytes (larger batches get 413; a larger declared Content-Length is
    /// answered 413 before the body is read).
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_body: usize,
    /// Evaluate this often instead of [monitoring] eval_interval (e.g. 30s, 10m).
    #[arg(long, value_name = "DURATION")]
    pub eval_interval: Option<String>,
    /// Time a client has to send a complete request head, from when it connects or starts a
    /// request; a silent or half-sent connection is closed after it.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub header_timeout: String,
    /// Time a keep-alive connection may wait for its next request.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub idle_timeout: String,
    /// Longest pause inside a request body before the request fails.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub body_timeout: String,
    /// Most connections served at once; at the limit the longest-idle connection is closed to make
    /// room (503 when every connection has a request in flight).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Who may read the API and the dashboard's data: `auto` (anyone on loopback; a token of any
    /// role, `viewer` or above, on any other address), `token`, or `open`.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHO")]
    pub read_auth: ReadAuth,
    /// The request and state-change log on stderr: `text` (one line each) or `json` (one object each).
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// The least severe log records written.
    #[arg(long, value_enum, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
}

/// `serve --read-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadAuth {
    /// Open on loopback, a token elsewhere.
    Auto,
    /// Always a token.
    Token,
    /// Never a token (behind a proxy that authenticates, say).
    Open,
}

/// `serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `serve --log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and warnings.
    Warn,
    /// Requests, state changes, evaluations, deliveries.
    Info,
    /// Also each stored event batch.
    Debug,
}

/// `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first release: `active` (the default), `newest`, a release id or a manifest path.
    #[arg(value_name = "FROM")]
    pub from: Option<PathBuf>,
    /// The second: `newest` (the default), `active`, a release id or a manifest path.
    #[arg(value_name = "TO")]
    pub to: Option<PathBuf>,
    /// Print the difference as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the list of artifacts, no text diffs.
    #[arg(long)]
    pub no_text: bool,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (default: shipshape's own).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// `help`.
#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command whose help to print (default: shipshape's own).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes everything (must not exist or be empty; default: a new temporary
    /// directory): DIR/workspace (the example workspace), DIR/keys (the demo's approver keys, kept
    /// out of the workspace) and DIR/tampered (the tamper drill's copy).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// End by serving the dashboard on the demo workspace until Ctrl-C (the default on a terminal).
    #[arg(long, conflicts_with = "no_serve")]
    pub serve: bool,
    /// Do not serve the dashboard at the end.
    #[arg(long)]
    pub no_serve: bool,
    /// Where the dashboard listens when served.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub bind: std::net::SocketAddr,
}
