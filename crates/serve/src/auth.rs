//! Authentication at the door of every truce service.
//!
//! The door ([`crate::guard`]) resolves the caller from `authorization:
//! Bearer …` or a client certificate before any handler runs and puts a
//! [`Caller`] in the request's extensions; handlers then check roles and
//! parties. Without a valid token a call is UNAUTHENTICATED, and the check
//! comes before any lookup, so a refusal never tells whether a resource
//! exists. With `--insecure-loopback`, anonymous calls from loopback
//! addresses are let in, for experiments.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use tokio::sync::watch;
use tonic::{
    Request,
    codegen::http::HeaderMap,
    transport::{Certificate, Identity, ServerTlsConfig},
};
use truce_auth::{FileVersion, Principal, Principals, PrincipalsFile};
use truce_proto::ServiceError;

use crate::{
    connections::{ConnectionArgs, ConnectionLimits},
    guard::Guarded,
    limits::{CallKind, Rate, RateLimiter, RateLimits},
    refusals::{LINES_PER_SECOND, Refusal, RefusalLog, is_refusal},
};

/// How often the principals file is checked for changes (a `stat`): the
/// longest a revoked or rotated-out token still works, and a stream it
/// opened still runs. A principal just added needs no wait: an unknown
/// credential makes the service check the file before refusing it.
pub const RELOAD_POLL: Duration = Duration::from_millis(500);

/// How callers are let in.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Bearer tokens checked against the principals file.
    Tokens(PrincipalsFile),
    /// Anyone on a loopback address, no token needed. Local experiments only.
    InsecureLoopback,
}

/// How callers are let in, and how much each may do.
#[derive(Debug, Clone)]
pub struct Access {
    /// How callers are let in.
    pub mode: AuthMode,
    /// What each principal may do per second.
    pub limits: RateLimits,
    /// TLS for the servers, if any.
    pub tls: Option<TlsFiles>,
    /// What each connection may cost.
    pub connections: ConnectionLimits,
}

impl From<AuthMode> for Access {
    /// With the default rate limits, without TLS.
    fn from(mode: AuthMode) -> Access {
        Access {
            mode,
            limits: RateLimits::default(),
            tls: None,
            connections: ConnectionLimits::default(),
        }
    }
}

/// The PEM files a TLS server needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub certificate: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA whose client certificates are accepted (mutual TLS): a client
    /// presenting one authenticates as the principal with its subject.
    /// Clients without a certificate may still use bearer tokens.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn server_config(&self) -> Result<ServerTlsConfig, truce_auth::AuthError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|error| truce_auth::AuthError::Io {
                path: path.clone(),
                error,
            })
        };
        let identity = Identity::from_pem(read(&self.certificate)?, read(&self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(Certificate::from_pem(read(ca)?))
                .client_auth_optional(true);
        }
        Ok(config)
    }
}

/// The subject of a DER certificate, RFC 4514 style, e.g. "CN=idf-desk".
pub(crate) fn certificate_subject(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let certificate = x509_cert::Certificate::from_der(der).ok()?;
    Some(certificate.tbs_certificate.subject.to_string())
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An authenticated principal.
    Principal(Arc<Principal>),
    /// An anonymous caller on loopback, in insecure mode: may do anything,
    /// and reports carry the party they name.
    Anonymous,
}

impl Caller {
    /// The caller of `request`, as the interceptor recorded it.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, ServiceError> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ServiceError::Unauthenticated("no credentials".into()))
    }

    /// The principal, if authenticated.
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Caller::Principal(p) => Some(p),
            Caller::Anonymous => None,
        }
    }

    /// Who the rate limits count against: the principal's name; `None`
    /// for anonymous loopback callers, who are not limited.
    fn limited_as(&self) -> Option<&str> {
        self.principal().map(|p| p.name.as_str())
    }

    /// Fails with PERMISSION_DENIED unless `allowed` holds for the principal.
    pub fn require(&self, what: &str, allowed: impl FnOnce(&Principal) -> bool) -> Result<(), ServiceError> {
        match self {
            Caller::Anonymous => Ok(()),
            Caller::Principal(p) if allowed(p) => Ok(()),
            Caller::Principal(p) => Err(ServiceError::PermissionDenied(format!(
                "principal {:?} may not {what}",
                p.name
            ))),
        }
    }

    /// May read and subscribe: any principal.
    pub fn require_reader(&self) -> Result<(), ServiceError> {
        self.require("read", Principal::may_read)
    }
}

