//! How many WebSockets a gateway holds: at most `per_caller` for one token subject and `total`
//! overall, so one caller (or a flood of them) cannot take every socket, file descriptor and
//! broadcast receiver the gateway has. A [`Slot`] is held for a socket's lifetime and given back
//! when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_caller: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct SocketSlots {
    per_caller: usize,
    total: usize,
    counts: Mutex<Counts>,
}

/// Why a socket was refused; the text is shown to the client as the close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error("this caller already has {0} live sockets open; close one first")]
    Caller(usize),
    #[error("the gateway holds its maximum of {0} live sockets; try again later")]
    Total(usize),
}

impl SocketSlots {
    pub fn new(per_caller: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_caller,
            total,
            counts: Mutex::default(),
        })
    }

    /// A slot for one more socket of `caller`, if both limits allow it.
    pub fn take(self: &Arc<Self>, caller: &str) -> Result<Slot, SlotRefused> {
        let mut counts = self.counts.lock().expect("socket slots lock");
        if counts.total >= self.total {
            return Err(SlotRefused::Total(self.total));
        }
        let mine = counts.by_caller.entry(caller.to_owned()).or_default();
        if *mine >= self.per_caller {
            return Err(SlotRefused::Caller(self.per_caller));
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            caller: caller.to_owned(),
        })
    }

    /// Sockets held now.
    pub fn held(&self) -> usize {
        self.counts.lock().expect("socket slots lock").total
    }
}

/// One socket's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<SocketSlots>,
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
        let slots = SocketSlots::new(2, 3);
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert_eq!(slots.take("a").unwrap_err(), SlotRefused::Caller(2));
        let _b1 = slots.take("b").unwrap();
        assert_eq!(slots.take("c").unwrap_err(), SlotRefused::Total(3));
        drop(a1);
        assert_eq!(slots.held(), 2);
        let _c1 = slots.take("c").unwrap();
        assert_eq!(slots.take("a").unwrap_err(), SlotRefused::Total(3));
    }

    #[test]
    fn callers_without_sockets_are_forgotten() {
        let slots = SocketSlots::new(5, 100);
        for n in 0..50 {
            drop(slots.take(&format!("caller-{n}")).unwrap());
        }
        assert!(slots.counts.lock().unwrap().by_caller.is_empty());
        assert_eq!(slots.held(), 0);
    }
}
