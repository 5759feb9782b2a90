//! The config file (TOML): webhook secrets, reconciliation rules and notification targets.
//! Secrets may also come from the environment, which wins over the file so that a file can
//! be committed without them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The name of the config file looked for in the data directory when none is given.
pub const FILE_NAME: &str = "changegate.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub webhooks: Webhooks,
    pub reconcile: audit::Rules,
    pub notify: server::notify::NotifyConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// The secret GitHub signs deliveries with (`X-Hub-Signature-256`).
    pub github_secret: Option<String>,
    /// The secret token GitLab sends (`X-Gitlab-Token`).
    pub gitlab_token: Option<String>,
}

/// Reads the config: the given file (which must exist), else `DATA/changegate.toml` when
/// present, else the defaults. Then applies the environment.
pub fn load(path: Option<&Path>, data_dir: &Path) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let implicit = data_dir.join(FILE_NAME);
    let chosen = match path {
        Some(p) => Some(p.to_path_buf()),
        None if implicit.is_file() => Some(implicit),
        None => None,
    };
    let mut config = match &chosen {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the config file `{}`", p.display()))?;
            toml::from_str::<Config>(&text)
                .with_context(|| format!("in the config file `{}`", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(s) = non_empty_env("CHANGEGATE_GITHUB_WEBHOOK_SECRET") {
        config.webhooks.github_secret = Some(s);
    }
    if let Some(s) = non_empty_env("CHANGEGATE_GITLAB_WEBHOOK_TOKEN") {
        config.webhooks.gitlab_token = Some(s);
    }
    if config.reconcile.required_approvals == 0 {
        anyhow::bail!("`reconcile.required_approvals` must be at least 1");
    }
    let environments = &config.reconcile.production_environments;
    if environments
        .iter()
        .all(|e| e.trim().trim_end_matches('*').is_empty())
    {
        anyhow::bail!(
            "`reconcile.production_environments` must name at least one environment: with none, \
             no deployment would be production and the gate would let everything through"
        );
    }
    server::notify::validate(&config.notify).context("in the [notify] configuration")?;
    Ok((config, chosen))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[reconcile]\nrequired_aprovals = 2\n").unwrap();
        let err = load(Some(&file), dir.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("required_aprovals"), "{text}");
        assert!(text.contains("c.toml"), "{text}");
    }

    #[test]
    fn settings_that_would_switch_checks_off_or_fail_later_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        for (text, named) in [
            (
                "[reconcile]\nproduction_environments = []\n",
                "production_environments",
            ),
            (
                "[reconcile]\nproduction_environments = [\" \", \"*\"]\n",
                "production_environments",
            ),
            ("[[notify.webhooks]]\nurl = \"not a url\"\n", "notify"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = format!("{:#}", load(Some(&file), dir.path()).unwrap_err());
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn the_file_in_the_data_directory_is_read_when_none_is_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[webhooks]\ngitlab_token = \"t0k\"\n[reconcile]\nrequired_approvals = 2\n\
             protected_branches = [\"trunk\"]\n",
        )
        .unwrap();
        let (c, path) = load(None, dir.path()).unwrap();
        assert_eq!(path, Some(dir.path().join(FILE_NAME)));
        assert_eq!(c.reconcile.required_approvals, 2);
        assert_eq!(c.reconcile.protected_branches, vec!["trunk".to_string()]);
        if std::env::var("CHANGEGATE_GITLAB_WEBHOOK_TOKEN").is_err() {
            assert_eq!(c.webhooks.gitlab_token.as_deref(), Some("t0k"));
        }
    }
}
