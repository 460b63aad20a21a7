//! RMSProp as TF1's `ApplyRMSProp` with momentum (the reference: decay 0.9, momentum 0.9,
//! epsilon 1.0):
//!
//! ```text
//! ms  <- decay * ms + (1 - decay) * g^2          (ms starts at 1, not 0)
//! mom <- momentum * mom + lr * g / sqrt(ms + eps) (eps inside the root)
//! w   <- w - mom
//! ```

use burn::tensor::Tensor;

use super::UpdateRule;

#[derive(Clone, Copy, Debug)]
pub struct RmsProp {
    pub decay: f64,
    pub momentum: f64,
    pub epsilon: f64,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp { decay: 0.9, momentum: 0.9, epsilon: 1.0 }
    }
}

impl UpdateRule for RmsProp {
    fn slot_names(&self) -> &'static [&'static str] {
        &["rms", "momentum"]
    }

    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>> {
        vec![like.ones_like(), like.zeros_like()]
    }

    fn apply(&self, lr: f64, _t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1> {
        let ms = slots[0].clone().mul_scalar(self.decay) + g.clone().square().mul_scalar(1.0 - self.decay);
        let step = g.mul_scalar(lr) / ms.clone().add_scalar(self.epsilon).sqrt();
        let mom = slots[1].clone().mul_scalar(self.momentum) + step;
        slots[0] = ms;
        slots[1] = mom.clone();
        w - mom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::test_util::{assert_close, run};

    #[test]
    fn matches_hand_computed_steps() {
        // w0 = [1, -2], lr 0.1, g1 = [0.5, 0.25], g2 = [-0.2, 0.1]
        // element 0: ms1 = 0.9*1 + 0.1*0.25 = 0.925; mom1 = 0.1*0.5/sqrt(1.925) = 0.0360375...
        //            w1 = 0.96396250...; ms2 = 0.9*0.925 + 0.1*0.04 = 0.8365
        //            mom2 = 0.9*mom1 - 0.02/sqrt(1.8365); w2 = w1 - mom2
        let m1a = 0.05 / 1.925f64.sqrt();
        let m1b = 0.025 / (0.9 + 0.1 * 0.0625 + 1.0f64).sqrt();
        let ms2b = 0.9 * (0.9 + 0.1 * 0.0625) + 0.1 * 0.01;
        let m2a = 0.9 * m1a - 0.02 / 1.8365f64.sqrt();
        let m2b = 0.9 * m1b + 0.01 / (ms2b + 1.0f64).sqrt();
        let want = [[1.0 - m1a, -2.0 - m1b], [1.0 - m1a - m2a, -2.0 - m1b - m2b]];
        assert!((want[0][0] - 0.963_962_501_5).abs() < 1e-9);
        let got = run(&RmsProp::default(), 0.1, [1.0, -2.0], &[[0.5, 0.25], [-0.2, 0.1]]);
        assert_close(&got, &want);
    }
}
