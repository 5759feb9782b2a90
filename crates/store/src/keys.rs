//! The ledger signing key: an ed25519 key kept as PKCS#8 PEM in the data directory, readable
//! only by its owner, created on first start.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;

use crate::{Context, StoreError};

/// Reads the signing key at `path`, or creates one there if there is none.
///
/// Creation is safe against a second process starting at the same moment: the key is written
/// to a private temporary file and hard-linked into place, which fails if another process won,
/// and then that process's key is read instead.
pub fn load_or_create(path: &Path) -> Result<SigningKey, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the key `{}`", path.display()))
        }
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| StoreError::Backend(format!("cannot encode the signing key: {e}")))?;
    let tmp = temp_path(path);
    let written = write_private(&tmp, pem.as_bytes());
    let linked = written.and_then(|()| {
        fs::hard_link(&tmp, path).or_else(|e| match e.kind() {
            // Another process created the key first; theirs is the one to use.
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
    });
    // The temporary name is gone either way; a failure to remove it only leaves litter.
    let _ = fs::remove_file(&tmp);
    linked.with_context(|| format!("cannot create the key `{}`", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the key `{}`", path.display()))?;
    parse(path, &text)
}

/// Reads the signing key at `path`; a missing key is an error, never a new key.
pub fn load(path: &Path) -> Result<SigningKey, StoreError> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the key `{}`", path.display()))?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<SigningKey, StoreError> {
    warn_if_readable_by_others(path);
    SigningKey::from_pkcs8_pem(text).map_err(|e| {
        StoreError::Invalid(format!(
            "`{}` is not a PKCS#8 ed25519 key: {e}",
            path.display()
        ))
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    path.with_file_name(name)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Set at creation so the key is never readable by others, not even briefly.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the new directory entry durable, so a crash cannot lose a key that already signed.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let d = fs::File::open(dir)
            .with_context(|| format!("cannot open the directory `{}`", dir.display()))?;
        d.sync_all()
            .with_context(|| format!("cannot sync the directory `{}`", dir.display()))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the ledger signing key is readable by other users"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("k.pem");
        let a = load_or_create(&path).expect("create");
        let b = load_or_create(&path).expect("read");
        assert_eq!(a.to_bytes(), b.to_bytes());
        let text = fs::read_to_string(&path).expect("read pem");
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("k.pem");
        load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn garbage_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("k.pem");
        fs::write(&path, "not a key").expect("write");
        let err = load_or_create(&path).expect_err("garbage key");
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }

    #[test]
    fn racing_creators_agree() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("k.pem");
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).map(|k| k.to_bytes())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("key"))
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }
}
