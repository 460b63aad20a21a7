//! Nesterov momentum as TF1's `ApplyMomentum` with `use_nesterov=True` (the reference:
//! momentum 0.9):
//!
//! ```text
//! acc <- momentum * acc + g              (acc starts at 0)
//! w   <- w - lr * g - lr * momentum * acc
//! ```

use burn::tensor::Tensor;

use super::UpdateRule;

#[derive(Clone, Copy, Debug)]
pub struct NesterovMomentum {
    pub momentum: f64,
}

impl Default for NesterovMomentum {
    fn default() -> Self {
        NesterovMomentum { momentum: 0.9 }
    }
}

impl UpdateRule for NesterovMomentum {
    fn slot_names(&self) -> &'static [&'static str] {
        &["accumulation"]
    }

    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>> {
        vec![like.zeros_like()]
    }

    fn apply(&self, lr: f64, _t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1> {
        let acc = slots[0].clone().mul_scalar(self.momentum) + g.clone();
        let step = g.mul_scalar(lr) + acc.clone().mul_scalar(lr * self.momentum);
        slots[0] = acc;
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
        // element 0: acc1 = 0.5, w1 = 1 - 0.05 - 0.045 = 0.905;
        //            acc2 = 0.45 - 0.2 = 0.25, w2 = 0.905 + 0.02 - 0.0225 = 0.9025
        // element 1: acc1 = 0.25, w1 = -2 - 0.025 - 0.0225 = -2.0475;
        //            acc2 = 0.225 + 0.1 = 0.325, w2 = -2.0475 - 0.01 - 0.02925 = -2.08675
        let want = [[0.905, -2.0475], [0.9025, -2.08675]];
        let got = run(&NesterovMomentum::default(), 0.1, [1.0, -2.0], &[[0.5, 0.25], [-0.2, 0.1]]);
        assert_close(&got, &want);
    }
}
