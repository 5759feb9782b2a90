//! Who is who across systems. A git author is a name and an address, a code host knows a
//! login, changegate knows a user name: segregation of duties compares people, so every
//! comparison goes through one resolver that knows the organization's aliases.

use std::collections::BTreeMap;

use evidence::Person;
use serde::{Deserialize, Serialize};

/// Known aliases: a changegate user name → the git names, addresses and code-host logins
/// that are that person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aliases(pub BTreeMap<String, Vec<String>>);

impl Aliases {
    /// The canonical name for any spelling of a person: the changegate user whose alias list
    /// holds it, else the spelling itself, lower-cased.
    pub fn canonical(&self, spelling: &str) -> String {
        let s = spelling.trim().to_lowercase();
        for (user, names) in &self.0 {
            if user.to_lowercase() == s || names.iter().any(|n| n.trim().to_lowercase() == s) {
                return user.to_lowercase();
            }
        }
        s
    }

    /// Every canonical name a git person may be: by address, by name, and by the address's
    /// local part (GitHub's `123+login@users.noreply.github.com` gives the login).
    pub fn person(&self, p: &Person) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |s: &str| {
            if s.trim().is_empty() {
                return;
            }
            let c = self.canonical(s);
            if !out.contains(&c) {
                out.push(c);
            }
        };
        add(&p.email);
        add(&p.name);
        if let Some((local, domain)) = p.email.split_once('@') {
            let login = if domain.eq_ignore_ascii_case("users.noreply.github.com") {
                local.split_once('+').map_or(local, |(_, l)| l)
            } else {
                local
            };
            add(login);
        }
        out
    }
}

/// Whether an account is automation: code-host bots (`name[bot]`), the names the
/// organization lists as bots, and git's own web-flow committer.
pub fn is_bot(name: &str, listed: &[String]) -> bool {
    let n = name.trim().to_lowercase();
    n.ends_with("[bot]")
        || n.ends_with("-bot")
        || n == "bors"
        || n == "github"
        || n == "noreply@github.com"
        || listed.iter().any(|b| b.trim().to_lowercase() == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, email: &str) -> Person {
        Person {
            name: name.into(),
            email: email.into(),
        }
    }

    #[test]
    fn spellings_resolve_to_the_user() {
        let mut map = BTreeMap::new();
        map.insert(
            "alice".to_string(),
            vec!["Alice Liddell".to_string(), "al@corp.example".into()],
        );
        let a = Aliases(map);
        assert_eq!(a.canonical("ALICE LIDDELL"), "alice");
        assert!(a
            .person(&person("A. L.", "al@corp.example"))
            .contains(&"alice".to_string()));
        let noreply = person("Bob", "4242+bobby@users.noreply.github.com");
        assert!(a.person(&noreply).contains(&"bobby".to_string()));
        assert!(a
            .person(&person("carol", "c@x"))
            .contains(&"carol".to_string()));
    }

    #[test]
    fn bots_are_recognized() {
        assert!(is_bot("dependabot[bot]", &[]));
        assert!(is_bot("deploy-bot", &[]));
        assert!(is_bot("renovate", &["Renovate".into()]));
        assert!(!is_bot("robert", &[]));
    }
}
