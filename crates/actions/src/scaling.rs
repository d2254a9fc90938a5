//! The scaling decision and the patchID rules of the current listener (spec §9.4).

/// `min(min_runners + assigned, max_runners)`: `min_runners` is a floor of idle runners on top of
/// the assigned jobs.
pub fn desired_runners(min_runners: i64, max_runners: i64, assigned_jobs: i64) -> i64 {
    min_runners.saturating_add(assigned_jobs).min(max_runners)
}

/// The largest patch sequence number before it wraps (Go's MaxInt32).
pub const PATCH_SEQ_MAX: i64 = i32::MAX as i64;

/// patchID state of the current (0.14.x) scaler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchIdState {
    min_runners: i64,
    max_runners: i64,
    target_runners: i64,
    patch_seq: i64,
    dirty: bool,
}

impl PatchIdState {
    /// Fresh state: `targetRunners = -1`, `patchSeq = -1`, not dirty.
    pub fn new(min_runners: i64, max_runners: i64) -> Self {
        Self {
            min_runners,
            max_runners,
            target_runners: -1,
            patch_seq: -1,
            dirty: false,
        }
    }

    /// A JobStarted was handled (even if its EphemeralRunner patch failed with 404).
    pub fn job_started(&mut self) {
        self.dirty = true;
    }

    /// A JobCompleted was handled.
    pub fn job_completed(&mut self) {
        self.dirty = true;
    }

    /// The last target returned by [`PatchIdState::next`] (-1 before the first).
    pub fn target_runners(&self) -> i64 {
        self.target_runners
    }

    /// The decision for `assigned_jobs` (the latest `totalAssignedJobs`): `(target, patch_id)`.
    ///
    /// The patch id is the incremented sequence (wrapping after 2147483647 to 1), except 0 when no
    /// job started or completed since the last call, the target is unchanged and it equals
    /// `min_runners` ("empty batch at the floor: force the state"). The first call returns 0.
    pub fn next(&mut self, assigned_jobs: i64) -> (i64, i64) {
        let was_dirty = std::mem::replace(&mut self.dirty, false);
        if self.patch_seq == PATCH_SEQ_MAX {
            self.patch_seq = 0;
        }
        self.patch_seq += 1;
        let target = desired_runners(self.min_runners, self.max_runners, assigned_jobs);
        let old = std::mem::replace(&mut self.target_runners, target);
        let patch_id = if !was_dirty && target == old && target == self.min_runners {
            0
        } else {
            self.patch_seq
        };
        (target, patch_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNBOUNDED: i64 = i32::MAX as i64;

    #[derive(Clone, Copy)]
    enum Event {
        Poll,
        Started(u32),
        Completed(u32),
    }

    #[test]
    fn worked_example_of_9_4() {
        use Event::*;
        // (#, event, count, dirty before, patchSeq after, target, patchID)
        let rows = [
            (1, Poll, 3, false, 0, 3, 0),
            (2, Poll, 3, false, 1, 3, 1),
            (3, Started(3), 3, true, 2, 3, 2),
            (4, Completed(3), 0, true, 3, 1, 3),
            (5, Poll, 0, false, 4, 1, 0),
            (6, Poll, 0, false, 5, 1, 0),
            (7, Poll, 1, false, 6, 2, 6), // JobAssigned only: not dirty
            (8, Poll, 1, false, 7, 2, 7),
        ];
        let mut state = PatchIdState::new(1, 3);
        for (n, event, count, dirty, seq, target, patch_id) in rows {
            match event {
                Poll => {}
                Started(k) => (0..k).for_each(|_| state.job_started()),
                Completed(k) => (0..k).for_each(|_| state.job_completed()),
            }
            assert_eq!(state.dirty, dirty, "row {n}: dirty before");
            assert_eq!(state.next(count), (target, patch_id), "row {n}");
            assert_eq!(state.patch_seq, seq, "row {n}: patchSeq");
            assert!(!state.dirty, "row {n}: dirty cleared");
        }
    }

    #[test]
    fn desired_runner_table_15_8_items_47_to_49() {
        let rows = [
            // 47: defaults (0, MaxInt32)
            (0, UNBOUNDED, 0, 0),
            (0, UNBOUNDED, 1, 1),
            (0, UNBOUNDED, 5, 5),
            // 48: min = 1 is an idle floor
            (1, UNBOUNDED, 0, 1),
            (1, UNBOUNDED, 2, 3),
            // 49: max caps
            (0, 3, 6, 3),
            (1, 3, 3, 3),
            // no overflow at the extremes
            (i64::MAX, i64::MAX, i64::MAX, i64::MAX),
        ];
        for (min, max, assigned, want) in rows {
            assert_eq!(
                desired_runners(min, max, assigned),
                want,
                "min={min} max={max} assigned={assigned}"
            );
        }
    }

    #[test]
    fn patch_ids_item_50() {
        let mut s = PatchIdState::new(0, UNBOUNDED);
        assert_eq!(s.next(2), (2, 0), "first patch is always 0");
        assert_eq!(s.next(3), (3, 1));
        assert_eq!(s.next(3), (3, 2), "unchanged but above the floor");
        assert_eq!(s.next(0), (0, 3), "changed to the floor");
        assert_eq!(s.next(0), (0, 0), "unchanged at the floor, no job events");
        assert_eq!(s.next(0), (0, 0));
        assert_eq!(s.next(1), (1, 6), "the sequence kept counting");
    }

    #[test]
    fn patch_ids_wrap_after_max_int32() {
        let mut s = PatchIdState::new(0, UNBOUNDED);
        s.next(1);
        s.patch_seq = PATCH_SEQ_MAX - 1;
        assert_eq!(s.next(2), (2, PATCH_SEQ_MAX));
        assert_eq!(s.next(3), (3, 1), "wraps to 1, never 0 from the sequence");
        assert_eq!(s.next(4), (4, 2));
    }

    #[test]
    fn job_events_make_the_next_patch_non_zero_item_51() {
        for mark in [
            PatchIdState::job_started as fn(&mut PatchIdState),
            PatchIdState::job_completed,
        ] {
            let mut s = PatchIdState::new(1, 3);
            assert_eq!(s.next(0), (1, 0));
            assert_eq!(s.next(0), (1, 0));
            mark(&mut s);
            assert_eq!(s.next(0), (1, 2), "dirty at the floor ⇒ sequence number");
            assert_eq!(s.next(0), (1, 0), "dirty is cleared by next()");
        }
    }

    #[test]
    fn first_patch_is_zero_even_when_the_target_differs_from_min() {
        let mut s = PatchIdState::new(2, 10);
        // old = -1 ≠ target, but patchSeq went −1 → 0, so the id is 0 anyway.
        assert_eq!(s.next(5), (7, 0));
        assert_eq!(s.target_runners(), 7);
    }
}
