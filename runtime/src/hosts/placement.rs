//! Placement: which host takes a session. Filter (state, room for the session's cpu, memory
//! and disk, its timeout, the hints), then score: spread (least allocated after placing) or
//! bin-pack (most allocated that still fits). A preferred region wins over the score; equal
//! scores go to the smaller host id, so the same hosts give the same answer.
//!
//! Pure and allocation-free: the registry calls it under its lock, once per session.

use super::model::{Demand, Resources};
use crate::vocabulary::{HostState, PlacementStrategy};
use std::fmt;

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: String,
    pub state: HostState,
    /// What may be allocated on it (its capacity, overcommitted).
    pub room: Resources,
    pub allocated: Resources,
    /// `u64::MAX`: any timeout.
    pub max_timeout_ms: u64,
    pub region: Option<String>,
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

/// The share of the host's room allocated once `extra` is placed there: the largest over
/// the three resources (a host is as full as its fullest resource).
fn share_after(slot: &Slot, extra: Resources) -> f64 {
    let share = |allocated: u64, extra: u64, room: u64| {
        if room == 0 {
            0.0
        } else {
            allocated.saturating_add(extra) as f64 / room as f64
        }
    };
    share(
        slot.allocated.cpu_millis,
        extra.cpu_millis,
        slot.room.cpu_millis,
    )
    .max(share(
        slot.allocated.memory_mb,
        extra.memory_mb,
        slot.room.memory_mb,
    ))
    .max(share(
        slot.allocated.disk_mb,
        extra.disk_mb,
        slot.room.disk_mb,
    ))
}

/// The index of the host in `state` that takes `demand`, or why none does.
pub fn choose(
    slots: &[Slot],
    demand: &Demand,
    state: HostState,
    strategy: PlacementStrategy,
) -> Result<usize, NoFit> {
    let hints = &demand.hints;
    let mut best: Option<(usize, bool, f64)> = None;
    let mut no_fit = NoFit::default();
    for (index, slot) in slots.iter().enumerate() {
        if slot.state != state {
            no_fit.not_in_state += 1;
            continue;
        }
        if (!hints.hosts.is_empty() && !hints.hosts.contains(&slot.id))
            || hints.avoid.contains(&slot.id)
        {
            no_fit.excluded += 1;
            continue;
        }
        if slot.max_timeout_ms < demand.timeout_ms {
            no_fit.timeout_too_long += 1;
            continue;
        }
        let free = slot.room.saturating_sub(slot.allocated);
        if !demand.resources.fits_in(free) {
            no_fit.too_small += 1;
            no_fit.most_free = Resources {
                cpu_millis: no_fit.most_free.cpu_millis.max(free.cpu_millis),
                memory_mb: no_fit.most_free.memory_mb.max(free.memory_mb),
                disk_mb: no_fit.most_free.disk_mb.max(free.disk_mb),
            };
            continue;
        }
        let in_region = hints
            .region
            .as_deref()
            .is_some_and(|region| slot.region.as_deref() == Some(region));
        let score = share_after(slot, demand.resources);
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
                    slot.id < slots[held].id
                }
            }
        };
        if better {
            best = Some((index, in_region, score));
        }
    }
    best.map(|(index, _, _)| index).ok_or(no_fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::model::PlacementHints;

    fn slot(id: &str, cpu: u64, memory: u64, disk: u64) -> Slot {
        Slot {
            id: id.into(),
            state: HostState::Ready,
            room: Resources {
                cpu_millis: cpu,
                memory_mb: memory,
                disk_mb: disk,
            },
            allocated: Resources::ZERO,
            max_timeout_ms: u64::MAX,
            region: None,
        }
    }

    fn demand(cpu: u64, memory: u64, disk: u64) -> Demand {
        Demand {
            resources: Resources {
                cpu_millis: cpu,
                memory_mb: memory,
                disk_mb: disk,
            },
            timeout_ms: 60_000,
            hints: PlacementHints::default(),
        }
    }

    fn pick<'a>(
        slots: &'a [Slot],
        demand: &Demand,
        strategy: PlacementStrategy,
    ) -> Result<&'a str, NoFit> {
        choose(slots, demand, HostState::Ready, strategy).map(|i| slots[i].id.as_str())
    }

    #[test]
    fn only_hosts_in_the_state_asked_for_with_room_and_timeout_are_chosen() {
        let mut draining = slot("a", 8000, 8192, 8192);
        draining.state = HostState::Draining;
        let small = slot("b", 500, 8192, 8192);
        let mut short = slot("c", 8000, 8192, 8192);
        short.max_timeout_ms = 1000;
        let mut full = slot("d", 8000, 8192, 8192);
        full.allocated = Resources {
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
        standby.state = HostState::Standby;
        let slots = vec![standby];
        assert!(pick(&slots, &demand(1, 1, 1), PlacementStrategy::Spread).is_err());
        assert_eq!(
            choose(
                &slots,
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
        half.allocated = Resources {
            cpu_millis: 2000,
            memory_mb: 1024,
            disk_mb: 0,
        };
        let empty = slot("empty", 4000, 4096, 4096);
        let mut almost = slot("almost", 4000, 4096, 4096);
        almost.allocated = Resources {
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
        cpu.allocated.cpu_millis = 500;
        let mut mem = slot("mem", 1000, 1000, 1000);
        mem.allocated.memory_mb = 700;
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
        eu.region = Some("eu".into());
        eu.allocated.cpu_millis = 900;
        let us = slot("us-1", 1000, 1000, 1000);
        let slots = vec![eu, us];
        let mut want = demand(100, 100, 100);
        want.hints.region = Some("eu".into());
        // The region wins over a better score...
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        // ...but only a preference: when nothing there fits, elsewhere.
        want.resources.cpu_millis = 200;
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("us-1"));
        let mut want = demand(1, 1, 1);
        want.hints.avoid = vec!["us-1".into()];
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        want.hints.avoid = vec!["us-1".into(), "eu-1".into()];
        assert_eq!(
            pick(&slots, &want, PlacementStrategy::Spread)
                .unwrap_err()
                .excluded,
            2
        );
        let mut want = demand(1, 1, 1);
        want.hints.hosts = vec!["eu-1".into()];
        assert_eq!(pick(&slots, &want, PlacementStrategy::Spread), Ok("eu-1"));
        want.hints.hosts = vec!["nowhere".into()];
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
