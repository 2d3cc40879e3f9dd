//! Placement: which host takes a session. Filter (state, room for the session's cpu, memory
//! and disk, its timeout, the hints), then score: spread (least allocated after placing) or
//! bin-pack (most allocated that still fits). A preferred region wins over the score; equal
//! scores go to the smaller host id, so the same hosts give the same answer.
//!
//! Pure and allocation-free: the registry calls it under its lock, once per session.

use super::model::Resources;
use crate::vocabulary::{HostState, PlacementStrategy};
use std::fmt;

/// A slot's region when it has none.
pub const NO_REGION: u32 = u32::MAX;

/// A host as placement sees it: small and flat, so a decision over a thousand hosts stays in
/// cache. Strings (ids, regions) are resolved by the registry beforehand.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub state: HostState,
    /// Its `region` label, interned by the registry ([`NO_REGION`]: none).
    pub region: u32,
    /// Its place among all host ids in order: equal scores go to the smaller id.
    pub rank: u32,
    /// What may be allocated on it (its capacity, overcommitted).
    room: Resources,
    /// 1 / room per resource (0 where the room is 0), so scoring multiplies.
    inverse: [f64; 3],
    pub allocated: Resources,
    /// `u64::MAX`: any timeout.
    pub max_timeout_ms: u64,
}

impl Slot {
    pub fn new(state: HostState, room: Resources) -> Self {
        let mut slot = Self {
            state,
            region: NO_REGION,
            rank: 0,
            room: Resources::ZERO,
            inverse: [0.0; 3],
            allocated: Resources::ZERO,
            max_timeout_ms: u64::MAX,
        };
        slot.set_room(room);
        slot
    }

    pub fn room(&self) -> Resources {
        self.room
    }

    pub fn set_room(&mut self, room: Resources) {
        let inverse = |value: u64| if value == 0 { 0.0 } else { 1.0 / value as f64 };
        self.room = room;
        self.inverse = [
            inverse(room.cpu_millis),
            inverse(room.memory_mb),
            inverse(room.disk_mb),
        ];
    }

    /// The share of its room allocated once `extra` is placed there: the largest over the
    /// three resources (a host is as full as its fullest resource).
    fn share_after(&self, extra: Resources) -> f64 {
        let a = self.allocated.saturating_add(extra);
        (a.cpu_millis as f64 * self.inverse[0])
            .max(a.memory_mb as f64 * self.inverse[1])
            .max(a.disk_mb as f64 * self.inverse[2])
    }
}

/// What one decision asks, its hints resolved to slot indices and region ids.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub resources: Resources,
    pub timeout_ms: u64,
    /// The preferred region; `None`: no preference (or a region no host has).
    pub region: Option<u32>,
    /// Only these slots; `None`: every slot.
    pub only: Option<Vec<usize>>,
    /// Never these slots.
    pub avoid: Vec<usize>,
}

/// Why no host took the session, host by host, for the error a client reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoFit {
    /// Hosts not in the state asked for (draining, unhealthy, ...).
    pub not_in_state: usize,
    /// Left out by the hints (not among `hosts`, or among `avoid`).
    pub excluded: usize,
    /// Not enough room left for the session's cpu, memory or disk.
    pub too_small: usize,
    /// Their longest session timeout is shorter than the session's.
    pub timeout_too_long: usize,
    /// The most free room of any host in the state asked for, resource by resource.
    pub most_free: Resources,
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (count, why) in [
            (self.too_small, "with too little free cpu, memory or disk"),
            (
                self.timeout_too_long,
                "with a shorter maximum session timeout",
            ),
            (self.excluded, "left out by the placement hints"),
            (self.not_in_state, "not ready"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {why}"));
            }
        }
        if parts.is_empty() {
            return f.write_str("there are no hosts");
        }
        write!(f, "hosts: {}", parts.join(", "))?;
        if self.too_small > 0 {
            let free = self.most_free;
            write!(
                f,
                " (the most free on one host: {} cpu_millis, {} memory_mb, {} disk_mb)",
                free.cpu_millis, free.memory_mb, free.disk_mb
            )?;
        }
        Ok(())
    }
}

