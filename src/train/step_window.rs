//! Training steps whose results are read back from the device a window at a time
//! (`facenet train --sync_every N`).
//!
//! A read-back makes the host wait until the device has finished everything queued so far;
//! on a GPU, reading every step's loss leaves the device idle while the host builds the next
//! step's graph. A window applies up to N steps without reading anything, each leaving its
//! loss terms and quick finiteness probes (`[STEP_SCALARS]`) on the device, and then reads
//! all of them in one transfer:
//!
//! - every step finite: all of them are kept, and their values logged as one step's would be;
//! - one of them not: the state goes back to where the window started (network, batch-norm
//!   running statistics, optimiser, centres: tensor handles kept from the window's first
//!   step, nothing copied), and the caller runs the window's batches again one step at a
//!   time, with the same dropout seeds and learning rates, refusing the bad step exactly as
//!   `--sync_every 1` would have. So N changes when the host waits, never the result.
//!
//! The cost is memory: the state before the window and the window's input batches stay on
//! the device until it is read.

use burn::tensor::Tensor;

use super::loss::{read_scalars, LossValues, STEP_SCALARS};
use super::step::{StepError, TrainStep, Undo};

/// How a window ended.
#[derive(Debug)]
pub enum Settled {
    /// Every step was finite and is kept: their loss values, in order.
    Applied(Vec<LossValues>),
    /// A step was not finite: the state is back where the window started; run the window's
    /// batches again one at a time ([`TrainStep::run`]).
    Undone,
}

/// Steps applied since the last read-back.
#[derive(Default)]
pub struct StepWindow {
    undo: Option<Undo>,
    scalars: Vec<Tensor<1>>,
}

