//! CPU time used during a measurement, by the servers measured and by the
//! bench's own client, from `/proc`: so a figure comes with what it cost,
//! and a client that takes the cores from a server shows.

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, fixed at 100 on
/// Linux for every architecture the bench runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU seconds of process `pid` (all its threads) so far.
fn seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13
    // after the state.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Cores kept busy, on average, over a measurement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Busy {
    /// The servers measured.
    pub(crate) server: f64,
    /// The bench's own process: the load client and the subscribers.
    pub(crate) client: f64,
}

/// Started at the beginning of a measurement.
pub(crate) struct Meter {
    servers: Vec<u32>,
    server_start: f64,
    client_start: f64,
    started: Instant,
}

impl Meter {
    /// Starts counting for the server processes `servers` and this one.
    pub(crate) fn start(servers: &[u32]) -> Meter {
        Meter {
            servers: servers.to_vec(),
            server_start: Self::servers_now(servers),
            client_start: seconds("self").unwrap_or(0.0),
            started: Instant::now(),
        }
    }

    fn servers_now(servers: &[u32]) -> f64 {
        servers.iter().filter_map(|pid| seconds(&pid.to_string())).sum()
    }

    /// Cores kept busy since the start.
    pub(crate) fn stop(&self) -> Busy {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        Busy {
            server: (Self::servers_now(&self.servers) - self.server_start) / wall,
            client: (seconds("self").unwrap_or(0.0) - self.client_start) / wall,
        }
    }
}

/// Resident memory of process `pid`, in bytes.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The largest resident memory of the servers, sampled every 100 ms.
pub(crate) struct PeakResident {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakResident {
    /// Starts sampling the sum over `servers`.
    pub(crate) fn watch(servers: &[u32]) -> PeakResident {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (servers, shared) = (servers.to_vec(), std::sync::Arc::clone(&peak));
        let sampler = tokio::spawn(async move {
            loop {
                let now: u64 = servers.iter().filter_map(|&pid| resident_bytes(pid)).sum();
                shared.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        PeakResident { peak, sampler }
    }

    /// The largest seen, in bytes.
    pub(crate) fn stop(self) -> u64 {
        self.sampler.abort();
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}
