//! Commit messages: the subject, the trailers of the last paragraph, and what the code hosts
//! write into the messages of the commits they create (merge, squash and bors subjects, GitLab's
//! `See merge request` line, `git revert`'s `This reverts commit`).
//!
//! Only the subject, the source branch of a merge subject and the trailers are searched for
//! change ids. The rest of a message is prose, and a change id mentioned in prose is a claim
//! about some change, not a link to it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::Person;

/// What a commit message says, read without judging it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParsedMessage {
    /// The first non-blank line.
    pub subject: String,
    /// False when the message was not valid UTF-8 and was read with replacement characters.
    pub utf8: bool,
    /// `Key: value` pairs of the trailer block, in order, keys as written. A value folded
    /// over several lines is joined with single spaces.
    pub trailers: Vec<(String, String)>,
    /// From `Co-authored-by` trailers.
    pub co_authors: Vec<Person>,
    /// From `Reviewed-by` trailers, and from the `r=` list of a bors subject.
    pub reviewed_by: Vec<String>,
    /// From `Signed-off-by` trailers.
    pub signed_off_by: Vec<String>,
    /// The pull or merge request the code host says this commit merged.
    pub pull_request: Option<PullRef>,
    /// The branch that a merge subject names as merged (without its owner or fork).
    pub source_branch: Option<String>,
    /// Change ids named by the subject, the source branch or a trailer, normalized.
    pub change_ids: Vec<String>,
    /// The commit a `git revert` message says this commit reverts.
    pub reverts: Option<String>,
}

/// A pull or merge request named by a commit message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRef {
    pub number: u64,
    pub via: PullVia,
}

/// Which host convention named the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullVia {
    /// `Merge pull request #N from owner/branch`.
    GithubMerge,
    /// A subject ending in `(#N)`, GitHub's squash and rebase merges.
    GithubSquash,
    /// `Auto merge of #N - user:branch, r=reviewer` (bors/homu).
    Bors,
    /// A `See merge request group/project!N` line or trailer.
    GitlabMerge,
    /// A subject ending in `(!N)`, a GitLab squash template that names the request.
    GitlabSquash,
}

/// Reads a raw commit message (the bytes after the commit's header).
pub fn parse(message: &[u8]) -> ParsedMessage {
    let (text, utf8) = match std::str::from_utf8(message) {
        Ok(text) => (Cow::Borrowed(text), true),
        Err(_) => (String::from_utf8_lossy(message), false),
    };
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !is_blank(l));
    let subject = first.map_or("", |i| lines[i].trim_end());

    let mut parsed = ParsedMessage {
        subject: subject.to_owned(),
        utf8,
        ..ParsedMessage::default()
    };
    if let Some(first) = first {
        parsed.trailers = trailers(&lines[first..]);
    }
    for (key, value) in &parsed.trailers {
        if key.eq_ignore_ascii_case("Co-authored-by") {
            parsed.co_authors.push(person(value));
        } else if key.eq_ignore_ascii_case("Reviewed-by") {
            parsed.reviewed_by.push(value.clone());
        } else if key.eq_ignore_ascii_case("Signed-off-by") {
            parsed.signed_off_by.push(value.clone());
        }
    }

    let (pull_request, branch, reviewers) = request(subject, &lines, &parsed.trailers);
    parsed.pull_request = pull_request;
    parsed.source_branch = branch.map(str::to_owned);
    for reviewer in reviewers {
        if !parsed.reviewed_by.iter().any(|r| r == reviewer) {
            parsed.reviewed_by.push(reviewer.to_owned());
        }
    }

    let mut ids = Vec::new();
    let branch = parsed.source_branch.as_deref();
    let values = parsed.trailers.iter().map(|(_, v)| v.as_str());
    for source in std::iter::once(subject).chain(branch).chain(values) {
        if !may_name_change(source) {
            continue;
        }
        for id in crate::change_ids(source) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    parsed.change_ids = ids;
    parsed.reverts = lines
        .iter()
        .find_map(|l| reverted_commit(l))
        .map(str::to_owned);
    parsed
}