impl StepWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Steps applied and not read yet.
    pub fn len(&self) -> usize {
        self.scalars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scalars.is_empty()
    }

    /// Applies one step (as [`TrainStep::run`] does, without reading anything back).
    pub fn push(&mut self, step: &mut TrainStep, x: Tensor<4>, labels: &[i64], lr: f64) -> Result<(), StepError> {
        let (undo, scalars) = step.advance(x, labels, lr)?;
        if self.undo.is_none() {
            self.undo = Some(undo);
        }
        self.scalars.push(scalars);
        Ok(())
    }

    /// Reads every step's numbers in one transfer and keeps the steps, or undoes all of them
    /// when one was not finite. The window is empty afterwards.
    pub fn settle(&mut self, step: &mut TrainStep) -> Settled {
        let scalars = std::mem::take(&mut self.scalars);
        let undo = self.undo.take();
        let (Some(undo), false) = (undo, scalars.is_empty()) else { return Settled::Applied(Vec::new()) };
        let k = scalars.len();
        let v: Vec<f32> = Tensor::cat(scalars, 0).try_into_vec_as::<f32>().unwrap_or_default();
        let weights = step.loss_weights();
        let values: Vec<LossValues> = v
            .chunks_exact(STEP_SCALARS)
            .map(|chunk| read_scalars(chunk, &weights))
            .filter(|(vals, quick)| vals.total.is_finite() && quick.iter().all(|p| p.is_finite()))
            .map(|(vals, _)| vals)
            .collect();
        // a failed read-back counts as a non-finite step: run the window again step by step
        if values.len() != k {
            step.undo(undo);
            return Settled::Undone;
        }
        Settled::Applied(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inception_resnet_v1::InceptionResnetV1;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;
    use crate::train::center_loss::CenterLoss;
    use crate::train::loss::LossWeights;
    use crate::train::optim::Tf1Optimizer;
    use crate::train::options::OptimizerKind;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Device, TensorData};

    /// Two steps from the same initial network, without dropout: the device's random stream
    /// is shared by the tests running in parallel, so nothing here may depend on it.
    fn two_steps(device: &Device) -> [TrainStep; 2] {
        let model = InceptionResnetV1Config::small(16, 1.0, 4).init(&device.clone().autodiff());
        // initialises every parameter, in the state every clone shares
        let _ = model.valid();
        let weights = LossWeights { weight_decay: 5e-5, center_loss_factor: 1e-2, prelogits_norm_loss_factor: 5e-4, prelogits_norm_p: 1.0 };
        let step = |m: InceptionResnetV1| {
            TrainStep::new(m, Tf1Optimizer::new(OptimizerKind::Rmsprop), CenterLoss::new(4, 16, 0.9, device), weights, device)
        };
        [step(model.clone()), step(model)]
    }

    /// Every float of a network, batch-norm running statistics included.
    #[derive(Default)]
    struct Floats(Vec<f32>);

    impl ModuleVisitor for Floats {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().try_into_vec_as::<f32>().unwrap());
        }
    }

    /// Every value of the state a step changes.
    fn state(step: &TrainStep) -> (Vec<f32>, Vec<f32>, Vec<f32>, u64) {
        let mut floats = Floats::default();
        step.model().valid().visit(&mut floats);
        let w = floats.0;
        assert!(w.len() > 10_000);
        let slots = step.optimizer().state_tensors().unwrap().into_values().flat_map(|(_, v)| v).collect();
        (w, slots, step.centers().values().unwrap(), step.optimizer().steps())
    }

    fn batches(device: &Device) -> Vec<Tensor<4>> {
        let ad = device.clone().autodiff();
        (0..5).map(|k| Tensor::<4>::from_data(TensorData::new(test_images(k), [4, 3, 32, 32]), &ad)).collect()
    }

    /// Deterministic images (not from the shared random stream).
    fn test_images(k: usize) -> Vec<f32> {
        (0..4 * 3 * 32 * 32).map(|i| ((i * 7 + k * 13) % 29) as f32 / 14.0 - 1.0 + (k as f32) * 0.01).collect()
    }

    const LABELS: [i64; 4] = [0, 1, 2, 3];

    #[test]
    fn a_window_of_steps_ends_where_single_steps_do() {
        let device = Device::flex();
        let xs = batches(&device);
        let [mut one, mut windowed] = two_steps(&device);
        let mut want = Vec::new();
        for x in &xs {
            want.push(one.run(x.clone(), &LABELS, 0.01).unwrap());
        }
        let mut window = StepWindow::new();
        let mut got = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            window.push(&mut windowed, x.clone(), &LABELS, 0.01).unwrap();
            if window.len() == 3 || i == xs.len() - 1 {
                let Settled::Applied(v) = window.settle(&mut windowed) else { panic!("undone") };
                got.extend(v);
            }
        }
        assert!(window.is_empty());
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(state(&windowed), state(&one));
    }

    #[test]
    fn a_non_finite_step_undoes_the_window_and_single_steps_then_refuse_it() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let mut xs = batches(&device);
        // the fourth batch holds a NaN: its loss is not finite
        let mut v = vec![0.5f32; 4 * 3 * 32 * 32];
        v[7] = f32::NAN;
        xs[3] = Tensor::<4>::from_data(TensorData::new(v, [4, 3, 32, 32]), &ad);
        // single steps: the fourth is refused
        let [mut one, mut windowed] = two_steps(&device);
        let mut want = Vec::new();
        for x in &xs {
            want.push(one.run(x.clone(), &LABELS, 0.01).map_err(|e| e.to_string()));
        }
        assert!(want[3].is_err() && want.iter().filter(|r| r.is_err()).count() == 1, "{want:?}");
        // a window of 2 steps, then one of 3 holding the NaN batch: undone, and run again one by one
        let mut window = StepWindow::new();
        let mut got = Vec::new();
        for (lo, hi) in [(0, 2), (2, 5)] {
            for x in &xs[lo..hi] {
                window.push(&mut windowed, x.clone(), &LABELS, 0.01).unwrap();
            }
            match window.settle(&mut windowed) {
                Settled::Applied(v) => got.extend(v.into_iter().map(Ok)),
                Settled::Undone => {
                    assert_eq!(lo, 2, "only the window with the NaN batch is undone");
                    assert_eq!(windowed.optimizer().steps(), 2, "back where the window started");
                    for x in &xs[lo..hi] {
                        got.push(windowed.run(x.clone(), &LABELS, 0.01).map_err(|e| e.to_string()));
                    }
                }
            }
        }
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(state(&windowed), state(&one));
    }
}
