//! Who is calling, and what they may do.
//!
//! Principals live in a JSON file: a name, the party they speak for, their
//! roles, and the SHA-256 of their bearer token (never the token itself, so
//! the file can be read without granting anything). [`Principals`] answers
//! "who holds this token"; [`PrincipalsFile`] creates the file on first
//! start with an admin token, adds, lists, revokes and rotates principals,
//! and tells (by a `stat`) when it has changed, so services reload it
//! without a restart.

mod file;
mod principal;

pub use file::{AddedPrincipal, FileVersion, PrincipalSummary, PrincipalsFile, StoredParty, StoredPrincipal};
pub use principal::{PartyKeys, Principal, Principals, Role, token_hash};

/// What can go wrong with the principals file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the file failed.
    #[error("principals file {path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The file is not valid.
    #[error("principals file {path}: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}