/// Resolves callers, and reloads the principals when the file changes.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
    tls: Option<ServerTlsConfig>,
    connections: ConnectionLimits,
    limiter: Arc<RateLimiter>,
    refusals: Arc<RefusalLog>,
    loaded: Arc<RwLock<Loaded>>,
    /// Held while the file is read: one reload at a time, and callers that
    /// waited for it find it done.
    reloading: Arc<Mutex<()>>,
    changed: watch::Sender<u64>,
}

/// The principals in force, and what was last read to get them.
struct Loaded {
    principals: Arc<Principals>,
    /// The version of the file last read, whether it loaded or not, so an
    /// unchanged file (even an invalid one) is not read again.
    version: Option<FileVersion>,
    /// Its contents: a file rewritten with the same contents is no change.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Loaded {
    /// Not the file's contents (token hashes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("principals", &self.principals)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks the mode and loads the principals (creating the file with an
    /// admin token on first start). A file without principals is refused:
    /// no one could call.
    pub fn start(access: impl Into<Access>) -> Result<Authenticator, truce_auth::AuthError> {
        let Access {
            mode,
            limits,
            tls,
            connections,
        } = access.into();
        let tls = tls.as_ref().map(TlsFiles::server_config).transpose()?;
        let loaded = match &mode {
            AuthMode::Tokens(file) => {
                if let Some(token_path) = file.create_if_missing()? {
                    tracing::warn!(
                        principals = %file.path().display(),
                        admin_token = %token_path.display(),
                        "created the principals file with an admin principal; its token is in the admin_token file, readable only by its owner"
                    );
                }
                let version = file.version();
                let bytes = file.read()?;
                let principals = file.parse(&bytes)?;
                if principals.is_empty() {
                    return Err(truce_auth::AuthError::Invalid {
                        path: file.path().to_owned(),
                        message: "lists no principals, so no one could call; add one with `truce principal add NAME \
                                  --party PARTY --role ROLE --principals FILE`, or use --insecure-loopback for local \
                                  experiments"
                            .into(),
                    });
                }
                tracing::info!(principals = principals.len(), file = %file.path().display(), "principals loaded");
                Loaded {
                    principals: Arc::new(principals),
                    version,
                    bytes,
                }
            }
            AuthMode::InsecureLoopback => {
                tracing::warn!(
                    "INSECURE: --insecure-loopback lets anonymous callers on loopback addresses do anything, \
                     including reporting as any party; never use it beyond local experiments"
                );
                Loaded {
                    principals: Arc::default(),
                    version: None,
                    bytes: Vec::new(),
                }
            }
        };
        Ok(Authenticator {
            mode,
            tls,
            connections,
            limiter: Arc::new(RateLimiter::new(limits)),
            refusals: RefusalLog::new(LINES_PER_SECOND),
            loaded: Arc::new(RwLock::new(loaded)),
            reloading: Arc::default(),
            changed: watch::channel(0).0,
        })
    }

    fn current(&self) -> Arc<Principals> {
        Arc::clone(&self.loaded.read().unwrap_or_else(|p| p.into_inner()).principals)
    }

