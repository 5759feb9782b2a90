//! `changegate`: the command line. Each subcommand lives in `command/`; this file only
//! parses arguments and dispatches.

mod command;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "changegate",
    version,
    about = "IT change management with enforced controls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives: the data directory always (it holds the ledger signing key), and
/// PostgreSQL instead of the embedded SQLite file when a URL is given.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Data directory (SQLite database and ledger signing key).
    #[arg(long, default_value = "./changegate-data", env = "CHANGEGATE_DATA")]
    pub data: PathBuf,
    /// PostgreSQL URL (postgres://…); the embedded SQLite store is used without it.
    #[arg(long, env = "CHANGEGATE_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve(command::serve::Args),
    /// Manage users and their API tokens.
    #[command(subcommand)]
    Users(command::users::UsersCommand),
    /// Fill a data directory with a realistic quarter of changes.
    Demo(command::demo::Args),
    /// Check the whole ledger: exit 0 when intact, 1 naming the first bad event.
    Verify(command::verify::Args),
    /// Print or check a policy file.
    #[command(subcommand)]
    Policy(command::policy::PolicyCommand),
    /// Reconcile a branch's production changes against the change records.
    Reconcile(command::reconcile::Args),
    /// Record exported code-host payloads as evidence.
    #[command(subcommand)]
    Import(command::import::ImportCommand),
    /// Ask the deployment gate whether an artifact may go out (exit 0 allow, 1 deny).
    Gate(command::gate::Args),
    /// Run an engagement over a period: populations, seeded samples, results, workpapers.
    Audit(command::audit::Args),
    /// Check an audit's evidence package offline: exit 0 when intact, 1 naming the problem.
    VerifyPackage(command::package::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => command::serve::run(args),
        Command::Users(cmd) => command::users::run(cmd),
        Command::Demo(args) => command::demo::run(args),
        Command::Verify(args) => command::verify::run(args),
        Command::Policy(cmd) => command::policy::run(cmd),
        Command::Reconcile(args) => command::reconcile::run(args),
        Command::Import(cmd) => command::import::run(cmd),
        Command::Gate(args) => command::gate::run(args),
        Command::Audit(args) => command::audit::run(args),
        Command::VerifyPackage(args) => command::package::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
