//! The suite's ingest part: acknowledged writes per second at a fixed
//! number of requests in flight, for truce, the no-op floor, the durable
//! floor, etcd and JetStream, each on fresh servers at each level, all
//! driven by one client from requests encoded ahead; the CPU each used;
//! and truce's bulk stream.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use crate::{
    client::{Kind, Pool, Writer},
    cpu, etcd,
    ingest::{self, POOL_CALLS_PER_SECOND, Window},
    nats,
    procs::{self, Scratch, Truce},
    stats::{Runs, group},
};

/// A system whose ingest is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum System {
    Truce,
    NoOpFloor,
    DurableFloor,
    Etcd,
    JetStreamAlways,
    JetStreamDefault,
}

impl System {
    const ALL: [System; 6] = [
        System::Truce,
        System::NoOpFloor,
        System::DurableFloor,
        System::Etcd,
        System::JetStreamAlways,
        System::JetStreamDefault,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Truce => "truce SubmitReport (fsync before ack)",
            System::NoOpFloor => "no-op floor (answers at once)",
            System::DurableFloor => "durable floor (group commit + fdatasync before ack)",
            System::Etcd => "etcd Put (fsync before ack)",
            System::JetStreamAlways => "JetStream publish, sync_interval: always",
            System::JetStreamDefault => "JetStream publish, default (no fsync before ack)",
        }
    }
}

/// Sizes of the ingest part.
pub(super) struct Plan {
    pub(super) window: Window,
    pub(super) concurrency: [usize; 3],
    pub(super) bulk_reports: u64,
}

/// The peers found.
pub(super) struct Peers<'a> {
    pub(super) etcd: Option<&'a PathBuf>,
    pub(super) nats: Option<&'a PathBuf>,
}

/// One system's figures at one level over runs.
#[derive(Default)]
struct Rows {
    rate: Runs,
    server_cores: Runs,
    client_cores: Runs,
}

/// Everything the ingest part measured.
#[derive(Default)]
pub(super) struct Results {
    rows: BTreeMap<(System, usize), Rows>,
    /// truce's rate ÷ the other system's, within a run.
    ratios: BTreeMap<(System, usize), Runs>,
    bulk: Runs,
}

impl Results {
    /// (system, points of (in flight, median rate)) for a plot.
    pub(super) fn series(&self) -> Vec<(&'static str, Vec<(f64, f64)>)> {
        System::ALL
            .iter()
            .map(|&system| {
                let points = self
                    .rows
                    .iter()
                    .filter(|((s, _), _)| *s == system)
                    .map(|((_, c), rows)| (*c as f64, rows.rate.median()))
                    .collect::<Vec<_>>();
                (system.name(), points)
            })
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }
}

/// Servers of one system (and their data), held while measured and
/// ended when dropped.
type Running = Box<dyn std::any::Any + Send>;

/// One run: every level, every system on fresh servers, in the order of
/// [`System::ALL`] in even runs and the reverse in odd ones, so that no
/// system always follows the same one.
pub(super) async fn run(plan: &Plan, peers: &Peers<'_>, run: usize, results: &mut Results) -> anyhow::Result<()> {
    let window = plan.window;
    let calls = POOL_CALLS_PER_SECOND * (window.warm_up + window.measure).as_secs().max(1);
    let submit = Pool::encode(Kind::Submit, "bench", 0..calls)?;
    let put = Pool::encode(Kind::Put, "bench", 0..100_000)?;
    let publish = Pool::encode(Kind::Publish, "bench", 0..100_000)?;
    for &c in &plan.concurrency {
        let mut rates = BTreeMap::new();
        let mut order = System::ALL.to_vec();
        if run % 2 == 1 {
            order.reverse();
        }
        for system in order {
            let data = Scratch::new("ingest")?;
            let Some((running, writer, pids)) = start(system, data.path(), peers).await? else {
                continue;
            };
            let pool = match system {
                System::Etcd => &put,
                System::JetStreamAlways | System::JetStreamDefault => &publish,
                _ => &submit,
            };
            let meter = cpu::Meter::start(&pids);
            let rate = ingest::closed(writer, pool, c, window).await?;
            let busy = meter.stop();
            drop(running);
            rates.insert(system, rate);
            let rows = results.rows.entry((system, c)).or_default();
            rows.rate.push(rate);
            rows.server_cores.push(busy.server);
            rows.client_cores.push(busy.client);
        }
        if let Some(&truce) = rates.get(&System::Truce) {
            for (&system, &rate) in &rates {
                if system != System::Truce && rate > 0.0 {
                    results.ratios.entry((system, c)).or_default().push(truce / rate);
                }
            }
        }
        let shown: Vec<String> = rates
            .iter()
            .map(|(system, rate)| format!("{} {rate:.0}/s", system.name()))
            .collect();
        eprintln!("    {c} in flight: {}", shown.join(", "));
    }
    let data = Scratch::new("bulk")?;
    let truce = Truce::up(data.path(), &[]).await?;
    let count = plan.bulk_reports;
    let took = ingest::bulk(&truce.endpoint("ingest"), 4, 3_000_000..3_000_000 + count, "bulk").await?;
    results.bulk.push(count as f64 / took.as_secs_f64());
    Ok(())
}

