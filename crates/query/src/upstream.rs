//! Where a standalone query service follows the log from, and where it
//! keeps its replica of it.

use std::path::PathBuf;

/// Where a standalone query service gets the log from, and where it keeps
/// its replica.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The log's source.
    pub source: Source,
    /// Where the replica lives.
    pub replica_dir: PathBuf,
}

/// A log to follow.
#[derive(Debug, Clone)]
pub enum Source {
    /// An ingest service's `LogService.ReadLog`.
    Ingest(IngestUpstream),
    /// The JetStream stream itself.
    JetStream(truce_jetstream::JetStreamSettings),
}

impl Source {
    /// The source as logs name it.
    pub(crate) fn describe(&self) -> &str {
        match self {
            Source::Ingest(ingest) => &ingest.endpoint,
            Source::JetStream(settings) => &settings.url,
        }
    }
}

/// An ingest service to follow.
#[derive(Debug, Clone)]
pub struct IngestUpstream {
    /// The ingest service, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// The bearer token to read the log with, if the upstream wants one.
    pub token: Option<String>,
    /// TLS toward an `https://` upstream: its CA, and a client certificate
    /// when it authenticates by mutual TLS.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Upstream {
    /// Following the ingest service at `endpoint` anonymously, keeping the
    /// replica in `replica_dir`.
    pub fn ingest(endpoint: impl Into<String>, replica_dir: impl Into<PathBuf>) -> Upstream {
        Upstream {
            source: Source::Ingest(IngestUpstream {
                endpoint: endpoint.into(),
                token: None,
                tls: None,
            }),
            replica_dir: replica_dir.into(),
        }
    }
}
