//! Harness for black-box tests: real servers on ephemeral loopback ports,
//! real gRPC clients, and reports shaped like the source article's.

use std::{net::SocketAddr, path::Path, str::FromStr, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use truce_ingest::IngestConfig;
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient, query_service_client::QueryServiceClient};
use truce_query::QuerySettings;
use truce_serve::auth::{Access, AuthMode};

pub mod forged;
pub mod nats;
pub mod signing;

/// Every wait in a test is bounded by this.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server started by a test, stopped by [`Running::stop`] or on drop.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// The server `task` at `addr`, returned once each of `probed` answers
    /// a health check: a server that failed to start fails the test with
    /// its own error rather than with a connection reset at the first call.
    async fn started(
        addr: SocketAddr,
        probed: &[SocketAddr],
        stop: oneshot::Sender<()>,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Running {
        let mut running = Running {
            addr,
            stop: Some(stop),
            task: Some(task),
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        for addr in probed {
            while !answers_health_check(*addr).await {
                if running.task.as_ref().is_some_and(JoinHandle::is_finished) {
                    let task = running.task.take().expect("task");
                    match task.await.expect("server task panicked") {
                        Ok(()) => panic!("the server at {addr} stopped before it served"),
                        Err(error) => panic!("the server at {addr} failed to start: {error:#}"),
                    }
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the server at {addr} did not start in time"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        running
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server did not stop in time")
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Whether a server at `addr` answers `grpc.health.v1.Health/Check` at
/// all (whatever the status it reports).
async fn answers_health_check(addr: SocketAddr) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.timeout(Duration::from_secs(1)).connect().await else {
        return false;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await;
    answer.is_ok() || answer.is_err_and(|status| status.code() == tonic::Code::NotFound)
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Where the suite's logs live: in each test's data directory, or, when
/// `TRUCE_TEST_LOG` names NATS servers (`nats://127.0.0.1:4222`), in a
/// JetStream stream of each test's own, deleted when the test ends.
pub mod test_log {
    use truce_jetstream::JetStreamSettings;

    /// The NATS servers the suite runs on, if any.
    pub fn nats_url() -> Option<String> {
        std::env::var("TRUCE_TEST_LOG")
            .ok()
            .filter(|url| truce_jetstream::is_nats_url(url))
    }

    /// The stream for the log in `data_dir`, on the servers at `url`: the
    /// same directory gets the same stream, so a test can restart its
    /// services on it. Streams of test processes that have ended are
    /// deleted on first use, so runs do not pile up on the shared server.
    pub async fn stream_for(url: &str, data_dir: &std::path::Path) -> JetStreamSettings {
        use sha2::Digest;
        static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        CLEANED.get_or_init(|| delete_streams_of_ended_runs(url)).await;
        let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        let id = format!("{}_{}", std::process::id(), hex::encode(&digest[..6]));
        JetStreamSettings {
            url: url.to_owned(),
            stream: format!("{PREFIX}{id}"),
            subject_prefix: format!("truce-test.{id}"),
            replicas: 1,
        }
    }

    const PREFIX: &str = "TRUCE_TEST_";

    async fn delete_streams_of_ended_runs(url: &str) {
        use tokio_stream::StreamExt;
        let Ok(client) = async_nats::connect(url).await else {
            return;
        };
        let context = async_nats::jetstream::new(client);
        let names: Vec<String> = context.stream_names().filter_map(Result::ok).collect().await;
        for name in names {
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = context.delete_stream(&name).await;
            }
        }
    }
}

/// `truce up` in this process: both services over one log (embedded, or
/// on JetStream when `TRUCE_TEST_LOG` says so).
pub struct Pair {
    /// The ingest service's address.
    pub ingest: SocketAddr,
    /// The query service's address.
    pub query: SocketAddr,
    running: Running,
}

impl Pair {
    /// Starts the pair on the log in `dir`.
    pub async fn start(dir: &Path) -> Pair {
        Self::start_with(IngestConfig {
            data_dir: dir.to_owned(),
            ..IngestConfig::default()
        })
        .await
    }

    /// Starts the pair with `config`.
    pub async fn start_with(config: IngestConfig) -> Pair {
        Self::start_custom(config, QuerySettings::default()).await
    }

    /// Starts the pair with `config` and query `settings`, letting
    /// anonymous loopback callers in (the auth tests use tokens).
    pub async fn start_custom(config: IngestConfig, settings: QuerySettings) -> Pair {
        Self::start_full(config, settings, AuthMode::InsecureLoopback).await
    }

    /// Starts the pair with everything chosen.
    pub async fn start_full(mut config: IngestConfig, settings: QuerySettings, auth: impl Into<Access>) -> Pair {
        let access: Access = auth.into();
        if let (truce_ingest::LogLocation::Embedded, Some(url)) = (&config.log, test_log::nats_url()) {
            config.log = truce_ingest::LogLocation::JetStream(test_log::stream_for(&url, &config.data_dir).await);
        }
        let (ingest_listener, ingest) = listener().await;
        let (query_listener, query) = listener().await;
        // The readiness probe speaks plaintext; a TLS pair is not probed.
        let probed = if access.tls.is_some() {
            vec![]
        } else {
            vec![ingest, query]
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(truce::up::run(
            config,
            settings,
            access,
            ingest_listener,
            query_listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Pair {
            ingest,
            query,
            running: Running::started(ingest, &probed, stop, task).await,
        }
    }

    /// A client of the ingest service.
    pub async fn ingest_client(&self) -> IngestServiceClient<Channel> {
        ingest_client(self.ingest).await
    }

    /// A client of the query service.
    pub async fn query_client(&self) -> QueryServiceClient<Channel> {
        query_client(self.query).await
    }

    /// Stops both services gracefully.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A standalone ingest service on the log in `dir`.
pub async fn start_ingest(dir: &Path) -> Running {
    start_ingest_with(IngestConfig {
        data_dir: dir.to_owned(),
        ..IngestConfig::default()
    })
    .await
}

/// A standalone ingest service with `config`, anonymous loopback callers
/// let in.
pub async fn start_ingest_with(config: IngestConfig) -> Running {
    let (listener, addr) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(truce_ingest::run(
        config,
        AuthMode::InsecureLoopback,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Running::started(addr, &[addr], stop, task).await
}

/// A standalone query service following the ingest service at `upstream`,
/// with its replica in `dir`.
pub async fn start_query(upstream: SocketAddr, dir: &Path) -> Running {
    start_query_with(upstream, dir, QuerySettings::default()).await
}

/// A standalone query service with `settings`.
pub async fn start_query_with(upstream: SocketAddr, dir: &Path, settings: QuerySettings) -> Running {
    start_query_on(
        truce_query::Upstream::ingest(format!("http://{upstream}"), dir),
        settings,
    )
    .await
}

/// A standalone query service following `upstream`.
pub async fn start_query_on(upstream: truce_query::Upstream, settings: QuerySettings) -> Running {
    let (listener, addr) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(truce_query::run(
        upstream,
        settings,
        AuthMode::InsecureLoopback,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Running::started(addr, &[addr], stop, task).await
}

async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    tokio::time::timeout(PATIENCE, async {
        loop {
            match endpoint.connect().await {
                Ok(channel) => return channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("server did not come up")
}

/// A client of the ingest service at `addr`, once it accepts connections.
pub async fn ingest_client(addr: SocketAddr) -> IngestServiceClient<Channel> {
    IngestServiceClient::new(channel(addr).await)
}

/// A client of the query service at `addr`, once it accepts connections.
pub async fn query_client(addr: SocketAddr) -> QueryServiceClient<Channel> {
    QueryServiceClient::new(channel(addr).await)
}

/// A timestamp from RFC 3339 text.
pub fn time(text: &str) -> prost_types::Timestamp {
    prost_types::Timestamp::from_str(text).expect("valid test timestamp")
}

/// A valid report: an IDF report of a line crossing near Rafah on the
/// morning of 22 November 2025, with a casualty claim and a source.
pub fn crossing_report() -> v1::Report {
    v1::Report {
        reporting_party: "idf".into(),
        sources: vec![v1::Source {
            outlet: "Reuters".into(),
            url: "https://www.reuters.com/world/middle-east/".into(),
            published_at: Some(time("2025-11-22T18:00:00Z")),
        }],
        occurred_at: Some(time("2025-11-22T10:30:00Z")),
        occurred_precision: v1::TimePrecision::Hour as i32,
        location: Some(v1::Location {
            point: Some(v1::LatLng {
                latitude: 31.2969,
                longitude: 34.2436,
            }),
            area: "Rafah".into(),
            zone: v1::Zone::IsraeliControlled as i32,
            precision: v1::LocationPrecision::Near as i32,
        }),
        category: v1::Category::LineCrossing as i32,
        summary: "A gunman crossed the yellow line and opened fire on troops.".into(),
        alleged_responsible: vec!["hamas".into()],
        attributions: vec![v1::AttributionClaim {
            actor: "the gunman".into(),
            affiliation: "hamas".into(),
            claimed_by: "idf".into(),
        }],
        casualties: vec![v1::CasualtyClaim {
            group: v1::CasualtyGroup::Combatants as i32,
            killed: Some(v1::CountRange {
                low: 1,
                best: Some(1),
                high: 1,
            }),
            injured: None,
            claimed_by: "idf".into(),
        }],
        evidence: vec![v1::EvidenceRef {
            uri: "https://example.org/evidence/1.jpg".into(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            media_type: "image/jpeg".into(),
        }],
        incident_id: String::new(),
    }
}

/// A request for `report` with idempotency key `key` (empty for none).
pub fn request(key: &str, report: v1::Report) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        client_report_id: key.into(),
        report: Some(report),
        signature: Vec::new(),
    }
}

/// A distinct valid report, far from every other `numbered_report(n)` in
/// time so that each opens its own incident.
pub fn numbered_report(n: u32) -> v1::Report {
    let mut report = crossing_report();
    report.summary = format!("report number {n}");
    report.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_700_000_000 - i64::from(n) * 86_400,
        nanos: 0,
    });
    report
}

/// Submits `reports` through the bulk stream and returns the position of
/// the last; every report must be accepted.
pub async fn submit_many(
    ingest: &mut IngestServiceClient<Channel>,
    reports: impl IntoIterator<Item = v1::Report>,
) -> u64 {
    let requests: Vec<v1::SubmitReportsRequest> = reports
        .into_iter()
        .map(|r| v1::SubmitReportsRequest {
            request: Some(request("", r)),
        })
        .collect();
    let mut results = ingest
        .submit_reports(tokio_stream::iter(requests))
        .await
        .expect("bulk stream opens")
        .into_inner();
    let mut last = 0;
    while let Some(result) = tokio::time::timeout(PATIENCE, results.message())
        .await
        .expect("bulk results stalled")
        .expect("bulk stream failed")
    {
        match result.result.expect("a result") {
            v1::submit_reports_response::Result::Accepted(a) => last = a.position,
            v1::submit_reports_response::Result::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }
    last
}

/// The field violations of an INVALID_ARGUMENT status.
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A truce process of its own (the `truce` command line under the name
/// `truce-testbed`), so a test can kill it.
pub struct Process {
    /// The process.
    pub child: tokio::process::Child,
    addresses: std::collections::HashMap<String, SocketAddr>,
}

impl Process {
    /// Starts `exe` with `args` and waits until each of `services` has
    /// logged the address it listens on.
    pub async fn spawn(exe: &str, args: &[std::ffi::OsString], services: &[&str]) -> Process {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the truce process");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut addresses = std::collections::HashMap::new();
        tokio::time::timeout(PATIENCE, async {
            while addresses.len() < services.len() {
                let line = lines
                    .next_line()
                    .await
                    .expect("read the server log")
                    .expect("the server exited before listening");
                if let (Some(service), Some(address)) = (log_field(&line, "service"), log_field(&line, "address"))
                    && line.contains("listening")
                {
                    let address = address.parse::<SocketAddr>().expect("a socket address");
                    addresses.insert(service.trim_matches('"').to_owned(), address);
                }
            }
        })
        .await
        .expect("the server did not report its addresses");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Process { child, addresses }
    }

    /// The address `service` listens on.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addresses[service]
    }

    /// kill -9, and wait until it is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("wait");
    }
}

fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

/// Reading subscription streams in tests.
pub mod stream {
    use tokio_stream::StreamExt;
    use tonic::Streaming;
    use truce_proto::v1::{self, subscribe_response::Kind};

    use super::PATIENCE;

    /// A subscription stream.
    pub type Changes = Streaming<v1::SubscribeResponse>;

    /// The next message, which must come within [`PATIENCE`].
    pub async fn next(stream: &mut Changes) -> Result<Kind, tonic::Status> {
        match tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("subscription stalled")
        {
            Some(Ok(message)) => Ok(message.kind.expect("a message with a kind")),
            Some(Err(status)) => Err(status),
            None => panic!("subscription ended without a status"),
        }
    }

    /// The position and resume token a message carries, if any.
    pub fn checkpoint(kind: &Kind) -> Option<(u64, &str)> {
        match kind {
            Kind::Subscribed(s) => Some((s.position, &s.resume_token)),
            Kind::Change(c) | Kind::LeftFilter(c) => Some((c.position, &c.resume_token)),
            Kind::Heartbeat(h) => Some((h.position, &h.resume_token)),
            Kind::SnapshotEnd(c) | Kind::CaughtUp(c) | Kind::FellBehind(c) => Some((c.position, &c.resume_token)),
            Kind::Snapshot(_) => None,
        }
    }

    /// Changes (`true`) and departures (`false`) by position, read until
    /// the stream has delivered everything up to `position`.
    pub async fn changes_through(stream: &mut Changes, position: u64) -> Vec<(u64, bool)> {
        messages_through(stream, position)
            .await
            .iter()
            .filter_map(|kind| match kind {
                Kind::Change(c) => Some((c.position, true)),
                Kind::LeftFilter(c) => Some((c.position, false)),
                _ => None,
            })
            .collect()
    }

    /// Changes and departures, whole, read until the stream has delivered
    /// everything up to `position`.
    pub async fn messages_through(stream: &mut Changes, position: u64) -> Vec<Kind> {
        let mut seen = Vec::new();
        loop {
            let kind = next(stream).await.expect("subscription failed");
            let through = checkpoint(&kind).is_some_and(|(p, _)| p >= position);
            if matches!(kind, Kind::Change(_) | Kind::LeftFilter(_)) {
                seen.push(kind);
            }
            if through {
                return seen;
            }
        }
    }

    /// A subscribe request, with heartbeats every 200 ms so that a test
    /// learns quickly that a stream has delivered everything.
    pub fn request(filter: &str, start: v1::subscribe_request::Start) -> v1::SubscribeRequest {
        v1::SubscribeRequest {
            filter: filter.into(),
            start: Some(start),
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            snapshot: false,
        }
    }
}

/// Services on bearer tokens, with principals of several roles.
pub mod secure {

    use tonic::Request;
    use truce_auth::{PrincipalsFile, Role};
    use truce_serve::auth::AuthMode;

    use super::Pair;

    /// `message` with `token` as its bearer token.
    pub fn with_token<T>(token: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("test setup"));
        request
    }

    /// Services on tokens and some principals.
    pub struct Secure {
        /// The services, on tokens.
        pub pair: Pair,
        /// Their principals file.
        pub file: PrincipalsFile,
        /// The generated admin's token.
        pub admin: String,
        /// A reporter of party idf.
        pub idf: String,
        /// An observer of party un.
        pub observer: String,
        /// Their data directory.
        pub dir: tempfile::TempDir,
    }

    impl Secure {
        /// Adds a principal per (name, party, role) and waits until both
        /// services have read the file again; their tokens, in order.
        pub async fn add_principals(&self, wanted: &[(&str, &str, Role)]) -> Vec<String> {
            let tokens = wanted
                .iter()
                .map(|(name, party, role)| {
                    self.file
                        .add(name, &party.parse().expect("party"), &[*role])
                        .expect("add")
                        .token
                })
                .collect();
            tokio::time::sleep(truce_serve::auth::RELOAD_POLL + std::time::Duration::from_millis(800)).await;
            tokens
        }
    }

    /// Services on tokens over a new principals file in `dir`, with
    /// `config` (its data directory is `dir`) and `settings`: the pair, the
    /// file, and the admin's token, which the first start writes.
    pub async fn on_tokens(
        dir: &std::path::Path,
        config: truce_ingest::IngestConfig,
        settings: truce_query::QuerySettings,
    ) -> (Pair, PrincipalsFile, String) {
        let file = PrincipalsFile::new(dir.join("principals.json"));
        let config = truce_ingest::IngestConfig {
            data_dir: dir.to_owned(),
            ..config
        };
        let pair = Pair::start_full(config, settings, AuthMode::Tokens(file.clone())).await;
        let admin = std::fs::read_to_string(dir.join("admin.token"))
            .expect("the first start writes the admin's token")
            .trim()
            .to_owned();
        (pair, file, admin)
    }

    /// Starts services on tokens: the first start creates the principals
    /// file and the admin token; adds an idf reporter and an un observer.
    pub async fn secure_pair() -> Secure {
        let dir = tempfile::tempdir().expect("test setup");
        let (pair, file, admin) = on_tokens(
            dir.path(),
            truce_ingest::IngestConfig::default(),
            truce_query::QuerySettings::default(),
        )
        .await;
        let idf = file
            .add("idf-desk", &"idf".parse().expect("test setup"), &[Role::Reporter])
            .expect("test setup")
            .token;
        let observer = file
            .add("un-reader", &"un".parse().expect("test setup"), &[Role::Observer])
            .expect("test setup")
            .token;
        // Principals added while the services run work on their first call.
        Secure {
            pair,
            file,
            admin,
            idf,
            observer,
            dir,
        }
    }
}
