//! [`HeadSearch`]: where the global log ends, found by probing it.

/// The galloping search of the stores' provided `head_position`, without its reads, so
/// that the sync and the async trait share it: O(log n) one-event reads for the last
/// position at or after which an event exists.
#[derive(Debug, Default)]
pub(crate) struct HeadSearch {
    /// The last position known to hold an event (0: none found yet).
    last: u64,
    /// The distance of the next probe after `last` (0: not started).
    step: u64,
    done: bool,
}

impl HeadSearch {
    /// The position to read the first event at or after, or `None` once the head is found.
    pub(crate) fn next_probe(&self) -> Option<u64> {
        match (self.done, self.step) {
            (true, _) => None,
            (false, 0) => Some(1),
            (false, step) => Some(self.last.saturating_add(step)),
        }
    }

    /// Records the first position the probe found (`None`: nothing at or after it).
    pub(crate) fn found(&mut self, found: Option<u64>) {
        match (found, self.step) {
            (None, 0) => self.done = true,
            (Some(position), 0) => {
                self.last = position;
                self.step = 1;
            }
            (Some(position), step) => {
                self.last = position;
                self.step = step.saturating_mul(2);
            }
            (None, 1) => self.done = true,
            (None, step) => self.step = (step / 2).max(1),
        }
    }

    /// The head found (0: the log is empty).
    pub(crate) fn head(&self) -> u64 {
        self.last
    }
}
