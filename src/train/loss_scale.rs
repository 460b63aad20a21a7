//! Dynamic loss scaling for `--precision f16` training, as PyTorch's `GradScaler` does it.
//!
//! f16 has 5 exponent bits: gradients below ~6e-8 flush to zero in the f16 convolutions'
//! backward passes, and values above 65504 overflow. So the loss is multiplied by a scale
//! before the backward pass and every gradient divided by it before the optimiser step (the
//! weights never see the scale). The scale starts at 2^16; a step whose scaled gradients
//! overflowed (its loss finite, but its new optimiser state or weights not) is not applied and
//! the scale halves; after 2,000 applied steps in a row it doubles. A step skipped for an
//! overflow is reported but is not a non-finite step for `--max_nonfinite_steps`, unless the
//! scale has already fallen to 1 (then the gradients themselves are not finite).
//!
//! The scale is part of the training state: checkpoints keep it and `--resume` continues with
//! it, so a resumed run scales as the uninterrupted one does.

use serde::{Deserialize, Serialize};

use crate::util::precision::Precision;

/// The loss scale and the applied steps since it last changed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Applied steps since the scale last changed.
    pub good_steps: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale { scale: Self::INITIAL, good_steps: 0 }
    }
}

impl LossScale {
    /// A fresh scale for training in `precision`: f16 only (bf16 and f32 need none).
    pub fn for_precision(precision: Precision) -> Option<Self> {
        (precision == Precision::F16).then(Self::default)
    }

    /// PyTorch's `GradScaler` defaults: start at 2^16, double after 2,000 good steps, halve on
    /// an overflow.
    pub const INITIAL: f64 = 65536.0;
    pub const GROWTH_INTERVAL: u64 = 2000;
    /// The scale never grows past this (2^24: f32 gradients stay exact when divided back).
    pub const MAX: f64 = 16_777_216.0;
    /// Below this an overflow is not the scale's fault.
    pub const MIN: f64 = 1.0;

    /// After an applied step.
    pub fn applied(&mut self) {
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(Self::MAX);
            self.good_steps = 0;
        }
    }

    /// After a step whose scaled gradients overflowed: halves the scale, `false` when it was
    /// already at [`Self::MIN`] (the overflow is then a real non-finite step).
    pub fn overflowed(&mut self) -> bool {
        if self.scale <= Self::MIN {
            return false;
        }
        self.scale = (self.scale / 2.0).max(Self::MIN);
        self.good_steps = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_after_an_interval_of_good_steps_and_halves_on_overflow() {
        let mut s = LossScale::default();
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            s.applied();
        }
        assert_eq!(s.scale, 65536.0);
        s.applied();
        assert_eq!(s, LossScale { scale: 131072.0, good_steps: 0 });
        s.applied();
        assert!(s.overflowed());
        assert_eq!(s, LossScale { scale: 65536.0, good_steps: 0 });
        let mut low = LossScale { scale: 1.5, good_steps: 7 };
        assert!(low.overflowed());
        assert_eq!(low.scale, 1.0);
        assert!(!low.overflowed(), "at the floor an overflow is the gradients' own");
        let mut high = LossScale { scale: LossScale::MAX, good_steps: LossScale::GROWTH_INTERVAL - 1 };
        high.applied();
        assert_eq!(high.scale, LossScale::MAX);
    }
}
