//! `changegate gate`: ask a changegate server, from a pipeline's shell, whether an artifact
//! may be deployed now. Exit 0 on allow, 1 on deny, 2 when no answer could be had.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The changegate server, e.g. `https://changegate.example.com`.
    #[arg(long, env = "CHANGEGATE_URL")]
    server: String,
    /// The pipeline's API token (a machine user with a role that may implement).
    #[arg(long, env = "CHANGEGATE_TOKEN", hide_env_values = true)]
    token: String,
    /// The system (configuration item) being deployed.
    #[arg(long)]
    system: String,
    /// The target environment, e.g. `production`.
    #[arg(long)]
    environment: String,
    /// The commit id or image digest being deployed.
    #[arg(long)]
    artifact: String,
    /// Who deploys, when not the token's owner (the person who triggered the pipeline).
    #[arg(long)]
    actor: Option<String>,
    /// Print the answer as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/v1/gate", args.server.trim_end_matches('/'));
    let mut body = json!({
        "system": args.system,
        "environment": args.environment,
        "artifact": args.artifact,
    });
    if let Some(actor) = &args.actor {
        body["actor"] = json!(actor);
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")?;
    let response = client
        .post(&url)
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .with_context(|| format!("cannot reach the gate at `{url}`"))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .json()
        .with_context(|| format!("the gate at `{url}` answered {status} without JSON"))?;
    if !status.is_success() {
        let code = answer["error"]["code"].as_str().unwrap_or("error");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("the gate refused the request ({status}, {code}): {message}");
    }
    let decision = answer["decision"].as_str().unwrap_or("deny");
    if args.json {
        println!("{answer}");
    } else {
        let change = answer["change"].as_str().unwrap_or("no change");
        println!(
            "{decision}: {} to {} ({change})",
            args.artifact, args.environment
        );
        for r in answer["reasons"].as_array().into_iter().flatten() {
            println!(
                "  {}: {}",
                r["code"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if decision == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
