//! The suite's delivery part: each workload on truce, the durable floor,
//! the bare floor and etcd, each on fresh servers, one after the other
//! within a run; ratios of p99 taken within the run; and the highest rate
//! 1,000 unfiltered subscribers sustain, for truce and the durable floor.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use crate::{
    client::{Kind, Pool},
    delivery::{self, DRAIN, Delivery, Load, Selection, Target},
    etcd,
    procs::{self, Scratch, Truce},
    stats::{Latencies, Runs, group},
};

/// A system whose delivery is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum System {
    Truce,
    DurableFloor,
    BareFloor,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Truce => "truce",
            System::DurableFloor => "durable floor (group commit + fdatasync, broadcast)",
            System::BareFloor => "bare floor (broadcast)",
            System::Etcd => "etcd Watch",
        }
    }
}

/// Figures of one workload on one system over runs.
#[derive(Default)]
struct Rows {
    p50: Runs,
    p99: Runs,
    max: Runs,
    rate: Runs,
    backlog_seconds: Runs,
    server_cores: Runs,
    client_cores: Runs,
    peak_mib: Runs,
    expected: u64,
    lost: u64,
    unexpected: u64,
    last: Option<Latencies>,
}

impl Rows {
    fn add(&mut self, d: &Delivery, load: &Load) {
        self.p50.push(d.latencies.quantile_ms(0.5));
        self.p99.push(d.latencies.quantile_ms(0.99));
        self.max.push(d.latencies.max_ms());
        self.rate.push(d.write_rate);
        self.backlog_seconds.push(d.backlog_seconds(load));
        self.server_cores.push(d.busy.server);
        self.client_cores.push(d.busy.client);
        self.peak_mib.push(d.peak_resident as f64 / 1048576.0);
        self.expected += d.expected;
        self.lost += d.lost;
        self.unexpected += d.unexpected;
        self.last = Some(d.latencies.clone());
    }
}

/// A workload: what subscribers select, how many, writes per second.
type Workload = (Selection, usize, u64);

/// Everything the delivery part measured.
#[derive(Default)]
pub(super) struct Results {
    rows: BTreeMap<(Workload, System), Rows>,
    /// truce's p99 ÷ the other system's, within a run.
    ratios: BTreeMap<(Workload, System), Runs>,
    sustained: BTreeMap<System, Runs>,
    /// The sustained-rate search's runs, apart from the workloads'.
    ladder: BTreeMap<(u64, System), Rows>,
    pub(super) notes: Vec<String>,
}

impl Results {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The last run's latencies of each system at one workload, for a plot.
    pub(super) fn last_latencies(&self, workload: Workload) -> Vec<(&'static str, &Latencies)> {
        self.rows
            .iter()
            .filter(|((w, _), _)| *w == workload)
            .filter_map(|((_, system), rows)| rows.last.as_ref().map(|l| (system.name(), l)))
            .collect()
    }
}

/// Sizes of the delivery part.
pub(super) struct Plan {
    /// Workloads and the systems each is run on.
    pub(super) workloads: Vec<(Workload, Vec<System>)>,
    pub(super) seconds: f64,
    /// Rates tried for the highest one 1,000 unfiltered subscriptions
    /// sustain, lowest first.
    pub(super) rates: Vec<f64>,
}

/// What a run needs to start the peers.
pub(super) struct Peers<'a> {
    pub(super) etcd: Option<&'a PathBuf>,
}

