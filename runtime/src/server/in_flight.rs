//! Requests each principal may have in flight at once, so that one key cannot take
//! every request slot of the server (for example by trickling request bodies).
//!
//! A slot is held from the request's authentication until its answer is made (the body
//! read, the work done; an event stream gives it back once it has started).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct InFlight {
    per_principal: usize,
    principals: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A principal's request slot; dropping it gives it back.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl InFlight {
    pub fn new(per_principal: usize) -> Self {
        Self {
            per_principal: per_principal.max(1),
            principals: Mutex::default(),
        }
    }

    pub fn per_principal(&self) -> usize {
        self.per_principal
    }

    /// A slot for `principal`, or `None` when all of its slots are taken.
    pub fn try_take(&self, principal: &str) -> Option<Slot> {
        let semaphore = {
            let mut principals = self.principals.lock().unwrap_or_else(|e| e.into_inner());
            // Every request asks: the name is copied only the first time a principal is seen.
            match principals.get(principal) {
                Some(semaphore) => semaphore.clone(),
                None => principals
                    .entry(principal.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_principal)))
                    .clone(),
            }
        };
        semaphore.try_acquire_owned().ok().map(Slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_has_its_own_slots() {
        let in_flight = InFlight::new(2);
        let a = in_flight.try_take("a").unwrap();
        let _b = in_flight.try_take("a").unwrap();
        assert!(in_flight.try_take("a").is_none());
        assert!(in_flight.try_take("b").is_some());
        drop(a);
        assert!(in_flight.try_take("a").is_some());
    }
}
