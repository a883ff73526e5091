//! The per-request random draws of Inline enforcement (probability, jitter): SplitMix64,
//! seeded by the caller, so that tests replay a seed exactly and no dependency is needed.

use std::time::Duration;

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Draw(u64);

impl Draw {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whether a request is hit at `percent` (clamped to 1..=100, as the signature rules do).
    pub fn hit(&mut self, percent: u8) -> bool {
        let percent = percent.clamp(1, 100);
        percent == 100 || self.next() % 100 < u64::from(percent)
    }

    /// A uniform duration in `0..=max`, at nanosecond resolution.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next() % max.saturating_add(1))
    }
}
