//! One optimisation step, data-parallel over the CPU's cores.

use crate::data::{self, ImageSet, Normalization};
use crate::model::Network;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
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

/// Whether the visitor or mapper is at a batch-norm running statistic.
fn at_running_stat(path: &[(String, String)]) -> bool {
    path.last().is_some_and(|(name, container)| {
        container == "Struct:BatchNorm" && (name == "running_mean" || name == "running_var")
    })
}

/// Batch-norm's running statistics (mean, then variance, of each batch-norm in module order:
/// the same order in every copy of a network).
#[derive(Default)]
struct CollectStats {
    path: Vec<(String, String)>,
    values: Vec<Tensor<1>>,
}

impl ModuleVisitor for CollectStats {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.into(), container_type.into()));
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if at_running_stat(&self.path) {
            let t = param.val();
            let n = t.shape().num_elements();
            self.values.push(t.reshape([n]));
        }
    }
}

/// Writes running statistics in the order [`CollectStats`] reads them.
struct SetStats {
    path: Vec<(String, String)>,
    values: std::vec::IntoIter<Tensor<1>>,
}

impl ModuleMapper for SetStats {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.into(), container_type.into()));
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !at_running_stat(&self.path) {
            return param;
        }
        match self.values.next() {
            Some(v) => param.map(|old| v.reshape(old.dims())),
            None => param,
        }
    }
}

/// The running statistics of `model`, with whatever its forward passes left pending folded in.
fn running_stats(model: &Network) -> Vec<Tensor<1>> {
    // `valid` folds each running state's pending per-thread updates into its value.
    let _ = model.valid();
    let mut c = CollectStats::default();
    model.visit(&mut c);
    c.values
}

/// One optimisation step in `batch.parts` parts: each part runs forward and backward on its own
/// thread (the CPU backend runs one pass on one core), and the gradients — each part's loss
/// weighted by its share of the batch — are summed before a single optimiser step. Batch-norm
/// statistics are per part, as in data-parallel training on several GPUs.
///
/// Batch-norm's running statistics are moved deterministically: burn keeps a running state's
/// updates per thread and averages them in hash order whenever a pass on a thread that already
/// left one reads it, so what a step leaves depends on which parts rayon happens to run on which
/// thread (two parts on one thread compose instead of averaging). Here each part runs on a copy
/// with running states of its own, and the step sets the model's statistics to the mean of
/// the parts' in part order — the average burn means, independent of scheduling.
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
    let has_stats = !running_stats(&model).is_empty();
    let outcomes: Vec<(GradientsParams, f64, usize, Vec<Tensor<1>>)> = parts
        .par_iter()
        .enumerate()
        .map(|(k, part)| {
            let seed = batch.augment.map(|(a, s)| (a, s.wrapping_add(k as u64)));
            if has_stats {
                // Fresh autodiff leaves (same ids, same values) and running states of its own.
                let own = model.valid().train();
                let (g, loss, correct) =
                    part_gradients(&own, loss_fn, batch, part, seed, total, device);
                return (g, loss, correct, running_stats(&own));
            }
            // Each pass gets its own autodiff leaves, hence its own graph: burn locks a graph
            // for a whole backward pass, and passes sharing leaves would share one graph.
            let fresh;
            let model = if workers > 1 {
                fresh = model.clone().map(&mut FreshLeaves);
                &fresh
            } else {
                &model
            };
            let (g, loss, correct) =
                part_gradients(model, loss_fn, batch, part, seed, total, device);
            (g, loss, correct, Vec::new())
        })
        .collect();
    let loss = outcomes.iter().map(|o| o.1).sum();
    let correct = outcomes.iter().map(|o| o.2).sum();
    let mut stats: Option<Vec<Tensor<1>>> = None;
    let mut grads = Vec::with_capacity(outcomes.len());
    for (g, _, _, part_stats) in outcomes {
        grads.push((g, device.clone()));
        stats = Some(match stats {
            None => part_stats,
            Some(sum) => sum
                .into_iter()
                .zip(part_stats)
                .map(|(a, b)| a + b)
                .collect(),
        });
    }
    let model = match stats {
        Some(sum) if has_stats => {
            let n = parts.len() as f64;
            let mean: Vec<Tensor<1>> = sum.into_iter().map(|t| t.div_scalar(n)).collect();
            model.map(&mut SetStats {
                path: Vec::new(),
                values: mean.into_iter(),
            })
        }
        _ => model,
    };
    StepOutcome {
        model: optim.step_multi(lr, model, MultiGradientsParams { grads }),
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

    /// With batch-norm, a step leaves the same weights and running statistics whether its two
    /// parts run on two threads or one after the other on one (as a loaded machine may
    /// schedule them): burn's per-thread running states composed the parts' updates in the
    /// second case and averaged them in the first.
    #[test]
    fn batch_norm_statistics_do_not_depend_on_scheduling() {
        let arch = ArchConfig::Cnn(CnnConfig {
            stem: 0,
            stem_stride: 1,
            stages: vec![
                StageConfig {
                    channels: 4,
                    convs: 1,
                    pool: true,
                },
                StageConfig {
                    channels: 8,
                    convs: 1,
                    pool: true,
                },
            ],
            kernel: 3,
            batch_norm: true,
            activation: Default::default(),
            global_pool: Default::default(),
            hidden: vec![],
            dropout: 0.0,
        });
        let device = Device::default().autodiff();
        device.seed(5);
        let set = ImageSet {
            size: 8,
            pixels: (0..32 * 8 * 8 * 3).map(|i| (i * 37 % 251) as u8).collect(),
            labels: (0..32).map(|i| (i % 2) as u8).collect(),
            paths: vec![],
        };
        let indices: Vec<usize> = (0..32).collect();
        let norm = Normalization::unit();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let init = arch.init(8, &device);
        let before = running_stats(&init);
        assert_eq!(before.len(), 4, "two batch-norms, mean and variance each");
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let batch = BatchSpec {
                    set: &set,
                    indices: &indices,
                    normalization: &norm,
                    augment: None,
                    parts: 2,
                };
                let mut optim = SgdConfig::new().init();
                // Three steps: the second and third read what the one before left.
                let mut model = init.clone().valid().train();
                for _ in 0..3 {
                    model = train_step(model, &mut optim, &loss_fn, &batch, 0.1, &device).model;
                }
                (flat(&model.valid()), running_stats(&model))
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0, "weights and statistics");
        let moved = two.1[0].clone().into_data().try_to_vec::<f32>().unwrap();
        let was = before[0].clone().into_data().try_to_vec::<f32>().unwrap();
        assert_ne!(moved, was, "the running mean moved");
        // Again on two threads: the same to the bit.
        assert_eq!(run(2).0, two.0);
    }
}
