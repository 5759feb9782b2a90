//! The first-parent history of a branch, read straight from a git repository.
//!
//! The first-parent chain of a protected branch is how the branch moved: a direct push adds
//! its commits to it, a code host's merge adds one merge or squash commit. Commits that arrived
//! only through a merge's other parents belong to that merge and are left out.
//!
//! The walk selects exactly what `git rev-list --first-parent --since=S --until=U BRANCH`
//! selects, including on histories whose committer dates go backwards: a commit committed
//! after `until` is skipped and the walk goes on, and the walk ends at the first commit
//! committed before `since`, whatever comes behind it. Like git, it ends at the boundary of a
//! shallow clone. Unlike git, it ignores replace refs (`git --no-replace-objects`).
//!
//! Ending at the first commit before `since` means that one back-dated commit hides every
//! commit behind it, whatever their dates. The walk does not go on (the selection stays
//! git's), but it looks at the first parent of the commit it stopped at and, when that parent
//! was committed at or after `since`, says so in [`Tip::stopped_early`].
//!
//! Messages are read as bytes: a message in another encoding than UTF-8 (whether or not its
//! commit has an `encoding` header) is read with replacement characters and marked
//! `utf8: false`, where `git log` would re-encode it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use gix::objs::commit::ref_iter::Token;
use gix::objs::{CommitRefIter, Find, Kind};
use gix::ObjectId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::message::{self, ParsedMessage};
use crate::Person;

/// Which commits of the chain to keep, by committer date, both ends included, to the
/// second (a sub-second part of a bound is ignored, as git ignores it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// `git rev-list --since`: the walk ends at the first commit committed before this.
    pub since: Option<OffsetDateTime>,
    /// `git rev-list --until`: commits committed after this are skipped.
    pub until: Option<OffsetDateTime>,
}

impl Range {
    /// The whole chain.
    pub fn all() -> Self {
        Range::default()
    }
}

/// One commit of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitCommit {
    pub id: String,
    /// As recorded; the first is the next commit of the chain.
    pub parents: Vec<String>,
    pub author: Person,
    pub committer: Person,
    /// RFC 3339 in UTC.
    pub author_time: String,
    /// RFC 3339 in UTC. The date `Range` is compared with.
    pub commit_time: String,
    /// The author's zone offset as recorded, `+02:00`; a recorded offset that is not four
    /// digits after a sign is given verbatim.
    pub author_offset: String,
    #[serde(flatten)]
    pub message: ParsedMessage,
}

/// A branch and its first-parent chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The canonical path of the working tree, or of the git directory when there is none.
    pub repository: String,
    /// The full name of the ref read, `refs/heads/main`.
    pub branch: String,
    /// The commit the branch pointed at.
    pub head: String,
    /// Newest first.
    pub commits: Vec<GitCommit>,
    /// As [`Tip::stopped_early`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<EarlyStop>,
}

/// Where a walk started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// As [`History::repository`].
    pub repository: String,
    /// As [`History::branch`].
    pub branch: String,
    /// As [`History::head`].
    pub head: String,
    /// Set when the walk ended at a commit committed before [`Range::since`] whose first
    /// parent was committed at or after it: the commits behind the stop are left out, as git
    /// leaves them out, though their dates may fall inside the range.
    pub stopped_early: Option<EarlyStop>,
}

