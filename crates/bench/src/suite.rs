//! The suite: every workload against truce and its peers, several runs with
//! the systems interleaved in each, figures as medians with min and max,
//! ratios taken within a run. Prints the tables and writes them, with the
//! plots, to the results folder.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    delivery::{self, Delivery, Target},
    etcd, idle, ingest,
    ingest::Window,
    large::{self, Large},
    nats, plot,
    procs::{self, Scratch, Truce, floor as floor_proc},
    reports,
    stats::{Latencies, Runs, group},
};

/// Settings of `suite`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A smoke run of about a minute: one run, short windows, small logs.
    #[arg(long)]
    quick: bool,
    /// Runs of each workload (default: 3, or 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Where the Markdown table and the plots go.
    #[arg(long, default_value = "crates/bench/results")]
    out: PathBuf,
    /// Which parts to run.
    #[arg(long, value_delimiter = ',', default_value = "ingest,delivery,large,footprint")]
    only: Vec<Part>,
}

/// A part of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Ingest,
    Delivery,
    Large,
    Footprint,
}

/// Sizes of one mode.
struct Plan {
    runs: usize,
    window: Window,
    concurrency: [usize; 3],
    bulk_reports: u64,
    /// (subscriptions, writes per second).
    delivery: Vec<(usize, f64)>,
    delivery_seconds: f64,
    /// Rates tried for the highest sustainable one, at 1,000 subscriptions.
    rates: Vec<f64>,
    large_reports: u64,
    queries: usize,
    idle: usize,
}

impl Plan {
    fn new(quick: bool, runs: Option<usize>) -> Plan {
        if quick {
            Plan {
                runs: runs.unwrap_or(1),
                window: Window {
                    warm_up: Duration::from_millis(300),
                    measure: Duration::from_secs(1),
                },
                concurrency: [16, 64, 256],
                bulk_reports: 10_000,
                delivery: vec![(100, 1000.0), (1000, 1000.0), (5000, 100.0)],
                delivery_seconds: 2.0,
                rates: vec![1000.0, 2000.0],
                large_reports: 50_000,
                queries: 200,
                idle: 1000,
            }
        } else {
            Plan {
                runs: runs.unwrap_or(3),
                window: Window {
                    warm_up: Duration::from_secs(1),
                    measure: Duration::from_secs(5),
                },
                concurrency: [16, 64, 256],
                bulk_reports: 100_000,
                delivery: vec![(100, 1000.0), (1000, 1000.0), (5000, 100.0), (5000, 1000.0)],
                delivery_seconds: 10.0,
                rates: vec![1000.0, 1500.0, 2000.0, 4000.0, 8000.0],
                large_reports: 1_000_000,
                queries: 1000,
                idle: 10_000,
            }
        }
    }
}

/// The systems measured.
const TRUCE: &str = "truce SubmitReport (fsync before ack)";
const FLOOR: &str = "raw tonic no-op unary (floor)";
const ETCD: &str = "etcd Put (fsync before ack)";
const JS_ALWAYS: &str = "JetStream publish, sync_interval: always";
const JS_DEFAULT: &str = "JetStream publish, default (no fsync before ack)";

/// Latency figures of one delivery configuration over runs.
#[derive(Default)]
struct DeliveryRuns {
    p50: Runs,
    p99: Runs,
    max: Runs,
    rate: Runs,
    expected: u64,
    lost: u64,
    unexpected: u64,
    last: Option<Latencies>,
}

impl DeliveryRuns {
    fn add(&mut self, d: &Delivery) {
        self.p50.push(d.latencies.quantile_ms(0.5));
        self.p99.push(d.latencies.quantile_ms(0.99));
        self.max.push(d.latencies.max_ms());
        self.rate.push(d.write_rate);
        self.expected += d.expected;
        self.lost += d.lost;
        self.unexpected += d.unexpected;
        self.last = Some(d.latencies.clone());
    }
}

