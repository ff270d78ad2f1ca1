//! Caps on concurrent long-lived streams (subscriptions on the query port,
//! log readers on the ingest port): in all, per party and per caller
//! address. Counting per party, not per principal, keeps a party with many
//! principals from taking the places another party needs; counting per
//! address keeps one machine from taking all of its party's.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use truce_domain::PartyId;
use truce_proto::ServiceError;

use crate::auth::Caller;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Streams in all.
    pub total: usize,
    /// Streams of one party, whichever of its principals opened them.
    pub per_party: usize,
    /// Streams from one caller address.
    pub per_address: usize,
}

impl Default for Caps {
    /// One party, or one address, may hold a quarter of the places: the
    /// rest stay open to the others.
    fn default() -> Self {
        Caps {
            total: 20_000,
            per_party: 5_000,
            per_address: 5_000,
        }
    }
}

/// What an admission counts, for its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    /// The streams, plural, for people: "subscriptions".
    pub noun: &'static str,
    /// The `ErrorInfo` reason of a refusal, for programs.
    pub reason: &'static str,
}

impl Streams {
    /// `Subscribe` streams.
    pub const SUBSCRIPTIONS: Streams = Streams {
        noun: "subscriptions",
        reason: "SUBSCRIPTION_LIMIT",
    };
    /// `ReadLog` streams.
    pub const LOG_READERS: Streams = Streams {
        noun: "log readers",
        reason: "LOG_READER_LIMIT",
    };
    /// `SubmitReports` streams.
    pub const BULK_STREAMS: Streams = Streams {
        noun: "bulk submission streams",
        reason: "BULK_STREAM_LIMIT",
    };
}

/// Counts open streams.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    streams: Streams,
    // A std Mutex: held for a counter update, never across an await.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_party: HashMap<PartyId, usize>,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted stream; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    party: Option<PartyId>,
    address: Option<IpAddr>,
}

