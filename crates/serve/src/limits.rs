//! Per-principal rate limits: a token bucket per principal and kind of
//! call, so one party flooding the service cannot crowd out the others.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; a call
//! takes one token per report it writes or per query it makes. A call that
//! finds too few is refused with RESOURCE_EXHAUSTED and a RetryInfo saying
//! when enough will be back. Anonymous loopback callers (insecure mode) are
//! not limited.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use truce_proto::ServiceError;

/// A steady rate with room for bursts; `per_second == 0` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: u32,
    /// The most tokens a bucket holds.
    pub burst: u32,
}

/// The limits of every principal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Reports submitted, amended or retracted, and reviews.
    pub writes: Rate,
    /// Queries, subscriptions and log reads.
    pub reads: Rate,
}

impl RateLimits {
    /// No limits.
    pub const UNLIMITED: RateLimits = RateLimits {
        writes: Rate {
            per_second: 0,
            burst: 0,
        },
        reads: Rate {
            per_second: 0,
            burst: 0,
        },
    };
}

impl Default for RateLimits {
    /// Generous for any one desk (a bulk import of 2,000 reports goes at
    /// once), tight enough that a runaway client cannot hog the sequencer.
    fn default() -> Self {
        RateLimits {
            writes: Rate {
                per_second: 200,
                burst: 2000,
            },
            reads: Rate {
                per_second: 500,
                burst: 1000,
            },
        }
    }
}

/// Which bucket a call draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// Writes.
    Write,
    /// Reads.
    Read,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// Buckets by principal name and call kind.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    // Held only to update one bucket: never across an await.
    buckets: Mutex<HashMap<(String, CallKind), Bucket>>,
}

impl RateLimiter {
    /// Limiting to `limits`.
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens from `principal`'s bucket of `kind`, or says how
    /// long until they are there.
    pub fn charge(&self, principal: &str, kind: CallKind, cost: u32) -> Result<(), ServiceError> {
        self.charge_at(principal, kind, cost, Instant::now())
    }

    fn charge_at(&self, principal: &str, kind: CallKind, cost: u32, now: Instant) -> Result<(), ServiceError> {
        let rate = match kind {
            CallKind::Write => self.limits.writes,
            CallKind::Read => self.limits.reads,
        };
        if rate.per_second == 0 {
            return Ok(());
        }
        let per_second = f64::from(rate.per_second);
        let burst = f64::from(rate.burst.max(1));
        let cost = f64::from(cost).min(burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry((principal.to_owned(), kind)).or_insert(Bucket {
            tokens: burst,
            refilled_at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled_at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let retry_after = Duration::from_secs_f64((cost - bucket.tokens) / per_second);
        let what = match kind {
            CallKind::Write => "writes",
            CallKind::Read => "reads",
        };
        Err(ServiceError::RateLimited {
            message: format!(
                "principal {principal:?} is over its limit of {} {what} per second (burst {}); retry in {} ms",
                rate.per_second,
                rate.burst,
                retry_after.as_millis().max(1)
            ),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimits {
            writes: Rate {
                per_second: 10,
                burst: 5,
            },
            reads: Rate {
                per_second: 0,
                burst: 0,
            },
        })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_says_when_to_retry() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.charge_at("idf-desk", CallKind::Write, 1, start).unwrap();
        }
        let Err(ServiceError::RateLimited { retry_after, .. }) =
            limiter.charge_at("idf-desk", CallKind::Write, 1, start)
        else {
            panic!("the sixth write in the same instant must be refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // Others have buckets of their own; reads are unlimited here.
        limiter.charge_at("hamas-desk", CallKind::Write, 1, start).unwrap();
        limiter.charge_at("idf-desk", CallKind::Read, 1_000, start).unwrap();
        // After the delay it asked for, the write passes.
        limiter
            .charge_at("idf-desk", CallKind::Write, 1, start + retry_after)
            .unwrap();
    }

    #[test]
    fn unlimited_when_the_rate_is_zero() {
        let limiter = RateLimiter::new(RateLimits::UNLIMITED);
        for _ in 0..10_000 {
            limiter.charge("anyone", CallKind::Write, 1).unwrap();
        }
    }
}
