//! Who is calling, and what they may do.
//!
//! Principals live in a JSON file: a name, the party they speak for, their
//! roles, and the SHA-256 of their bearer token (never the token itself, so
//! the file can be read without granting anything). [`Principals`] answers
//! "who holds this token"; [`PrincipalsFile`] creates the file on first
//! start with an admin token, adds principals, and is reloaded without a
//! restart.

mod file;
mod principal;

pub use file::{AddedPrincipal, PrincipalsFile, StoredParty, StoredPrincipal};
pub use principal::{PartyKeys, Principal, Principals, Role, token_hash};

/// What can go wrong with the principals file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the file failed.
    #[error("principals file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
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