/// Starts `system` with its data in `data`; `None` when its peer binary
/// was not found.
async fn start(
    system: System,
    data: &std::path::Path,
    peers: &Peers<'_>,
) -> anyhow::Result<Option<(Running, Writer, Vec<u32>)>> {
    Ok(Some(match system {
        System::Truce => {
            let truce = Truce::up(data, &[]).await?;
            let writer = Writer::grpc(Kind::Submit, &truce.endpoint("ingest")).await?;
            let pids = truce.proc().pid().into_iter().collect();
            (Box::new(truce) as Running, writer, pids)
        }
        System::NoOpFloor | System::DurableFloor => {
            let durable = (system == System::DurableFloor).then_some(data);
            let (floor, addr) = procs::floor(durable).await?;
            let writer = Writer::grpc(Kind::Submit, &format!("http://{addr}")).await?;
            let pids = floor.pid().into_iter().collect();
            (Box::new(floor) as Running, writer, pids)
        }
        System::Etcd => {
            let Some(binary) = peers.etcd else { return Ok(None) };
            let etcd = etcd::Etcd::start(binary).await?;
            let writer = Writer::grpc(Kind::Put, &format!("http://{}", etcd.addr)).await?;
            let pids = etcd.proc.pid().into_iter().collect();
            (Box::new(etcd) as Running, writer, pids)
        }
        System::JetStreamAlways | System::JetStreamDefault => {
            let Some(binary) = peers.nats else { return Ok(None) };
            let sync = if system == System::JetStreamAlways {
                nats::Sync::Always
            } else {
                nats::Sync::Default
            };
            let server = nats::Nats::start(binary, sync).await?;
            let writer = ingest::publisher(&server.stream().await?);
            let pids = server.pid().into_iter().collect();
            (Box::new(server) as Running, writer, pids)
        }
    }))
}

/// The ingest section of the results.
pub(super) fn render(r: &Results, plan: &Plan, s: &mut String) {
    if r.rows.is_empty() {
        return;
    }
    let levels = plan.concurrency;
    let _ = writeln!(s, "## Durable ingest: acknowledged writes per second\n");
    let _ = writeln!(
        s,
        "A closed loop with a fixed number of calls in flight over 4 connections, {:.0} s measured after {:.0} s \
         of warm-up, each system on fresh servers. Every request is encoded before the measurement and sent \
         as the same bytes to every system (the reports are the payload etcd and JetStream store), so the \
         client's own cost is the RPC layer's and the same for all.\n",
        plan.window.measure.as_secs_f64(),
        plan.window.warm_up.as_secs_f64()
    );
    let header = levels.map(|c| format!("{c} in flight")).join(" | ");
    by_system(r, levels, s, |rows| rows.rate.show(0).to_string());
    let _ = writeln!(
        s,
        "\nJetStream's default acknowledges a publish before it is on disk (the server fsyncs every two \
         minutes): it is not durable on acknowledgement and is shown for reference.\n"
    );
    let _ = writeln!(
        s,
        "CPU, cores kept busy over the warm-up and window: server / client.\n"
    );
    by_system(r, levels, s, |rows| {
        format!("{:.2} / {:.2}", rows.server_cores.median(), rows.client_cores.median())
    });
    let _ = writeln!(s, "\n| ratio (same run) | {header} | target |");
    let _ = writeln!(s, "|---|{}---|", "---:|".repeat(levels.len()));
    for (system, target) in [
        (System::NoOpFloor, "≥ 0.6 at 64 and 256"),
        (System::DurableFloor, "≥ 0.85 at 64 and 256"),
        (System::Etcd, ""),
        (System::JetStreamAlways, ""),
    ] {
        if !levels.iter().any(|&c| r.ratios.contains_key(&(system, c))) {
            continue;
        }
        let _ = write!(s, "| truce ÷ {} |", system.name());
        for c in levels {
            let cell = r.ratios.get(&(system, c)).cloned().unwrap_or_default();
            let _ = write!(s, " {} |", cell.show(2));
        }
        let _ = writeln!(s, " {target} |");
    }
    let _ = writeln!(
        s,
        "\nBulk stream (4 streams, {} reports): {} reports/s.\n",
        group(plan.bulk_reports as f64, 0),
        r.bulk.show(0)
    );
}

/// A table with a row per system measured and a column per level, each
/// cell what `cell` makes of the system's figures there.
fn by_system(r: &Results, levels: [usize; 3], s: &mut String, cell: impl Fn(&Rows) -> String) {
    let header = levels.map(|c| format!("{c} in flight")).join(" | ");
    let _ = writeln!(s, "| system | {header} |");
    let _ = writeln!(s, "|---|{}", "---:|".repeat(levels.len()));
    for system in System::ALL {
        if !levels.iter().any(|&c| r.rows.contains_key(&(system, c))) {
            continue;
        }
        let _ = write!(s, "| {} |", system.name());
        for c in levels {
            let shown = r.rows.get(&(system, c)).map_or_else(|| "not run".to_owned(), &cell);
            let _ = write!(s, " {shown} |");
        }
        s.push('\n');
    }
}
