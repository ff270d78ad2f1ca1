//! Caps on concurrent subscriptions, overall and per caller, so that one
//! client cannot take every stream a query service can hold.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use truce_proto::ServiceError;

/// Who a subscription counts against: a principal's name, or an anonymous
/// caller's address.
pub type Caller = String;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Subscriptions in all.
    pub total: usize,
    /// Subscriptions of one caller.
    pub per_caller: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            total: 20_000,
            per_caller: 5_000,
        }
    }
}

/// Counts open subscriptions.
#[derive(Debug, Default)]
pub struct Admission {
    caps: Caps,
    // A std Mutex: held for a counter update, never across an await.
    open: Mutex<(usize, HashMap<Caller, usize>)>,
}

/// One admitted subscription; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    caller: Caller,
}

impl Admission {
    /// An admission with these caps.
    pub fn new(caps: Caps) -> Arc<Admission> {
        Arc::new(Admission {
            caps,
            open: Mutex::default(),
        })
    }

    /// A place for one more subscription of `caller`, if there is one.
    pub fn admit(self: &Arc<Self>, caller: Caller) -> Result<Permit, ServiceError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_caller) = &mut *open;
        let mine = by_caller.get(&caller).copied().unwrap_or(0);
        let refusal = if *total >= self.caps.total {
            Some(format!(
                "this query service holds its limit of {} subscriptions; retry later or elsewhere",
                self.caps.total
            ))
        } else if mine >= self.caps.per_caller {
            Some(format!(
                "this caller holds its limit of {} subscriptions; close some first",
                self.caps.per_caller
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            return Err(ServiceError::ResourceExhausted {
                message,
                reason: "SUBSCRIPTION_LIMIT",
                metadata: Vec::new(),
            });
        }
        *total += 1;
        *by_caller.entry(caller.clone()).or_insert(0) += 1;
        Ok(Permit {
            admission: Arc::clone(self),
            caller,
        })
    }

    /// How many subscriptions are open.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_caller) = &mut *open;
        *total -= 1;
        if let Some(count) = by_caller.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_dropping_a_permit_frees_its_place() {
        let admission = Admission::new(Caps {
            total: 3,
            per_caller: 2,
        });
        let (a, b) = (Caller::from("principal a"), Caller::from("principal b"));
        let first = admission.admit(a.clone()).unwrap();
        let _second = admission.admit(a.clone()).unwrap();
        assert!(admission.admit(a.clone()).is_err(), "per caller");
        let _third = admission.admit(b.clone()).unwrap();
        assert!(admission.admit(b).is_err(), "in all");
        drop(first);
        assert_eq!(admission.open(), 2);
        assert!(admission.admit(a).is_ok());
    }
}
