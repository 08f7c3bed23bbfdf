//! The adversarial losses and one optimisation step of each network.

use super::config::GanLoss;
use super::model::{Discriminator, Generator};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softplus};
use rayon::prelude::*;

/// Discriminator loss on real and generated logits (mean over each batch, summed).
/// Non-saturating: binary cross-entropy with target `1 - smoothing` for real images (one-sided
/// label smoothing) and 0 for generated ones. Hinge: mean relu(1 - real) + mean relu(1 + fake).
pub fn d_loss(kind: GanLoss, real: Tensor<1>, fake: Tensor<1>, smoothing: f32) -> Tensor<1> {
    match kind {
        GanLoss::NonSaturating => {
            let t = 1.0 - smoothing as f64;
            let real_term = softplus(real.clone().neg(), 1.0).mul_scalar(t)
                + softplus(real, 1.0).mul_scalar(1.0 - t);
            real_term.mean() + softplus(fake, 1.0).mean()
        }
        GanLoss::Hinge => {
            relu(real.neg().add_scalar(1.0)).mean() + relu(fake.add_scalar(1.0)).mean()
        }
    }
}

/// Generator loss on the discriminator's logits for generated images.
/// Non-saturating: −log D(G(z)) = softplus(−logit). Hinge: −mean logit.
pub fn g_loss(kind: GanLoss, fake: Tensor<1>) -> Tensor<1> {
    match kind {
        GanLoss::NonSaturating => softplus(fake.neg(), 1.0).mean(),
        GanLoss::Hinge => fake.mean().neg(),
    }
}

/// What one discriminator step measured (before its update).
#[derive(Clone, Copy, Debug, Default)]
pub struct DStats {
    pub loss: f64,
    /// Mean D(x) (as a probability) on the real batch.
    pub real_prob: f64,
    /// Mean D(G(z)) on the generated batch.
    pub fake_prob: f64,
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// One batch on the host: real images (NCHW floats in [-1, 1]) and the noise for the D and G
/// steps (`n` × `latent` each).
pub struct HostBatch {
    pub real: Vec<f32>,
    pub z_d: Vec<f32>,
    pub z_g: Vec<f32>,
    pub n: usize,
    pub size: usize,
    pub latent: usize,
}

impl HostBatch {
    /// Image range `[a, b)` as tensors: (real, z_d, z_g).
    fn part(&self, a: usize, b: usize, device: &Device) -> (Tensor<4>, Tensor<2>, Tensor<2>) {
        let (px, l) = (3 * self.size * self.size, self.latent);
        let img = TensorData::new(
            self.real[a * px..b * px].to_vec(),
            [b - a, 3, self.size, self.size],
        );
        let z = |v: &[f32]| {
            Tensor::<2>::from_data(
                TensorData::new(v[a * l..b * l].to_vec(), [b - a, l]),
                device,
            )
        };
        (Tensor::from_data(img, device), z(&self.z_d), z(&self.z_g))
    }

    /// Split into `workers` contiguous parts (fewer when the batch is small).
    fn ranges(&self, workers: usize) -> Vec<(usize, usize)> {
        let per = self.n.div_ceil(workers.clamp(1, self.n.max(1)));
        (0..self.n)
            .step_by(per.max(1))
            .map(|a| (a, (a + per).min(self.n)))
            .collect()
    }
}

/// Re-roots every trainable parameter as a new autodiff leaf (same id, same values), so that
/// passes on different threads build separate graphs.
struct FreshLeaves;

impl burn::module::ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| {
            if t.is_require_grad() {
                t.detach().require_grad()
            } else {
                t
            }
        })
    }
}

fn fresh<M: Module>(m: &M, workers: usize) -> M {
    if workers > 1 {
        m.clone().map(&mut FreshLeaves)
    } else {
        m.clone()
    }
}

/// One discriminator update on a real batch and a batch generated from `z_d` (the generator
/// is not updated: its output is detached). On the CPU the batch is cut into one part per
/// worker, each part runs forward and backward on its own thread, and the gradients (each
/// weighted by its part's share) are summed before one optimiser step; batch-norm statistics
/// are per part.
pub fn d_step(
    g: &Generator,
    d: Discriminator,
    optim: &mut ModuleOptimizer,
    batch: &HostBatch,
    (kind, smoothing, lr): (GanLoss, f32, f64),
    workers: usize,
    device: &Device,
) -> (Discriminator, DStats) {
    let ranges = batch.ranges(workers);
    let w = ranges.len();
    let outcomes: Vec<(GradientsParams, [f64; 3])> = ranges
        .par_iter()
        .map(|&(a, b)| {
            let (real, z, _) = batch.part(a, b, device);
            let (gk, dk) = (fresh(g, w), fresh(&d, w));
            let share = (b - a) as f64 / batch.n as f64;
            let real_logits = dk.forward(real);
            let fake_logits = dk.forward(gk.forward(z).detach());
            let probs = [
                scalar(sigmoid(real_logits.clone().detach()).mean()) * share,
                scalar(sigmoid(fake_logits.clone().detach()).mean()) * share,
            ];
            let loss = d_loss(kind, real_logits, fake_logits, smoothing);
            let value = scalar(loss.clone().detach()) * share;
            let grads = GradientsParams::from_grads(loss.mul_scalar(share).backward(), &dk);
            (grads, [value, probs[0], probs[1]])
        })
        .collect();
    let mut sums = [0f64; 3];
    for (_, v) in &outcomes {
        (0..3).for_each(|i| sums[i] += v[i]);
    }
    let grads = MultiGradientsParams {
        grads: outcomes
            .into_iter()
            .map(|(g, _)| (g, device.clone()))
            .collect(),
    };
    let stats = DStats {
        loss: sums[0],
        real_prob: sums[1],
        fake_prob: sums[2],
    };
    (optim.step_multi(lr, d, grads), stats)
}

