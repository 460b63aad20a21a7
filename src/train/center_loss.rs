//! Center loss (Wen et al. 2016) as the reference computes it: a non-trainable matrix of
//! class centres (zero-initialised, `[num_classes, embedding_size]`); per batch
//!
//! ```text
//! loss = mean((prelogits - centres[label])^2)          (over batch and features)
//! centres[label] -= (1 - alfa) * (centres[label] - prelogits)
//! ```
//!
//! The loss uses the centres from before the update; the update gets no gradient and, like
//! TF's `scatter_sub`, a label that occurs several times in the batch receives the sum of its
//! rows' moves.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

/// The class centres of a training run (on the plain, non-autodiff device).
#[derive(Clone, Debug)]
pub struct CenterLoss {
    centers: Tensor<2>,
    alfa: f64,
}

impl CenterLoss {
    /// Zero centres for `num_classes` x `dim`, update rate `alfa` (`--center_loss_alfa`).
    pub fn new(num_classes: usize, dim: usize, alfa: f64, device: &Device) -> Self {
        CenterLoss { centers: Tensor::zeros([num_classes, dim], device), alfa }
    }

    /// Centres from stored values (a checkpoint).
    pub fn from_values(values: Vec<f32>, num_classes: usize, dim: usize, alfa: f64, device: &Device) -> anyhow::Result<Self> {
        if values.len() != num_classes * dim {
            anyhow::bail!("centres: {} values for {num_classes} classes x {dim}", values.len());
        }
        Ok(CenterLoss { centers: Tensor::from_data(TensorData::new(values, [num_classes, dim]), device), alfa })
    }

    /// The centres `[num_classes, dim]`.
    pub fn centers(&self) -> &Tensor<2> {
        &self.centers
    }

    /// The centres as a flat row-major vector.
    pub fn values(&self) -> anyhow::Result<Vec<f32>> {
        self.centers.clone().try_into_vec_as::<f32>().map_err(|e| anyhow::anyhow!("reading the centres: {e:?}"))
    }

    /// `centres[labels]` (`labels` on the centres' device).
    pub fn batch_centers(&self, labels: &Tensor<1, Int>) -> Tensor<2> {
        self.centers.clone().select(0, labels.clone())
    }

    /// `mean((prelogits - batch_centers)^2)`, differentiable in `prelogits` only:
    /// `batch_centers` (plain, on the same device) enters the autodiff graph as a constant,
    /// with no copy through the host.
    pub fn loss(prelogits: Tensor<2>, batch_centers: &Tensor<2>) -> Tensor<1> {
        (prelogits - batch_centers.clone()).square().mean()
    }

    /// Moves the centres of `labels` toward `prelogits` (plain tensors, no gradient), using
    /// `batch_centers` read before the update.
    pub fn update(&mut self, labels: &Tensor<1, Int>, prelogits: Tensor<2>, batch_centers: Tensor<2>) {
        let delta = (prelogits - batch_centers).mul_scalar(1.0 - self.alfa);
        self.centers = self.centers.clone().select_assign(0, labels.clone(), delta, IndexingUpdateOp::Add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(v: &[f32], rows: usize, cols: usize, d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [rows, cols]), d)
    }

    #[test]
    fn loss_then_update_as_the_reference() {
        let d = Device::flex();
        let mut cl = CenterLoss::new(3, 2, 0.9, &d);
        cl.centers = t2(&[0.0, 0.0, 1.0, 1.0, -1.0, 2.0], 3, 2, &d);
        // labels 1, 1, 2 (class 1 twice, class 0 absent)
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 1, 2], [3]), &d);
        let p = t2(&[3.0, 1.0, 1.0, -1.0, 0.0, 2.0], 3, 2, &d);
        let bc = cl.batch_centers(&labels);
        let loss: f32 = CenterLoss::loss(p.clone(), &bc).into_scalar();
        // diffs: (2, 0), (0, -2), (1, 0): squares sum 4 + 4 + 1 = 9, over 6 values
        assert!((loss - 1.5).abs() < 1e-6, "{loss}");
        cl.update(&labels, p, bc);
        let c = cl.values().unwrap();
        // class 0 untouched; class 1: (1,1) + 0.1*((3,1)-(1,1)) + 0.1*((1,-1)-(1,1)) = (1.2, 0.8)
        // class 2: (-1,2) + 0.1*((0,2)-(-1,2)) = (-0.9, 2)
        let want = [0.0, 0.0, 1.2, 0.8, -0.9, 2.0];
        for (g, w) in c.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{c:?}");
        }
    }

    #[test]
    fn loss_gradient_reaches_prelogits_only() {
        let ad = Device::flex().autodiff();
        let cl = CenterLoss::new(2, 2, 0.5, &Device::flex());
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &Device::flex());
        let p = t2(&[1.0, 2.0, 3.0, 4.0], 2, 2, &ad).require_grad();
        let loss = CenterLoss::loss(p.clone(), &cl.batch_centers(&labels));
        let grads = loss.backward();
        // d/dp mean((p - 0)^2) = 2p/4
        let g: Vec<f32> = p.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        assert_eq!(g, vec![0.5, 1.0, 1.5, 2.0]);
    }
}
