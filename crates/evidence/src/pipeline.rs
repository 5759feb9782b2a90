//! Bodies of changegate's own endpoints for CI/CD pipelines: deployment reports
//! (`POST /api/v1/deployments`) and gate requests (may this artifact go to that
//! environment now?).
//!
//! These are changegate's own formats, so they are read strictly: unknown fields, repeated
//! fields, empty strings, strings with surrounding spaces and times without a zone are all
//! refused with the field named. The identity that authenticated the request is the actor;
//! a body cannot claim to be someone else.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::github::fields::{is_hex, read_json, Node};
use crate::model::{Deployment, Host, Identity, ParseError};

const DEPLOYMENT_FIELDS: [&str; 9] = [
    "system",
    "environment",
    "artifact",
    "time",
    "id",
    "status",
    "commits",
    "description",
    "actor",
];

/// A gate request has no time: the gate judges the moment it is asked, so that no request
/// can pick a moment inside a window.
const GATE_FIELDS: [&str; 4] = ["system", "environment", "artifact", "actor"];

/// Deployment statuses a pipeline may report.
pub const STATUSES: [&str; 7] = [
    "queued",
    "pending",
    "in_progress",
    "success",
    "failure",
    "error",
    "cancelled",
];

/// A pipeline asking whether an artifact may be deployed to an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRequest {
    pub system: String,
    pub environment: String,
    /// A commit id (7 to 64 hex digits) or an image digest (`sha256:` and 64 hex digits),
    /// in lower case.
    pub artifact: String,
    /// Who asks, when the body names them; the server decides what that may mean.
    pub actor: Option<String>,
}

