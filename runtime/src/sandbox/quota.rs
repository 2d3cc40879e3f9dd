//! Disk quotas: how much of a workspace a session's tools may fill.
//!
//! Usage is counted about the way `du` would: every file, directory and symlink
//! costs its size rounded up to whole 4 KiB blocks, at least one block; a file's
//! data is counted once however many hard links it has, and each further link
//! costs one block (a name is not free, or links could fill a directory for nothing). The sandbox's filesystem layer asks
//! the quota before every operation that can grow the tree (a write, a size
//! change, a new entry) and tells it after every one that shrinks it, so the
//! write that would cross the limit fails inside the guest with
//! `insufficient-space` and nothing is written.
//!
//! One quota is shared by every task of a session: charges are kept per inode
//! under one lock, so concurrent tasks writing the same or different files are
//! counted once. After a restart the usage is rebuilt from the workspace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The accounting unit: what one block of a file or one entry costs.
pub const BLOCK: u64 = 4096;

/// What a file of `size` bytes costs: whole blocks, at least one.
pub fn cost(size: u64) -> u64 {
    size.div_ceil(BLOCK).max(1).saturating_mul(BLOCK)
}

/// Identifies an inode: (device, inode number).
pub type InodeKey = (u64, u64);

/// The quota was reached: the operation was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("disk quota exceeded: {needed} more bytes asked for, {used} of {limit} bytes used")]
pub struct QuotaExceeded {
    pub needed: u64,
    pub used: u64,
    pub limit: u64,
}

/// A session's disk quota, shared by its tasks (cloning shares it).
#[derive(Clone)]
pub struct DiskQuota(Arc<Inner>);

struct Inner {
    limit: u64,
    state: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    /// Bytes charged: every inode's cost plus the blocks reserved for entries being created.
    used: u64,
    /// What each known inode is charged for.
    inodes: HashMap<InodeKey, Charge>,
}

#[derive(Clone, Copy)]
struct Charge {
    size: u64,
    /// Names beyond the first, one block each.
    extra_links: u64,
    /// Writes charged but maybe not on disk yet: while any is, what the file's
    /// size says is no reason to lower its charge.
    writing: u32,
}

impl Charge {
    fn total(self) -> u64 {
        cost(self.size).saturating_add(self.extra_links.saturating_mul(BLOCK))
    }
}

impl Usage {
    fn charged(&self, key: InodeKey) -> Option<u64> {
        self.inodes.get(&key).map(|c| c.size)
    }

    /// Charges `key` for `size` bytes, whatever the limit (it is already on disk).
    fn adopt(&mut self, key: InodeKey, size: u64) {
        if self.inodes.contains_key(&key) {
            return;
        }
        self.inodes.insert(
            key,
            Charge {
                size,
                extra_links: 0,
                writing: 0,
            },
        );
        self.used = self.used.saturating_add(cost(size));
    }

    /// Charges one more name of `key`, whatever the limit.
    fn add_link(&mut self, key: InodeKey) {
        if let Some(charge) = self.inodes.get_mut(&key) {
            charge.extra_links += 1;
            self.used = self.used.saturating_add(BLOCK);
        }
    }

    fn set_size(&mut self, key: InodeKey, size: u64) {
        if let Some(charge) = self.inodes.get_mut(&key) {
            let before = charge.total();
            charge.size = size;
            let after = charge.total();
            self.used = self.used.saturating_sub(before).saturating_add(after);
        }
    }
}

impl std::fmt::Debug for DiskQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQuota")
            .field("used", &self.used())
            .field("limit", &self.limit())
            .finish()
    }
}

