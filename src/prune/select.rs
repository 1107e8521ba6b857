//! Which entries to remove: a pure function of the entries, the policy and the time.

use std::time::{Duration, SystemTime};

use super::{Entry, Kind};

/// What to keep. Without `all`, an entry goes when it was unused for longer than
/// `older_than`, or when it does not fit in `keep_bytes` once the more recently used
/// entries are kept (either rule alone when only one is set). Scratch always goes: prune
/// runs only while no build does, so nothing is writing it.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub all: bool,
    pub older_than: Option<Duration>,
    pub keep_bytes: Option<u64>,
}

/// The indexes of the entries to remove, in the order given.
pub fn select(entries: &[Entry], policy: &Policy, now: SystemTime) -> Vec<usize> {
    let mut remove = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let age = now.duration_since(e.last_used).unwrap_or_default();
        remove[i] = match e.kind {
            _ if policy.all => true,
            Kind::Scratch => true,
            // Tiny, and cheap to lose only when everything goes.
            Kind::Record => false,
            _ => policy.older_than.is_some_and(|limit| age > limit),
        };
    }
    if let (Some(budget), false) = (policy.keep_bytes, policy.all) {
        // Most recently used first; ties broken by path so the choice is stable.
        let mut kept: Vec<usize> = (0..entries.len())
            .filter(|&i| !remove[i] && entries[i].kind != Kind::Record)
            .collect();
        kept.sort_by(|&a, &b| {
            entries[b]
                .last_used
                .cmp(&entries[a].last_used)
                .then_with(|| entries[a].path.cmp(&entries[b].path))
        });
        let mut used = 0u64;
        for i in kept {
            if used + entries[i].bytes > budget {
                remove[i] = true;
            } else {
                used += entries[i].bytes;
            }
        }
    }
    (0..entries.len()).filter(|&i| remove[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const DAY: Duration = Duration::from_secs(86_400);

    fn entry(kind: Kind, name: &str, bytes: u64, days_ago: u64, now: SystemTime) -> Entry {
        Entry {
            kind,
            path: PathBuf::from(name),
            bytes,
            last_used: now - DAY * days_ago as u32,
            companions: Vec::new(),
        }
    }

    fn names(entries: &[Entry], picked: Vec<usize>) -> Vec<String> {
        picked
            .into_iter()
            .map(|i| entries[i].path.display().to_string())
            .collect()
    }

    fn scene(now: SystemTime) -> Vec<Entry> {
        vec![
            entry(Kind::Lower, "old-lower", 100, 30, now),
            entry(Kind::Lower, "new-lower", 100, 0, now),
            entry(Kind::RunBlob, "mid-blob", 50, 3, now),
            entry(Kind::CacheMount, "old-cache", 10, 9, now),
            entry(Kind::Scratch, "fresh-scratch", 1, 0, now),
            entry(Kind::Record, "ancient-record", 1, 400, now),
        ]
    }

    #[test]
    fn age_removes_what_was_unused_for_longer_and_always_scratch_never_records() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let entries = scene(now);
        let policy = Policy {
            older_than: Some(DAY * 7),
            ..Policy::default()
        };
        assert_eq!(
            names(&entries, select(&entries, &policy, now)),
            ["old-lower", "old-cache", "fresh-scratch"]
        );
    }

    #[test]
    fn a_size_budget_keeps_the_most_recently_used_that_fit() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let entries = scene(now);
        let policy = Policy {
            keep_bytes: Some(160),
            ..Policy::default()
        };
        // new-lower (100) and mid-blob (50) fit; old-cache (10) still fits: 160; old-lower
        // does not.
        assert_eq!(
            names(&entries, select(&entries, &policy, now)),
            ["old-lower", "fresh-scratch"]
        );
        let tight = Policy {
            keep_bytes: Some(120),
            ..Policy::default()
        };
        assert_eq!(
            names(&entries, select(&entries, &tight, now)),
            ["old-lower", "mid-blob", "fresh-scratch"]
        );
    }

    #[test]
    fn both_rules_together_and_all() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let entries = scene(now);
        let both = Policy {
            older_than: Some(DAY * 5),
            keep_bytes: Some(100),
            ..Policy::default()
        };
        assert_eq!(
            names(&entries, select(&entries, &both, now)),
            ["old-lower", "mid-blob", "old-cache", "fresh-scratch"]
        );
        let all = Policy {
            all: true,
            ..Policy::default()
        };
        assert_eq!(
            select(&entries, &all, now),
            (0..entries.len()).collect::<Vec<_>>()
        );
        // Nothing asked: only scratch goes.
        assert_eq!(
            names(&entries, select(&entries, &Policy::default(), now)),
            ["fresh-scratch"]
        );
    }

    #[test]
    fn a_last_use_in_the_future_counts_as_now() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let entries = vec![entry(Kind::Lower, "clock-skew", 1, 0, now + DAY)];
        let policy = Policy {
            older_than: Some(Duration::ZERO),
            ..Policy::default()
        };
        assert!(select(&entries, &policy, now).is_empty());
    }
}