/// Reads a deployment report:
///
/// ```json
/// {"system": "payments-api", "environment": "production",
///  "artifact": "<commit id or sha256:digest>", "time": "2026-07-13T18:26:50Z",
///  "id": "run-8812", "status": "success", "commits": ["<commit id>", …],
///  "description": "…", "actor": "<token owner>"}
/// ```
///
/// `system`, `environment`, `artifact` and `time` are required. `actor` defaults to
/// `token_owner`, the identity that authenticated the request; naming anyone else is
/// refused. The returned actor is never marked a bot: whether the token belongs to an
/// automation account is the server's knowledge, and it may set `actor.bot`.
pub fn parse_deployment(body: &[u8], token_owner: &str) -> Result<Deployment, ParseError> {
    let value = read_strict(body, &DEPLOYMENT_FIELDS)?;
    let root = Node::root(&value);
    if token_owner.is_empty() {
        return Err(ParseError::field(
            "actor",
            "no authenticated identity was given",
        ));
    }
    if let Some(actor) = text(&root, "actor")? {
        if actor != token_owner {
            return Err(ParseError::field(
                "actor",
                format!(
                    "`{actor}` is not the authenticated identity `{token_owner}`: a pipeline \
                     reports as itself"
                ),
            ));
        }
    }
    let status = match text(&root, "status")? {
        Some(status) if !STATUSES.contains(&status.as_str()) => {
            return Err(ParseError::field(
                "status",
                format!("`{status}` is not one of {}", STATUSES.join(", ")),
            ))
        }
        status => status,
    };
    let commits = root
        .opt_elements("commits")?
        .iter()
        .map(|commit| commit_id(commit, commit.str()?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Deployment {
        host: Host::Pipeline,
        id: text(&root, "id")?.unwrap_or_default(),
        system: name(&root, "system")?,
        environment: name(&root, "environment")?,
        artifact: artifact(&root)?,
        actor: Identity {
            login: token_owner.to_string(),
            bot: false,
        },
        at: time(&root)?.ok_or_else(|| ParseError::field("time", "is missing"))?,
        status,
        commits,
        description: text(&root, "description")?,
    })
}

/// Reads a gate request: `system`, `environment` and `artifact` required, `actor` and
/// `time` optional, with the same rules as [`parse_deployment`].
pub fn parse_gate_request(body: &[u8]) -> Result<GateRequest, ParseError> {
    let value = read_strict(body, &GATE_FIELDS)?;
    let root = Node::root(&value);
    Ok(GateRequest {
        system: name(&root, "system")?,
        environment: name(&root, "environment")?,
        artifact: artifact(&root)?,
        actor: text(&root, "actor")?,
    })
}

/// Parses the body and refuses anything but an object with known, unrepeated fields.
fn read_strict(body: &[u8], known: &[&str]) -> Result<Value, ParseError> {
    let value = read_json(body)?;
    Node::root(&value).object()?;
    let keys: Keys = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let mut seen: Vec<&str> = Vec::new();
    for key in &keys.0 {
        if seen.contains(&key.as_str()) {
            return Err(ParseError::field(key.as_str(), "appears more than once"));
        }
        seen.push(key);
    }
    let unknown: Vec<&str> = seen.into_iter().filter(|k| !known.contains(k)).collect();
    if !unknown.is_empty() {
        let (field, verb) = if unknown.len() == 1 {
            ("field", "is not a")
        } else {
            ("fields", "are not")
        };
        return Err(ParseError::field(
            unknown.join(", "),
            format!(
                "{verb} known {field} (the known fields are {})",
                known.join(", ")
            ),
        ));
    }
    Ok(value)
}

/// The keys of a JSON object in order, repeats included (a map would keep only the last).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// An optional string field: when present it must be a non-empty string without
/// surrounding spaces. `null` counts as absent.
fn text(root: &Node, name: &str) -> Result<Option<String>, ParseError> {
    let Some(node) = root.get(name) else {
        return Ok(None);
    };
    let value = node.str()?;
    if value.trim().is_empty() {
        return Err(node.error("is empty"));
    }
    if value.trim() != value {
        return Err(node.error(format!("`{value}` has leading or trailing spaces")));
    }
    Ok(Some(value.to_string()))
}

/// A system or environment name: letters, digits and `-_./:@` and spaces, in ASCII, so that
/// a look-alike (a zero-width character, a full-width letter) cannot pass for another name
/// and slip past the production rules.
fn name(root: &Node, field: &str) -> Result<String, ParseError> {
    let value = required(root, field)?;
    let plain = |c: char| c.is_ascii_alphanumeric() || " -_./:@".contains(c);
    if let Some(bad) = value.chars().find(|c| !plain(*c)) {
        return Err(root.req(field)?.error(format!(
            "`{}` holds {:?} (U+{:04X}): names are ASCII letters, digits, spaces and `-_./:@`",
            value.escape_debug(),
            bad,
            u32::from(bad)
        )));
    }
    Ok(value)
}

fn required(root: &Node, name: &str) -> Result<String, ParseError> {
    text(root, name)?.ok_or_else(|| ParseError::field(name, "is missing"))
}

fn time(root: &Node) -> Result<Option<String>, ParseError> {
    match text(root, "time")? {
        Some(t) => crate::times::normalize(&t)
            .map(Some)
            .map_err(|m| ParseError::field("time", m)),
        None => Ok(None),
    }
}

/// What the lifecycle accepts as an artifact, so that whatever a change was approved or
/// implemented with can be asked about: a commit id (7 to 64 hex digits) or an image digest
/// (`sha256:` and 64 hex digits), both in lower case; or any other single token of printable
/// characters (a release name, `billing-api-certs@2026.1`), kept as given. Artifacts match
/// only when equal, ignoring case.
fn artifact(root: &Node) -> Result<String, ParseError> {
    let value = required(root, "artifact")?;
    let node = root.req("artifact")?;
    if let Some(digest) = value.strip_prefix("sha256:") {
        if digest.len() == 64 && is_hex(digest) {
            return Ok(value.to_ascii_lowercase());
        }
    }
    if (7..=64).contains(&value.len()) && is_hex(&value) {
        return Ok(value.to_ascii_lowercase());
    }
    if value.len() > 200 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(node.error(format!(
            "`{value}` is not an artifact: a commit id, an image digest or another single \
             token of at most 200 printable characters"
        )));
    }
    Ok(value)
}

/// A commit a deployment carries: a full id (40 or 64 hex digits), since an abbreviation
/// could name a commit made later to match it.
fn commit_id(node: &Node, value: &str) -> Result<String, ParseError> {
    if matches!(value.len(), 40 | 64) && is_hex(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(node.error(format!(
            "`{value}` is not a full commit id (40 or 64 hex digits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_repeats_in_order() {
        let keys: Keys = serde_json::from_str(r#"{"b": 1, "a": {"x": 2}, "b": 3}"#).unwrap();
        assert_eq!(keys.0, vec!["b", "a", "b"]);
    }
}
