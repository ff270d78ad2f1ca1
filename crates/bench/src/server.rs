//! Starting a `truce up` process and reading its resident memory.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, process::Stdio};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running `truce up`.
pub(crate) struct Server {
    child: Child,
    /// Where each service listens.
    pub(crate) addresses: HashMap<String, SocketAddr>,
    _data: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `truce` binary beside this one.
fn truce_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let truce = exe.with_file_name("truce");
    anyhow::ensure!(
        truce.exists(),
        "{} not found: cargo build --release -p truce",
        truce.display()
    );
    Ok(truce)
}

impl Server {
    /// Starts `truce up` on ephemeral loopback ports with a fresh data
    /// directory, and `extra` flags.
    pub(crate) async fn start(extra: &[&str]) -> anyhow::Result<Server> {
        let data = std::env::temp_dir().join(format!("truce-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut child = Command::new(truce_binary()?)
            .args([
                "up",
                "--ingest-listen",
                "127.0.0.1:0",
                "--query-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting truce up")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut addresses = HashMap::new();
        while addresses.len() < 2 {
            let line = lines.next_line().await?.context("truce up exited before listening")?;
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
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            addresses,
            _data: TempDir(data),
        })
    }

    /// The process's resident memory, in bytes.
    pub(crate) fn resident_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("server exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no VmRSS")?
            .parse()?;
        Ok(kib * 1024)
    }
}