/// The request a message names, the branch its subject names as merged, and the reviewers a
/// bors subject lists.
fn request<'a>(
    subject: &'a str,
    lines: &[&'a str],
    trailers: &[(String, String)],
) -> (Option<PullRef>, Option<&'a str>, Vec<&'a str>) {
    let pull = |number, via| Some(PullRef { number, via });
    if let Some((number, branch)) = github_merge(subject) {
        return (pull(number, PullVia::GithubMerge), Some(branch), Vec::new());
    }
    if let Some((number, branch, reviewers)) = bors(subject) {
        return (pull(number, PullVia::Bors), branch, reviewers);
    }
    let found = gitlab_merge_request(lines, trailers)
        .map(|n| (n, PullVia::GitlabMerge))
        .or_else(|| suffix_number(subject, "(#").map(|n| (n, PullVia::GithubSquash)))
        .or_else(|| suffix_number(subject, "(!").map(|n| (n, PullVia::GitlabSquash)));
    let pull_request = found.map(|(number, via)| PullRef { number, via });
    (pull_request, merged_branch(subject), Vec::new())
}

/// Whether `text` has a `chg-` in any case, which every change id starts with: a cheap test
/// that spares most texts the full scan (a commit history has thousands of them).
fn may_name_change(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|b| *b == b'-') {
        let dash = from + at;
        if dash >= 3 && bytes[dash - 3..dash].eq_ignore_ascii_case(b"chg") {
            return true;
        }
        from = dash + 1;
    }
    false
}

fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b.is_ascii_whitespace())
}

/// The trailers of the last paragraph, by git's rules (`git interpret-trailers --parse`): the
/// first paragraph is the subject and never holds trailers; the last paragraph is a trailer
/// block when every line in it is a trailer or a continuation line, or when a line git
/// generates itself (`Signed-off-by: `, `(cherry picked from commit `) is among them and
/// trailers make up at least a quarter of its lines. Lines starting with `#` are comments.
fn trailers(lines: &[&str]) -> Vec<(String, String)> {
    let end = match lines.iter().rposition(|l| !is_blank(l)) {
        Some(last) => last + 1,
        None => return Vec::new(),
    };
    let start = match lines[..end].iter().rposition(|l| is_blank(l)) {
        Some(blank) => blank + 1,
        // A single paragraph is the subject.
        None => return Vec::new(),
    };
    let block = &lines[start..end];

    let mut trailer_lines = 0usize;
    let mut other_lines = 0usize;
    let mut continuations = 0usize;
    let mut git_generated = false;
    for line in block.iter().rev() {
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with("Signed-off-by: ") || line.starts_with("(cherry picked from commit ") {
            trailer_lines += 1;
            continuations = 0;
            git_generated = true;
        } else if split_trailer(line).is_some() {
            trailer_lines += 1;
            continuations = 0;
        } else if line.starts_with([' ', '\t']) {
            continuations += 1;
        } else {
            other_lines += 1 + continuations;
            continuations = 0;
        }
    }
    // Indented lines at the top of the block continue no trailer: they are prose.
    other_lines += continuations;
    let is_block = trailer_lines > 0
        && (other_lines == 0 || (git_generated && trailer_lines * 3 >= other_lines));
    if !is_block {
        return Vec::new();
    }

    let mut out: Vec<(String, String)> = Vec::new();
    let mut folding = false;
    for line in block {
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = split_trailer(line) {
            out.push((key.to_owned(), value.to_owned()));
            folding = true;
        } else if folding && line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                let more = line.trim();
                if !more.is_empty() {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(more);
                }
            }
        } else {
            folding = false;
        }
    }
    out
}

/// `Key: value`, where the key is letters, digits and hyphens, optionally followed by
/// whitespace before the colon (git's `find_separator`).
fn split_trailer(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let key_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count();
    if key_len == 0 {
        return None;
    }
    let rest = &line[key_len..];
    let value = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
    Some((&line[..key_len], value.trim()))
}

/// `Name <email>`; a value without an address is all name.
fn person(value: &str) -> Person {
    match value.rsplit_once('<') {
        Some((name, email)) if email.ends_with('>') => Person {
            name: name.trim().to_owned(),
            email: email[..email.len() - 1].trim().to_owned(),
        },
        _ => Person {
            name: value.trim().to_owned(),
            email: String::new(),
        },
    }
}

/// The leading decimal number of `text` and what follows it.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

/// `Merge pull request #12 from owner/branch`: the number and the branch.
fn github_merge(subject: &str) -> Option<(u64, &str)> {
    let rest = subject.strip_prefix("Merge pull request #")?;
    let (number, rest) = leading_number(rest)?;
    let head = rest.strip_prefix(" from ")?.split_whitespace().next()?;
    let branch = head.split_once('/').map_or(head, |(_owner, branch)| branch);
    Some((number, branch))
}

