//! `nats-server` processes of a test's own, on free loopback ports: a
//! single server to stop and start again, or a 3-node JetStream cluster
//! to lose a node of with `kill -9`. `nats-server` is the one `tests/run`
//! puts first on the PATH.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use truce_jetstream::JetStreamSettings;

use crate::PATIENCE;

/// A `nats-server` process of this test's own.
pub struct NatsServer {
    /// The process.
    pub child: tokio::process::Child,
    config: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts `nats-server -c config` and waits until it listens on `port`.
    pub async fn start(config: &Path, port: u16) -> NatsServer {
        let child = tokio::process::Command::new("nats-server")
            .arg("-c")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is not on PATH: run the tests with tests/run, which provides it");
        let server = NatsServer {
            child,
            config: config.to_owned(),
            port,
        };
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// kill -9, and wait until it is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("wait");
    }

    /// Starts it again on the same configuration and port.
    pub async fn restart(&mut self) {
        let again = NatsServer::start(&self.config, self.port).await;
        *self = again;
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// `count` loopback ports nobody listens on now.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// A 3-node JetStream cluster; node `i` is named `n{i}`. Each node syncs
/// every message to disk before acknowledging it (`sync_interval:
/// always`), as a deployment that must not lose an acknowledged write to a
/// power cut does: the slowest acknowledgements the writers see.
pub struct Cluster {
    /// The nodes, in name order.
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    /// Starts three nodes storing under `dir`, routed to each other.
    pub async fn start(dir: &Path) -> Cluster {
        let ports = free_ports(6);
        let (client_ports, route_ports) = ports.split_at(3);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let config = dir.join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                     cluster {{ name: truce-test\n listen: 127.0.0.1:{}\n routes: [{}] }}\n",
                    client_ports[i],
                    dir.join(format!("store{i}")).display(),
                    route_ports[i],
                    routes.join(", ")
                ),
            )
            .expect("config");
            nodes.push(NatsServer::start(&config, client_ports[i]).await);
        }
        Cluster { nodes }
    }

    /// Every node's URL, comma-separated.
    pub fn url(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The log's stream on all three nodes, once the cluster has taken it:
    /// the cluster elects its JetStream leader in a few seconds, and may
    /// take much longer to see all three peers on a loaded machine.
    pub async fn stream(&self) -> JetStreamSettings {
        let settings = JetStreamSettings {
            replicas: 3,
            ..JetStreamSettings::new(self.url())
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = truce_jetstream::JetStreamLog::connect(settings.clone()).await {
            assert!(Instant::now() < deadline, "the cluster never took the stream: {error}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        settings
    }

    /// The node named `name`.
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let i: usize = name
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .expect("a node name");
        &mut self.nodes[i]
    }

    /// Kills every node still running.
    pub async fn stop(self) {
        for mut node in self.nodes {
            let _ = node.child.start_kill();
            let _ = node.child.wait().await;
        }
    }
}

/// Who leads a stream, as JetStream itself says, through a client of its
/// own with short timeouts (so asking again during an election is quick).
pub struct StreamWatch {
    context: async_nats::jetstream::Context,
    stream: String,
}

/// A stream's leader and the replicas following it, by server name.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The leader.
    pub leader: String,
    /// The others.
    pub followers: Vec<String>,
}

impl StreamWatch {
    /// Watches `stream` on the servers at `url` (comma-separated).
    pub async fn new(url: &str, stream: &str) -> StreamWatch {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(url.split(',').collect::<Vec<_>>())
            .await
            .expect("connect to the cluster");
        let context = async_nats::jetstream::context::ContextBuilder::new()
            .timeout(Duration::from_millis(250))
            .build(client);
        StreamWatch {
            context,
            stream: stream.to_owned(),
        }
    }

    /// Where the stream is now, if a leader answers.
    pub async fn placement(&self) -> Option<Placement> {
        let stream = self.context.get_stream(&self.stream).await.ok()?;
        let cluster = stream.cached_info().cluster.clone()?;
        Some(Placement {
            leader: cluster.leader?,
            followers: cluster.replicas.into_iter().map(|r| r.name).collect(),
        })
    }

    /// Where the stream is once JetStream names a leader other than `not`.
    pub async fn placement_led_by_other_than(&self, not: &str, within: Duration) -> Placement {
        let deadline = Instant::now() + within;
        loop {
            if let Some(placement) = self.placement().await
                && placement.leader != not
            {
                return placement;
            }
            assert!(
                Instant::now() < deadline,
                "no leader other than {not:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `truce verify` (run as `testbed`, the test package's `truce` binary)
/// through the LogService of the ingest service at `ingest`, retried while
/// the log is unavailable (a cluster still electing a leader; creating a
/// consumer can time out for a while after losing a node).
pub async fn verify_through(testbed: &str, ingest: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = tokio::process::Command::new(testbed)
            .args(["verify", "--log", &format!("http://{ingest}")])
            .output()
            .await
            .expect("run truce verify");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            stderr.to_lowercase().contains("unavailable") && Instant::now() < deadline,
            "{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
