//! The processes a measurement runs: truce's servers, the floor server, and
//! the peers (etcd, nats-server), each started on loopback with a fresh
//! data directory and ended when dropped.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader, Lines},
    process::{Child, Command},
};

/// A directory removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty directory named after `what`.
    pub(crate) fn new(what: &str) -> anyhow::Result<Scratch> {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("truce-bench-{}-{what}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Bytes of every file under it.
    pub(crate) fn disk_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process's resident memory, in bytes.
    pub(crate) fn resident_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the process exited")?;
        crate::cpu::resident_bytes(pid).context("no VmRSS")
    }

    /// Kills the process and waits for it.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A binary built beside this one, or the one `TRUCE_BENCH_<NAME>` names
/// (to measure another build, e.g. an earlier commit, with this bench).
pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let variable = format!("TRUCE_BENCH_{}", name.to_uppercase().replace('-', "_"));
    let path = match std::env::var_os(&variable) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name(name),
    };
    anyhow::ensure!(
        path.exists(),
        "{} not found: cargo build --release -p truce -p truce-query -p truce-bench",
        path.display()
    );
    Ok(path)
}

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
pub(crate) async fn wait_for_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listened on {addr} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `listening` lines of a truce server's log until every service in
/// `services` has said where it listens.
async fn listening<R: AsyncRead + Unpin>(
    lines: &mut Lines<BufReader<R>>,
    services: &[&str],
) -> anyhow::Result<HashMap<String, SocketAddr>> {
    let mut addresses = HashMap::new();
    while services.iter().any(|s| !addresses.contains_key(*s)) {
        let line = lines.next_line().await?.context("the server exited before listening")?;
        if !line.contains("listening") {
            continue;
        }
        let field = |name: &str| {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            line[start..]
                .split_whitespace()
                .next()
                .map(|v| v.trim_matches('"').to_owned())
        };
        if let (Some(service), Some(address)) = (field("service"), field("address")) {
            addresses.insert(service, address.parse()?);
        }
    }
    Ok(addresses)
}

/// A running truce server (`truce up`, or `truce-query`).
#[derive(Debug)]
pub(crate) struct Truce {
    proc: Proc,
    /// Where each service listens.
    pub(crate) addresses: HashMap<String, SocketAddr>,
}

/// Flags that take the authentication and rate limits out of the way of a
/// measurement on loopback.
const OPEN: [&str; 5] = [
    "--insecure-loopback",
    "--writes-per-second",
    "0",
    "--reads-per-second",
    "0",
];

impl Truce {
    /// Starts `truce up` over `data` with `extra` flags.
    pub(crate) async fn up(data: &Path, extra: &[&str]) -> anyhow::Result<Truce> {
        let mut command = Command::new(sibling("truce")?);
        command
            .args([
                "up",
                "--ingest-listen",
                "127.0.0.1:0",
                "--query-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .args(OPEN)
            .args(extra);
        Self::spawn(command, &["ingest", "query"]).await
    }

    /// Starts `truce ingest` alone, its own files in `data`, with `extra`
    /// flags (e.g. `--log nats://...`).
    pub(crate) async fn ingest(data: &Path, extra: &[&str]) -> anyhow::Result<Truce> {
        let mut command = Command::new(sibling("truce")?);
        command
            .args(["ingest", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(OPEN)
            .args(extra);
        Self::spawn(command, &["ingest"]).await
    }

    async fn spawn(mut command: Command, services: &[&str]) -> anyhow::Result<Truce> {
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting truce")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let addresses = listening(&mut lines, services).await?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Truce {
            proc: Proc { child },
            addresses,
        })
    }

    /// The endpoint of one service.
    pub(crate) fn endpoint(&self, service: &str) -> String {
        format!("http://{}", self.addresses[service])
    }

    /// The process.
    pub(crate) fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Kills it (as `kill -9` would).
    pub(crate) async fn kill(self) {
        self.proc.kill().await;
    }
}

/// A floor server: this binary's `floor` command, bare, or durable with
/// its file in `durable`.
pub(crate) async fn floor(durable: Option<&Path>) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["floor", "--listen", "127.0.0.1:0"]);
    if let Some(dir) = durable {
        command.arg("--durable").arg(dir);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the floor server")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = lines.next_line().await?.context("the floor server exited")?;
    let addr = line
        .strip_prefix("listening ")
        .context("unexpected first line of the floor server")?
        .parse()?;
    Ok((Proc { child }, addr))
}

/// Spawns a peer's server process with output discarded.
pub(crate) fn spawn_quiet(program: &Path, args: &[String]) -> anyhow::Result<Proc> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Proc { child })
}

/// The first of `candidates` that exists, or `name` found on the PATH.
pub(crate) fn find_program(name: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// What `program --version` prints, trimmed.
pub(crate) fn version_of(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}
