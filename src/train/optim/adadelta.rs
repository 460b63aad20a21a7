//! Adadelta as TF1's `ApplyAdadelta` (the reference: rho 0.9, epsilon 1e-6, learning rate
//! applied on top):
//!
//! ```text
//! acc        <- rho * acc + (1 - rho) * g^2
//! update     <- sqrt(acc_update + eps) / sqrt(acc + eps) * g
//! acc_update <- rho * acc_update + (1 - rho) * update^2
//! w          <- w - lr * update
//! ```
//! (both accumulators start at 0).

use burn::tensor::Tensor;

use super::UpdateRule;

#[derive(Clone, Copy, Debug)]
pub struct Adadelta {
    pub rho: f64,
    pub epsilon: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta { rho: 0.9, epsilon: 1e-6 }
    }
}

impl UpdateRule for Adadelta {
    fn slot_names(&self) -> &'static [&'static str] {
        &["accum", "accum_update"]
    }

    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>> {
        vec![like.zeros_like(), like.zeros_like()]
    }

    fn apply(&self, lr: f64, _t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1> {
        let acc = slots[0].clone().mul_scalar(self.rho) + g.clone().square().mul_scalar(1.0 - self.rho);
        let update = slots[1].clone().add_scalar(self.epsilon).sqrt() / acc.clone().add_scalar(self.epsilon).sqrt() * g;
        let acc_update = slots[1].clone().mul_scalar(self.rho) + update.clone().square().mul_scalar(1.0 - self.rho);
        slots[0] = acc;
        slots[1] = acc_update;
        w - update.mul_scalar(lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::test_util::{assert_close, run};

    #[test]
    fn matches_hand_computed_steps() {
        // lr 1.0 (Adadelta's natural rate), w0 = [1, -2], g1 = [0.5, 0.25], g2 = [-0.2, 0.1]
        let eps = 1e-6f64;
        let one = |g1: f64, g2: f64| {
            let acc1 = 0.1 * g1 * g1;
            let u1 = eps.sqrt() / (acc1 + eps).sqrt() * g1;
            let au1 = 0.1 * u1 * u1;
            let acc2 = 0.9 * acc1 + 0.1 * g2 * g2;
            let u2 = (au1 + eps).sqrt() / (acc2 + eps).sqrt() * g2;
            (u1, u2)
        };
        let (a1, a2) = one(0.5, -0.2);
        let (b1, b2) = one(0.25, 0.1);
        // element 0, step 1: acc = 0.025, update = 1e-3/sqrt(0.025001) * 0.5 = 0.0031622...
        assert!((a1 - 0.001 / 0.025001f64.sqrt() * 0.5).abs() < 1e-12);
        let want = [[1.0 - a1, -2.0 - b1], [1.0 - a1 - a2, -2.0 - b1 - b2]];
        let got = run(&Adadelta::default(), 1.0, [1.0, -2.0], &[[0.5, 0.25], [-0.2, 0.1]]);
        assert_close(&got, &want);
    }
}
