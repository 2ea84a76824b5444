//! The node's long-lived ed25519 identity, kept in `<data_dir>/node.key`.
//!
//! This module owns that file and the signing key: the file holds exactly the 32-byte secret seed,
//! is created once with mode 0600 (written to a temporary file, synced, then linked into place so
//! that a concurrent creator can never replace a key already there), and is never overwritten: a
//! file of the wrong length is an error the operator must resolve. Signatures are plain ed25519
//! (RFC 8032); verification is strict (rejects malleable and small-order forms).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// Length of the secret seed stored in the key file.
pub const SEED_LEN: usize = 32;

/// The node's signing identity. `Debug` shows only the public key.
pub struct NodeKey {
    signing: SigningKey,
}

/// Why the node key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// Reading, writing or creating a file or directory failed.
    #[error("node key {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file exists but is not a 32-byte seed. It is left untouched.
    #[error(
        "node key {path} is {len} bytes, expected exactly {SEED_LEN}; it is corrupt or not a \
         peercdn key. Restore it from a backup, or move it away to create a new identity"
    )]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// Its actual length.
        len: u64,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new node key: {0}")]
    Random(getrandom::Error),
}

impl NodeKey {
    /// Loads `data_dir/node.key`, or creates it (and `data_dir`) with a fresh random seed.
    pub fn load_or_create(data_dir: &Path) -> Result<NodeKey, NodeKeyError> {
        let path = data_dir.join(KEY_FILE);
        match read_seed(&path)? {
            Some(seed) => Ok(NodeKey::from_seed(&seed)),
            None => create(data_dir, &path),
        }
    }

    /// A key from a known 32-byte seed (tests, or a key kept elsewhere).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> NodeKey {
        NodeKey {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte ed25519 public key.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key as 64 lower-case hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public())
    }

    /// The ed25519 signing key (a broadcaster signs its live pieces with it, so the same data
    /// directory and stream name give the same content ID after a restart).
    pub fn signing_key(&self) -> SigningKey {
        self.signing.clone()
    }

    /// Signs `msg`; the signature is 64 bytes.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// Whether `sig` is `public`'s signature of `msg`. False for any malformed key or signature.
    pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(public) else {
            return false;
        };
        key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.public_hex())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NodeKeyError + '_ {
    move |source| NodeKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the seed; Ok(None) when the file does not exist.
fn read_seed(path: &Path) -> Result<Option<[u8; SEED_LEN]>, NodeKeyError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let seed: [u8; SEED_LEN] =
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| NodeKeyError::WrongLength {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            })?;
    warn_if_readable_by_others(path);
    Ok(Some(seed))
}

fn create(data_dir: &Path, path: &Path) -> Result<NodeKey, NodeKeyError> {
    fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let mut seed = [0u8; SEED_LEN];
    getrandom::getrandom(&mut seed).map_err(NodeKeyError::Random)?;

    let tmp = data_dir.join(format!(".{KEY_FILE}.tmp.{}", std::process::id()));
    let written = write_private(&tmp, &seed);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    // A hard link never replaces an existing file, so two processes racing here end up sharing
    // whichever key landed first. Filesystems without hard links fall back to rename.
    let placed = match fs::hard_link(&tmp, path) {
        Ok(()) => fs::remove_file(&tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            return match read_seed(path)? {
                Some(existing) => Ok(NodeKey::from_seed(&existing)),
                None => Err(io_err(path)(e)),
            };
        }
        Err(_) => fs::rename(&tmp, path),
    };
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    sync_dir(data_dir);
    let key = NodeKey::from_seed(&seed);
    tracing::info!(public = %key.public_hex(), path = %path.display(), "created node key");
    Ok(key)
}

/// Creates `path` (which must not exist) readable by the owner only, writes and syncs `data`.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes the new directory entry durable; best effort (not all platforms can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "node key is readable by other users; chmod 600 it"
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
    fn create_then_reload_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let a = NodeKey::load_or_create(&data).unwrap();
        let b = NodeKey::load_or_create(&data).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(a.public_hex().len(), 64);
        let bytes = fs::read(data.join(KEY_FILE)).unwrap();
        assert_eq!(bytes.len(), SEED_LEN);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn two_nodes_differ() {
        let a = NodeKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let b = NodeKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(a.public(), b.public());
    }

    #[test]
    fn sign_and_verify() {
        let k = NodeKey::from_seed(&[7; 32]);
        let sig = k.sign(b"hello");
        assert!(NodeKey::verify(&k.public(), b"hello", &sig));
        assert!(!NodeKey::verify(&k.public(), b"hellO", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!NodeKey::verify(&k.public(), b"hello", &bad));
        let other = NodeKey::from_seed(&[8; 32]);
        assert!(!NodeKey::verify(&other.public(), b"hello", &sig));
        // Garbage public keys and signatures are false, not panics.
        assert!(!NodeKey::verify(&[0xff; 32], b"hello", &sig));
        assert!(!NodeKey::verify(&k.public(), b"hello", &[0xff; 64]));
        assert!(format!("{k:?}").contains(&k.public_hex()));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let k = NodeKey::from_seed(&seed);
        assert_eq!(
            k.public_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(k.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn corrupted_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        for junk in [&b""[..], &[1u8; 31][..], &[1u8; 33][..], &[1u8; 64][..]] {
            fs::write(&path, junk).unwrap();
            let err = NodeKey::load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, NodeKeyError::WrongLength { len, .. } if len == junk.len() as u64),
                "{err}"
            );
            assert!(err.to_string().contains("expected exactly 32"));
            assert_eq!(fs::read(&path).unwrap(), junk, "never overwritten");
        }
    }
}