    fn loaded_version(&self) -> Option<FileVersion> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).version.clone()
    }

    /// Re-reads the principals file now (SIGHUP). A file that fails to
    /// load leaves the current principals in place.
    pub fn reload(&self) {
        self.refresh(true);
    }

    /// Re-reads the principals file if a `stat` says it changed since it
    /// was last read; true when the principals in force changed. Costs one
    /// `stat` when it has not, however many callers ask at once; a file
    /// that fails to load leaves the current principals in place and is
    /// not read again until it changes.
    pub fn reload_if_changed(&self) -> bool {
        self.refresh(false)
    }

    fn refresh(&self, always: bool) -> bool {
        let AuthMode::Tokens(file) = &self.mode else {
            return false;
        };
        if !always && file.version() == self.loaded_version() {
            return false;
        }
        let _reloading = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        // Whoever held the lock may have read this version already.
        let version = file.version();
        if !always && version == self.loaded_version() {
            return false;
        }
        let bytes = match file.read() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "principals not reloaded; keeping the previous ones");
                self.write_loaded().version = version;
                return false;
            }
        };
        if !always && bytes == self.loaded.read().unwrap_or_else(|p| p.into_inner()).bytes {
            self.write_loaded().version = version;
            return false;
        }
        // Parsed without holding up callers, who read `loaded`.
        let parsed = file.parse(&bytes);
        let mut loaded = self.write_loaded();
        loaded.version = version;
        loaded.bytes = bytes;
        match parsed {
            Ok(principals) => {
                if principals.is_empty() {
                    tracing::warn!("the principals file lists no principals: every call is refused");
                }
                tracing::info!(principals = principals.len(), "principals reloaded");
                loaded.principals = Arc::new(principals);
                drop(loaded);
                self.changed.send_modify(|generation| *generation += 1);
                true
            }
            Err(error) => {
                tracing::error!(%error, "principals not reloaded; keeping the previous ones");
                false
            }
        }
    }

    fn write_loaded(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads on SIGHUP and whenever the file changes (a `stat` every
    /// `poll`), until the process ends: revocations reach callers whose
    /// credentials are still known, and their streams, within `poll`.
    pub fn watch(&self, poll: Duration) {
        let AuthMode::Tokens(_) = &self.mode else { return };
        let this = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hangup.as_mut() {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<()>();
                tokio::select! {
                    () = signalled => this.reload(),
                    () = tokio::time::sleep(poll) => {
                        this.reload_if_changed();
                    }
                }
            }
        });
    }

    /// The principal `find` names in the principals in force; when there
    /// is none and the file has changed since it was read, in the reloaded
    /// ones: a principal just added is let in on its first call, while an
    /// unknown credential costs a `stat`, never a read of an unchanged file.
    fn find(&self, find: impl Fn(&Principals) -> Option<Arc<Principal>>) -> Option<Arc<Principal>> {
        let before = self.current();
        if let Some(principal) = find(&before) {
            return Some(principal);
        }
        self.reload_if_changed();
        // Another caller may have done the reload this one needed.
        let after = self.current();
        if Arc::ptr_eq(&before, &after) {
            None
        } else {
            find(&after)
        }
    }

    /// A receiver told of every reload, for streams to re-check their
    /// caller.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// True when `caller` may go on: the credential it authenticated with
    /// still names the same principal in the principals in force (a
    /// stream's principal may have been revoked, or its token rotated out,
    /// by a reload).
    pub fn still_valid(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Anonymous => true,
            Caller::Principal(p) => self.current().still_valid(p),
        }
    }

    /// The caller of `request`, once it may read and is within its rate.
    pub fn reader<T>(&self, request: &Request<T>) -> Result<Caller, ServiceError> {
        let caller = Caller::of(request)?;
        caller.require_reader()?;
        self.charge(&caller, CallKind::Read, 1)?;
        Ok(caller)
    }

    /// The caller of `request`, once `allowed` holds for it (`what` names
    /// the action for the refusal) and it is within its write rate.
    pub fn writer<T>(
        &self,
        request: &Request<T>,
        what: &str,
        allowed: impl FnOnce(&Principal) -> bool,
    ) -> Result<Caller, ServiceError> {
        let caller = Caller::of(request)?;
        caller.require(what, allowed)?;
        self.charge(&caller, CallKind::Write, 1)?;
        Ok(caller)
    }

    /// Charges `caller` `cost` calls of `kind` against its rate limit.
    pub fn charge(&self, caller: &Caller, kind: CallKind, cost: u32) -> Result<(), ServiceError> {
        match caller.limited_as() {
            Some(name) => self.limiter.charge(name, kind, cost),
            None => Ok(()),
        }
    }

    /// The report-signing keys registered for `party`, if any.
    pub fn party_keys(&self, party: &truce_domain::PartyId) -> Option<truce_auth::PartyKeys> {
        self.current().party_keys(party).cloned()
    }

    /// The servers' TLS settings, when they serve TLS.
    pub fn tls(&self) -> Option<&ServerTlsConfig> {
        self.tls.as_ref()
    }

    /// What each connection may cost.
    pub fn connections(&self) -> ConnectionLimits {
        self.connections
    }

    /// `service` behind the door: callers resolved before any handler
    /// runs, refusals logged.
    pub fn guard<S>(&self, service: S) -> Guarded<S> {
        Guarded::new(service, self.clone())
    }

    /// The rate-limited log of refused calls.
    pub(crate) fn refusal_log(&self) -> Arc<RefusalLog> {
        Arc::clone(&self.refusals)
    }

    /// Logs `error` if it turns `caller` (from `peer`) away inside a stream
    /// of `method`, as a report of the bulk stream is answered: with the
    /// refusals of whole calls, rate-limited alike.
    pub fn refused_in_stream(&self, method: &str, caller: &Caller, peer: Option<SocketAddr>, error: &ServiceError) {
        if is_refusal(error.code()) {
            self.refusals.note(&Refusal {
                method,
                principal: caller.principal().map(|p| p.name.as_str()),
                peer,
                code: error.code(),
                reason: &error.to_string(),
            });
        }
    }

    /// The caller of a request with `headers`, from `remote`, presenting a
    /// client certificate with `certificate_subject` (which the TLS layer
    /// has verified up to the client CA).
    pub(crate) fn resolve_http(
        &self,
        headers: &HeaderMap,
        certificate_subject: Option<&str>,
        remote: Option<SocketAddr>,
    ) -> Result<Caller, ServiceError> {
        self.resolve(
            headers.get("authorization").and_then(|v| v.to_str().ok()),
            certificate_subject,
            remote,
        )
    }

    fn resolve(
        &self,
        authorization: Option<&str>,
        certificate_subject: Option<&str>,
        remote: Option<SocketAddr>,
    ) -> Result<Caller, ServiceError> {
        match &self.mode {
            AuthMode::InsecureLoopback => {
                if remote.is_some_and(|a| a.ip().is_loopback()) {
                    Ok(Caller::Anonymous)
                } else {
                    Err(ServiceError::Unauthenticated(
                        "insecure mode accepts loopback callers only".into(),
                    ))
                }
            }
            AuthMode::Tokens(_) => {
                let token = authorization
                    .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
                    .map(str::trim);
                match (token, certificate_subject) {
                    // A token names the principal even over mutual TLS.
                    (Some(token), _) => self
                        .find(|principals| principals.authenticate(token))
                        .map(Caller::Principal)
                        .ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked token".into())),
                    (None, Some(subject)) => self
                        .find(|principals| principals.authenticate_certificate(subject))
                        .map(Caller::Principal)
                        // The refusal log has the subject, rate-limited.
                        .ok_or_else(|| {
                            ServiceError::Unauthenticated(format!(
                                "no principal has the certificate subject {}",
                                truce_domain::quote(subject)
                            ))
                        }),
                    (None, None) => Err(ServiceError::Unauthenticated(
                        "send authorization: Bearer <token>, or a client certificate".into(),
                    )),
                }
            }
        }
    }
}

