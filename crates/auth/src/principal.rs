//! Principals and roles.

use std::{collections::HashMap, fmt, sync::Arc};

use sha2::{Digest, Sha256};
use truce_domain::PartyId;

/// What a principal may do. A principal with several roles may do what
/// any of them allows. Over the API (the README's roles table says the
/// same, RPC by RPC):
///
/// - everyone reads: queries, subscriptions, the log and its signed head;
/// - reporters and monitors write for their own party only: submit
///   reports, amend and retract their party's reports;
/// - monitors alone review incidents (never one their own party reported
///   or is accused in).
///
/// Principals are managed through the principals file, by whoever may
/// write it (`truce principal ...` on the host), not through any role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A party's reporting desk: reports, always as its own party.
    Reporter,
    /// A mediator: reviews incidents, and may also report as its own party.
    Monitor,
    /// Reads and subscribes; writes nothing.
    Observer,
    /// The operator's principal (the one created on first start): reads
    /// everything; speaks for no party, so it neither reports nor reviews.
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
    /// The credential it authenticated with: part of its identity, so a
    /// stream opened with a token that has since been rotated out ends.
    credential: Credential,
}

/// Which credential a principal presented.
#[derive(Clone, PartialEq, Eq)]
enum Credential {
    /// A bearer token, by its SHA-256 (hex).
    Token(String),
    /// A TLS client certificate, by its subject.
    Certificate(String),
}

impl fmt::Debug for Credential {
    /// Never the token's hash: principals end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("token"),
            Credential::Certificate(subject) => write!(f, "certificate {subject:?}"),
        }
    }
}

impl Principal {
    /// True when it holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// May it submit reports, and amend or retract its party's? Reporters
    /// and monitors may.
    pub fn may_report(&self) -> bool {
        self.has(Role::Reporter) || self.has(Role::Monitor)
    }

    /// May it review incidents? Monitors may.
    pub fn may_review(&self) -> bool {
        self.has(Role::Monitor)
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

/// Every principal, by token hash and by certificate subject, and every
/// party's signing keys. Immutable: a reload builds a new one.
#[derive(Default)]
pub struct Principals {
    by_token_hash: HashMap<String, Arc<Principal>>,
    by_certificate_subject: HashMap<String, Arc<Principal>>,
    parties: HashMap<PartyId, PartyKeys>,
}

impl Principals {
    /// No one.
    pub fn new() -> Principals {
        Principals::default()
    }

    /// With `name` of `party` holding `roles`, authenticated by the token
    /// whose SHA-256 (lowercase hex) is `token_sha256`.
    pub fn with_token(self, name: &str, party: &PartyId, roles: &[Role], token_sha256: &str) -> Principals {
        let mut this = self;
        let credential = Credential::Token(token_sha256.to_owned());
        this.by_token_hash
            .insert(token_sha256.to_owned(), principal(name, party, roles, credential));
        this
    }

    /// With `name` of `party` holding `roles`, authenticated by a TLS
    /// client certificate with `subject`.
    pub fn with_certificate(self, name: &str, party: &PartyId, roles: &[Role], subject: &str) -> Principals {
        let mut this = self;
        let credential = Credential::Certificate(subject.to_owned());
        this.by_certificate_subject
            .insert(subject.to_owned(), principal(name, party, roles, credential));
        this
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

    /// True when the credential `principal` authenticated with still
    /// names it, with the same party and roles: a stream it opened may go
    /// on. False once it is revoked, its token rotated, or its party or
    /// roles changed.
    pub fn still_valid(&self, principal: &Principal) -> bool {
        let current = match &principal.credential {
            Credential::Token(hash) => self.by_token_hash.get(hash),
            Credential::Certificate(subject) => self.by_certificate_subject.get(subject),
        };
        current.is_some_and(|p| p.as_ref() == principal)
    }

    /// How many credentials (tokens and certificate subjects).
    pub fn len(&self) -> usize {
        self.by_token_hash.len() + self.by_certificate_subject.len()
    }

    /// True when there are none: no one can call.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Principals {
    /// Names, never token hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self
            .by_token_hash
            .values()
            .chain(self.by_certificate_subject.values())
            .map(|p| p.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        f.debug_struct("Principals")
            .field("names", &names)
            .field("parties_with_keys", &self.parties.len())
            .finish()
    }
}

fn principal(name: &str, party: &PartyId, roles: &[Role], credential: Credential) -> Arc<Principal> {
    Arc::new(Principal {
        name: name.to_owned(),
        party: party.clone(),
        roles: roles.to_vec(),
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(id: &str) -> PartyId {
        id.parse().expect("party")
    }

    #[test]
    fn a_stream_is_valid_while_its_credential_names_the_same_principal() {
        let before = Principals::new()
            .with_token("idf-desk", &party("idf"), &[Role::Reporter], &token_hash("old"))
            .with_certificate("un", &party("un"), &[Role::Observer], "CN=un");
        let desk = before.authenticate("old").expect("known");
        let un = before.authenticate_certificate("CN=un").expect("known");
        assert!(before.still_valid(&desk) && before.still_valid(&un));

        let rotated = Principals::new()
            .with_token("idf-desk", &party("idf"), &[Role::Reporter], &token_hash("new"))
            .with_certificate("un", &party("un"), &[Role::Observer], "CN=un");
        assert!(!rotated.still_valid(&desk), "the old token was rotated out");
        assert!(rotated.still_valid(&un), "reloading keeps other principals' streams");

        let demoted = Principals::new().with_token("idf-desk", &party("idf"), &[Role::Observer], &token_hash("old"));
        assert!(!demoted.still_valid(&desk), "its roles changed");
    }

    #[test]
    fn debug_output_never_shows_the_token_hash() {
        let hash = token_hash("secret");
        let principals = Principals::new().with_token("idf-desk", &party("idf"), &[Role::Reporter], &hash);
        let desk = principals.authenticate("secret").expect("known");
        assert!(!format!("{desk:?}").contains(&hash));
        assert!(!format!("{principals:?}").contains(&hash));
    }
}
