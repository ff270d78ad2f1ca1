//! The suite: every workload against truce and its peers, several runs with
//! the systems interleaved in each, figures as medians with min and max,
//! ratios taken within a run. Prints the tables and writes them, with the
//! plots, to the results folder.

mod delivery;
mod ingest;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    delivery::Selection,
    etcd, idle,
    ingest::Window,
    large::{self, Large},
    nats, plot, procs, reports,
    stats::{Runs, group},
};

/// Settings of `suite`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A smoke run of a few minutes: one run, short windows, small logs.
    /// Its figures are not for comparison.
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
    ingest: ingest::Plan,
    delivery: delivery::Plan,
    large_reports: u64,
    queries: usize,
    idle: usize,
}

impl Plan {
    fn new(quick: bool, runs: Option<usize>) -> Plan {
        use Selection::{Everything, Mixed};
        use delivery::System::{BareFloor, DurableFloor, Etcd, Truce};
        let every = || vec![Truce, DurableFloor, BareFloor, Etcd];
        let filtered = || vec![Truce, DurableFloor, BareFloor];
        if quick {
            Plan {
                runs: runs.unwrap_or(1),
                ingest: ingest::Plan {
                    window: Window {
                        warm_up: Duration::from_millis(500),
                        measure: Duration::from_secs(2),
                    },
                    concurrency: [16, 64, 256],
                    bulk_reports: 10_000,
                },
                delivery: delivery::Plan {
                    workloads: vec![
                        ((Everything, 100, 1000), every()),
                        ((Everything, 1000, 1000), every()),
                        ((Mixed, 1000, 1000), filtered()),
                    ],
                    seconds: 3.0,
                    rates: vec![1000.0, 2000.0],
                },
                large_reports: 50_000,
                queries: 200,
                idle: 1000,
            }
        } else {
            Plan {
                runs: runs.unwrap_or(3),
                ingest: ingest::Plan {
                    window: Window {
                        warm_up: Duration::from_secs(1),
                        measure: Duration::from_secs(10),
                    },
                    concurrency: [16, 64, 256],
                    bulk_reports: 100_000,
                },
                delivery: delivery::Plan {
                    workloads: vec![
                        ((Everything, 100, 250), every()),
                        ((Everything, 100, 1000), every()),
                        ((Everything, 1000, 250), every()),
                        ((Everything, 1000, 1000), every()),
                        ((Everything, 5000, 100), every()),
                        ((Mixed, 1000, 1000), filtered()),
                    ],
                    seconds: 10.0,
                    rates: vec![500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0],
                },
                large_reports: 1_000_000,
                queries: 1000,
                idle: 10_000,
            }
        }
    }
}

/// Everything measured.
#[derive(Default)]
struct Results {
    notes: Vec<String>,
    peers: Vec<String>,
    ingest: ingest::Results,
    delivery: delivery::Results,
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
            eprintln!("  durable ingest");
            let ingest_peers = ingest::Peers {
                etcd: peers.etcd.as_ref().ok(),
                nats: peers.nats.as_ref().ok(),
            };
            ingest::run(&plan.ingest, &ingest_peers, run, &mut results.ingest).await?;
        }
        if args.only.contains(&Part::Delivery) {
            let delivery_peers = delivery::Peers {
                etcd: peers.etcd.as_ref().ok(),
            };
            delivery::run(&plan.delivery, &delivery_peers, run, &mut results.delivery).await?;
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

/// Markdown of everything measured.
fn render(r: &Results, plan: &Plan, mode: &str, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# truce benchmark results ({mode} mode)\n");
    let _ = writeln!(
        s,
        "Produced by `truce-bench suite{}` in {:.0} s on {}; {} run(s) of each workload, \
         systems one after the other within each run, in reverse order every other run. Figures are medians with (min–max) over runs; \
         ratios are taken within each run, then their median. Client and servers share the machine; \
         the CPU each used is reported beside its figures.\n",
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
    for note in r.notes.iter().chain(&r.delivery.notes) {
        let _ = writeln!(s, "- {note}");
    }
    s.push('\n');
    ingest::render(&r.ingest, &plan.ingest, &mut s);
    delivery::render(&r.delivery, &plan.delivery, &mut s);
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
/// at 1,000 unfiltered subscriptions and 1,000 writes/s.
fn draw(r: &Results, out: &Path, mode: &str) -> anyhow::Result<()> {
    let series: Vec<plot::Series> = r
        .ingest
        .series()
        .into_iter()
        .map(|(name, points)| plot::Series {
            name: name.to_owned(),
            points,
        })
        .collect();
    if !series.is_empty() {
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
        .last_latencies((Selection::Everything, 1000, 1000))
        .into_iter()
        .map(|(name, latencies)| plot::Series {
            name: name.to_owned(),
            points: latencies.cdf(400),
        })
        .collect();
    if !at_thousand.is_empty() {
        plot::lines(
            &out.join(format!("delivery-cdf-{mode}.png")),
            (
                "Delivery latency, 1,000 unfiltered subscriptions, 1,000 writes/s (last run)",
                "milliseconds from the writer's send to receipt",
                "fraction delivered",
            ),
            &at_thousand,
            plot::LegendAt::LowerRight,
        )?;
    }
    Ok(())
}
