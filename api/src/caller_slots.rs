//! Places for long-lived work a caller starts: at most `per_caller` for one token subject and
//! `total` overall, so one caller (or a flood of them) cannot take every socket, connection or
//! waiting task the gateway has. Used for live WebSockets and for reads waiting for a
//! `min_version`. A [`Slot`] is held while the work lasts and given back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_caller: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct CallerSlots {
    /// What the places are for, as the refusal names it ("live sockets").
    what: &'static str,
    per_caller: usize,
    total: usize,
    counts: Mutex<Counts>,
}

/// Why a place was refused; the text is shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error("this caller already has {limit} {what}; wait for one to end")]
    Caller { what: &'static str, limit: usize },
    #[error("the gateway holds its maximum of {limit} {what}; try again later")]
    Total { what: &'static str, limit: usize },
}

impl CallerSlots {
    pub fn new(what: &'static str, per_caller: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            what,
            per_caller,
            total,
            counts: Mutex::default(),
        })
    }

    /// A slot for one more socket of `caller`, if both limits allow it.
    pub fn take(self: &Arc<Self>, caller: &str) -> Result<Slot, SlotRefused> {
        let mut counts = self.counts.lock().expect("socket slots lock");
        if counts.total >= self.total {
            return Err(SlotRefused::Total {
                what: self.what,
                limit: self.total,
            });
        }
        let mine = counts.by_caller.entry(caller.to_owned()).or_default();
        if *mine >= self.per_caller {
            return Err(SlotRefused::Caller {
                what: self.what,
                limit: self.per_caller,
            });
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            caller: caller.to_owned(),
        })
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.counts.lock().expect("socket slots lock").total
    }
}

/// One place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<CallerSlots>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().expect("socket slots lock");
        counts.total -= 1;
        if let Some(mine) = counts.by_caller.get_mut(&self.caller) {
            *mine -= 1;
            if *mine == 0 {
                // Forget callers without sockets, so the map does not grow with every subject.
                counts.by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_and_the_gateway_are_capped_and_slots_come_back() {
        let slots = CallerSlots::new("live sockets", 2, 3);
        let what = "live sockets";
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert_eq!(
            slots.take("a").unwrap_err(),
            SlotRefused::Caller { what, limit: 2 }
        );
        let _b1 = slots.take("b").unwrap();
        assert_eq!(
            slots.take("c").unwrap_err(),
            SlotRefused::Total { what, limit: 3 }
        );
        drop(a1);
        assert_eq!(slots.held(), 2);
        let _c1 = slots.take("c").unwrap();
        assert_eq!(
            slots.take("a").unwrap_err(),
            SlotRefused::Total { what, limit: 3 }
        );
        assert_eq!(
            SlotRefused::Caller { what, limit: 2 }.to_string(),
            "this caller already has 2 live sockets; wait for one to end"
        );
    }

    #[test]
    fn callers_without_sockets_are_forgotten() {
        let slots = CallerSlots::new("waits", 5, 100);
        for n in 0..50 {
            drop(slots.take(&format!("caller-{n}")).unwrap());
        }
        assert!(slots.counts.lock().unwrap().by_caller.is_empty());
        assert_eq!(slots.held(), 0);
    }
}
