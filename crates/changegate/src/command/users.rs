//! `changegate users`: add users with their roles and print their API token, list them,
//! deactivate them. Users are never deleted, so past decisions keep naming them.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use store::{NewEntry, User};

use crate::StoreArgs;

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user; prints the API token as the last line.
    Add {
        name: String,
        /// A role (repeat for several): requester, engineer, peer_reviewer, tester,
        /// change_manager, cab_member, release_manager, business_owner, auditor, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// An approval group or customer the user belongs to (repeatable), e.g. `dba`.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A machine identity (CI pipeline, code host) rather than a person.
        #[arg(long)]
        machine: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users and their roles.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deactivate a user: their token stops working, their history stays.
    Deactivate {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Checks a user name: what the ledger and the API will show.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !ok {
        bail!("user name `{name}` must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`");
    }
    if name.to_ascii_lowercase().starts_with("changegate-") {
        bail!(
            "user name `{name}` is reserved: changegate records its own actions under \
             `changegate-…`"
        );
    }
    Ok(())
}

/// Adds a user through the store, with its ledger entry; returns the token.
pub fn add(
    store: &dyn store::Store,
    name: &str,
    roles: &[String],
    groups: &[String],
    machine: bool,
    time: &str,
) -> anyhow::Result<String> {
    check_name(name)?;
    let mut parsed = Vec::new();
    for r in roles {
        let role: domain::Role = r.parse().with_context(|| "in `--role`".to_string())?;
        if !parsed.contains(&role) {
            parsed.push(role);
        }
    }
    for g in groups {
        if g.trim().is_empty() {
            bail!("`--group` must not be empty");
        }
        // Approval rules name roles and groups alike, so a group named like a role would
        // give its members that role's approval slot without the role.
        if g.parse::<domain::Role>().is_ok() {
            bail!("`--group {g}` is the name of a role: grant it with `--role {g}` instead");
        }
    }
    let roles: Vec<String> = parsed.iter().map(|r| r.as_str().to_string()).collect();
    let token = server::auth::new_token();
    let user = User {
        name: name.to_string(),
        roles: roles.clone(),
        groups: groups.to_vec(),
        machine,
        active: true,
        created_at: time.to_string(),
    };
    let entry = NewEntry {
        time: time.to_string(),
        actor: "changegate-cli".into(),
        roles: vec!["admin".into()],
        kind: "user.added".into(),
        subject: Some(format!("user:{name}")),
        payload: serde_json::json!({
            "name": name, "roles": roles, "groups": groups, "machine": machine,
        }),
    };
    store.add_user(&user, &server::auth::token_digest(&token), entry)?;
    Ok(token)
}

pub fn run(cmd: UsersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UsersCommand::Add {
            name,
            roles,
            groups,
            machine,
            store,
        } => {
            let store = super::open_store(&store)?;
            let token = add(
                store.as_ref(),
                &name,
                &roles,
                &groups,
                machine,
                &super::now_text(),
            )?;
            println!("added user `{name}`; API token (shown once):");
            println!("{token}");
        }
        UsersCommand::List { store } => {
            let store = super::open_store(&store)?;
            for u in store.users()? {
                println!(
                    "{:<20} {:<8} {}{}{}",
                    u.name,
                    if u.active { "active" } else { "inactive" },
                    u.roles.join(","),
                    if u.groups.is_empty() {
                        String::new()
                    } else {
                        format!(" groups={}", u.groups.join(","))
                    },
                    if u.machine { " (machine)" } else { "" },
                );
            }
        }
        UsersCommand::Deactivate { name, store } => {
            let store = super::open_store(&store)?;
            let Some(mut user) = store.user(&name)? else {
                bail!("there is no user `{name}`");
            };
            if !user.active {
                println!("user `{name}` is already inactive");
                return Ok(ExitCode::SUCCESS);
            }
            user.active = false;
            let entry = NewEntry {
                time: super::now_text(),
                actor: "changegate-cli".into(),
                roles: vec!["admin".into()],
                kind: "user.deactivated".into(),
                subject: Some(format!("user:{name}")),
                payload: serde_json::json!({ "name": name }),
            };
            store.update_user(&user, entry)?;
            println!("deactivated user `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
