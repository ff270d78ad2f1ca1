//! Signed checkpoints and chain verification: a record anyone can check.
//!
//! A checkpoint says "log incarnation I had hash H at position P", signed
//! with the service's own Ed25519 key. A party that keeps one can later
//! show that the log it is served still extends it: a rewrite of anything
//! at or before P changes H. [`ChainVerifier`] checks a log link by link.

use std::{fs, io::Write, path::Path};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::{GENESIS_HASH, Hash, LogEntry, LogError, Position, chain_hash};

/// What a checkpoint asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log.
    pub incarnation: String,
    /// The position.
    pub position: Position,
    /// The entry hash there.
    pub hash: Hash,
}

impl Checkpoint {
    /// The exact bytes signed: a fixed prefix, so the signature cannot be
    /// replayed as anything else, then the three fields.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "truce-checkpoint-v1\n{}\n{}\n{}\n",
            self.incarnation,
            self.position,
            hex::encode(self.hash)
        )
        .into_bytes()
    }

    /// Checks `signature` by `public_key` over this checkpoint.
    pub fn verify(&self, public_key: &[u8], signature: &[u8]) -> Result<(), String> {
        let key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| "a public key has 32 bytes".to_owned())?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("invalid public key: {e}"))?;
        let signature = Signature::from_slice(signature).map_err(|e| format!("invalid signature: {e}"))?;
        key.verify(&self.signed_bytes(), &signature)
            .map_err(|_| "the signature does not match the checkpoint".to_owned())
    }
}

/// The service's signing key, kept in a file readable only by its owner.
#[derive(Debug)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl CheckpointSigner {
    /// Loads the key at `path`, creating it on first start. A key that is a
    /// placeholder (see [`CheckpointSigner::placeholder`]) is refused: the
    /// deployment files ship one, and checkpoints signed with a published
    /// key prove nothing.
    pub fn load_or_create(path: &Path) -> Result<CheckpointSigner, LogError> {
        if let Ok(bytes) = fs::read(path) {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| LogError::Corrupt {
                position: 0,
                what: format!("{} is not a 32-byte Ed25519 key", path.display()),
            })?;
            if let Some(why) = CheckpointSigner::placeholder(&secret) {
                return Err(LogError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} holds a placeholder, not a signing key ({why}): \
                         put 32 random bytes there (head -c 32 /dev/urandom)",
                        path.display()
                    ),
                )));
            }
            return Ok(CheckpointSigner {
                key: SigningKey::from_bytes(&secret),
            });
        }
        let mut secret = [0u8; 32];
        // Drawn again in the (1 in 10^13) case that chance made a key the
        // next start would refuse.
        while CheckpointSigner::placeholder(&secret).is_some() {
            getrandom::fill(&mut secret).map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(&secret)?;
        file.sync_all()?;
        tracing::info!(key = %path.display(), "created the checkpoint signing key");
        Ok(CheckpointSigner {
            key: SigningKey::from_bytes(&secret),
        })
    }

    /// Why `secret` is a placeholder rather than random bytes, or `None`
    /// for a key to use. Refused: bytes that are all printable ASCII or
    /// whitespace (text such as the Kubernetes Secret's
    /// `REPLACE-WITH-32-RANDOM-BYTES!!!!`, a password or a hex string),
    /// fewer than 16 distinct byte values (one value repeated, a short
    /// pattern), and a run with one step (0, 1, 2, ...). 32 random bytes
    /// fall under these rules with odds below 1 in 10^13, so no real key is
    /// refused.
    pub fn placeholder(secret: &[u8; 32]) -> Option<&'static str> {
        if secret.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
            return Some("it is text");
        }
        let mut seen = [false; 256];
        for &b in secret {
            seen[usize::from(b)] = true;
        }
        if seen.iter().filter(|&&s| s).count() < 16 {
            return Some("it repeats a few byte values");
        }
        let step = secret[1].wrapping_sub(secret[0]);
        if secret.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
            return Some("it counts up or down in equal steps");
        }
        None
    }

    /// The public key, for anyone to verify with.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> [u8; 64] {
        self.key.sign(&checkpoint.signed_bytes()).to_bytes()
    }
}

/// A broken link, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first position that does not check.
    pub position: Position,
    /// What is wrong.
    pub what: String,
}

