//! The principals file: created on first start, added to by
//! `truce principal add`, reloaded on SIGHUP.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use truce_domain::PartyId;

use crate::{AuthError, PartyKeys, Principal, Principals, Role, token_hash};

/// One principal as the file stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPrincipal {
    /// Unique name.
    pub name: String,
    /// The party it speaks for (a party id).
    pub party: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// SHA-256 of its bearer token, lowercase hex; empty for a principal
    /// that authenticates by certificate only.
    #[serde(default)]
    pub token_sha256: String,
    /// The subject of its TLS client certificate, in RFC 4514 form as the
    /// server logs unknown ones, e.g. "CN=idf-desk,O=IDF"; for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_subject: Option<String>,
}

/// A party's report-signing keys as the file stores them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredParty {
    /// The party id.
    pub party: String,
    /// Its Ed25519 public keys, 64 hex digits each.
    pub signing_keys: Vec<String>,
    /// Refuse the party's unsigned reports.
    #[serde(default)]
    pub require_signatures: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    principals: Vec<StoredPrincipal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parties: Vec<StoredParty>,
}

/// A principal just added, with the token to hand over (shown once).
#[derive(Debug)]
pub struct AddedPrincipal {
    /// Its name.
    pub name: String,
    /// The bearer token. Only its hash is stored.
    pub token: String,
}

/// The principals file at a path.
#[derive(Debug, Clone)]
pub struct PrincipalsFile {
    path: PathBuf,
}

/// A new random bearer token: 32 bytes from the OS, hex, with a prefix that
/// makes leaked tokens easy to find.
fn generate_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("truce_{}", hex::encode(bytes)))
}

/// Writes `contents` to `path` readable by its owner only, replacing it
/// atomically.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), std::io::Error> {
    let temporary = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)
}