/// One generator update through the discriminator; only the generator's parameters move.
/// Data-parallel like [`d_step`].
pub fn g_step(
    g: Generator,
    d: &Discriminator,
    optim: &mut ModuleOptimizer,
    batch: &HostBatch,
    (kind, lr): (GanLoss, f64),
    workers: usize,
    device: &Device,
) -> (Generator, f64) {
    let ranges = batch.ranges(workers);
    let w = ranges.len();
    let outcomes: Vec<(GradientsParams, f64)> = ranges
        .par_iter()
        .map(|&(a, b)| {
            let (_, _, z) = batch.part(a, b, device);
            let (gk, dk) = (fresh(&g, w), fresh(d, w));
            let share = (b - a) as f64 / batch.n as f64;
            let loss = g_loss(kind, dk.forward(gk.forward(z)));
            let value = scalar(loss.clone().detach()) * share;
            (
                GradientsParams::from_grads(loss.mul_scalar(share).backward(), &gk),
                value,
            )
        })
        .collect();
    let value = outcomes.iter().map(|o| o.1).sum();
    let grads = MultiGradientsParams {
        grads: outcomes
            .into_iter()
            .map(|(g, _)| (g, device.clone()))
            .collect(),
    };
    (optim.step_multi(lr, g, grads), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan::model::NetSpec;
    use burn::optim::AdamConfig;

    fn t1(v: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
    }

    #[test]
    fn losses_match_their_formulas() {
        let dev = Device::default();
        let ln2 = std::f64::consts::LN_2;
        let zero = || t1(&[0.0, 0.0], &dev);
        // Logit 0 = probability ½: BCE is ln 2 per term, whatever the smoothing.
        let ns = scalar(d_loss(GanLoss::NonSaturating, zero(), zero(), 0.1));
        assert!((ns - 2.0 * ln2).abs() < 1e-5, "{ns}");
        assert!((scalar(g_loss(GanLoss::NonSaturating, zero())) - ln2).abs() < 1e-5);
        let h = scalar(d_loss(
            GanLoss::Hinge,
            t1(&[2.0, 0.5], &dev),
            t1(&[-2.0, 0.0], &dev),
            0.0,
        ));
        assert!((h - (0.25 + 0.5)).abs() < 1e-6, "{h}");
        assert!((scalar(g_loss(GanLoss::Hinge, t1(&[1.0, 3.0], &dev))) + 2.0).abs() < 1e-6);
        // Smoothing raises the loss of a confident real logit.
        let sure = || t1(&[6.0], &dev);
        let low = || t1(&[-6.0], &dev);
        let plain = scalar(d_loss(GanLoss::NonSaturating, sure(), low(), 0.0));
        let smooth = scalar(d_loss(GanLoss::NonSaturating, sure(), low(), 0.1));
        assert!(smooth > plain + 0.5, "{plain} {smooth}");
    }

    #[test]
    fn one_discriminator_step_lowers_its_loss_on_a_fixed_batch() {
        let device = Device::default().autodiff();
        device.seed(3);
        let spec = NetSpec {
            image_size: 32,
            latent: 8,
            width: 4,
        };
        let g = Generator::new(&spec, &device);
        let batch = HostBatch {
            real: (0..8 * 3 * 32 * 32)
                .map(|i| ((i * 7919 % 2000) as f32 / 1000.0) - 1.0)
                .collect(),
            z_d: crate::gan::sample::noise(1, 8, 8),
            z_g: crate::gan::sample::noise(2, 8, 8),
            n: 8,
            size: 32,
            latent: 8,
        };
        for workers in [1, 2] {
            let mut d = Discriminator::new(&spec, &device);
            let mut optim = AdamConfig::new().with_beta_1(0.5).init();
            let mut losses = Vec::new();
            for _ in 0..2 {
                let (next, s) = d_step(
                    &g,
                    d,
                    &mut optim,
                    &batch,
                    (GanLoss::NonSaturating, 0.0, 2e-4),
                    workers,
                    &device,
                );
                d = next;
                losses.push(s.loss);
            }
            assert!(
                losses[1] < losses[0],
                "{workers} workers: D loss {losses:?}"
            );
        }
    }
}