impl PartialEq for DiskQuota {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DiskQuota {}

impl DiskQuota {
    /// An empty quota of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self(Arc::new(Inner {
            limit,
            state: Mutex::default(),
        }))
    }

    /// A quota of `limit` bytes charged for what a workspace already holds:
    /// `entries` gives each name's inode with its size (directories and symlinks
    /// as 0); an inode seen again is another hard link.
    pub fn rebuilt(limit: u64, entries: impl IntoIterator<Item = (InodeKey, u64)>) -> Self {
        let quota = Self::new(limit);
        {
            let mut usage = quota.lock();
            for (key, size) in entries {
                if usage.inodes.contains_key(&key) {
                    usage.add_link(key);
                } else {
                    usage.adopt(key, size);
                }
            }
        }
        quota
    }

    pub fn limit(&self) -> u64 {
        self.0.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exceeded(&self, usage: &Usage, needed: u64) -> QuotaExceeded {
        QuotaExceeded {
            needed,
            used: usage.used,
            limit: self.0.limit,
        }
    }

    /// Before a write that ends at `end`: charges the file `key` (now `size` bytes
    /// on disk) for growing to `end`, or refuses. A file not seen before is first
    /// charged for what it already holds.
    pub fn grow(&self, key: InodeKey, size: u64, end: u64) -> Result<(), QuotaExceeded> {
        self.lock().adopt(key, size);
        self.grow_known(key, end).unwrap_or(Ok(()))
    }

    /// [`DiskQuota::grow`] for a file already charged, without needing its size;
    /// `None` when the inode is not known yet.
    pub fn grow_known(&self, key: InodeKey, end: u64) -> Option<Result<(), QuotaExceeded>> {
        let mut usage = self.lock();
        let charged = usage.charged(key)?;
        if end <= charged {
            return Some(Ok(()));
        }
        let needed = cost(end) - cost(charged);
        if usage.used.saturating_add(needed) > self.0.limit {
            return Some(Err(self.exceeded(&usage, needed)));
        }
        usage.set_size(key, end);
        Some(Ok(()))
    }

    /// After an operation that shrank the file `key` (a truncation, a smaller
    /// size): it is `size` bytes now. Ignored while a write to it may still land,
    /// so a write charged before the shrink is never left uncharged after it.
    pub fn resized(&self, key: InodeKey, size: u64) {
        let mut usage = self.lock();
        match usage.inodes.get(&key).copied() {
            Some(charge) if size < charge.size && charge.writing == 0 => usage.set_size(key, size),
            Some(_) => {}
            None => usage.adopt(key, size),
        }
    }

    /// Makes sure the file `key` (now `size` bytes) is charged.
    pub fn observe(&self, key: InodeKey, size: u64) {
        self.lock().adopt(key, size);
    }

    /// A charged write to `key` is on its way to the disk; [`DiskQuota::written`] when it is there.
    pub fn writing(&self, key: InodeKey) {
        if let Some(charge) = self.lock().inodes.get_mut(&key) {
            charge.writing += 1;
        }
    }

    /// A write announced by [`DiskQuota::writing`] is done (or failed).
    pub fn written(&self, key: InodeKey) {
        if let Some(charge) = self.lock().inodes.get_mut(&key) {
            charge.writing = charge.writing.saturating_sub(1);
        }
    }

    /// Before creating an entry: reserves one block for it, or refuses.
    pub fn reserve_entry(&self) -> Result<Reservation, QuotaExceeded> {
        let mut usage = self.lock();
        if usage.used.saturating_add(BLOCK) > self.0.limit {
            return Err(self.exceeded(&usage, BLOCK));
        }
        usage.used += BLOCK;
        Ok(Reservation {
            quota: self.clone(),
            settled: false,
        })
    }

    /// After a name was removed: `links` is how many names its inode had before.
    pub fn removed(&self, key: InodeKey, links: u64) {
        let mut usage = self.lock();
        let Some(charge) = usage.inodes.get_mut(&key) else {
            return;
        };
        if links > 1 && charge.extra_links > 0 {
            charge.extra_links -= 1;
            usage.used = usage.used.saturating_sub(BLOCK);
        } else if links <= 1 {
            let total = charge.total();
            usage.inodes.remove(&key);
            usage.used = usage.used.saturating_sub(total);
        }
    }
}

/// One block held for an entry being created. Dropped unsettled (the creation
/// failed), it is given back.
#[must_use]
pub struct Reservation {
    quota: DiskQuota,
    settled: bool,
}

impl Reservation {
    /// The entry exists now as inode `key` of `size` bytes: the reserved block
    /// becomes its charge, or is given back if the inode was already charged
    /// (the entry existed, or is another link to a known file).
    pub fn settle(mut self, key: InodeKey, size: u64) {
        self.settled = true;
        let mut usage = self.quota.lock();
        usage.used = usage.used.saturating_sub(BLOCK);
        usage.adopt(key, size);
    }