/// A walk that ended at a commit older than [`Range::since`] in front of a newer one:
/// committer dates out of order on the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// The commit the walk stopped at, committed before `since`.
    pub commit: String,
    /// Its committer date, RFC 3339 in UTC.
    pub commit_time: String,
    /// Its first parent, committed at or after `since`.
    pub parent: String,
    /// The parent's committer date, RFC 3339 in UTC.
    pub parent_time: String,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{}` is not a git repository", .0.display())]
    NotARepository(PathBuf),
    #[error("no branch `{branch}` (local branches: {})", available_list(.available))]
    NoSuchBranch {
        branch: String,
        /// Some local branch names, to say what was meant.
        available: Vec<String>,
    },
    #[error("the repository cannot be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn available_list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How many branch names a [`GitError::NoSuchBranch`] offers.
const AVAILABLE_SHOWN: usize = 10;

/// Reads the first-parent chain of `branch` (`main`, `refs/heads/main` or a remote-tracking
/// `origin/main`) in the repository at `repo` (a working tree, its `.git`, a bare repository
/// or a linked worktree).
pub fn first_parent_history(repo: &Path, branch: &str, range: &Range) -> Result<History, GitError> {
    let mut commits = Vec::new();
    let tip = for_each_first_parent(repo, branch, range, |c| {
        commits.push(c);
        Ok::<(), GitError>(())
    })?;
    Ok(History {
        repository: tip.repository,
        branch: tip.branch,
        head: tip.head,
        commits,
        stopped_early: tip.stopped_early,
    })
}

/// Like [`first_parent_history`], handing each commit to `f` as it is read, newest first.
/// An error from `f` ends the walk and is returned.
///
/// The walk itself (finding and inflating each commit object, half the work) runs on a thread
/// of its own while this one parses the commits and calls `f`.
pub fn for_each_first_parent<E>(
    repo: &Path,
    branch: &str,
    range: &Range,
    mut f: impl FnMut(GitCommit) -> Result<(), E>,
) -> Result<Tip, E>
where
    E: From<GitError>,
{
    std::thread::scope(|scope| {
        let (sender, batches) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let walker = scope.spawn(move || walk(repo, branch, *range, sender));
        let mut outcome = Ok(());
        'batches: for batch in &batches {
            for (id, committed, bytes) in &batch.commits {
                let data = &batch.data[bytes.clone()];
                let parsed = RawCommit::parse(data, id.kind())
                    .map_err(|e| corrupt_commit(*id, e))
                    .and_then(|raw| raw.into_commit(*id, *committed));
                if let Err(err) = parsed.map_err(E::from).and_then(&mut f) {
                    outcome = Err(err);
                    break 'batches;
                }
            }
        }
        // Dropping the receiver stops a walker that is still going.
        drop(batches);
        let walked = match walker.join() {
            Ok(walked) => walked,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        outcome?;
        Ok(walked?)
    })
}

/// A repository opened once to look at the commits merges brought into a branch.
pub struct Merges {
    repository: gix::Repository,
    buf: Vec<u8>,
}

/// The most commits one merge is read as bringing in. A merge of an unrelated history can
/// bring in the whole of it; past this many the list ends and is marked as cut short.
pub const MERGED_LIMIT: usize = 10_000;

/// What a merge brought in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// Reachable from one of the merge's other parents and not from its first, in the order
    /// of a breadth-first walk from those parents.
    pub commits: Vec<GitCommit>,
    /// More than [`MERGED_LIMIT`] commits were brought in; `commits` holds the first.
    pub truncated: bool,
}

impl Merges {
    /// Opens the repository at `repo`, as [`first_parent_history`] does.
    pub fn open(repo: &Path) -> Result<Self, GitError> {
        let mut repository = open(repo)?;
        repository.object_cache_size_if_unset(4 * 1024 * 1024);
        Ok(Merges {
            repository,
            buf: Vec::new(),
        })
    }

    /// The commits `merge` brought in: those reachable from any parent but the first that
    /// the first parent cannot reach (`git rev-list P2 P3… ^P1`). Empty for a commit with one
    /// parent.
    pub fn brought_in(&mut self, merge: &GitCommit) -> Result<Merged, GitError> {
        let mut parents = Vec::with_capacity(merge.parents.len());
        for p in &merge.parents {
            let id = ObjectId::from_hex(p.as_bytes())
                .map_err(|e| GitError::Corrupt(format!("parent `{p}` of {}: {e}", merge.id)))?;
            parents.push(id);
        }
        let mut merged = Merged::default();
        let Some((first, others)) = parents.split_first() else {
            return Ok(merged);
        };
        if others.is_empty() {
            return Ok(merged);
        }
        let walk = self
            .repository
            .rev_walk(others.iter().copied())
            .with_hidden([*first])
            .all()
            .map_err(|e| GitError::Corrupt(format!("walking merge {}: {e}", merge.id)))?;
        for info in walk {
            let info =
                info.map_err(|e| GitError::Corrupt(format!("walking merge {}: {e}", merge.id)))?;
            if merged.commits.len() == MERGED_LIMIT {
                merged.truncated = true;
                break;
            }
            let id = info.id;
            let data = self
                .repository
                .objects
                .try_find(&id, &mut self.buf)
                .map_err(|e| corrupt_commit(id, e))?
                .ok_or_else(|| GitError::Corrupt(format!("commit {id} is missing")))?;
            let raw = RawCommit::parse(data.data, id.kind()).map_err(|e| corrupt_commit(id, e))?;
            let committed = seconds(raw.committer.time).ok_or_else(|| {
                corrupt_commit(id, format!("committer time `{}`", raw.committer.time))
            })?;
            merged.commits.push(raw.into_commit(id, committed)?);
        }
        Ok(merged)
    }
}

/// Commits found by the walk, as raw object bytes, handed over a channel in groups so that
/// the hand-over costs little per commit.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// Each commit's id, committer time and bytes in `data`.
    commits: Vec<(ObjectId, i64, std::ops::Range<usize>)>,
}

const BATCH_COMMITS: usize = 256;
const QUEUED_BATCHES: usize = 4;

/// Follows the first parents from the branch's head, sending the commits in range. Stops
/// early, with a tip nobody will read, when the receiver is gone.
fn walk(
    repo: &Path,
    branch: &str,
    range: Range,
    sender: mpsc::SyncSender<Batch>,
) -> Result<Tip, GitError> {
    let repository = open(repo)?;
    let (branch, head) = resolve(&repository, branch)?;
    let shallow = repository
        .shallow_commits()
        .map_err(corrupt("the shallow file"))?;
    let hash_kind = repository.object_hash();
    let since = range.since.map(OffsetDateTime::unix_timestamp);
    let until = range.until.map(OffsetDateTime::unix_timestamp);
    let mut tip = Tip {
        repository: canonical_location(&repository)?,
        branch,
        head: hex(&head),
        stopped_early: None,
    };

    let mut buf = Vec::new();
    let mut batch = Batch::default();
    let mut next = Some(head);
    while let Some(id) = next.take() {
        let data = repository
            .objects
            .try_find(&id, &mut buf)
            .map_err(|e| corrupt_commit(id, e))?
            .ok_or_else(|| GitError::Corrupt(format!("commit {id} is missing")))?;
        if data.kind != Kind::Commit {
            let kind = data.kind;
            let msg = format!("{id} on the first-parent chain is a {kind}, not a commit");
            return Err(GitError::Corrupt(msg));
        }
        let (first_parent, committer_time) =
            chain_link(data.data, hash_kind).map_err(|e| corrupt_commit(id, e))?;
        let committed = seconds(committer_time)
            .ok_or_else(|| corrupt_commit(id, format!("committer time `{committer_time}`")))?;
        let at_boundary = shallow.as_ref().is_some_and(|s| s.contains(&id));
        if let Some(since) = since.filter(|since| committed < *since) {
            if let Some(parent) = first_parent.filter(|_| !at_boundary) {
                tip.stopped_early =
                    early_stop(&repository, &mut buf, (id, committed), parent, since);
            }
            break;
        }
        if !at_boundary {
            next = first_parent;
        }
        if until.is_some_and(|until| committed > until) {
            continue;
        }
        let start = batch.data.len();
        batch.data.extend_from_slice(data.data);
        batch.commits.push((id, committed, start..batch.data.len()));
        if batch.commits.len() == BATCH_COMMITS && sender.send(std::mem::take(&mut batch)).is_err()
        {
            return Ok(tip);
        }
    }
    if !batch.commits.is_empty() {
        // A receiver that is gone has stopped reading: nothing is lost.
        let _ = sender.send(batch);
    }
    Ok(tip)
}

/// The [`EarlyStop`] of a walk that ended at `stop` (its id and committer time) because it
/// was committed before `since`, if its first parent `parent` was committed at or after
/// `since`. A parent the repository cannot give is not looked at further: what the walk
/// selected does not depend on it.
fn early_stop(
    repository: &gix::Repository,
    buf: &mut Vec<u8>,
    (stop, stop_committed): (ObjectId, i64),
    parent: ObjectId,
    since: i64,
) -> Option<EarlyStop> {
    let data = repository.objects.try_find(&parent, buf).ok()??;
    if data.kind != Kind::Commit {
        return None;
    }
    let (_, committer_time) = chain_link(data.data, repository.object_hash()).ok()?;
    let parent_committed = seconds(committer_time)?;
    if parent_committed < since {
        return None;
    }
    Some(EarlyStop {
        commit: hex(&stop),
        commit_time: utc(stop_committed).ok()?,
        parent: hex(&parent),
        parent_time: utc(parent_committed).ok()?,
    })
}

/// What the walk needs from a commit: its first parent and its committer time.
fn chain_link(data: &[u8], hash_kind: gix::hash::Kind) -> Result<(Option<ObjectId>, &str), String> {
    let mut first_parent = None;
    for token in CommitRefIter::from_bytes(data, hash_kind) {
        match token.map_err(|e| e.to_string())? {
            Token::Parent { id } if first_parent.is_none() => first_parent = Some(id),
            Token::Committer { signature } => return Ok((first_parent, signature.time)),
            _ => {}
        }
    }
    Err("no committer".to_owned())
}

fn hex(id: &gix::oid) -> String {
    let mut buf = [0u8; 64];
    id.hex_to_buf(&mut buf).to_owned()
}

fn open(path: &Path) -> Result<gix::Repository, GitError> {
    // Isolated: only the repository's own configuration is read, never the user's or the
    // environment's, so the same repository reads the same for every caller. Replace refs
    // (`git replace`) are ignored: they are a local override that would show one commit's
    // content under another's id, and no code host applies them.
    let options = gix::open::Options::isolated().config_overrides(["core.useReplaceRefs=false"]);
    gix::open_opts(path, options).map_err(|err| {
        if err.is_not_found() {
            return GitError::NotARepository(path.to_owned());
        }
        let io = err
            .iter_errors()
            .find_map(|e| e.downcast_ref::<std::io::Error>());
        match io {
            Some(io) => {
                let message = format!("`{}`: {err}", path.display());
                GitError::Io(std::io::Error::new(io.kind(), message))
            }
            None => GitError::Corrupt(format!("cannot open `{}`: {err}", path.display())),
        }
    })
}

/// The full ref name and the commit `name` points at.
fn resolve(repo: &gix::Repository, name: &str) -> Result<(String, ObjectId), GitError> {
    let candidates = if name.starts_with("refs/heads/") || name.starts_with("refs/remotes/") {
        vec![name.to_owned()]
    } else if name.starts_with("refs/") {
        Vec::new()
    } else {
        vec![format!("refs/heads/{name}"), format!("refs/remotes/{name}")]
    };
    for candidate in candidates {
        // A name git would refuse cannot name a branch.
        if gix::refs::FullName::try_from(candidate.as_str()).is_err() {
            continue;
        }
        let found = repo
            .try_find_reference(candidate.as_str())
            .map_err(corrupt(&format!("ref `{candidate}`")))?;
        if let Some(reference) = found {
            let full = reference.name().as_bstr().to_string();
            let id = reference
                .into_fully_peeled_id()
                .map_err(corrupt(&format!("ref `{candidate}`")))?;
            return Ok((full, id.detach()));
        }
    }
    Err(GitError::NoSuchBranch {
        branch: name.to_owned(),
        available: local_branches(repo)?,
    })
}

fn local_branches(repo: &gix::Repository) -> Result<Vec<String>, GitError> {
    let platform = repo.references().map_err(corrupt("the refs"))?;
    let mut names = Vec::new();
    for reference in platform.local_branches().map_err(corrupt("the refs"))? {
        let reference = reference.map_err(corrupt("the refs"))?;
        names.push(reference.name().shorten().to_string());
    }
    names.sort();
    names.truncate(AVAILABLE_SHOWN);
    Ok(names)
}

fn canonical_location(repo: &gix::Repository) -> Result<String, GitError> {
    let path = repo.workdir().unwrap_or_else(|| repo.git_dir());
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())))?;
    Ok(canonical.to_string_lossy().into_owned())
}

fn corrupt<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> GitError + '_ {
    move |err| GitError::Corrupt(format!("{what}: {err}"))
}

fn corrupt_commit(id: ObjectId, what: impl std::fmt::Display) -> GitError {
    GitError::Corrupt(format!("commit {id}: {what}"))
}

/// The parts of a commit object the history needs, borrowed from the object's bytes.
struct RawCommit<'a> {
    parents: Vec<ObjectId>,
    author: gix::actor::SignatureRef<'a>,
    committer: gix::actor::SignatureRef<'a>,
    message: &'a [u8],
}

impl<'a> RawCommit<'a> {
    fn parse(data: &'a [u8], hash_kind: gix::hash::Kind) -> Result<Self, String> {
        let mut parents = Vec::new();
        let mut author = None;
        let mut committer = None;
        let mut message: &[u8] = &[];
        for token in CommitRefIter::from_bytes(data, hash_kind) {
            match token.map_err(|e| e.to_string())? {
                Token::Parent { id } => parents.push(id),
                Token::Author { signature } => author = Some(signature),
                Token::Committer { signature } => committer = Some(signature),
                Token::Message(text) => message = text,
                Token::Tree { .. } | Token::Encoding(_) | Token::ExtraHeader(_) => {}
            }
        }
        let author = author.ok_or("no author")?;
        let committer = committer.ok_or("no committer")?;
        Ok(RawCommit {
            parents,
            author,
            committer,
            message,
        })
    }

    fn into_commit(self, id: ObjectId, committed: i64) -> Result<GitCommit, GitError> {
        let authored = seconds(self.author.time)
            .ok_or_else(|| corrupt_commit(id, format!("author time `{}`", self.author.time)))?;
        Ok(GitCommit {
            id: hex(&id),
            parents: self.parents.iter().map(|p| hex(p)).collect(),
            author: person(&self.author),
            committer: person(&self.committer),
            author_time: utc(authored).map_err(|e| corrupt_commit(id, e))?,
            commit_time: utc(committed).map_err(|e| corrupt_commit(id, e))?,
            author_offset: offset(self.author.time),
            message: message::parse(self.message),
        })
    }
}

fn person(signature: &gix::actor::SignatureRef<'_>) -> Person {
    Person {
        name: String::from_utf8_lossy(signature.name).trim().to_owned(),
        email: String::from_utf8_lossy(signature.email).trim().to_owned(),
    }
}

/// The seconds of a raw signature time, `1700000000 +0200`.
fn seconds(raw: &str) -> Option<i64> {
    raw.split_ascii_whitespace().next()?.parse().ok()
}

/// `+0200` as `+02:00`; anything else verbatim.
fn offset(raw: &str) -> String {
    let zone = raw.split_ascii_whitespace().nth(1).unwrap_or("");
    let bytes = zone.as_bytes();
    let well_formed = bytes.len() == 5
        && matches!(bytes[0], b'+' | b'-')
        && bytes[1..].iter().all(u8::is_ascii_digit);
    if well_formed {
        format!("{}:{}", &zone[..3], &zone[3..])
    } else {
        zone.to_owned()
    }
}

/// RFC 3339 in UTC, `2023-11-14T22:13:20Z`, written by hand: `time`'s formatter goes through
/// `fmt` machinery and was a measurable share of reading a history.
fn utc(seconds: i64) -> Result<String, String> {
    let at =
        OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| format!("time {seconds}: {e}"))?;
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at
            .format(&Rfc3339)
            .map_err(|e| format!("time {seconds}: {e}"));
    }
    let mut out = String::with_capacity(20);
    push_digits(&mut out, year as u32, 4);
    out.push('-');
    push_digits(&mut out, u32::from(u8::from(at.month())), 2);
    out.push('-');
    push_digits(&mut out, u32::from(at.day()), 2);
    out.push('T');
    push_digits(&mut out, u32::from(at.hour()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(at.minute()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(at.second()), 2);
    out.push('Z');
    Ok(out)
}

/// `value` as `width` decimal digits, zero-padded; `value` must fit.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_given_as_recorded() {
        assert_eq!(offset("1700000000 +0200"), "+02:00");
        assert_eq!(offset("1700000000 -0930"), "-09:30");
        assert_eq!(offset("1700000000 +051800"), "+051800");
        assert_eq!(offset("1700000000"), "");
    }

    #[test]
    fn times_are_utc_with_z() {
        assert_eq!(utc(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(utc(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert!(utc(253_402_300_800).is_err());
        assert_eq!(seconds("1700000000 +0200"), Some(1_700_000_000));
        assert_eq!(seconds("garbage"), None);
    }

    #[test]
    fn errors_read_well() {
        let err = GitError::NoSuchBranch {
            branch: "mian".into(),
            available: vec!["main".into(), "dev".into()],
        };
        assert_eq!(
            err.to_string(),
            "no branch `mian` (local branches: `main`, `dev`)"
        );
        let err = GitError::NotARepository(PathBuf::from("/tmp/x"));
        assert_eq!(err.to_string(), "`/tmp/x` is not a git repository");
    }
}