/// The authentication flags every truce server takes.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// The principals file (JSON: name, party, roles, token_sha256). Created
    /// on first start, with an admin token written beside it. Default:
    /// principals.json in the data directory.
    #[arg(long, env = "TRUCE_PRINCIPALS")]
    pub principals: Option<std::path::PathBuf>,
    /// Accept anonymous calls from loopback addresses, with no token. For
    /// local experiments only.
    #[arg(long, env = "TRUCE_INSECURE_LOOPBACK")]
    pub insecure_loopback: bool,
    /// Reports (submitted, amended, retracted) and reviews per second per
    /// principal; 0: unlimited.
    #[arg(long, env = "TRUCE_WRITES_PER_SECOND", default_value_t = RateLimits::default().writes.per_second)]
    pub writes_per_second: u32,
    /// Writes a principal may make at once before the rate applies.
    #[arg(long, env = "TRUCE_WRITE_BURST", default_value_t = RateLimits::default().writes.burst)]
    pub write_burst: u32,
    /// Queries, subscriptions and log reads per second per principal; 0:
    /// unlimited.
    #[arg(long, env = "TRUCE_READS_PER_SECOND", default_value_t = RateLimits::default().reads.per_second)]
    pub reads_per_second: u32,
    /// Reads a principal may make at once before the rate applies.
    #[arg(long, env = "TRUCE_READ_BURST", default_value_t = RateLimits::default().reads.burst)]
    pub read_burst: u32,
    /// Serve TLS with this certificate chain (PEM).
    #[arg(long, env = "TRUCE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TRUCE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates issued by this CA (PEM): mutual TLS, each
    /// certificate subject mapped to a principal's certificate_subject.
    #[arg(long, env = "TRUCE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// What each connection may cost.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

impl AuthArgs {
    /// The access these flags ask for; `data_dir` holds the default file.
    pub fn access(&self, data_dir: &std::path::Path) -> Access {
        Access {
            mode: self.mode(data_dir),
            limits: RateLimits {
                writes: Rate {
                    per_second: self.writes_per_second,
                    burst: self.write_burst,
                },
                reads: Rate {
                    per_second: self.reads_per_second,
                    burst: self.read_burst,
                },
            },
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(certificate), Some(key)) => Some(TlsFiles {
                    certificate: certificate.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }),
                _ => None,
            },
            connections: self.connections.limits(),
        }
    }

    /// The mode these flags ask for; `data_dir` holds the default file.
    pub fn mode(&self, data_dir: &std::path::Path) -> AuthMode {
        if self.insecure_loopback {
            AuthMode::InsecureLoopback
        } else {
            let path = self
                .principals
                .clone()
                .unwrap_or_else(|| data_dir.join("principals.json"));
            AuthMode::Tokens(PrincipalsFile::new(path))
        }
    }
}