/// `Auto merge of #N - user:branch, r=a,b` (bors-ng and homu) and the older
/// `auto merge of #N : user/repo/branch, r=a`: the number, the branch and the reviewers.
fn bors(subject: &str) -> Option<(u64, Option<&str>, Vec<&str>)> {
    const PREFIX: &str = "auto merge of #";
    let head = subject.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let (number, rest) = leading_number(&subject[PREFIX.len()..])?;
    let (spec, reviewers) = match rest.find(", r=") {
        Some(at) => (&rest[..at], &rest[at + 4..]),
        None => (rest, ""),
    };
    let spec = spec.trim_start_matches([' ', '-', ':']).trim();
    let branch = match spec.split_once(':') {
        Some((_user, branch)) => Some(branch),
        None => spec.splitn(3, '/').nth(2),
    }
    .filter(|b| !b.is_empty());
    let reviewers = reviewers
        .split([',', '+', ' '])
        .map(|r| r.trim_matches(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')))
        .filter(|r| !r.is_empty())
        .collect();
    Some((number, branch, reviewers))
}

/// GitLab's `See merge request group/project!N`, as the line GitLab writes or as a trailer.
fn gitlab_merge_request(lines: &[&str], trailers: &[(String, String)]) -> Option<u64> {
    let from_trailer = trailers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("See-merge-request"))
        .find_map(|(_, v)| merge_request_number(v));
    from_trailer.or_else(|| {
        lines
            .iter()
            .filter_map(|l| l.trim().strip_prefix("See merge request "))
            .find_map(merge_request_number)
    })
}

/// `group/project!N`, or `!N` as GitLab wrote it before it named the project.
fn merge_request_number(reference: &str) -> Option<u64> {
    let (_project, rest) = reference.trim().rsplit_once('!')?;
    let (number, rest) = leading_number(rest)?;
    (rest.is_empty() || rest == ".").then_some(number)
}

/// A subject ending in `(#N)` or `(!N)` for `open` `(#` or `(!`.
fn suffix_number(subject: &str, open: &str) -> Option<u64> {
    let inner = subject.trim_end().strip_suffix(')')?;
    let at = inner.rfind(open)?;
    let digits = &inner[at + open.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `Merge branch 'x' into 'y'` (git's and GitLab's merge subject): `x`.
fn merged_branch(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix("Merge branch '")?;
    let (branch, _) = rest.split_once('\'')?;
    (!branch.is_empty()).then_some(branch)
}

/// `This reverts commit <id>.` as `git revert` writes it.
fn reverted_commit(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("This reverts commit ")?;
    let hex = rest
        .bytes()
        .take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .count();
    (hex == 40 || hex == 64).then(|| &rest[..hex])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(number: u64, via: PullVia) -> Option<PullRef> {
        Some(PullRef { number, via })
    }

    #[test]
    fn a_subject_alone_has_no_trailers() {
        let m = parse(b"Fixes: the thing\n");
        assert_eq!(m.subject, "Fixes: the thing");
        assert!(m.trailers.is_empty());
        assert!(m.utf8);
    }

    #[test]
    fn trailers_come_from_the_last_paragraph_only() {
        let m = parse(
            b"Add login\n\nReviewed-by: not a trailer here\nbecause prose follows\n\n\
              Co-authored-by: Bob Builder <bob@example.com>\n\
              reviewed-BY: Carol\nSigned-off-by: Alice <alice@example.com>\nRefs: CHG-7\n\n",
        );
        assert_eq!(m.trailers.len(), 4);
        assert_eq!(
            m.co_authors,
            vec![Person {
                name: "Bob Builder".into(),
                email: "bob@example.com".into()
            }]
        );
        assert_eq!(m.reviewed_by, vec!["Carol"]);
        assert_eq!(m.signed_off_by, vec!["Alice <alice@example.com>"]);
        assert_eq!(m.change_ids, vec!["CHG-000007"]);
    }

    #[test]
    fn a_paragraph_of_prose_is_not_a_trailer_block() {
        let m = parse(b"Subject\n\nSee: this is prose\nand it goes on\n");
        assert!(m.trailers.is_empty());
    }

    #[test]
    fn signed_off_by_makes_a_mostly_trailer_block_count() {
        let m = parse(b"Subject\n\nsome note\nSigned-off-by: A <a@x>\nAcked-by: B\n");
        let keys: Vec<&str> = m.trailers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["Signed-off-by", "Acked-by"]);
        let m = parse(b"Subject\n\none\ntwo\nthree\nfour\nAcked-by: B\n");
        assert!(m.trailers.is_empty());
    }

    #[test]
    fn folded_trailer_values_are_joined() {
        let m = parse(b"S\n\nCo-authored-by: A Very\n  Long Name <l@x>\nX-Key : v\n");
        assert_eq!(m.trailers[0].1, "A Very Long Name <l@x>");
        assert_eq!(m.trailers[1], ("X-Key".to_owned(), "v".to_owned()));
    }

    #[test]
    fn github_merge_names_request_and_branch() {
        let m = parse(b"Merge pull request #12 from alice/CHG-000007-login\n\nAdd login\n");
        assert_eq!(m.pull_request, pr(12, PullVia::GithubMerge));
        assert_eq!(m.source_branch.as_deref(), Some("CHG-000007-login"));
        assert_eq!(m.change_ids, vec!["CHG-000007"]);
    }

    #[test]
    fn squash_subjects() {
        assert_eq!(
            parse(b"Add login (#13)").pull_request,
            pr(13, PullVia::GithubSquash)
        );
        assert_eq!(
            parse(b"Add login (!4)\n").pull_request,
            pr(4, PullVia::GitlabSquash)
        );
        assert_eq!(parse(b"Revert \"Add login (#13)\"").pull_request, None);
        assert_eq!(parse(b"Add login (#)").pull_request, None);
        assert_eq!(parse(b"Add login (#1a)").pull_request, None);
    }

    #[test]
    fn bors_subjects_name_reviewers() {
        let m = parse(b"Auto merge of #6596 - someone:slow-cpu-test, r=a-b+c,@d`,");
        assert_eq!(m.pull_request, pr(6596, PullVia::Bors));
        assert_eq!(m.source_branch.as_deref(), Some("slow-cpu-test"));
        assert_eq!(m.reviewed_by, vec!["a-b", "c", "d"]);
        let m = parse(b"auto merge of #1074 : alex/cargo/issue-1069, r=brson");
        assert_eq!(m.pull_request, pr(1074, PullVia::Bors));
        assert_eq!(m.source_branch.as_deref(), Some("issue-1069"));
        assert_eq!(m.reviewed_by, vec!["brson"]);
    }

    #[test]
    fn gitlab_merge_line_or_trailer() {
        let line =
            b"Merge branch 'chg-42-fix' into 'main'\n\nFix it\n\nSee merge request group/app!4";
        let m = parse(line);
        assert_eq!(m.pull_request, pr(4, PullVia::GitlabMerge));
        assert_eq!(m.source_branch.as_deref(), Some("chg-42-fix"));
        assert_eq!(m.change_ids, vec!["CHG-000042"]);
        let m = parse(b"Merge branch 'x' into 'main'\n\nSee-merge-request: g/a!9\n");
        assert_eq!(m.pull_request, pr(9, PullVia::GitlabMerge));
        let m = parse(b"Merge branch 'stable'\n");
        assert_eq!(m.pull_request, None);
        assert_eq!(m.source_branch.as_deref(), Some("stable"));
    }

    #[test]
    fn change_ids_ignore_prose() {
        let m = parse(b"Fix CHG-1\n\nAlso touches CHG-2 in passing.\n\nRefs: CHG-3\n");
        assert_eq!(m.change_ids, vec!["CHG-000001", "CHG-000003"]);
    }

    #[test]
    fn reverts_are_found() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        let m = parse(format!("Revert \"x\"\n\nThis reverts commit {id}.\n").as_bytes());
        assert_eq!(m.reverts.as_deref(), Some(id));
        assert_eq!(
            parse(b"Revert\n\nThis reverts commit 0123abc.\n").reverts,
            None
        );
    }

    #[test]
    fn invalid_utf8_is_read_lossily() {
        let m = parse(b"Caf\xe9 au lait\n\nSigned-off-by: Ren\xe9 <r@x>\n");
        assert!(!m.utf8);
        assert_eq!(m.subject, "Caf\u{fffd} au lait");
        assert_eq!(m.signed_off_by, vec!["Ren\u{fffd} <r@x>"]);
    }

    #[test]
    fn empty_and_blank_messages() {
        assert_eq!(parse(b"").subject, "");
        let m = parse(b"\n\n  \nSubject after blanks\r\n\r\nKey: v\r\n");
        assert_eq!(m.subject, "Subject after blanks");
        assert_eq!(m.trailers, vec![("Key".to_owned(), "v".to_owned())]);
    }
}
