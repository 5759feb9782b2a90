//! One module per subcommand.

pub mod audit;
pub mod demo;
pub mod gate;
pub mod import;
pub mod import_changes;
pub mod package;
pub mod policy;
pub mod reconcile;
pub mod serve;
pub mod users;
pub mod verify;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::StoreArgs;

/// Opens the configured store.
pub fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn store::Store>> {
    store::open(&args.data, args.database_url.as_deref())
        .with_context(|| format!("cannot open the store in `{}`", args.data.display()))
}

/// Reads a policy file, or the default policy.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<domain::Policy> {
    match path {
        None => Ok(domain::Policy::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the policy file `{}`", p.display()))?;
            domain::Policy::from_toml(&text)
                .with_context(|| format!("in the policy file `{}`", p.display()))
        }
    }
}

/// The time of a command, as the ledger records it.
pub fn now_text() -> String {
    domain::action::format_instant(time::OffsetDateTime::now_utc())
}
