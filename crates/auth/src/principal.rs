//! Principals and roles.

use std::{collections::HashMap, fmt, sync::Arc};

use sha2::{Digest, Sha256};
use truce_domain::PartyId;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits reports, always as its own party.
    Reporter,
    /// A mediator: reviews incidents, and may also report.
    Monitor,
    /// Reads and subscribes.
    Observer,
    /// Operates the deployment: reads everything, manages principals; does
    /// not speak for any party.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Reporter, Role::Monitor, Role::Observer, Role::Admin];

    /// The role's name in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Monitor => "monitor",
            Role::Observer => "observer",
            Role::Admin => "admin",
        }
    }

    /// From its name.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its unique name.
    pub name: String,
    /// The party it speaks for.
    pub party: PartyId,
    /// What it may do.
    pub roles: Vec<Role>,
}

impl Principal {
    /// True when it holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// May it submit reports? Reporters and monitors may.
    pub fn may_report(&self) -> bool {
        self.has(Role::Reporter) || self.has(Role::Monitor)
    }

    /// May it read and subscribe? Everyone with any role may.
    pub fn may_read(&self) -> bool {
        !self.roles.is_empty()
    }
}

/// The SHA-256 of a bearer token, as the principals file stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The keys a party signs its reports with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartyKeys {
    /// Ed25519 public keys; any of them may sign (several allow rotation).
    pub signing_keys: Vec<[u8; 32]>,
    /// When set, the party's unsigned reports are refused.
    pub require_signatures: bool,
}

/// Every principal, by token hash, and every party's signing keys.
/// Immutable: a reload builds a new one.
#[derive(Debug, Default)]
pub struct Principals {
    by_token_hash: HashMap<String, Arc<Principal>>,
    by_certificate_subject: HashMap<String, Arc<Principal>>,
    parties: HashMap<PartyId, PartyKeys>,
}

impl Principals {
    /// From (token hash, principal) pairs.
    pub fn new(entries: impl IntoIterator<Item = (String, Principal)>) -> Principals {
        Principals {
            by_token_hash: entries.into_iter().map(|(hash, p)| (hash, Arc::new(p))).collect(),
            by_certificate_subject: HashMap::new(),
            parties: HashMap::new(),
        }
    }

    /// With principals that authenticate by TLS client certificate, by
    /// certificate subject.
    pub fn with_certificate_subjects(self, entries: impl IntoIterator<Item = (String, Principal)>) -> Principals {
        Principals {
            by_certificate_subject: entries.into_iter().map(|(s, p)| (s, Arc::new(p))).collect(),
            ..self
        }
    }

    /// The principal whose client certificate has `subject`, if any.
    pub fn authenticate_certificate(&self, subject: &str) -> Option<Arc<Principal>> {
        self.by_certificate_subject.get(subject).cloned()
    }

    /// With these parties' signing keys.
    pub fn with_parties(self, parties: HashMap<PartyId, PartyKeys>) -> Principals {
        Principals { parties, ..self }
    }

    /// The signing keys registered for `party`, if any.
    pub fn party_keys(&self, party: &PartyId) -> Option<&PartyKeys> {
        self.parties.get(party)
    }

    /// The principal holding `token`, if any.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        self.by_token_hash.get(&token_hash(token)).cloned()
    }

    /// True when a principal with this name and exactly these roles and
    /// party still holds a token: a stream opened by `principal` may go on.
    pub fn still_valid(&self, principal: &Principal) -> bool {
        self.by_token_hash
            .values()
            .chain(self.by_certificate_subject.values())
            .any(|p| p.as_ref() == principal)
    }

    /// How many credentials (tokens and certificate subjects).
    pub fn len(&self) -> usize {
        self.by_token_hash.len() + self.by_certificate_subject.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
