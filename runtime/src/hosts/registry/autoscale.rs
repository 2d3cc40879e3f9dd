//! Growing and shrinking the registry: asking a driver for a host when nothing fits (within
//! its maximum, hosts in flight and cooldown), releasing hosts idle too long (down to the
//! minimum) or that never answered, and demoting idle promoted standby hosts.

use super::*;

impl Registry {
    /// What a client told `capacity` should wait before trying again: the shortest
    /// cooldown left of a provisioning driver, else the registry's refresh.
    pub(super) fn retry_after(&self) -> Duration {
        let inner = self.lock();
        self.drivers
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let scaling = d.scaling.as_ref()?;
                let since = inner.last_provision.get(&i)?.elapsed();
                Some(scaling.cooldown.saturating_sub(since))
            })
            .min()
            .unwrap_or(Duration::ZERO)
            .max(self.config.refresh)
            .max(Duration::from_secs(1))
    }

    /// Asks a driver for a host that fits `demand`, unless one is already coming, or every
    /// driver is at its cap or in its cooldown. `None`: no driver can provision at all;
    /// `Some(Ok)`: capacity is coming; `Some(Err)`: why none was asked.
    pub(super) fn provision_for(self: &Arc<Self>, demand: &Demand) -> Option<Result<(), String>> {
        if !demand.hints.hosts.is_empty() {
            // A host brought up now would have a new id: it could never be one of these.
            let any = self.drivers.iter().any(|d| d.scaling.is_some());
            return any.then(|| {
                Err(
                    "no driver is asked for a host: the session may run only on the hosts it names"
                        .into(),
                )
            });
        }
        let mut refusals = Vec::new();
        let mut chosen = None;
        {
            let mut inner = self.lock();
            for (i, slot) in self.drivers.iter().enumerate() {
                let Some(scaling) = &slot.scaling else {
                    continue;
                };
                let name = &self.infos[i].name;
                let hosts = inner
                    .hosts
                    .iter()
                    .filter(|h| h.driver == i && !h.releasing)
                    .count();
                let coming = inner
                    .hosts
                    .iter()
                    .zip(&inner.slots)
                    .filter(|(h, s)| h.driver == i && s.state == HostState::Provisioning)
                    .count();
                let calls = inner.in_flight_calls.get(&i).copied().unwrap_or(0);
                if coming + calls > 0 {
                    // Capacity is on its way: wait for it rather than ask again.
                    return Some(Ok(()));
                }
                if hosts + calls >= scaling.max_hosts {
                    refusals.push(format!(
                        "driver `{name}` is at its maximum of {} hosts",
                        scaling.max_hosts
                    ));
                    continue;
                }
                if coming + calls >= scaling.max_in_flight {
                    refusals.push(format!(
                        "driver `{name}` is already bringing up {} hosts",
                        coming + calls
                    ));
                    continue;
                }
                if let Some(last) = inner.last_provision.get(&i)
                    && last.elapsed() < scaling.cooldown
                {
                    let mut refusal = format!(
                        "driver `{name}` was asked for a host {} s ago (cooldown {} s)",
                        last.elapsed().as_secs(),
                        scaling.cooldown.as_secs()
                    );
                    if let Some(failure) = inner.provision_failures.get(&i) {
                        refusal.push_str(&format!(" and that call failed: {failure}"));
                    }
                    refusals.push(refusal);
                    continue;
                }
                *inner.in_flight_calls.entry(i).or_default() += 1;
                inner.last_provision.insert(i, Instant::now());
                chosen = Some(i);
                break;
            }
        }
        let Some(i) = chosen else {
            return if refusals.is_empty() {
                None
            } else {
                Some(Err(refusals.join("; ")))
            };
        };
        let request = ProvisionRequest {
            count: 1,
            resources: Some(demand.resources),
            labels: demand
                .hints
                .region
                .iter()
                .map(|r| ("region".to_owned(), r.clone()))
                .collect(),
            reason: "no ready or standby host has room for a session".into(),
        };
        let this = self.clone();
        tokio::spawn(async move { this.provision(i, request).await });
        Some(Ok(()))
    }

    async fn provision(self: Arc<Self>, driver: usize, request: ProvisionRequest) {
        let name = self.infos[driver].name.clone();
        self.counters.provisions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(driver = %name, ?request, "asking the driver for a host");
        let answer = tokio::time::timeout(
            DRIVER_CALL_TIMEOUT,
            self.drivers[driver].driver.provision(request),
        )
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => Err(DriverError::Unavailable {
                driver: name.clone(),
                message: format!("no answer within {} s", DRIVER_CALL_TIMEOUT.as_secs()),
            }),
        };
        let answer = answer.and_then(|reports| check_reports(&name, &reports).map(|()| reports));
        {
            let mut inner = self.lock();
            if let Some(calls) = inner.in_flight_calls.get_mut(&driver) {
                *calls = calls.saturating_sub(1);
            }
            match &answer {
                Ok(_) => inner.provision_failures.remove(&driver),
                Err(error) => inner
                    .provision_failures
                    .insert(driver, format!("{error} ({})", error.code())),
            };
        }
        match answer {
            Ok(reports) => {
                tracing::info!(driver = %name, hosts = reports.len(), "the driver is bringing up hosts");
                self.merge(driver, reports, true);
                self.update_states();
            }
            Err(error) => {
                self.counters
                    .provision_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(driver = %name, %error, code = error.code(), "provisioning failed");
                self.changed.notify_waiters();
            }
        }
    }

    /// Releases hosts idle past their driver's `idle_release` (down to its minimum) and
    /// hosts brought up that never answered; demotes idle promoted standby hosts.
    pub(super) fn scale_down(self: &Arc<Self>) {
        let mut releases = Vec::new();
        let mut demoted = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for (i, slot) in self.drivers.iter().enumerate() {
                let Some(scaling) = &slot.scaling else {
                    continue;
                };
                let mut kept = inner
                    .hosts
                    .iter()
                    .filter(|h| h.driver == i && !h.releasing)
                    .count();
                for (host, s) in inner.hosts.iter_mut().zip(inner.slots.iter_mut()) {
                    if host.driver != i || host.releasing || host.sessions > 0 {
                        continue;
                    }
                    // A host that never answered is no capacity: released whatever the
                    // minimum, so a driver at its maximum can bring up another.
                    let never_answered = !host.sidecar.has_answered()
                        && host.seen_at.elapsed() > scaling.provision_timeout;
                    // Standby hosts are the driver's reserve: only hosts in use are let go.
                    let idle = s.state == HostState::Ready
                        && kept > scaling.min_hosts
                        && host.idle_since.elapsed() > scaling.idle_release;
                    if never_answered || idle {
                        // Takes nothing from now on (placement reads the slot's state).
                        host.releasing = true;
                        host.reason = "being released by its driver".into();
                        host.state_since_ms = now_ms();
                        kept -= 1;
                        let why = if never_answered {
                            format!(
                                "its sidecar did not answer within {} s",
                                scaling.provision_timeout.as_secs()
                            )
                        } else {
                            format!("idle for {} s", host.idle_since.elapsed().as_secs())
                        };
                        let from = std::mem::replace(&mut s.state, HostState::Draining);
                        releases.push((i, host.report.id.clone(), from, why));
                    }
                }
            }
            for host in inner.hosts.iter_mut() {
                if host.promoted
                    && host.sessions == 0
                    && host.idle_since.elapsed() > self.config.demote_after
                {
                    host.promoted = false;
                    demoted.push(host.report.id.clone());
                }
            }
        }
        if !demoted.is_empty() {
            self.update_states();
        }
        for (driver, host, from, why) in releases {
            if from != HostState::Draining {
                self.record(
                    &host,
                    &self.infos[driver].name,
                    Some(from),
                    Some(HostState::Draining),
                    "being released by its driver",
                );
            }
            let this = self.clone();
            tokio::spawn(async move { this.release_host(driver, host, why).await });
        }
    }

    async fn release_host(self: Arc<Self>, driver: usize, host: String, why: String) {
        let name = self.infos[driver].name.clone();
        let released = tokio::time::timeout(
            DRIVER_CALL_TIMEOUT,
            self.drivers[driver].driver.release(&host),
        )
        .await;
        let from = {
            let mut inner = self.lock();
            let Some(i) = inner.index(&host) else { return };
            match &released {
                Ok(Ok(())) => {
                    let from = inner.slots[i].state;
                    inner.hosts.remove(i);
                    inner.slots.remove(i);
                    inner.reindex();
                    Some(from)
                }
                _ => {
                    // Tried again at a later refresh.
                    inner.hosts[i].releasing = false;
                    None
                }
            }
        };
        match (released, from) {
            (Ok(Ok(())), Some(from)) => {
                self.counters.releases.fetch_add(1, Ordering::Relaxed);
                self.record(&host, &name, Some(from), None, &format!("released: {why}"));
            }
            (Ok(Err(error)), _) => {
                tracing::warn!(driver = %name, host, %error, "the driver did not release the host")
            }
            (Err(_), _) => tracing::warn!(driver = %name, host, "releasing the host timed out"),
            _ => {}
        }
    }
}