/// The index of the host in `state` that takes `query`, or why none does.
pub fn choose(
    slots: &[Slot],
    query: &Query,
    state: HostState,
    strategy: PlacementStrategy,
) -> Result<usize, NoFit> {
    let mut best: Option<(usize, bool, f64)> = None;
    let mut no_fit = NoFit::default();
    let mut consider = |index: usize, slot: &Slot, no_fit: &mut NoFit| {
        if slot.state != state {
            no_fit.not_in_state += 1;
            return;
        }
        if !query.avoid.is_empty() && query.avoid.contains(&index) {
            no_fit.excluded += 1;
            return;
        }
        if slot.max_timeout_ms < query.timeout_ms {
            no_fit.timeout_too_long += 1;
            return;
        }
        let free = slot.room.saturating_sub(slot.allocated);
        if !query.resources.fits_in(free) {
            no_fit.too_small += 1;
            no_fit.most_free = Resources {
                cpu_millis: no_fit.most_free.cpu_millis.max(free.cpu_millis),
                memory_mb: no_fit.most_free.memory_mb.max(free.memory_mb),
                disk_mb: no_fit.most_free.disk_mb.max(free.disk_mb),
            };
            return;
        }
        let in_region = query.region == Some(slot.region);
        let score = slot.share_after(query.resources);
        let better = match best {
            None => true,
            Some((held, held_in_region, held_score)) => {
                if in_region != held_in_region {
                    in_region
                } else if score != held_score {
                    match strategy {
                        PlacementStrategy::Spread => score < held_score,
                        PlacementStrategy::BinPack => score > held_score,
                    }
                } else {
                    slot.rank < slots[held].rank
                }
            }
        };
        if better {
            best = Some((index, in_region, score));
        }
    };
    match &query.only {
        Some(only) => {
            no_fit.excluded += slots.len().saturating_sub(only.len());
            for &index in only {
                if let Some(slot) = slots.get(index) {
                    consider(index, slot, &mut no_fit);
                }
            }
        }
        None => {
            for (index, slot) in slots.iter().enumerate() {
                consider(index, slot, &mut no_fit);
            }
        }
    }
    best.map(|(index, _, _)| index).ok_or(no_fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot with its id (the rank is the id's order among single letters and words).
    #[derive(Clone)]
    struct Named {
        id: &'static str,
        slot: Slot,
    }

    fn slot(id: &'static str, cpu: u64, memory: u64, disk: u64) -> Named {
        let room = Resources {
            cpu_millis: cpu,
            memory_mb: memory,
            disk_mb: disk,
        };
        Named {
            id,
            slot: Slot::new(HostState::Ready, room),
        }
    }

    /// The slots in order, ranked by id as the registry ranks them.
    fn pool(named: &[Named]) -> Vec<Slot> {
        let mut ids: Vec<&str> = named.iter().map(|n| n.id).collect();
        ids.sort();
        named
            .iter()
            .map(|n| Slot {
                rank: ids.iter().position(|id| *id == n.id).unwrap() as u32,
                ..n.slot.clone()
            })
            .collect()
    }

    fn demand(cpu: u64, memory: u64, disk: u64) -> Query {
        Query {
            resources: Resources {
                cpu_millis: cpu,
                memory_mb: memory,
                disk_mb: disk,
            },
            timeout_ms: 60_000,
            ..Query::default()
        }
    }

    fn pick<'a>(
        named: &'a [Named],
        query: &Query,
        strategy: PlacementStrategy,
    ) -> Result<&'a str, NoFit> {
        choose(&pool(named), query, HostState::Ready, strategy).map(|i| named[i].id)
    }

    fn index(named: &[Named], id: &str) -> usize {
        named.iter().position(|n| n.id == id).unwrap()
    }

    #[test]
    fn only_hosts_in_the_state_asked_for_with_room_and_timeout_are_chosen() {
        let mut draining = slot("a", 8000, 8192, 8192);
        draining.slot.state = HostState::Draining;
        let small = slot("b", 500, 8192, 8192);
        let mut short = slot("c", 8000, 8192, 8192);
        short.slot.max_timeout_ms = 1000;
        let mut full = slot("d", 8000, 8192, 8192);
        full.slot.allocated = Resources {
            cpu_millis: 0,
            memory_mb: 8000,
            disk_mb: 0,
        };
        let fits = slot("e", 1000, 256, 512);
        let slots = vec![draining, small, short, full, fits];
        assert_eq!(
            pick(&slots, &demand(1000, 256, 512), PlacementStrategy::Spread),
            Ok("e")
        );
        let no_fit = pick(
            &slots[..4],
            &demand(1000, 256, 512),
            PlacementStrategy::Spread,
        )
        .unwrap_err();
        assert_eq!(
            no_fit,
            NoFit {
                not_in_state: 1,
                excluded: 0,
                too_small: 2,
                timeout_too_long: 1,
                most_free: Resources {
                    cpu_millis: 8000,
                    memory_mb: 8192,
                    disk_mb: 8192
                },
            }
        );
        let message = no_fit.to_string();
        assert!(message.contains("2 with too little free"), "{message}");
        assert!(message.contains("1 not ready"), "{message}");
        // A standby host is only chosen when standby hosts are asked for.
        let mut standby = slot("s", 8000, 8192, 8192);
        standby.slot.state = HostState::Standby;
        let slots = vec![standby];
        assert!(pick(&slots, &demand(1, 1, 1), PlacementStrategy::Spread).is_err());
        assert_eq!(
            choose(
                &pool(&slots),
                &demand(1, 1, 1),
                HostState::Standby,
                PlacementStrategy::Spread
            ),
            Ok(0)
        );
    }

    #[test]
    fn spread_takes_the_least_allocated_and_bin_pack_the_fullest_that_fits() {
        let mut half = slot("half", 4000, 4096, 4096);
        half.slot.allocated = Resources {
            cpu_millis: 2000,
            memory_mb: 1024,
            disk_mb: 0,
        };
        let empty = slot("empty", 4000, 4096, 4096);
        let mut almost = slot("almost", 4000, 4096, 4096);
        almost.slot.allocated = Resources {
            cpu_millis: 3500,
            memory_mb: 0,
            disk_mb: 0,
        };
        let slots = vec![half, empty, almost];
        let want = demand(500, 256, 256);
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("empty"));
        assert_eq!(
            pick(&slots, &want, PlacementStrategy::BinPack),
            Ok("almost")
        );
        // The fullest resource decides: memory makes `mem` fuller than `cpu`.
        let mut cpu = slot("cpu", 1000, 1000, 1000);
        cpu.slot.allocated.cpu_millis = 500;
        let mut mem = slot("mem", 1000, 1000, 1000);
        mem.slot.allocated.memory_mb = 700;
        let slots = vec![mem, cpu];
        assert_eq!(
            pick(&slots, &demand(100, 100, 100), PlacementStrategy::Spread),
            Ok("cpu")
        );
    }

    #[test]
    fn equal_scores_go_to_the_smaller_id_whatever_the_order() {
        let slots = vec![
            slot("c", 1000, 1000, 1000),
            slot("a", 1000, 1000, 1000),
            slot("b", 1000, 1000, 1000),
        ];
        for strategy in [PlacementStrategy::Spread, PlacementStrategy::BinPack] {
            assert_eq!(pick(&slots, &demand(1, 1, 1), strategy), Ok("a"));
            let mut reversed = slots.clone();
            reversed.reverse();
            assert_eq!(pick(&reversed, &demand(1, 1, 1), strategy), Ok("a"));
        }
    }

    #[test]
    fn hints_prefer_a_region_and_restrict_or_avoid_hosts() {
        let mut eu = slot("eu-1", 1000, 1000, 1000);
        eu.slot.region = 1;
        eu.slot.allocated.cpu_millis = 900;
        let us = slot("us-1", 1000, 1000, 1000);
        let slots = vec![eu, us];
        let mut want = demand(100, 100, 100);
        want.region = Some(1);
        // The region wins over a better score...
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        // ...but only a preference: when nothing there fits, elsewhere.
        want.resources.cpu_millis = 200;
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("us-1"));
        let mut want = demand(1, 1, 1);
        want.avoid = vec![index(&slots, "us-1")];
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        want.avoid = vec![index(&slots, "us-1"), index(&slots, "eu-1")];
        assert_eq!(
            pick(&slots, &want, PlacementStrategy::Spread)
                .unwrap_err()
                .excluded,
            2
        );
        let mut want = demand(1, 1, 1);
        want.only = Some(vec![index(&slots, "eu-1")]);
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        want.only = Some(Vec::new());
        assert!(pick(&slots, &want, PlacementStrategy::Spread).is_err());
    }

    #[test]
    fn a_host_with_no_room_of_a_resource_takes_sessions_that_ask_none_of_it() {
        let no_disk = slot("a", 1000, 1000, 0);
        assert_eq!(
            pick(
                std::slice::from_ref(&no_disk),
                &demand(1, 1, 0),
                PlacementStrategy::Spread
            ),
            Ok("a")
        );
        assert!(pick(&[no_disk], &demand(1, 1, 1), PlacementStrategy::Spread).is_err());
        assert_eq!(NoFit::default().to_string(), "there are no hosts");
    }
}
