//! One optimisation step, data-parallel over the CPU's cores.

use crate::data::{self, ImageSet, Normalization};
use crate::model::Network;
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;

/// One training batch: which images of which set, and how to prepare them.
pub struct BatchSpec<'a> {
    pub set: &'a ImageSet,
    pub indices: &'a [usize],
    pub normalization: &'a Normalization,
    pub augment: Option<(&'a data::AugmentConfig, u64)>,
    /// How many parts the batch is cut into, each run on its own thread ([`step_parts`]).
    pub parts: usize,
}

/// What one optimisation step returns.
pub struct StepOutcome {
    pub model: Network,
    /// Mean loss over the batch.
    pub loss: f64,
    /// Correct argmax predictions in the batch.
    pub correct: usize,
}

/// Re-roots every trainable parameter as a new autodiff leaf: same id, same values.
struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            if t.is_require_grad() {
                t.detach().require_grad()
            } else {
                t
            }
        })
    }
}

/// How many parts a batch of `total` images is cut into on `device`: one per parallel pass,
/// but no part below ~16 images (they cost more in overhead than they gain).
pub fn step_parts(device: &Device, total: usize) -> usize {
    crate::detector::parallel_passes(device)
        .min(total / 16)
        .max(1)
}

/// One optimisation step in `batch.parts` parts: each part runs forward and backward on its own
/// thread (the CPU backend runs one pass on one core), and the gradients — each part's loss
/// weighted by its share of the batch — are summed before a single optimiser step. Batch-norm
/// statistics are per part, as in data-parallel training on several GPUs.
pub fn train_step(
    model: Network,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: &BatchSpec,
    lr: f64,
    device: &Device,
) -> StepOutcome {
    use rayon::prelude::*;
    let total = batch.indices.len();
    let workers = batch.parts.clamp(1, total.max(1));
    let parts: Vec<&[usize]> = batch.indices.chunks(total.div_ceil(workers)).collect();
    let outcomes: Vec<(GradientsParams, f64, usize)> = parts
        .par_iter()
        .enumerate()
        .map(|(k, part)| {
            // Each pass gets its own autodiff leaves, hence its own graph: burn locks a graph
            // for a whole backward pass, and passes sharing leaves would share one graph.
            let fresh;
            let model = if workers > 1 {
                fresh = model.clone().map(&mut FreshLeaves);
                &fresh
            } else {
                &model
            };
            let seed = batch.augment.map(|(a, s)| (a, s.wrapping_add(k as u64)));
            part_gradients(model, loss_fn, batch, part, seed, total, device)
        })
        .collect();
    let loss = outcomes.iter().map(|o| o.1).sum();
    let correct = outcomes.iter().map(|o| o.2).sum();
    let grads = MultiGradientsParams {
        grads: outcomes
            .into_iter()
            .map(|(g, _, _)| (g, device.clone()))
            .collect(),
    };
    StepOutcome {
        model: optim.step_multi(lr, model, grads),
        loss,
        correct,
    }
}

/// Forward and backward of one part: (gradients, weighted loss, correct predictions).
fn part_gradients(
    model: &Network,
    loss_fn: &CrossEntropyLoss,
    batch: &BatchSpec,
    part: &[usize],
    augment: Option<(&data::AugmentConfig, u64)>,
    total: usize,
    device: &Device,
) -> (GradientsParams, f64, usize) {
    let size = batch.set.size as usize;
    let floats = data::batch_floats(batch.set, part, batch.normalization, augment);
    let x = Tensor::<4>::from_data(TensorData::new(floats, [part.len(), 3, size, size]), device);
    let labels: Vec<i64> = part.iter().map(|&i| batch.set.labels[i] as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [part.len()]), device);
    let logits = model.forward(x);
    let loss = loss_fn.forward(logits.clone(), y);
    let pred: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap_or_default();
    let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let weight = part.len() as f64 / total as f64;
    let loss_value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.mul_scalar(weight).backward(), model);
    (grads, loss_value as f64 * weight, correct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchConfig, CnnConfig, StageConfig};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::SgdConfig;

    fn flat(net: &Network) -> Vec<f32> {
        struct All(Vec<f32>);
        impl burn::module::ModuleVisitor for All {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0.extend(
                    p.val()
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .unwrap(),
                );
            }
        }
        let mut all = All(Vec::new());
        net.visit(&mut all);
        all.0
    }

    #[test]
    fn a_step_in_two_parts_equals_a_one_pass_step() {
        // Without batch-norm the parts' summed, weighted gradients are the whole batch's.
        let arch = ArchConfig::Cnn(CnnConfig {
            stem: 0,
            stem_stride: 1,
            stages: vec![StageConfig {
                channels: 4,
                convs: 1,
                pool: true,
            }],
            kernel: 3,
            batch_norm: false,
            activation: Default::default(),
            global_pool: Default::default(),
            hidden: vec![],
            dropout: 0.0,
        });
        let device = Device::default().autodiff();
        device.seed(3);
        let model = arch.init(8, &device);
        let set = ImageSet {
            size: 8,
            pixels: (0..32 * 8 * 8 * 3).map(|i| (i * 31 % 253) as u8).collect(),
            labels: (0..32).map(|i| (i % 2) as u8).collect(),
            paths: vec![],
        };
        let indices: Vec<usize> = (0..32).collect();
        let norm = Normalization::unit();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let run = |parts| {
            let batch = BatchSpec {
                set: &set,
                indices: &indices,
                normalization: &norm,
                augment: None,
                parts,
            };
            let mut optim = SgdConfig::new().init();
            train_step(model.clone(), &mut optim, &loss_fn, &batch, 0.5, &device)
        };
        let (one, two) = (run(1), run(2));
        assert!(
            (one.loss - two.loss).abs() < 1e-5,
            "{} vs {}",
            one.loss,
            two.loss
        );
        assert_eq!(one.correct, two.correct);
        let (a, b) = (flat(&one.model), flat(&two.model));
        let before = flat(&model);
        assert!(
            a.iter().zip(&before).any(|(x, y)| (x - y).abs() > 1e-4),
            "the step moved nothing"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
