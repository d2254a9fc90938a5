//! When an EphemeralRunnerSet's count-only status change is written (docs/benchmarks.md).
//!
//! The set's counts change with every runner (created, running, gone), and each write is mirrored
//! to the AutoscalingRunnerSet. So a count change is written once the counts have been steady for
//! [`QUIET`], or [`MAX_DELAY`] after the first unwritten change while they keep changing; a burst
//! whose counts come back to the stored ones before then costs no write at all. A new status and a
//! phase change (`Outdated`) are written at once. Metrics gauges are set on every pass, unpaced.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rarc_crd::EphemeralRunnerSetStatus;

/// How long the counts must stay the same before they are written.
pub(crate) const QUIET: Duration = Duration::from_secs(3);
/// The longest a count change waits while the counts keep changing.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(10);

/// An unwritten count change of one set.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unwritten {
    /// When the counts first differed from the stored status.
    since: Instant,
    /// When they last changed.
    changed: Instant,
    counts: EphemeralRunnerSetStatus,
}

/// What to do with a status that differs from the stored one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pace {
    /// Write it now.
    Now,
    /// Write it later; the reconciler requeues after this long.
    After(Duration, Unwritten),
}

/// The pure decision: `wanted` differs from the stored status; `urgent` for a new status or a
/// phase change; `prev` is this set's unwritten change, if any.
pub(crate) fn pace(prev: Option<&Unwritten>, wanted: &EphemeralRunnerSetStatus, urgent: bool, now: Instant) -> Pace {
    if urgent {
        return Pace::Now;
    }
    let (since, changed) = match prev {
        Some(p) if p.counts == *wanted => (p.since, p.changed),
        Some(p) => (p.since, now),
        None => (now, now),
    };
    let due = (changed + QUIET).min(since + MAX_DELAY);
    if now >= due {
        return Pace::Now;
    }
    Pace::After(
        due - now,
        Unwritten {
            since,
            changed,
            counts: wanted.clone(),
        },
    )
}

/// The unwritten changes of this process's sets, by uid.
static UNWRITTEN: Mutex<Option<HashMap<String, Unwritten>>> = Mutex::new(None);

/// [`pace`] for the set `uid`, remembering its unwritten change. `wanted: None` (the stored
/// status already says it) forgets it: the counts came back, nothing is written.
pub(crate) fn decide(uid: &str, wanted: Option<&EphemeralRunnerSetStatus>, urgent: bool) -> Option<Pace> {
    let mut map = UNWRITTEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = map.get_or_insert_with(HashMap::new);
    let Some(wanted) = wanted else {
        map.remove(uid);
        return None;
    };
    let decision = pace(map.get(uid), wanted, urgent, Instant::now());
    match &decision {
        Pace::Now => {
            map.remove(uid);
        }
        Pace::After(_, unwritten) => {
            map.insert(uid.to_owned(), unwritten.clone());
        }
    }
    Some(decision)
}

/// Forgets a deleted set.
pub(crate) fn forget(uid: &str) {
    let mut map = UNWRITTEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(map) = map.as_mut() {
        map.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pending: i32, running: i32) -> EphemeralRunnerSetStatus {
        EphemeralRunnerSetStatus {
            current_replicas: pending + running,
            pending_ephemeral_runners: Some(pending),
            running_ephemeral_runners: Some(running),
            failed_ephemeral_runners: Some(0),
            phase: Some("Running".into()),
        }
    }

    fn after(p: &Pace) -> (Duration, Unwritten) {
        match p {
            Pace::After(d, u) => (*d, u.clone()),
            Pace::Now => panic!("expected a wait, got Now"),
        }
    }

    #[test]
    fn urgent_changes_are_written_at_once() {
        let t0 = Instant::now();
        assert_eq!(pace(None, &counts(1, 0), true, t0), Pace::Now);
        let (_, u) = after(&pace(None, &counts(1, 0), false, t0));
        assert_eq!(pace(Some(&u), &counts(1, 0), true, t0), Pace::Now);
    }

    #[test]
    fn a_change_waits_until_the_counts_are_quiet() {
        let t0 = Instant::now();
        let (d, u) = after(&pace(None, &counts(3, 0), false, t0));
        assert_eq!(d, QUIET);
        // Same counts a second later: the wait is measured from the last change.
        let (d, u) = after(&pace(Some(&u), &counts(3, 0), false, t0 + Duration::from_secs(1)));
        assert_eq!(d, QUIET - Duration::from_secs(1));
        // A new change restarts the quiet period.
        let t2 = t0 + Duration::from_secs(2);
        let (d, u) = after(&pace(Some(&u), &counts(0, 3), false, t2));
        assert_eq!(d, QUIET);
        assert_eq!(pace(Some(&u), &counts(0, 3), false, t2 + QUIET), Pace::Now);
    }

    #[test]
    fn counts_that_keep_changing_are_written_after_the_max_delay() {
        let t0 = Instant::now();
        let (_, mut u) = after(&pace(None, &counts(1, 0), false, t0));
        let step = Duration::from_secs(1);
        let mut n = 1;
        let mut t = t0;
        loop {
            t += step;
            n += 1;
            match pace(Some(&u), &counts(n, 0), false, t) {
                Pace::Now => break,
                Pace::After(d, next) => {
                    assert!(t + d <= t0 + MAX_DELAY, "never later than the max delay");
                    u = next;
                }
            }
        }
        assert_eq!(t, t0 + MAX_DELAY);
    }

    #[test]
    fn counts_back_to_the_stored_ones_are_not_written() {
        let uid = "status-pace-test";
        let Some(Pace::After(..)) = decide(uid, Some(&counts(5, 0)), false) else {
            panic!("a count change waits");
        };
        assert_eq!(decide(uid, None, false), None, "counts back: nothing to write");
        // The next change starts a new quiet period, not the old one's max delay.
        let Some(Pace::After(d, _)) = decide(uid, Some(&counts(1, 0)), false) else {
            panic!("a count change waits");
        };
        assert!(d > QUIET - Duration::from_millis(100), "{d:?}");
        forget(uid);
        assert_eq!(decide(uid, Some(&counts(1, 0)), true), Some(Pace::Now));
    }
}
