//! Adam as TF1's `ApplyAdam` (the reference: beta1 0.9, beta2 0.999, epsilon 0.1):
//!
//! ```text
//! lr_t <- lr * sqrt(1 - beta2^t) / (1 - beta1^t)
//! m    <- beta1 * m + (1 - beta1) * g
//! v    <- beta2 * v + (1 - beta2) * g^2
//! w    <- w - lr_t * m / (sqrt(v) + eps)      (eps outside the root, not bias-corrected)
//! ```

use burn::tensor::Tensor;

use super::UpdateRule;

#[derive(Clone, Copy, Debug)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { beta1: 0.9, beta2: 0.999, epsilon: 0.1 }
    }
}

impl UpdateRule for Adam {
    fn slot_names(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>> {
        vec![like.zeros_like(), like.zeros_like()]
    }

    fn apply(&self, lr: f64, t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1> {
        let t = t.max(1) as i32;
        let lr_t = lr * (1.0 - self.beta2.powi(t)).sqrt() / (1.0 - self.beta1.powi(t));
        let m = slots[0].clone().mul_scalar(self.beta1) + g.clone().mul_scalar(1.0 - self.beta1);
        let v = slots[1].clone().mul_scalar(self.beta2) + g.square().mul_scalar(1.0 - self.beta2);
        let step = m.clone().mul_scalar(lr_t) / v.clone().sqrt().add_scalar(self.epsilon);
        slots[0] = m;
        slots[1] = v;
        w - step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::test_util::{assert_close, run};

    #[test]
    fn matches_hand_computed_steps() {
        // lr 0.1, w0 = [1, -2], g1 = [0.5, 0.25], g2 = [-0.2, 0.1]
        // t=1: lr_t = 0.1*sqrt(0.001)/0.1 = 0.0316227766; m = 0.1 g; v = 0.001 g^2
        //      step = lr_t * 0.1 g / (sqrt(0.001)|g| + 0.1)
        let lr1 = 0.1 * 0.001f64.sqrt() / 0.1;
        let s1 = |g: f64| lr1 * 0.1 * g / (0.001f64.sqrt() * g.abs() + 0.1);
        let lr2 = 0.1 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.81);
        let s2 = |g1: f64, g2: f64| {
            let m = 0.9 * 0.1 * g1 + 0.1 * g2;
            let v = 0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2;
            lr2 * m / (v.sqrt() + 0.1)
        };
        let w1 = [1.0 - s1(0.5), -2.0 - s1(0.25)];
        let want = [w1, [w1[0] - s2(0.5, -0.2), w1[1] - s2(0.25, 0.1)]];
        assert!((w1[0] - (1.0 - 0.0316227766 * 0.05 / (0.0158113883 + 0.1))).abs() < 1e-9);
        let got = run(&Adam::default(), 0.1, [1.0, -2.0], &[[0.5, 0.25], [-0.2, 0.1]]);
        assert_close(&got, &want);
    }
}