impl PrincipalsFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> PrincipalsFile {
        PrincipalsFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> AuthError {
        AuthError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, message: impl Into<String>) -> AuthError {
        AuthError::Invalid {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn read_document(&self) -> Result<Document, AuthError> {
        let text = fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        serde_json::from_str(&text).map_err(|e| self.invalid(e.to_string()))
    }

    fn write_document(&self, document: &Document) -> Result<(), AuthError> {
        let mut text = serde_json::to_vec_pretty(document).map_err(|e| self.invalid(e.to_string()))?;
        text.push(b'\n');
        write_private(&self.path, &text).map_err(|e| self.io(e))
    }

    /// Reads and checks every principal.
    pub fn load(&self) -> Result<Principals, AuthError> {
        self.check(self.read_document()?)
    }

    /// Writes `document` once it checks: never a file the services refuse.
    fn save(&self, document: &Document) -> Result<(), AuthError> {
        self.check(document.clone())?;
        self.write_document(document)
    }

    /// Checks every entry of `document`, naming the first bad one.
    fn check(&self, document: Document) -> Result<Principals, AuthError> {
        let mut seen_names = std::collections::HashSet::new();
        let mut entries = Vec::new();
        let mut subjects = Vec::new();
        for (i, stored) in document.principals.into_iter().enumerate() {
            let at = |what: String| self.invalid(format!("principals[{i}] ({}): {what}", stored.name));
            if stored.name.is_empty() || !seen_names.insert(stored.name.clone()) {
                return Err(at("names must be present and unique".into()));
            }
            let party: PartyId = stored.party.parse().map_err(|e| at(format!("party: {e}")))?;
            let hash = stored.token_sha256.to_ascii_lowercase();
            let has_token = !hash.is_empty();
            if has_token && (hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(at("token_sha256 must be 64 hex digits".into()));
            }
            if !has_token && stored.certificate_subject.is_none() {
                return Err(at("needs token_sha256 or certificate_subject".into()));
            }
            if stored.roles.is_empty() {
                return Err(at("needs at least one role".into()));
            }
            if let Some(subject) = &stored.certificate_subject
                && subjects.iter().any(|(s, _)| s == subject)
            {
                return Err(at(format!("certificate subject {subject:?} is given twice")));
            }
            let principal = Principal {
                name: stored.name,
                party,
                roles: stored.roles,
            };
            if let Some(subject) = stored.certificate_subject {
                subjects.push((subject, principal.clone()));
            }
            if has_token {
                entries.push((hash, principal));
            }
        }
        let mut parties = std::collections::HashMap::new();
        for (i, stored) in document.parties.into_iter().enumerate() {
            let at = |what: String| self.invalid(format!("parties[{i}] ({}): {what}", stored.party));
            let party: PartyId = stored.party.parse().map_err(|e| at(format!("party: {e}")))?;
            let signing_keys = stored
                .signing_keys
                .iter()
                .map(|key| {
                    hex::decode(key)
                        .ok()
                        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                        .ok_or_else(|| at(format!("signing key {key:?} is not 64 hex digits")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if stored.require_signatures && signing_keys.is_empty() {
                return Err(at("requires signatures but has no signing key".into()));
            }
            let keys = PartyKeys {
                signing_keys,
                require_signatures: stored.require_signatures,
            };
            if parties.insert(party, keys).is_some() {
                return Err(at("the party is listed twice".into()));
            }
        }
        Ok(Principals::new(entries)
            .with_certificate_subjects(subjects)
            .with_parties(parties))
    }

    /// Registers `public_key` (64 hex digits) as a signing key of `party`.
    pub fn add_party_key(&self, party: &PartyId, public_key: &str) -> Result<(), AuthError> {
        let mut document = if self.path.exists() {
            self.read_document()?
        } else {
            Document::default()
        };
        let key = public_key.to_ascii_lowercase();
        if hex::decode(&key).map_or(true, |bytes| bytes.len() != 32) {
            return Err(self.invalid(format!("signing key {public_key:?} is not 64 hex digits")));
        }
        match document.parties.iter_mut().find(|p| p.party == party.as_str()) {
            Some(stored) if stored.signing_keys.contains(&key) => {}
            Some(stored) => stored.signing_keys.push(key),
            None => document.parties.push(StoredParty {
                party: party.to_string(),
                signing_keys: vec![key],
                require_signatures: false,
            }),
        }
        self.save(&document)
    }

    /// Creates the file with one admin principal if it does not exist,
    /// writing the admin's token beside it, readable only by its owner.
    /// Returns where the token is, when it was created.
    pub fn create_if_missing(&self) -> Result<Option<PathBuf>, AuthError> {
        if self.path.exists() {
            return Ok(None);
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let token = generate_token().map_err(|e| self.io(e))?;
        let document = Document {
            principals: vec![StoredPrincipal {
                name: "admin".into(),
                party: "operator".into(),
                roles: vec![Role::Admin],
                token_sha256: token_hash(&token),
                certificate_subject: None,
            }],
            parties: Vec::new(),
        };
        let token_path = self.path.with_file_name("admin.token");
        write_private(&token_path, format!("{token}\n").as_bytes()).map_err(|e| self.io(e))?;
        self.write_document(&document)?;
        Ok(Some(token_path))
    }

    /// Adds a principal with a new token and returns the token.
    pub fn add(&self, name: &str, party: &PartyId, roles: &[Role]) -> Result<AddedPrincipal, AuthError> {
        let token = generate_token().map_err(|e| self.io(e))?;
        self.insert(StoredPrincipal {
            name: name.to_owned(),
            party: party.to_string(),
            roles: roles.to_vec(),
            token_sha256: token_hash(&token),
            certificate_subject: None,
        })?;
        Ok(AddedPrincipal {
            name: name.to_owned(),
            token,
        })
    }

    /// Adds a principal that authenticates with a TLS client certificate
    /// whose subject is `subject` (no token).
    pub fn add_certificate(&self, name: &str, party: &PartyId, roles: &[Role], subject: &str) -> Result<(), AuthError> {
        self.insert(StoredPrincipal {
            name: name.to_owned(),
            party: party.to_string(),
            roles: roles.to_vec(),
            token_sha256: String::new(),
            certificate_subject: Some(subject.to_owned()),
        })
    }

    fn insert(&self, principal: StoredPrincipal) -> Result<(), AuthError> {
        let mut document = if self.path.exists() {
            self.read_document()?
        } else {
            Document::default()
        };
        if document.principals.iter().any(|p| p.name == principal.name) {
            return Err(self.invalid(format!("a principal named {:?} exists already", principal.name)));
        }
        if principal.roles.is_empty() {
            return Err(self.invalid("a principal needs at least one role"));
        }
        document.principals.push(principal);
        self.save(&document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_an_admin_whose_token_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let token_path = file.create_if_missing().unwrap().unwrap();
        assert!(file.create_if_missing().unwrap().is_none(), "created once");
        let token = fs::read_to_string(&token_path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let principals = file.load().unwrap();
        let admin = principals.authenticate(token.trim()).unwrap();
        assert!(admin.has(Role::Admin));
        assert!(principals.authenticate("truce_wrong").is_none());
        assert!(
            !fs::read_to_string(file.path()).unwrap().contains(token.trim()),
            "only the hash is stored"
        );
    }

    #[test]
    fn added_principals_authenticate_and_names_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let party: PartyId = "idf".parse().unwrap();
        let added = file.add("idf-desk", &party, &[Role::Reporter]).unwrap();
        assert!(file.add("idf-desk", &party, &[Role::Reporter]).is_err());
        let principal = file.load().unwrap().authenticate(&added.token).unwrap();
        assert_eq!((principal.name.as_str(), principal.party.as_str()), ("idf-desk", "idf"));
        assert!(principal.may_report() && !principal.has(Role::Monitor));
    }

    #[test]
    fn invalid_files_are_refused_with_the_entry_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        fs::write(
            &path,
            r#"{"principals":[{"name":"x","party":"IDF","roles":["reporter"],"token_sha256":"00"}]}"#,
        )
        .unwrap();
        let err = PrincipalsFile::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("principals[0] (x): party"), "{err}");
    }
}