/// Everything measured.
#[derive(Default)]
struct Results {
    notes: Vec<String>,
    peers: Vec<String>,
    ingest: BTreeMap<(&'static str, usize), Runs>,
    ratios: BTreeMap<(&'static str, usize), Runs>,
    bulk: Runs,
    delivery: BTreeMap<(&'static str, usize, u64), DeliveryRuns>,
    p99_ratios: BTreeMap<(&'static str, usize, u64), Runs>,
    sustained: BTreeMap<&'static str, Runs>,
    large: Vec<Large>,
    idle: BTreeMap<&'static str, Runs>,
    idle_count: usize,
}

/// The peers found, or why not.
struct Peers {
    etcd: Result<PathBuf, String>,
    nats: Result<PathBuf, String>,
}

fn find_peers(results: &mut Results) -> Peers {
    let etcd = etcd::binary();
    match &etcd {
        Ok(path) => results
            .peers
            .push(format!("etcd: `{}` ({})", path.display(), procs::version_of(path))),
        Err(why) => results.notes.push(format!("etcd was not run: {why}")),
    }
    let nats = nats::binary().map(|(path, version)| {
        results
            .peers
            .push(format!("nats-server: `{}` ({version})", path.display()));
        path
    });
    if let Err(why) = &nats {
        results.notes.push(format!("JetStream was not run: {why}"));
    }
    Peers { etcd, nats }
}

/// Runs the suite.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(args.quick, args.runs);
    let (low, high) = reports::size_range(10_000);
    anyhow::ensure!(
        (300..=500).contains(&low) && (300..=500).contains(&high),
        "reports must be 300-500 bytes encoded, are {low}-{high}"
    );
    let mut results = Results {
        idle_count: plan.idle,
        ..Default::default()
    };
    results
        .notes
        .push(format!("Reports are {low} to {high} bytes encoded (the first 10,000)."));
    let peers = find_peers(&mut results);
    let started = Instant::now();
    for run in 0..plan.runs {
        eprintln!("run {} of {}", run + 1, plan.runs);
        if args.only.contains(&Part::Ingest) {
            ingest_run(&plan, &peers, run, &mut results).await?;
        }
        if args.only.contains(&Part::Delivery) {
            delivery_run(&plan, &peers, &mut results).await?;
        }
        if args.only.contains(&Part::Large) {
            eprintln!("  large log of {} reports", plan.large_reports);
            results.large.push(large::run(plan.large_reports, plan.queries).await?);
        }
        if args.only.contains(&Part::Footprint) {
            eprintln!("  idle subscriptions");
            let f = idle::truce(plan.idle).await?;
            results.idle.entry("truce").or_default().push(f.per_stream() / 1024.0);
            if let Ok(binary) = &peers.etcd {
                let f = idle::etcd(binary, plan.idle).await?;
                results
                    .idle
                    .entry("etcd watchers")
                    .or_default()
                    .push(f.per_stream() / 1024.0);
            }
        }
    }
    let mode = if args.quick { "quick" } else { "full" };
    let text = render(&results, &plan, mode, started.elapsed());
    println!("{text}");
    std::fs::create_dir_all(&args.out)?;
    let file = if args.quick { "quick.md" } else { "README.md" };
    std::fs::write(args.out.join(file), &text)?;
    draw(&results, &args.out, mode)?;
    eprintln!("wrote {}", args.out.join(file).display());
    Ok(())
}

async fn ingest_run(plan: &Plan, peers: &Peers, run: usize, results: &mut Results) -> anyhow::Result<()> {
    eprintln!("  durable ingest");
    let window = plan.window;
    let key = format!("r{run}");
    let data = Scratch::new("ingest")?;
    let truce = Truce::up(data.path(), &[]).await?;
    let (floor, floor_addr) = floor_proc().await?;
    let floor_endpoint = format!("http://{floor_addr}");
    let etcd = match &peers.etcd {
        Ok(binary) => Some(etcd::Etcd::start(binary).await?),
        Err(_) => None,
    };
    let mut js = Vec::new();
    if let Ok(binary) = &peers.nats {
        for sync in [nats::Sync::Always, nats::Sync::Default] {
            let server = nats::Nats::start(binary, sync).await?;
            let context = server.stream().await?;
            js.push((sync, server, context));
        }
    }
    for (level, &c) in plan.concurrency.iter().enumerate() {
        // Each level its own numbers: every report a new incident.
        let first = level as u64 * 1_000_000;
        let t = ingest::submit(&truce.endpoint("ingest"), c, window, &key, first).await?;
        let f = ingest::submit(&floor_endpoint, c, window, &key, first).await?;
        results.ingest.entry((TRUCE, c)).or_default().push(t);
        results.ingest.entry((FLOOR, c)).or_default().push(f);
        results.ratios.entry(("truce ÷ floor", c)).or_default().push(t / f);
        if let Some(etcd) = &etcd {
            let e = ingest::put(&format!("http://{}", etcd.addr), c, window, first).await?;
            results.ingest.entry((ETCD, c)).or_default().push(e);
            results.ratios.entry(("truce ÷ etcd", c)).or_default().push(t / e);
        }
        for (sync, _, context) in &js {
            let j = ingest::publish(context, c, window, first).await?;
            let name = match sync {
                nats::Sync::Always => JS_ALWAYS,
                nats::Sync::Default => JS_DEFAULT,
            };
            results.ingest.entry((name, c)).or_default().push(j);
            if *sync == nats::Sync::Always {
                results
                    .ratios
                    .entry(("truce ÷ JetStream always", c))
                    .or_default()
                    .push(t / j);
            }
        }
        let peers: Vec<String> = results
            .ingest
            .iter()
            .filter(|((s, level), runs)| *level == c && ![TRUCE, FLOOR].contains(s) && !runs.is_empty())
            .map(|((s, _), runs)| format!("{s} {:.0}/s", runs.values().last().copied().unwrap_or(0.0)))
            .collect();
        eprintln!(
            "    {c} in flight: truce {t:.0}/s, floor {f:.0}/s, {}",
            peers.join(", ")
        );
    }
    let count = plan.bulk_reports;
    let took = ingest::bulk(&truce.endpoint("ingest"), 4, 3_000_000..3_000_000 + count, &key).await?;
    results.bulk.push(count as f64 / took.as_secs_f64());
    drop((truce, floor, etcd, js));
    Ok(())
}

async fn delivery_run(plan: &Plan, peers: &Peers, results: &mut Results) -> anyhow::Result<()> {
    // Every configuration runs on fresh servers, so numbers start again.
    let first = 0;
    for &(subscriptions, rate) in &plan.delivery {
        eprintln!("  delivery: {subscriptions} subscriptions at {rate}/s");
        let writes = (rate * plan.delivery_seconds) as u64;
        let cap = (subscriptions + 10).to_string();
        let data = Scratch::new("delivery")?;
        let truce = Truce::up(
            data.path(),
            &["--max-subscriptions", &cap, "--max-subscriptions-per-caller", &cap],
        )
        .await?;
        let target = Target::Truce {
            ingest: truce.endpoint("ingest"),
            query: truce.endpoint("query"),
        };
        let t = delivery::run(&target, subscriptions, rate, writes, first).await?;
        drop(truce);
        let (floor, addr) = floor_proc().await?;
        let f = delivery::run(
            &Target::Floor(format!("http://{addr}")),
            subscriptions,
            rate,
            writes,
            first,
        )
        .await?;
        drop(floor);
        let key = (subscriptions, rate as u64);
        if f.latencies.len() > 0 {
            results
                .p99_ratios
                .entry(("truce ÷ floor", key.0, key.1))
                .or_default()
                .push(t.latencies.quantile_ms(0.99) / f.latencies.quantile_ms(0.99));
        }
        if let Ok(binary) = &peers.etcd {
            let etcd = etcd::Etcd::start(binary).await?;
            let run = delivery::run(
                &Target::Etcd(format!("http://{}", etcd.addr)),
                subscriptions,
                rate,
                writes,
                first,
            )
            .await;
            // A peer that breaks under a load is a finding, not the end of
            // the suite.
            match run {
                Ok(e) => {
                    results
                        .p99_ratios
                        .entry(("truce ÷ etcd", key.0, key.1))
                        .or_default()
                        .push(t.latencies.quantile_ms(0.99) / e.latencies.quantile_ms(0.99));
                    results
                        .delivery
                        .entry(("etcd Watch", key.0, key.1))
                        .or_default()
                        .add(&e);
                }
                Err(error) => {
                    let note = format!("etcd Watch with {subscriptions} watchers at {rate} writes/s failed: {error:#}");
                    eprintln!("    {note}");
                    if !results.notes.contains(&note) {
                        results.notes.push(note);
                    }
                }
            }
        }
        eprintln!(
            "    truce p99 {:.2} ms (lost {}), floor p99 {:.2} ms (lost {})",
            t.latencies.quantile_ms(0.99),
            t.lost,
            f.latencies.quantile_ms(0.99),
            f.lost
        );
        results.delivery.entry(("truce", key.0, key.1)).or_default().add(&t);
        results
            .delivery
            .entry(("floor broadcast", key.0, key.1))
            .or_default()
            .add(&f);
    }
    // The highest write rate truce sustains at 1,000 subscriptions: every
    // change delivered, at 95% of the asked rate or more, p99 under 100 ms.
    let mut sustained = 0.0;
    for &rate in &plan.rates {
        let writes = (rate * plan.delivery_seconds) as u64;
        let data = Scratch::new("rate")?;
        let truce = Truce::up(
            data.path(),
            &["--max-subscriptions", "1010", "--max-subscriptions-per-caller", "1010"],
        )
        .await?;
        let target = Target::Truce {
            ingest: truce.endpoint("ingest"),
            query: truce.endpoint("query"),
        };
        let d = delivery::run(&target, 1000, rate, writes, first).await?;
        let kept_up = d.lost == 0 && d.write_rate >= 0.95 * rate && d.latencies.quantile_ms(0.99) <= 100.0;
        eprintln!(
            "    {rate}/s to 1,000: achieved {:.0}/s, p99 {:.1} ms, lost {}",
            d.write_rate,
            d.latencies.quantile_ms(0.99),
            d.lost
        );
        if !kept_up {
            break;
        }
        sustained = rate;
    }
    results.sustained.entry("truce").or_default().push(sustained);
    Ok(())
}

/// Markdown of everything measured.
fn render(r: &Results, plan: &Plan, mode: &str, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# truce benchmark results ({mode} mode)\n");
    let _ = writeln!(
        s,
        "Produced by `truce-bench suite{}` in {:.0} s on {}; {} run(s) of each workload, \
         systems interleaved within each run. Figures are medians with (min–max) over runs; \
         ratios are taken within each run, then their median. Client and servers share the machine.\n",
        if mode == "quick" { " --quick" } else { "" },
        took.as_secs_f64(),
        machine(),
        plan.runs
    );
    let _ = writeln!(
        s,
        "What the figures mean, where targets are missed and why, the profiles behind them, \
         and the figures before and after each optimisation: [findings.md](findings.md).\n"
    );
    for peer in &r.peers {
        let _ = writeln!(s, "- {peer}");
    }
    for note in &r.notes {
        let _ = writeln!(s, "- {note}");
    }
    s.push('\n');

    if !r.ingest.is_empty() {
        let _ = writeln!(s, "## Durable ingest: acknowledged writes per second\n");
        let _ = write!(s, "| system |");
        for c in plan.concurrency {
            let _ = write!(s, " {c} in flight |");
        }
        let _ = writeln!(s, "\n|---|{}", "---:|".repeat(plan.concurrency.len()));
        for system in [TRUCE, FLOOR, ETCD, JS_ALWAYS, JS_DEFAULT] {
            if !plan.concurrency.iter().any(|&c| r.ingest.contains_key(&(system, c))) {
                continue;
            }
            let _ = write!(s, "| {system} |");
            for c in plan.concurrency {
                let cell = r.ingest.get(&(system, c)).cloned().unwrap_or_default();
                let _ = write!(s, " {} |", cell.show(0));
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nJetStream's default acknowledges a publish before it is on disk (the server \
             fsyncs every two minutes): it is not durable on acknowledgement and is shown for reference.\n"
        );
        let _ = writeln!(
            s,
            "\n| ratio | {} | target |",
            plan.concurrency.map(|c| format!("{c} in flight")).join(" | ")
        );
        let _ = writeln!(s, "|---|{}---|", "---:|".repeat(plan.concurrency.len()));
        for (name, target) in [
            ("truce ÷ etcd", "≥ 2× at 64 and 256"),
            ("truce ÷ floor", "≥ 0.6 at 64 and 256"),
            ("truce ÷ JetStream always", "≥ 5×"),
        ] {
            let _ = write!(s, "| {name} |");
            for c in plan.concurrency {
                let cell = r.ratios.get(&(name, c)).cloned().unwrap_or_default();
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

    if !r.delivery.is_empty() {
        let _ = writeln!(s, "## End-to-end delivery: acknowledgement to receipt\n");
        let _ = writeln!(
            s,
            "Mixed filters: a quarter of truce's subscriptions see everything, the rest a category, \
             an area or a reporting party. The floor sends every change to every stream; etcd \
             watchers watch all reports (a quarter) or one category's key prefix. \
             \"Undelivered\" counts deliveries still missing 10 s after the last write, when \
             the measurement stops waiting; \"unexpected\" counts duplicates and changes \
             outside a subscriber's filter.\n"
        );
        let _ = writeln!(
            s,
            "| system | subscriptions | writes/s asked | achieved | p50 ms | p99 ms | max ms | deliveries | undelivered | unexpected |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (&(system, subs, rate), d) in &r.delivery {
            let _ = writeln!(
                s,
                "| {system} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                group(subs as f64, 0),
                group(rate as f64, 0),
                d.rate.show(0),
                d.p50.show(2),
                d.p99.show(2),
                d.max.show(1),
                group(d.expected as f64, 0),
                d.lost,
                d.unexpected
            );
        }
        let _ = writeln!(
            s,
            "\n| p99 ratio (same run) | subscriptions | writes/s | ratio | target |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for (&(name, subs, rate), runs) in &r.p99_ratios {
            let target = match (name, subs) {
                ("truce ÷ floor", 100 | 1000) if rate == 1000 => "≤ 2",
                ("truce ÷ etcd", 100) => "≤ 1",
                _ => "",
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {target} |",
                group(subs as f64, 0),
                group(rate as f64, 0),
                runs.show(2)
            );
        }
        if let Some(runs) = r.sustained.get("truce") {
            let _ = writeln!(
                s,
                "\nHighest write rate truce sustained to 1,000 subscriptions (every change delivered, \
                 ≥ 95% of the asked rate, p99 ≤ 100 ms; tried {}): {} writes/s.\n",
                plan.rates.iter().map(|r| group(*r, 0)).collect::<Vec<_>>().join(", "),
                runs.show(0)
            );
        }
    }

    if !r.large.is_empty() {
        let mut fill = Runs::default();
        let mut catch_up = Runs::default();
        let mut p50 = Runs::default();
        let mut p99 = Runs::default();
        let mut disk = Runs::default();
        let mut encoded = Runs::default();
        let mut rss = Runs::default();
        let mut cold = Runs::default();
        for l in &r.large {
            fill.push(l.fill_rate);
            catch_up.push(l.catch_up_rate);
            p50.push(l.query.quantile_ms(0.5));
            p99.push(l.query.quantile_ms(0.99));
            disk.push(l.disk_per_report);
            encoded.push(l.encoded_per_report);
            rss.push(l.resident_bytes as f64 / 1048576.0);
            cold.push(l.cold_start.as_secs_f64());
        }
        let count = group(r.large[0].reports as f64, 0);
        let _ = writeln!(s, "## A log of {count} reports\n");
        let _ = writeln!(s, "| figure | measured | target |");
        let _ = writeln!(s, "|---|---:|---|");
        let _ = writeln!(
            s,
            "| filling it through the bulk stream, reports/s | {} | |",
            fill.show(0)
        );
        let _ = writeln!(
            s,
            "| catch-up: one new subscriber from the start, changes/s | {} | ≥ 200,000 |",
            catch_up.show(0)
        );
        let _ = writeln!(s, "| `ListIncidents`, selective filters, p50 ms | {} | |", p50.show(2));
        let _ = writeln!(
            s,
            "| `ListIncidents`, selective filters, p99 ms | {} | ≤ 5 |",
            p99.show(2)
        );
        let _ = writeln!(s, "| disk per stored report, bytes | {} | |", disk.show(0));
        let _ = writeln!(s, "| encoded report, bytes | {} | |", encoded.show(0));
        let ratio = disk.median() / encoded.median();
        let _ = writeln!(s, "| disk ÷ encoded size | {ratio:.2} | ≤ 2 |");
        let _ = writeln!(
            s,
            "| resident memory of `truce up` holding it, MiB | {} | |",
            rss.show(0)
        );
        let _ = writeln!(s, "| cold start of `truce up` over it, s | {} | ≤ 10 |", cold.show(2));
        s.push('\n');
    }

    if !r.idle.is_empty() {
        let _ = writeln!(s, "## Idle subscriptions: resident memory per stream\n");
        let _ = writeln!(s, "| system | streams | KiB per stream | target |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for (system, runs) in &r.idle {
            let target = if *system == "truce" { "≤ 20 KB" } else { "" };
            let _ = writeln!(
                s,
                "| {system} | {} | {} | {target} |",
                group(r.idle_count as f64, 0),
                runs.show(1)
            );
        }
        s.push('\n');
    }
    s
}

/// The CPU model, core count and kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "an unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores of {model}, Linux {}", kernel.trim())
}

/// The plots: throughput against concurrency, and the delivery latency CDF
/// at 1,000 subscriptions.
fn draw(r: &Results, out: &Path, mode: &str) -> anyhow::Result<()> {
    if !r.ingest.is_empty() {
        let mut series = Vec::new();
        for system in [TRUCE, FLOOR, ETCD, JS_ALWAYS, JS_DEFAULT] {
            let points: Vec<(f64, f64)> = r
                .ingest
                .iter()
                .filter(|((s, _), _)| *s == system)
                .map(|((_, c), runs)| (*c as f64, runs.median()))
                .collect();
            if !points.is_empty() {
                series.push(plot::Series {
                    name: system.to_owned(),
                    points,
                });
            }
        }
        // The rates rise to the right, where a legend would cover them.
        plot::lines(
            &out.join(format!("ingest-{mode}.png")),
            (
                "Acknowledged writes per second against requests in flight",
                "requests in flight",
                "acknowledged/s (median of runs)",
            ),
            &series,
            plot::LegendAt::UpperLeft,
        )?;
    }
    let at_thousand: Vec<plot::Series> = r
        .delivery
        .iter()
        .filter(|((_, subs, rate), _)| *subs == 1000 && *rate == 1000)
        .filter_map(|((system, _, _), d)| {
            d.last.as_ref().map(|l| plot::Series {
                name: (*system).to_owned(),
                points: l.cdf(400),
            })
        })
        .collect();
    if !at_thousand.is_empty() {
        plot::lines(
            &out.join(format!("delivery-cdf-{mode}.png")),
            (
                "Delivery latency, 1,000 subscriptions, 1,000 writes/s (last run)",
                "milliseconds from acknowledgement to receipt",
                "fraction delivered",
            ),
            &at_thousand,
            plot::LegendAt::LowerRight,
        )?;
    }
    Ok(())
}
