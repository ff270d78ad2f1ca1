//! Memory per stalled subscriber: clients that subscribe from the start of
//! a long log and then never read, each on its own connection, granting
//! the largest HTTP/2 windows there are (so flow control holds nothing
//! back) and a 4 KiB socket receive buffer (so the kernel takes little off
//! the server's hands). What the server holds for them is its resident
//! memory after they stalled, less what it had before.

use std::time::Duration;

use anyhow::Context;
use prost::Message;
use tokio::{io::AsyncWriteExt, net::TcpSocket};
use truce_proto::v1;

use crate::{
    idle::Footprint,
    procs::{Scratch, Truce},
    reports,
};

/// Settings of `stalled-subscriptions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Stalled subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Reports in the log each one is sent from the start (far more than
    /// every buffer on the way holds).
    #[arg(long, default_value_t = 5000)]
    reports: u64,
}

/// `subscribers` stalled subscribers of a fresh `truce up` holding
/// `reports` reports.
pub(crate) async fn truce(subscribers: usize, reports: u64) -> anyhow::Result<Footprint> {
    let data = Scratch::new("stalled")?;
    let server = Truce::up(data.path(), &[]).await?;
    fill(&server.endpoint("ingest"), reports).await?;
    let query: std::net::SocketAddr = server
        .endpoint("query")
        .trim_start_matches("http://")
        .parse()
        .context("the query address")?;
    // Let the writes settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.proc().resident_bytes()?;
    let mut stalled = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut stream = socket.connect(query).await?;
        stream.write_all(&subscribe_and_never_read()).await?;
        stalled.push(stream);
    }
    // Until the server has filled what it will fill (well before the 60 s
    // stall timeout ends the subscriptions).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = server.proc().resident_bytes()?;
    drop(stalled);
    Ok(Footprint {
        before,
        after,
        count: subscribers,
    })
}

/// Submits `count` reports, 16 at a time.
async fn fill(endpoint: &str, count: u64) -> anyhow::Result<()> {
    let client = v1::ingest_service_client::IngestServiceClient::connect(endpoint.to_owned()).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..16 {
        let mut client = client.clone();
        tasks.spawn(async move {
            for n in (lane..count).step_by(16) {
                client.submit_report(reports::request("stalled", n)).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// The bytes of an HTTP/2 connection that grants all the room there is and
/// subscribes from the beginning: preface, SETTINGS (initial window 2^31-1),
/// a WINDOW_UPDATE of the connection to the same, and the call.
fn subscribe_and_never_read() -> Vec<u8> {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    };
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = 0x4u16.to_be_bytes().to_vec();
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    out.extend(frame(0x4, 0, 0, &settings));
    out.extend(frame(0x8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes()));
    // HPACK: static :method POST and :scheme http, the rest literal.
    let mut block = vec![0x83, 0x86];
    for (name, value) in [
        (":path", "/truce.v1.QueryService/Subscribe"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        for text in [name, value] {
            block.push(text.len() as u8);
            block.extend_from_slice(text.as_bytes());
        }
    }
    out.extend(frame(0x1, 0x4, 1, &block));
    let request = v1::SubscribeRequest {
        start: Some(v1::subscribe_request::Start::FromBeginning(true)),
        heartbeat_interval: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let mut message = vec![0u8];
    message.extend_from_slice(&(request.len() as u32).to_be_bytes());
    message.extend_from_slice(&request);
    out.extend(frame(0x0, 0x1, 1, &message));
    out
}

/// Prints the figure.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let f = truce(args.subscribers, args.reports).await?;
    println!("| stalled subscribers | log | server RSS before | server RSS after | per subscriber |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} reports | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        args.subscribers,
        args.reports,
        f.before as f64 / 1048576.0,
        f.after as f64 / 1048576.0,
        f.per_stream() / 1024.0
    );
    Ok(())
}
