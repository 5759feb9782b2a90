//! `changegate policy`: print the default policy, or check a tailored one.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the default policy file, ready to tailor.
    Default,
    /// Check a policy file and print the change model of every type and category.
    Check { file: PathBuf },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Default => {
            print!("{}", domain::policy::DEFAULT_POLICY_TOML);
        }
        PolicyCommand::Check { file } => {
            let policy = super::load_policy(Some(&file))?;
            println!(
                "policy `{}` is valid (digest {})",
                file.display(),
                &policy.digest()[..16]
            );
            for t in domain::ChangeType::ALL {
                for c in domain::Category::ALL {
                    let m = policy.model(*t, *c, true);
                    let stages: Vec<&str> = m.stages.iter().map(|s| s.as_str()).collect();
                    println!("  {t:<9} {c:<14} {}", stages.join(" → "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
