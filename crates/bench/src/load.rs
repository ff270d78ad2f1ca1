//! Load drivers: a closed loop with a fixed number of requests in flight,
//! and an open loop at a fixed rate; and connections spread over several
//! HTTP/2 connections as a real client fleet would be.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

/// `count` separate connections to `endpoint`.
pub(crate) async fn channels(endpoint: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        out.push(channel);
    }
    Ok(out)
}

/// Keeps `concurrency` calls in flight for `warm_up + measure`; returns the
/// calls completed per second within the `measure` window. `call(n)` makes
/// call number `n` (numbers are handed out in order, once each). Any failed
/// call fails the measurement.
pub(crate) async fn closed_loop<F, Fut>(
    concurrency: usize,
    warm_up: Duration,
    measure: Duration,
    call: F,
) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (from, until) = (start + warm_up, start + warm_up + measure);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, done, call) = (Arc::clone(&next), Arc::clone(&done), call.clone());
        tasks.spawn(async move {
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                call(n).await?;
                let now = Instant::now();
                if now >= from && now < until {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / measure.as_secs_f64())
}

/// Starts call `n` of `0..count` at `start + n / rate`, each in its own
/// task so a slow call delays no other; returns once every call completed.
pub(crate) async fn open_loop<F, Fut>(rate: f64, count: u64, call: F) -> anyhow::Result<Duration>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
        tasks.spawn(call(n));
        while let Some(result) = tasks.try_join_next() {
            result??;
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(start.elapsed())
}