impl Admission {
    /// An admission of `streams` with these caps.
    pub fn new(caps: Caps, streams: Streams) -> Arc<Admission> {
        Arc::new(Admission {
            caps,
            streams,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream of `caller` from `address`, if there
    /// is one. Anonymous loopback callers have no party and count by
    /// address only.
    pub fn admit(self: &Arc<Self>, caller: &Caller, address: Option<IpAddr>) -> Result<Permit, ServiceError> {
        let party = caller.principal().map(|p| p.party.clone());
        let address = address.map(crate::client_network);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let noun = self.streams.noun;
        let refusal = if open.total >= self.caps.total {
            Some((
                "total",
                format!(
                    "this service holds its limit of {} {noun}; retry later or elsewhere",
                    self.caps.total
                ),
            ))
        } else if held(&open.by_party, &party) >= self.caps.per_party {
            Some((
                "party",
                format!(
                    "your party holds its limit of {} {noun} on this service; close some first",
                    self.caps.per_party
                ),
            ))
        } else if held(&open.by_address, &address) >= self.caps.per_address {
            Some((
                "address",
                format!(
                    "your address holds its limit of {} {noun} on this service; close some first",
                    self.caps.per_address
                ),
            ))
        } else {
            None
        };
        if let Some((cap, message)) = refusal {
            return Err(ServiceError::ResourceExhausted {
                message,
                reason: self.streams.reason,
                metadata: vec![("cap", cap.to_owned())],
            });
        }
        open.total += 1;
        add(&mut open.by_party, &party);
        add(&mut open.by_address, &address);
        Ok(Permit {
            admission: Arc::clone(self),
            party,
            address,
        })
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// How many streams `key` holds; none without a key.
fn held<K: Hash + Eq>(counts: &HashMap<K, usize>, key: &Option<K>) -> usize {
    key.as_ref().and_then(|k| counts.get(k)).copied().unwrap_or(0)
}

fn add<K: Hash + Eq + Clone>(counts: &mut HashMap<K, usize>, key: &Option<K>) {
    if let Some(key) = key {
        *counts.entry(key.clone()).or_insert(0) += 1;
    }
}

fn remove<K: Hash + Eq>(counts: &mut HashMap<K, usize>, key: &Option<K>) {
    let Some(key) = key else { return };
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        remove(&mut open.by_party, &self.party);
        remove(&mut open.by_address, &self.address);
    }
}

/// How a service treats its long-lived streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Caps on concurrent streams.
    pub caps: Caps,
    /// A reader that takes nothing for this long is ended with
    /// RESOURCE_EXHAUSTED and where to resume.
    pub stall_timeout: Duration,
}

impl StreamLimits {
    /// Default stall timeout.
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            caps: Caps::default(),
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// The stream flags every truce server takes: the caps apply to
/// `Subscribe` on the query port and to `ReadLog` on the ingest port, each
/// counted apart.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Most concurrent subscriptions (and log readers) in all.
    #[arg(long, env = "TRUCE_MAX_SUBSCRIPTIONS", default_value_t = Caps::default().total)]
    pub max_subscriptions: usize,
    /// Most concurrent subscriptions (and log readers) of one party, over
    /// all its principals.
    #[arg(long, env = "TRUCE_MAX_SUBSCRIPTIONS_PER_PARTY", default_value_t = Caps::default().per_party)]
    pub max_subscriptions_per_party: usize,
    /// Most concurrent subscriptions (and log readers) from one caller
    /// address.
    #[arg(
        long,
        alias = "max-subscriptions-per-caller",
        env = "TRUCE_MAX_SUBSCRIPTIONS_PER_ADDRESS",
        default_value_t = Caps::default().per_address
    )]
    pub max_subscriptions_per_address: usize,
    /// Seconds a subscriber (or log reader) may take nothing before it is
    /// ended.
    #[arg(long, env = "TRUCE_STALL_TIMEOUT_SECS", default_value_t = StreamLimits::DEFAULT_STALL_TIMEOUT.as_secs())]
    pub stall_timeout_secs: u64,
}

impl StreamArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> StreamLimits {
        StreamLimits {
            caps: Caps {
                total: self.max_subscriptions,
                per_party: self.max_subscriptions_per_party,
                per_address: self.max_subscriptions_per_address,
            },
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use truce_auth::{Principals, Role};

    use super::*;

    fn principal(principals: &Principals, token: &str) -> Caller {
        Caller::Principal(principals.authenticate(token).expect("test principal"))
    }

    #[test]
    fn caps_count_parties_and_addresses_and_dropping_a_permit_frees_its_place() {
        let hash = truce_auth::token_hash;
        let (idf, un) = ("idf".parse().expect("party"), "un".parse().expect("party"));
        let principals = Principals::new()
            .with_token("idf-1", &idf, &[Role::Reporter], &hash("t1"))
            .with_token("idf-2", &idf, &[Role::Reporter], &hash("t2"))
            .with_token("un", &un, &[Role::Observer], &hash("t3"));
        let (idf_1, idf_2, un) = (
            principal(&principals, "t1"),
            principal(&principals, "t2"),
            principal(&principals, "t3"),
        );
        let admission = Admission::new(
            Caps {
                total: 4,
                per_party: 2,
                per_address: 2,
            },
            Streams::SUBSCRIPTIONS,
        );
        let [a, b, c]: [IpAddr; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(|ip| ip.parse().expect("ip"));
        let first = admission.admit(&idf_1, Some(a)).expect("admitted");
        let _second = admission
            .admit(&idf_2, Some(b))
            .expect("another principal of the party");
        let refused = admission.admit(&idf_2, Some(c)).expect_err("the party's cap");
        assert!(refused.to_string().contains("your party"), "{refused}");
        let _third = admission.admit(&un, Some(a)).expect("another party");
        let refused = admission
            .admit(&Caller::Anonymous, Some(a))
            .expect_err("the address's cap");
        assert!(refused.to_string().contains("your address"), "{refused}");
        let _fourth = admission
            .admit(&Caller::Anonymous, Some(b))
            .expect("anonymous, by address only");
        let refused = admission.admit(&un, Some(c)).expect_err("in all");
        assert!(refused.to_string().contains("this service"), "{refused}");
        drop(first);
        assert_eq!(admission.open(), 3);
        admission
            .admit(&idf_1, Some(c))
            .expect("the party's place is free again");
    }
}