/// Checks entries in order: gapless positions from 1, each hash covering
/// the previous hash and the entry's bytes.
#[derive(Debug)]
pub struct ChainVerifier {
    next: Position,
    previous: Hash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next: 1,
            previous: GENESIS_HASH,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry.
    pub fn check(&mut self, entry: &LogEntry) -> Result<(), Broken> {
        if entry.position != self.next {
            return Err(Broken {
                position: self.next,
                what: format!("missing: the next entry is at {}", entry.position),
            });
        }
        let expected = chain_hash(&self.previous, &entry.payload);
        if expected != entry.hash {
            return Err(Broken {
                position: entry.position,
                what: "the stored hash does not cover the previous hash and this entry's bytes".into(),
            });
        }
        self.previous = entry.hash;
        self.next += 1;
        Ok(())
    }

    /// How many entries checked so far.
    pub fn checked(&self) -> Position {
        self.next - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::load_or_create(&dir.path().join("key")).unwrap();
        let again = CheckpointSigner::load_or_create(&dir.path().join("key")).unwrap();
        assert_eq!(signer.public_key(), again.public_key(), "the key persists");
        let checkpoint = Checkpoint {
            incarnation: "00ff".into(),
            position: 7,
            hash: [3; 32],
        };
        let signature = signer.sign(&checkpoint);
        assert!(checkpoint.verify(&signer.public_key(), &signature).is_ok());
        let moved = Checkpoint {
            position: 8,
            ..checkpoint.clone()
        };
        assert!(moved.verify(&signer.public_key(), &signature).is_err());
    }

    #[test]
    fn placeholder_keys_are_refused_and_random_ones_are_not() {
        // deploy/kubernetes/config.yaml's checkpoint.key, decoded.
        let shipped = *b"REPLACE-WITH-32-RANDOM-BYTES!!!!";
        assert_eq!(CheckpointSigner::placeholder(&shipped), Some("it is text"));
        let hex_text = *b"9f86d081884c7d659a2feaa0c55ad015";
        assert_eq!(CheckpointSigner::placeholder(&hex_text), Some("it is text"));
        for fill in [0u8, 0xff, 0x41, 0x80] {
            assert!(
                CheckpointSigner::placeholder(&[fill; 32]).is_some(),
                "{fill:#x} repeated"
            );
        }
        let pattern: [u8; 32] = std::array::from_fn(|i| [0xde, 0xad, 0xbe, 0xef][i % 4]);
        assert_eq!(
            CheckpointSigner::placeholder(&pattern),
            Some("it repeats a few byte values")
        );
        let counting: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        assert_eq!(
            CheckpointSigner::placeholder(&counting),
            Some("it counts up or down in equal steps")
        );
        let down: [u8; 32] = std::array::from_fn(|i| 200u8.wrapping_sub(7 * i as u8));
        assert!(CheckpointSigner::placeholder(&down).is_some());
        for _ in 0..10_000 {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).unwrap();
            assert_eq!(CheckpointSigner::placeholder(&secret), None, "{}", hex::encode(secret));
        }
    }

    #[test]
    fn a_placeholder_key_file_stops_the_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.key");
        std::fs::write(&path, b"REPLACE-WITH-32-RANDOM-BYTES!!!!").unwrap();
        let error = CheckpointSigner::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("placeholder, not a signing key (it is text)"), "{error}");
        std::fs::write(&path, [0u8; 32]).unwrap();
        let error = CheckpointSigner::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("it repeats a few byte values"), "{error}");
        // A created key loads again.
        let fresh = dir.path().join("fresh.key");
        let created = CheckpointSigner::load_or_create(&fresh).unwrap();
        let loaded = CheckpointSigner::load_or_create(&fresh).unwrap();
        assert_eq!(created.public_key(), loaded.public_key());
    }

    #[test]
    fn the_verifier_names_the_first_broken_link() {
        let payloads: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; 10]).collect();
        let mut previous = GENESIS_HASH;
        let mut entries: Vec<LogEntry> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let hash = chain_hash(&previous, &payload);
                previous = hash;
                LogEntry {
                    position: i as u64 + 1,
                    hash,
                    payload,
                }
            })
            .collect();
        let mut verifier = ChainVerifier::default();
        assert!(entries.iter().all(|e| verifier.check(e).is_ok()));
        entries[2].payload[0] ^= 1;
        let mut verifier = ChainVerifier::default();
        let broken = entries.iter().find_map(|e| verifier.check(e).err()).unwrap();
        assert_eq!(broken.position, 3);
    }
}