    /// A new hard link to inode `key` (`size` bytes) exists now: the reserved
    /// block pays for its name (or for the file, if it was not known).
    pub fn settle_link(mut self, key: InodeKey, size: u64) {
        self.settled = true;
        let mut usage = self.quota.lock();
        usage.used = usage.used.saturating_sub(BLOCK);
        if usage.inodes.contains_key(&key) {
            usage.add_link(key);
        } else {
            usage.adopt(key, size);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let mut usage = self.quota.lock();
            usage.used = usage.used.saturating_sub(BLOCK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_whole_blocks_at_least_one() {
        assert_eq!(cost(0), BLOCK);
        assert_eq!(cost(1), BLOCK);
        assert_eq!(cost(BLOCK), BLOCK);
        assert_eq!(cost(BLOCK + 1), 2 * BLOCK);
    }

    #[test]
    fn growth_past_the_limit_is_refused_and_charges_nothing() {
        let quota = DiskQuota::new(10 * BLOCK);
        quota.reserve_entry().unwrap().settle((1, 1), 0);
        quota.grow((1, 1), 0, 5 * BLOCK).unwrap();
        assert_eq!(quota.used(), 5 * BLOCK);
        let err = quota.grow((1, 1), 5 * BLOCK, 11 * BLOCK).unwrap_err();
        assert_eq!(err.needed, 6 * BLOCK);
        assert_eq!(quota.used(), 5 * BLOCK);
        // Rewriting what is already charged costs nothing.
        quota.grow((1, 1), 5 * BLOCK, 3 * BLOCK).unwrap();
        assert_eq!(quota.used(), 5 * BLOCK);
    }

    #[test]
    fn shrinking_and_removing_give_space_back() {
        let quota = DiskQuota::new(10 * BLOCK);
        quota.grow((1, 1), 0, 8 * BLOCK).unwrap();
        quota.resized((1, 1), BLOCK);
        assert_eq!(quota.used(), BLOCK);
        quota.grow((1, 2), 0, 2 * BLOCK).unwrap();
        quota.removed((1, 2), 2);
        assert_eq!(quota.used(), 3 * BLOCK, "another link keeps the file");
        quota.removed((1, 2), 1);
        assert_eq!(quota.used(), BLOCK);
    }

    #[test]
    fn a_shrink_while_a_write_may_still_land_gives_nothing_back() {
        let quota = DiskQuota::new(100 * BLOCK);
        quota.grow((1, 1), 0, 10 * BLOCK).unwrap();
        quota.writing((1, 1));
        quota.resized((1, 1), 0);
        assert_eq!(quota.used(), 10 * BLOCK);
        quota.written((1, 1));
        quota.resized((1, 1), 0);
        assert_eq!(quota.used(), BLOCK);
    }

    #[test]
    fn reservations_are_given_back_unless_settled_on_a_new_inode() {
        let quota = DiskQuota::new(2 * BLOCK);
        drop(quota.reserve_entry().unwrap());
        assert_eq!(quota.used(), 0);
        quota.reserve_entry().unwrap().settle((1, 1), 0);
        quota.reserve_entry().unwrap().settle((1, 1), 0);
        assert_eq!(quota.used(), BLOCK, "the same inode twice is charged once");
        let held = quota.reserve_entry().unwrap();
        assert!(quota.reserve_entry().is_err());
        drop(held);
        assert!(quota.reserve_entry().is_ok());
    }

    #[test]
    fn a_rebuilt_quota_charges_what_is_there() {
        let quota = DiskQuota::rebuilt(100 * BLOCK, [((1, 1), 0), ((1, 2), 3 * BLOCK + 1)]);
        assert_eq!(quota.used(), 5 * BLOCK);
        // A second name of the same file costs a block, not the file again.
        let linked = DiskQuota::rebuilt(100 * BLOCK, [((1, 2), 3 * BLOCK), ((1, 2), 3 * BLOCK)]);
        assert_eq!(linked.used(), 4 * BLOCK);
    }

    #[test]
    fn hard_links_cost_a_block_each_and_give_it_back() {
        let quota = DiskQuota::new(100 * BLOCK);
        quota.reserve_entry().unwrap().settle((1, 1), 0);
        quota.grow((1, 1), 0, 10 * BLOCK).unwrap();
        for _ in 0..3 {
            quota
                .reserve_entry()
                .unwrap()
                .settle_link((1, 1), 10 * BLOCK);
        }
        assert_eq!(quota.used(), 13 * BLOCK);
        quota.removed((1, 1), 4);
        assert_eq!(quota.used(), 12 * BLOCK);
        // The last name frees the data and whatever links are still charged.
        quota.removed((1, 1), 1);
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn concurrent_growth_never_passes_the_limit() {
        let quota = DiskQuota::new(100 * BLOCK);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let quota = quota.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        if let Ok(entry) = quota.reserve_entry() {
                            entry.settle((t, i), 0);
                            let _ = quota.grow((t, i), 0, 3 * BLOCK);
                        }
                        assert!(quota.used() <= 100 * BLOCK);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(quota.used() <= 100 * BLOCK);
        assert!(quota.used() > 90 * BLOCK, "{}", quota.used());
    }
}
