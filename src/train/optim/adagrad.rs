//! Adagrad as TF1's `ApplyAdagrad` (the reference: initial accumulator 0.1, no epsilon):
//!
//! ```text
//! acc <- acc + g^2          (acc starts at 0.1)
//! w   <- w - lr * g / sqrt(acc)
//! ```

use burn::tensor::Tensor;

use super::UpdateRule;

#[derive(Clone, Copy, Debug)]
pub struct Adagrad {
    pub initial_accumulator: f64,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad { initial_accumulator: 0.1 }
    }
}

impl UpdateRule for Adagrad {
    fn slot_names(&self) -> &'static [&'static str] {
        &["accumulator"]
    }

    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>> {
        vec![like.ones_like().mul_scalar(self.initial_accumulator)]
    }

    fn apply(&self, lr: f64, _t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1> {
        let acc = slots[0].clone() + g.clone().square();
        let step = g.mul_scalar(lr) / acc.clone().sqrt();
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
        // element 0: acc1 = 0.35, w1 = 1 - 0.05/sqrt(0.35) = 0.91548...; acc2 = 0.39,
        //            w2 = w1 + 0.02/sqrt(0.39)
        let a = [1.0 - 0.05 / 0.35f64.sqrt(), -2.0 - 0.025 / 0.1625f64.sqrt()];
        let want = [a, [a[0] + 0.02 / 0.39f64.sqrt(), a[1] - 0.01 / 0.1725f64.sqrt()]];
        assert!((a[0] - 0.915_484_9).abs() < 1e-6);
        let got = run(&Adagrad::default(), 0.1, [1.0, -2.0], &[[0.5, 0.25], [-0.2, 0.1]]);
        assert_close(&got, &want);
    }
}
