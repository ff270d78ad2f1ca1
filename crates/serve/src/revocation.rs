//! Streams outlive the check at their door: a principal revoked, or a
//! token rotated out, while its stream is open must lose the stream too.
//! A [`Revocation`] answers, for one stream's caller, whether the
//! credential it opened the stream with is still in force, and resolves
//! once it is not.

use truce_proto::ServiceError;

use crate::auth::{Authenticator, Caller};

/// Watches one stream's caller against the principals in force.
#[derive(Debug, Clone)]
pub struct Revocation {
    auth: Authenticator,
    caller: Caller,
}

impl Revocation {
    /// Watches `caller`, as `auth` admitted it.
    pub fn new(auth: Authenticator, caller: Caller) -> Revocation {
        Revocation { auth, caller }
    }

    /// What a stream ends with once its caller's credential is gone.
    pub fn refusal() -> ServiceError {
        ServiceError::Unauthenticated("the credentials this stream was opened with were revoked or replaced".into())
    }

    /// Ok while the caller's credential still names the same principal
    /// (name, party, roles); UNAUTHENTICATED once it was revoked or
    /// rotated out. A lookup in the principals in force: cheap enough for
    /// every message of a client stream.
    pub fn check(&self) -> Result<(), ServiceError> {
        if self.auth.still_valid(&self.caller) {
            Ok(())
        } else {
            Err(Self::refusal())
        }
    }

    /// Resolves once the caller's credential is no longer in force: at the
    /// reload that removed it, within the reload poll of the change to the
    /// file. Never, for anonymous loopback callers.
    pub async fn revoked(&self) {
        let mut reloads = self.auth.reloads();
        // A reload between the door and here would not wake the loop.
        if self.check().is_err() {
            return;
        }
        while reloads.changed().await.is_ok() {
            if self.check().is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}