/// One run of every workload, then the sustained-rate search; the systems
/// of a workload in their order in even runs and the reverse in odd ones.
pub(super) async fn run(plan: &Plan, peers: &Peers<'_>, run: usize, results: &mut Results) -> anyhow::Result<()> {
    let most_writes = plan
        .workloads
        .iter()
        .map(|((_, _, rate), _)| *rate as f64)
        .chain(plan.rates.iter().copied())
        .fold(0.0, f64::max);
    let writes = (most_writes * plan.seconds) as u64;
    let pools = Pools {
        submit: Pool::encode(Kind::Submit, "bench", 0..writes)?,
        put: Pool::encode(Kind::Put, "bench", 0..writes)?,
    };
    for ((selection, subscriptions, rate), systems) in &plan.workloads {
        let load = Load {
            subscriptions: *subscriptions,
            rate: *rate as f64,
            seconds: plan.seconds,
            selection: *selection,
        };
        eprintln!("  delivery: {subscriptions} subscriptions ({selection:?}) at {rate}/s");
        let mut p99 = BTreeMap::new();
        let mut order = systems.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for system in order {
            if system == System::Etcd && peers.etcd.is_none() {
                continue;
            }
            match measure(system, load, &pools, peers).await {
                Ok(d) => {
                    eprintln!(
                        "    {}: p99 {:.2} ms, backlog {:.2} s, lost {}, server {:.2} / client {:.2} cores, peak {:.0} MiB",
                        system.name(),
                        d.latencies.quantile_ms(0.99),
                        d.backlog_seconds(&load),
                        d.lost,
                        d.busy.server,
                        d.busy.client,
                        d.peak_resident as f64 / 1048576.0
                    );
                    p99.insert(system, d.latencies.quantile_ms(0.99));
                    results
                        .rows
                        .entry(((*selection, *subscriptions, *rate), system))
                        .or_default()
                        .add(&d, &load);
                }
                // A peer that breaks under a load is a finding, not the end
                // of the suite.
                Err(error) if system == System::Etcd => {
                    let note = format!("etcd Watch with {subscriptions} watchers at {rate} writes/s failed: {error:#}");
                    eprintln!("    {note}");
                    if !results.notes.contains(&note) {
                        results.notes.push(note);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(&truce) = p99.get(&System::Truce) {
            for (&system, &other) in &p99 {
                if system != System::Truce && other > 0.0 {
                    results
                        .ratios
                        .entry(((*selection, *subscriptions, *rate), system))
                        .or_default()
                        .push(truce / other);
                }
            }
        }
    }
    let mut order = [System::Truce, System::DurableFloor];
    if run % 2 == 1 {
        order.reverse();
    }
    for system in order {
        let mut sustained = 0.0;
        for &rate in &plan.rates {
            let load = Load {
                subscriptions: 1000,
                rate,
                seconds: plan.seconds,
                selection: Selection::Everything,
            };
            let d = measure(system, load, &pools, peers).await?;
            let held = kept_up(&d, &load);
            eprintln!(
                "    {} at {rate}/s to 1,000: achieved {:.0}/s, backlog {:.2} s, lost {}, p99 {:.1} ms, peak {:.0} MiB{}",
                system.name(),
                d.write_rate,
                d.backlog_seconds(&load),
                d.lost,
                d.latencies.quantile_ms(0.99),
                d.peak_resident as f64 / 1048576.0,
                if held { "" } else { ": not sustained" }
            );
            results.ladder.entry((rate as u64, system)).or_default().add(&d, &load);
            if !held {
                break;
            }
            sustained = rate;
        }
        results.sustained.entry(system).or_default().push(sustained);
    }
    Ok(())
}

/// Whether a system kept up with a load: the writes went at 95% of the
/// asked rate or more, the backlog when they ended was under half a second
/// of deliveries, and nothing was missing after the drain.
fn kept_up(d: &Delivery, load: &Load) -> bool {
    d.write_rate >= 0.95 * load.rate && d.backlog_seconds(load) <= MAX_BACKLOG_SECONDS && d.lost == 0
}

/// The most backlog, in seconds of deliveries, a system that keeps up may
/// have when the writes end.
const MAX_BACKLOG_SECONDS: f64 = 0.5;

/// The requests, encoded once for every system.
struct Pools {
    submit: Pool,
    put: Pool,
}

/// One workload on fresh servers of `system`.
async fn measure(system: System, load: Load, pools: &Pools, peers: &Peers<'_>) -> anyhow::Result<Delivery> {
    let data = Scratch::new("delivery")?;
    match system {
        System::Truce => {
            let cap = (load.subscriptions + 10).to_string();
            let truce = Truce::up(
                data.path(),
                &["--max-subscriptions", &cap, "--max-subscriptions-per-caller", &cap],
            )
            .await?;
            let target = Target::Truce {
                ingest: truce.endpoint("ingest"),
                query: truce.endpoint("query"),
            };
            let pids: Vec<u32> = truce.proc().pid().into_iter().collect();
            delivery::run(&target, load, &pools.submit, &pids).await
        }
        System::DurableFloor | System::BareFloor => {
            let durable = (system == System::DurableFloor).then(|| data.path());
            let (floor, addr) = procs::floor(durable).await?;
            let pids: Vec<u32> = floor.pid().into_iter().collect();
            delivery::run(&Target::Floor(format!("http://{addr}")), load, &pools.submit, &pids).await
        }
        System::Etcd => {
            let binary = peers.etcd.ok_or_else(|| anyhow::anyhow!("etcd was not found"))?;
            let etcd = etcd::Etcd::start(binary).await?;
            let pids: Vec<u32> = etcd.proc.pid().into_iter().collect();
            delivery::run(&Target::Etcd(format!("http://{}", etcd.addr)), load, &pools.put, &pids).await
        }
    }
}

/// The delivery section of the results.
pub(super) fn render(r: &Results, plan: &Plan, s: &mut String) {
    if r.is_empty() {
        return;
    }
    let _ = writeln!(s, "## End-to-end delivery: from the writer's send to receipt\n");
    let _ = writeln!(
        s,
        "One writer at a fixed rate for {seconds:.0} s, each report carrying the time the writer took just \
         before sending it; every subscriber reads that time from what it receives. The same client, \
         requests (encoded once, ahead), messages and subscribers for every system, each on fresh servers. \
         \"Unfiltered\": every subscription takes everything. \"Mixed filters\": a quarter everything, the \
         rest a category, an area or a reporting party, applied by truce and by both floors in truce's \
         filter language (etcd can select by key prefix only, so it runs unfiltered only). \
         \"Backlog\": deliveries still missing when the last write was acknowledged, in seconds of \
         deliveries at the asked rate. \"Undelivered\": still missing {drain} s later. \"Unexpected\": \
         duplicates and changes outside a subscriber's filter. CPU is cores kept busy from the first write \
         to the end of the drain (servers; the bench's own client and subscribers). Peak: the servers' \
         largest resident memory, sampled every 100 ms.\n",
        seconds = plan.seconds,
        drain = DRAIN.as_secs()
    );
    let _ = writeln!(
        s,
        "| selection | system | subs | writes/s asked | achieved | p50 ms | p99 ms | max ms | backlog s | deliveries | undelivered | unexpected | server cores | client cores | peak MiB |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (&((selection, subs, rate), system), d) in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            selection_name(selection),
            system.name(),
            group(subs as f64, 0),
            group(rate as f64, 0),
            d.rate.show(0),
            d.p50.show(2),
            d.p99.show(2),
            d.max.show(1),
            d.backlog_seconds.show(2),
            group(d.expected as f64, 0),
            d.lost,
            d.unexpected,
            d.server_cores.show(2),
            d.client_cores.show(2),
            d.peak_mib.show(0)
        );
    }
    let _ = writeln!(
        s,
        "\n| p99 ratio (same run) | selection | subs | writes/s | ratio | target |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for (&((selection, subs, rate), system), runs) in &r.ratios {
        let target = match system {
            System::DurableFloor
                if selection == Selection::Everything && [100, 1000].contains(&subs) && [250, 1000].contains(&rate) =>
            {
                "≤ 1.5"
            }
            _ => "",
        };
        let _ = writeln!(
            s,
            "| truce ÷ {} | {} | {} | {} | {} | {target} |",
            system.name(),
            selection_name(selection),
            group(subs as f64, 0),
            group(rate as f64, 0),
            runs.show(2)
        );
    }
    let tried = plan.rates.iter().map(|r| group(*r, 0)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        s,
        "\nHighest write rate 1,000 unfiltered subscriptions sustain (achieved ≥ 95% of the asked rate, \
         backlog when the writes ended ≤ {MAX_BACKLOG_SECONDS} s, nothing undelivered; tried {tried}, \
         stopping at the first rate not sustained):\n"
    );
    let _ = writeln!(
        s,
        "| writes/s asked | system | runs | achieved | p99 ms | backlog s | undelivered | peak MiB |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for (&(rate, system), d) in &r.ladder {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            group(rate as f64, 0),
            system.name(),
            d.rate.len(),
            d.rate.show(0),
            d.p99.show(2),
            d.backlog_seconds.show(2),
            d.lost,
            d.peak_mib.show(0)
        );
    }
    s.push('\n');
    let _ = writeln!(s, "| system | writes/s sustained |");
    let _ = writeln!(s, "|---|---:|");
    for (system, runs) in &r.sustained {
        let _ = writeln!(s, "| {} | {} |", system.name(), runs.show(0));
    }
    if let (Some(truce), Some(floor)) = (r.sustained.get(&System::Truce), r.sustained.get(&System::DurableFloor)) {
        let ratio = truce.median() / floor.median();
        let _ = writeln!(
            s,
            "\ntruce ÷ durable floor, sustained rate: {ratio:.2} (target ≥ 0.9).\n"
        );
    }
}

fn selection_name(selection: Selection) -> &'static str {
    match selection {
        Selection::Everything => "unfiltered",
        Selection::Mixed => "mixed filters",
    }
}
