//! The query settings on the command line, shared by `truce-query` and
//! `truce up`.

use std::time::Duration;

use truce_serve::admission::StreamArgs;

use crate::QuerySettings;

/// Flags (and environment variables) that configure the query side.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Caps on subscriptions and the stall timeout (in `truce up`, also
    /// for the ingest port's log readers).
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Seconds without word from the log before subscriptions end.
    #[arg(long, env = "TRUCE_STALE_TIMEOUT_SECS", default_value_t = QuerySettings::DEFAULT_STALE_TIMEOUT.as_secs())]
    pub stale_timeout_secs: u64,
}

impl QueryArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> QuerySettings {
        let streams = self.streams.limits();
        QuerySettings {
            caps: streams.caps,
            stall_timeout: streams.stall_timeout,
            stale_timeout: Duration::from_secs(self.stale_timeout_secs),
        }
    }
}

/// Everything a standalone query service is told: `truce-query` and
fn upstream(text: &str) -> Result<String, String> {
    if truce_jetstream::is_nats_url(text) {
        Ok(text.to_owned())
    } else {
        truce_serve::grpc_url(text).map_err(|e| format!("{e}, or nats:// URLs"))
    }
}

/// `truce query`.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// Address to listen on.
    #[arg(long, env = "TRUCE_QUERY_LISTEN", default_value = crate::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// The log to follow: an ingest service (host:port, http:// or
    /// https://), or the NATS servers whose JetStream stream holds it
    /// (nats://).
    #[arg(long, env = "TRUCE_UPSTREAM", default_value = crate::DEFAULT_UPSTREAM, value_parser = upstream)]
    pub upstream: String,
    /// The stream, when following JetStream.
    #[command(flatten)]
    pub nats: truce_jetstream::JetStreamArgs,
    /// Directory of the local replica of the log.
    #[arg(long, env = "TRUCE_QUERY_DATA_DIR", default_value = crate::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    /// The query settings.
    pub query: QueryArgs,
    /// A file holding the bearer token to follow the ingest service's log
    /// with (any principal may read it).
    #[arg(long, env = "TRUCE_UPSTREAM_TOKEN_FILE")]
    pub upstream_token_file: Option<std::path::PathBuf>,
    /// The CA (PEM) that signed an `https://` upstream's certificate.
    #[arg(long, env = "TRUCE_UPSTREAM_TLS_CA")]
    pub upstream_tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present to the upstream (mutual TLS).
    #[arg(long, env = "TRUCE_UPSTREAM_TLS_CERT", requires = "upstream_tls_key")]
    pub upstream_tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --upstream-tls-cert.
    #[arg(long, env = "TRUCE_UPSTREAM_TLS_KEY", requires = "upstream_tls_cert")]
    pub upstream_tls_key: Option<std::path::PathBuf>,
    /// Who may call.
    #[command(flatten)]
    pub auth: truce_serve::auth::AuthArgs,
}

impl StandaloneArgs {
    /// TLS toward the upstream, when asked for.
    fn upstream_tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
        };
        if self.upstream_tls_ca.is_none() && self.upstream_tls_cert.is_none() {
            return Ok(None);
        }
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.upstream_tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(certificate), Some(key)) = (&self.upstream_tls_cert, &self.upstream_tls_key) {
            tls = tls.identity(Identity::from_pem(read(certificate)?, read(key)?));
        }
        Ok(Some(tls))
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let token = match &self.upstream_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let auth = self.auth.access(&self.data_dir);
        let source = if truce_jetstream::is_nats_url(&self.upstream) {
            crate::Source::JetStream(self.nats.settings(&self.upstream))
        } else {
            crate::Source::Ingest(crate::IngestUpstream {
                endpoint: self.upstream.clone(),
                token,
                tls: self.upstream_tls()?,
            })
        };
        let upstream = crate::Upstream {
            source,
            replica_dir: self.data_dir,
        };
        let listener = truce_serve::listen(self.listen, "--listen").await?;
        crate::run(
            upstream,
            self.query.settings(),
            auth,
            listener,
            truce_serve::termination(),
        )
        .await
    }
}
