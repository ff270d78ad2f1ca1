//! The principals file: created on first start, changed by
//! `truce principal add | revoke | rotate`, reloaded by the services.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use truce_domain::PartyId;

use crate::{AuthError, PartyKeys, Principals, Role, token_hash};

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

/// A principal just added or rotated, with the token to hand over (shown
/// once).
#[derive(Debug)]
pub struct AddedPrincipal {
    /// Its name.
    pub name: String,
    /// The bearer token. Only its hash is stored.
    pub token: String,
}

/// A principal as `truce principal list` shows it: how it authenticates,
/// never its token's hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrincipalSummary {
    /// Its name.
    pub name: String,
    /// The party it speaks for.
    pub party: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Whether it authenticates with a bearer token.
    pub token: bool,
    /// The subject of the TLS client certificate it authenticates with.
    pub certificate_subject: Option<String>,
}

/// What a `stat` of the file says, to tell that it changed without reading
/// it. Every write of [`PrincipalsFile`] renames a new file over the old
/// one with a later modification time, so each has a version of its own;
/// an edit by hand changes the size, times or inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

impl FileVersion {
    fn of(metadata: &fs::Metadata) -> FileVersion {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        FileVersion {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            inode: (metadata.dev(), metadata.ino()),
            #[cfg(unix)]
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The principals file at a path.
#[derive(Debug, Clone)]
pub struct PrincipalsFile {
    path: PathBuf,
    /// Reads of the file through this handle and its clones.
    reads: Arc<AtomicU64>,
}

/// A new random bearer token: 32 bytes from the OS, hex, with a prefix that
/// makes leaked tokens easy to find.
fn generate_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("truce_{}", hex::encode(bytes)))
}

/// Writes `contents` to `path` readable by its owner only, replacing it
/// atomically: a reader sees the old file or the new one, never a part.
/// The new file's modification time is later than the old one's even
/// within one tick of the clock, so that its [`FileVersion`] differs from
/// every earlier one (an inode number alone may be reused). The caller
/// holds the file's lock; the temporary file is created anew (a leftover,
/// or a symbolic link planted in its place, is removed, never followed).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), std::io::Error> {
    // The file's own name with a suffix: never the file itself, whatever
    // its extension.
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    let temporary = path.with_file_name(name);
    let previous = fs::metadata(path).and_then(|m| m.modified()).ok();
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        if let Some(previous) = previous
            && file.metadata()?.modified()? <= previous
        {
            file.set_modified(previous + std::time::Duration::from_micros(1))?;
        }
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    // The rename itself is durable only once the directory is: a change
    // (a revocation) must not come undone in a crash.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
}

impl PrincipalsFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> PrincipalsFile {
        PrincipalsFile {
            path: path.into(),
            reads: Arc::default(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the file has been read through this handle and its
    /// clones: what reloading costs a service can be watched.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The file's version as a `stat` sees it; `None` when it cannot be
    /// stat'ed (e.g. it is missing).
    pub fn version(&self) -> Option<FileVersion> {
        fs::metadata(&self.path).ok().map(|m| FileVersion::of(&m))
    }

    fn io(&self, error: std::io::Error) -> AuthError {
        AuthError::Io {
            path: self.path.clone(),
            error,
        }
    }

    fn invalid(&self, message: impl Into<String>) -> AuthError {
        AuthError::Invalid {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// The file's bytes.
    pub fn read(&self) -> Result<Vec<u8>, AuthError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        fs::read(&self.path).map_err(|e| self.io(e))
    }

    /// An empty file holds no principals (rather than being invalid JSON),
    /// so that it is refused at start for the reason that matters.
    fn parse_document(&self, bytes: &[u8]) -> Result<Document, AuthError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Document::default());
        }
        serde_json::from_slice(bytes).map_err(|e| self.invalid(e.to_string()))
    }

    fn read_document(&self) -> Result<Document, AuthError> {
        self.parse_document(&self.read()?)
    }

    /// The document, or an empty one when there is no file yet.
    fn read_or_default(&self) -> Result<Document, AuthError> {
        if self.path.exists() {
            self.read_document()
        } else {
            Ok(Document::default())
        }
    }

    fn write_document(&self, document: &Document) -> Result<(), AuthError> {
        let mut text = serde_json::to_vec_pretty(document).map_err(|e| self.invalid(e.to_string()))?;
        text.push(b'\n');
        write_private(&self.path, &text).map_err(|e| self.io(e))
    }

