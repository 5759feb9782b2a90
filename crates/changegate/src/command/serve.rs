//! `changegate serve`: open the store, record the active policy, and run the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use server::metrics::Metrics;
use server::service::Service;
use server::{AppState, SystemClock};
use store::{NewEntry, Target, Write};

use crate::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CHANGEGATE_LISTEN")]
    listen: SocketAddr,
    /// Policy file (TOML); the default policy without it (`changegate policy default`).
    #[arg(long, env = "CHANGEGATE_POLICY")]
    policy: Option<PathBuf>,
    /// Config file (TOML): webhook secrets, reconciliation rules, notifications. Without
    /// it, `changegate.toml` in the data directory is read when present.
    #[arg(long, env = "CHANGEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Fill an empty data directory with the demo quarter first, and print demo tokens.
    #[arg(long)]
    demo: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging();
    let policy = super::load_policy(args.policy.as_deref())?;
    let (config, config_path) = crate::config::load(args.config.as_deref(), &args.store.data)?;
    let store = super::open_store(&args.store)?;
    // Store reads run on blocking threads; a few per core keep the disk busy, while one per
    // waiting client would only add switching between them.
    let blocking = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
        .context("cannot start the async runtime")?;
    // Bind before writing anything, so that a start that cannot serve records nothing.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    if args.demo {
        super::demo::fill_if_empty(store.clone(), &args.store.data)?;
    }
    record_policy(store.as_ref(), &policy)?;
    let service = Arc::new(Service::new(store, policy));
    let notifier = {
        let _inside = runtime.enter();
        server::notify::Notifier::start(config.notify).context("in the [notify] configuration")?
    };
    if let Some(p) = &config_path {
        tracing::info!(config = %p.display(), "configuration read");
    }
    let settings = server::routes::evidence::EvidenceSettings {
        github_webhook_secret: config.webhooks.github_secret,
        gitlab_webhook_token: config.webhooks.gitlab_token,
        rules: config.reconcile,
    };
    let state = AppState {
        service,
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::default()),
        evidence: Arc::new(server::routes::evidence::EvidenceHub::new(
            settings,
            notifier.clone(),
        )),
    };
    if let Err(e) = server::routes::evidence::prime_announcements(&state) {
        anyhow::bail!("cannot read the evidence recorded so far: {}", e.message);
    }
    runtime
        .block_on(server::serve(state, listener))
        .with_context(|| format!("cannot serve on `{}`", args.listen))?;
    // Deliver what is queued before leaving.
    runtime.block_on(notifier.flush(std::time::Duration::from_secs(10)));
    Ok(ExitCode::SUCCESS)
}

/// Records a policy in the ledger when it differs from the one last active, so that an
/// auditor sees which rules decided which actions.
fn record_policy(store: &dyn store::Store, policy: &domain::Policy) -> anyhow::Result<()> {
    let digest = policy.digest();
    if store.meta("policy_digest")?.as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let entry = NewEntry {
        time: super::now_text(),
        actor: "changegate-server".into(),
        roles: vec!["admin".into()],
        kind: "policy.activated".into(),
        subject: Some(format!("policy:{}", &digest[..16])),
        payload: serde_json::json!({ "digest": digest, "policy": policy }),
    };
    let result = store.apply(vec![Write {
        target: Target::None,
        entries: vec![entry],
        columns: None,
    }]);
    for r in result {
        r.context("cannot record the active policy")?;
    }
    store.set_meta("policy_digest", &digest)?;
    tracing::info!(policy.digest = %&digest[..16], "policy activated");
    Ok(())
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CHANGEGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
