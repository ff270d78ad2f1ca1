//! Authentication at the door of every truce service.
//!
//! An interceptor resolves the caller from `authorization: Bearer …` before
//! any handler runs and puts a [`Caller`] in the request's extensions;
//! handlers then check roles and parties. Without a valid token a call is
//! UNAUTHENTICATED, and the check comes before any lookup, so a refusal
//! never tells whether a resource exists. With `--insecure-loopback`,
//! anonymous calls from loopback addresses are let in, for experiments.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::sync::watch;
use tonic::{
    Request, Status,
    transport::{Certificate, Identity, ServerTlsConfig},
};
use truce_auth::{Principal, Principals, PrincipalsFile};
use truce_proto::ServiceError;

use crate::limits::{CallKind, Rate, RateLimiter, RateLimits};

/// How often the principals file is checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

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
}

impl From<AuthMode> for Access {
    /// With the default rate limits, without TLS.
    fn from(mode: AuthMode) -> Access {
        Access {
            mode,
            limits: RateLimits::default(),
            tls: None,
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
            std::fs::read(path).map_err(|source| truce_auth::AuthError::Io {
                path: path.clone(),
                source,
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
fn certificate_subject(der: &[u8]) -> Option<String> {
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

/// Resolves callers, and reloads the principals on request.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
    tls: Option<ServerTlsConfig>,
    limiter: Arc<RateLimiter>,
    principals: Arc<RwLock<Arc<Principals>>>,
    changed: watch::Sender<u64>,
}

impl Authenticator {
    /// Checks the mode and loads the principals (creating the file with an
    /// admin token on first start).
    pub fn start(access: impl Into<Access>) -> Result<Authenticator, truce_auth::AuthError> {
        let Access { mode, limits, tls } = access.into();
        let tls = tls.as_ref().map(TlsFiles::server_config).transpose()?;
        let principals = match &mode {
            AuthMode::Tokens(file) => {
                if let Some(token_path) = file.create_if_missing()? {
                    tracing::warn!(
                        principals = %file.path().display(),
                        admin_token = %token_path.display(),
                        "created the principals file with an admin principal; its token is in the admin_token file, readable only by its owner"
                    );
                }
                let principals = file.load()?;
                tracing::info!(principals = principals.len(), file = %file.path().display(), "principals loaded");
                principals
            }
            AuthMode::InsecureLoopback => {
                tracing::warn!(
                    "INSECURE: --insecure-loopback lets anonymous callers on loopback addresses do anything, \
                     including reporting as any party; never use it beyond local experiments"
                );
                Principals::default()
            }
        };
        Ok(Authenticator {
            mode,
            tls,
            limiter: Arc::new(RateLimiter::new(limits)),
            principals: Arc::new(RwLock::new(Arc::new(principals))),
            changed: watch::channel(0).0,
        })
    }

    fn current(&self) -> Arc<Principals> {
        Arc::clone(&self.principals.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the principals file. A file that fails to load leaves the
    /// current principals in place.
    pub fn reload(&self) {
        let AuthMode::Tokens(file) = &self.mode else { return };
        match file.load() {
            Ok(principals) => {
                tracing::info!(principals = principals.len(), "principals reloaded");
                *self.principals.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(principals);
                self.changed.send_modify(|generation| *generation += 1);
            }
            Err(error) => tracing::error!(%error, "principals not reloaded; keeping the previous ones"),
        }
    }

    /// Reloads on SIGHUP and whenever the file's modification time changes
    /// (checked every `poll`), until the process ends.
    pub fn watch(&self, poll: Duration) {
        let AuthMode::Tokens(file) = &self.mode else { return };
        let path = file.path().to_owned();
        let modified = move || std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let this = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut last = modified();
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
                        let now = modified();
                        if now != last {
                            last = now;
                            this.reload();
                        }
                    }
                }
            }
        });
    }

    /// A receiver told of every reload, for streams to re-check their
    /// caller.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// True when `caller` may go on (a stream's principal may have been
    /// revoked by a reload).
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

    /// Resolves the caller of `request` and records it in its extensions.
    pub fn authenticate<T>(&self, mut request: Request<T>) -> Result<Request<T>, Status> {
        // The TLS layer has verified the chain up to the client CA, so the
        // subject is the client's.
        let subject = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| certificate_subject(c.as_ref())));
        let caller = self.resolve(
            request.metadata().get("authorization").and_then(|v| v.to_str().ok()),
            subject.as_deref(),
            request.remote_addr(),
        )?;
        request.extensions_mut().insert(caller);
        Ok(request)
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
                        .current()
                        .authenticate(token)
                        .map(Caller::Principal)
                        .ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked token".into())),
                    (None, Some(subject)) => self
                        .current()
                        .authenticate_certificate(subject)
                        .map(Caller::Principal)
                        .ok_or_else(|| {
                            tracing::info!(%subject, "a client certificate matches no principal");
                            ServiceError::Unauthenticated(format!(
                                "no principal has the certificate subject {subject:?}"
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

impl Authenticator {
    /// The interceptor to put in front of a service.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        let auth = self.clone();
        move |request| auth.authenticate(request)
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