    /// Holds the file's lock (a `.lock` file beside it) until dropped, so
    /// that two changes at once cannot lose one another.
    fn lock(&self) -> Result<fs::File, AuthError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Readable by the owner only, like the data directory it
            // usually is.
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| self.io(e))?;
        }
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options.open(self.path.with_file_name(name)).map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        Ok(lock)
    }

    /// Changes the document under the lock and writes it, once it checks.
    fn change<T>(&self, change: impl FnOnce(&mut Document) -> Result<T, AuthError>) -> Result<T, AuthError> {
        let _lock = self.lock()?;
        let mut document = self.read_or_default()?;
        let out = change(&mut document)?;
        self.save(&document)?;
        Ok(out)
    }

    /// Reads and checks every principal.
    pub fn load(&self) -> Result<Principals, AuthError> {
        self.parse(&self.read()?)
    }

    /// Checks every principal of `bytes`, the file's contents.
    pub fn parse(&self, bytes: &[u8]) -> Result<Principals, AuthError> {
        self.check(self.parse_document(bytes)?)
    }

    /// Every principal, without secrets, in the file's order.
    pub fn list(&self) -> Result<Vec<PrincipalSummary>, AuthError> {
        let document = self.read_document()?;
        self.check(document.clone())?;
        Ok(document
            .principals
            .into_iter()
            .map(|p| PrincipalSummary {
                token: !p.token_sha256.is_empty(),
                name: p.name,
                party: p.party,
                roles: p.roles,
                certificate_subject: p.certificate_subject,
            })
            .collect())
    }

    /// Writes `document` once it checks: never a file the services refuse.
    fn save(&self, document: &Document) -> Result<(), AuthError> {
        self.check(document.clone())?;
        self.write_document(document)
    }

    /// Checks every entry of `document`, naming the first bad one.
    fn check(&self, document: Document) -> Result<Principals, AuthError> {
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_subjects = std::collections::HashSet::new();
        let mut principals = Principals::new();
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
            if let Some(subject) = &stored.certificate_subject {
                if !seen_subjects.insert(subject.clone()) {
                    return Err(at(format!("certificate subject {subject:?} is given twice")));
                }
                principals = principals.with_certificate(&stored.name, &party, &stored.roles, subject);
            }
            if has_token {
                principals = principals.with_token(&stored.name, &party, &stored.roles, &hash);
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
        Ok(principals.with_parties(parties))
    }

    /// Registers `public_key` (64 hex digits) as a signing key of `party`.
    pub fn add_party_key(&self, party: &PartyId, public_key: &str) -> Result<(), AuthError> {
        let key = public_key.to_ascii_lowercase();
        if hex::decode(&key).map_or(true, |bytes| bytes.len() != 32) {
            return Err(self.invalid(format!("signing key {public_key:?} is not 64 hex digits")));
        }
        self.change(|document| {
            match document.parties.iter_mut().find(|p| p.party == party.as_str()) {
                Some(stored) if stored.signing_keys.contains(&key) => {}
                Some(stored) => stored.signing_keys.push(key),
                None => document.parties.push(StoredParty {
                    party: party.to_string(),
                    signing_keys: vec![key],
                    require_signatures: false,
                }),
            }
            Ok(())
        })
    }

    /// Creates the file with one admin principal if it does not exist,
    /// writing the admin's token beside it, readable only by its owner.
    /// Returns where the token is, when it was created.
    pub fn create_if_missing(&self) -> Result<Option<PathBuf>, AuthError> {
        if self.path.exists() {
            return Ok(None);
        }
        // Two services starting at once on one file create it once.
        let _lock = self.lock()?;
        if self.path.exists() {
            return Ok(None);
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
        if principal.roles.is_empty() {
            return Err(self.invalid("a principal needs at least one role"));
        }
        self.change(|document| {
            if document.principals.iter().any(|p| p.name == principal.name) {
                return Err(self.invalid(format!("a principal named {:?} exists already", principal.name)));
            }
            document.principals.push(principal);
            Ok(())
        })
    }

    /// Removes the principal `name`: its token and certificate subject stop
    /// working. The last principal is kept, since the services refuse to
    /// start on a file without one.
    pub fn revoke(&self, name: &str) -> Result<(), AuthError> {
        self.change(|document| {
            let index = self.position(document, name)?;
            if document.principals.len() == 1 {
                return Err(self.invalid(format!(
                    "{name:?} is the only principal; revoking it would leave no one able to call, \
                     and the services refuse to start on such a file (add another principal first)"
                )));
            }
            document.principals.remove(index);
            Ok(())
        })
    }

    /// Gives the principal `name` a new token and returns it; the old token
    /// stops working. A principal that authenticates by certificate only
    /// has no token to rotate.
    pub fn rotate(&self, name: &str) -> Result<AddedPrincipal, AuthError> {
        let token = generate_token().map_err(|e| self.io(e))?;
        self.change(|document| {
            let index = self.position(document, name)?;
            let stored = &mut document.principals[index];
            if stored.token_sha256.is_empty() {
                return Err(self.invalid(format!(
                    "{name:?} authenticates by certificate subject only; it has no token to rotate"
                )));
            }
            stored.token_sha256 = token_hash(&token);
            Ok(())
        })?;
        Ok(AddedPrincipal {
            name: name.to_owned(),
            token,
        })
    }

    fn position(&self, document: &Document, name: &str) -> Result<usize, AuthError> {
        document
            .principals
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| self.invalid(format!("no principal is named {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_link_planted_as_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        file.create_if_missing().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("principals.json.new")).unwrap();
        file.add("idf-desk", &"idf".parse().unwrap(), &[Role::Reporter])
            .unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(file.load().unwrap().len(), 2, "the principal was added");
        assert!(!dir.path().join("principals.json.new").exists());
    }

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
    fn revoking_removes_every_credential_and_unknown_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let party: PartyId = "un".parse().unwrap();
        let kept = file.add("un-desk", &party, &[Role::Reporter]).unwrap();
        let gone = file.add("un-reader", &party, &[Role::Observer]).unwrap();
        file.add_certificate("un-cert", &party, &[Role::Observer], "CN=un")
            .unwrap();
        file.revoke("un-reader").unwrap();
        file.revoke("un-cert").unwrap();
        let principals = file.load().unwrap();
        assert!(principals.authenticate(&gone.token).is_none());
        assert!(principals.authenticate_certificate("CN=un").is_none());
        assert!(principals.authenticate(&kept.token).is_some());
        let err = file.revoke("un-reader").unwrap_err().to_string();
        assert!(err.contains(r#"no principal is named "un-reader""#), "{err}");
        let err = file.revoke("un-desk").unwrap_err().to_string();
        assert!(err.contains("only principal"), "{err}");
        assert!(file.load().unwrap().authenticate(&kept.token).is_some());
    }

    #[test]
    fn rotating_replaces_the_token_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let party: PartyId = "egypt".parse().unwrap();
        let old = file.add("egypt-1", &party, &[Role::Monitor]).unwrap();
        let new = file.rotate("egypt-1").unwrap();
        assert_ne!(old.token, new.token);
        let principals = file.load().unwrap();
        assert!(principals.authenticate(&old.token).is_none());
        let principal = principals.authenticate(&new.token).unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.roles.as_slice()),
            ("egypt-1", &[Role::Monitor][..])
        );
        assert!(file.rotate("nobody").is_err());
        file.add_certificate("egypt-cert", &party, &[Role::Monitor], "CN=egypt")
            .unwrap();
        let err = file.rotate("egypt-cert").unwrap_err().to_string();
        assert!(err.contains("no token to rotate"), "{err}");
    }

    #[test]
    fn the_listing_says_how_each_authenticates_and_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        let party: PartyId = "un".parse().unwrap();
        let added = file.add("un-desk", &party, &[Role::Reporter, Role::Observer]).unwrap();
        file.add_certificate("un-cert", &party, &[Role::Observer], "CN=un")
            .unwrap();
        let listing = file.list().unwrap();
        assert_eq!(
            listing,
            [
                PrincipalSummary {
                    name: "un-desk".into(),
                    party: "un".into(),
                    roles: vec![Role::Reporter, Role::Observer],
                    token: true,
                    certificate_subject: None,
                },
                PrincipalSummary {
                    name: "un-cert".into(),
                    party: "un".into(),
                    roles: vec![Role::Observer],
                    token: false,
                    certificate_subject: Some("CN=un".into()),
                },
            ]
        );
        let json = serde_json::to_string(&listing).unwrap();
        assert!(!json.contains(&added.token) && !json.contains(&token_hash(&added.token)));
    }

    #[test]
    fn an_empty_file_holds_no_principals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        fs::write(&path, "").unwrap();
        let file = PrincipalsFile::new(&path);
        assert!(file.create_if_missing().unwrap().is_none(), "an existing file is kept");
        assert!(file.load().unwrap().is_empty());
        fs::write(&path, r#"{"principals": []}"#).unwrap();
        assert!(file.load().unwrap().is_empty());
    }

    #[test]
    fn every_write_changes_the_version_and_concurrent_changes_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let file = PrincipalsFile::new(dir.path().join("principals.json"));
        assert_eq!(file.version(), None);
        let party: PartyId = "idf".parse().unwrap();
        file.add("first", &party, &[Role::Reporter]).unwrap();
        let mut versions = vec![file.version().unwrap()];
        // The same size each time, within a tick of the clock, and perhaps
        // on a reused inode: still a new version every time.
        for _ in 0..50 {
            file.rotate("first").unwrap();
            let version = file.version().unwrap();
            assert!(!versions.contains(&version), "{version:?} seen before");
            versions.push(version);
        }
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let file = file.clone();
                let party = party.clone();
                std::thread::spawn(move || file.add(&format!("desk-{i}"), &party, &[Role::Reporter]).unwrap())
            })
            .collect();
        let tokens: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().token).collect();
        let principals = file.load().unwrap();
        assert!(
            tokens.iter().all(|t| principals.authenticate(t).is_some()),
            "no change was lost"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
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
