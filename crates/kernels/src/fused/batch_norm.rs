//! Batch-norm with batch statistics, optionally followed by ReLU6, as one autodiff node on the
//! CPU backend (the real-world backbone's batch-norms, 0.6 M activations per photograph in its
//! first layers).
//!
//! burn differentiates a training batch-norm as one node too, but builds its statistics and its
//! backward pass out of tensor operations — each reduction over the channel axis swaps it to the
//! front, which copies the whole activation — and ReLU6 (`clamp`) adds comparison masks of its
//! own. Here each channel's statistics and gradient sums are one pass over its planes (in f64,
//! in a fixed order), and the output and input gradient are one pass over each plane, spread
//! over the threads by channel or plane. Tested against burn's `BatchNorm` followed by `clamp`.

use super::kernels::lane_sum;
use super::{map_planes, tensor, with_floats};
use crate::vector::wide;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;
use std::sync::Arc;

/// The op: returns the output, the batch mean and the batch (biased) variance.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormBackend: Backend {
    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `[n, c, h·w]` and what the forward pass keeps for the backward one.
#[derive(Clone, Debug)]
pub struct Saved {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub relu6: bool,
}

impl Saved {
    /// Channel `ch`'s planes of `v` (`[n, c, h·w]`).
    fn planes<'a>(&self, v: &'a [f32], ch: usize) -> impl Iterator<Item = &'a [f32]> {
        (0..self.n).map(move |b| &v[(b * self.c + ch) * self.hw..][..self.hw])
    }

    /// Channel `ch`'s values of `v` as runs for its sums: its planes as they lie or, when they
    /// are small (under [`SHORT`] values), copied one after another into `buf` as one run, so
    /// that the vector loops do not stop at every 2×2 or 3×3 plane.
    fn runs<'a>(&self, v: &'a [f32], ch: usize, buf: &'a mut Vec<f32>) -> Vec<&'a [f32]> {
        if self.hw >= SHORT {
            return self.planes(v, ch).collect();
        }
        buf.clear();
        self.planes(v, ch).for_each(|p| buf.extend_from_slice(p));
        vec![buf]
    }

    /// Channel `ch`'s constants, copied out so that the loops over its values keep them in
    /// registers (and vectorise).
    fn channel(&self, ch: usize) -> Channel {
        Channel {
            mean: self.mean[ch],
            inv_std: self.inv_std[ch],
            gamma: self.gamma[ch],
            beta: self.beta[ch],
            relu6: self.relu6,
        }
    }
}

/// Planes shorter than this are summed as one run per channel ([`Saved::runs`]).
const SHORT: usize = 64;

#[derive(Clone, Copy)]
struct Channel {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
    relu6: bool,
}

impl Channel {
    /// The normalised value and the batch-norm's output (before ReLU6) for input `x`.
    #[inline(always)]
    fn z(self, x: f32) -> (f32, f32) {
        let xhat = (x - self.mean) * self.inv_std;
        (xhat, self.gamma * xhat + self.beta)
    }

    /// The output: `z`, clipped to `[0, 6]` under ReLU6.
    #[inline(always)]
    fn y(self, x: f32) -> f32 {
        let z = self.z(x).1;
        if self.relu6 { z.clamp(0.0, 6.0) } else { z }
    }

    /// The gradient reaching the batch-norm's output from `dy`: zero where ReLU6 clipped `z`.
    #[inline(always)]
    fn through(self, z: f32, dy: f32) -> f32 {
        if !self.relu6 || (z > 0.0 && z < 6.0) {
            dy
        } else {
            0.0
        }
    }
}

/// Output, mean and variance; statistics per channel in f64 (two passes).
pub fn forward(
    x: &[f32],
    [n, c, hw]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu6: bool,
) -> (Vec<f32>, Vec<f32>, Saved) {
    let count = (n * hw) as f64;
    let mut saved = Saved {
        n,
        c,
        hw,
        mean: vec![],
        inv_std: vec![],
        gamma: gamma.to_vec(),
        beta: beta.to_vec(),
        relu6,
    };
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map_init(Vec::new, |buf, ch| {
            let (mut mean, mut sq) = (0.0f64, 0.0f64);
            let runs = saved.runs(x, ch, buf);
            wide(
                #[inline(always)]
                || {
                    mean = runs.iter().map(|p| lane_sum(p, p, |v, _| v)).sum::<f64>() / count;
                    let m = mean as f32;
                    sq = runs
                        .iter()
                        .map(|p| lane_sum(p, p, |v, _| (v - m) * (v - m)))
                        .sum();
                },
            );
            (mean, sq / count)
        })
        .collect();
    saved.mean = stats.iter().map(|s| s.0 as f32).collect();
    saved.inv_std = stats
        .iter()
        .map(|s| (1.0 / (s.1 + epsilon).sqrt()) as f32)
        .collect();
    let var = stats.iter().map(|s| s.1 as f32).collect();
    let y = map_planes(x, x, hw, |plane| {
        let k = saved.channel(plane % c);
        #[inline(always)]
        move |x, _| k.y(x)
    });
    (y, var, saved)
}

/// Gradients of input, gamma and beta.
pub fn backward(s: &Saved, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let sums: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map_init(Default::default, |(xb, dyb), ch| {
            let k = s.channel(ch);
            let (mut dbeta, mut dgamma) = (0.0f64, 0.0f64);
            let (xs, dys) = (s.runs(x, ch, xb), s.runs(dy, ch, dyb));
            wide(
                #[inline(always)]
                || {
                    for (x, dy) in xs.iter().zip(&dys) {
                        dbeta += lane_sum(x, dy, |x, dy| k.through(k.z(x).1, dy));
                        dgamma += lane_sum(x, dy, |x, dy| {
                            let (xhat, z) = k.z(x);
                            k.through(z, dy) * xhat
                        });
                    }
                },
            );
            (dbeta, dgamma)
        })
        .collect();
    let count = (s.n * s.hw) as f64;
    let dx = map_planes(x, dy, s.hw, |plane| {
        let ch = plane % s.c;
        let k = s.channel(ch);
        let (mb, mg) = ((sums[ch].0 / count) as f32, (sums[ch].1 / count) as f32);
        let scale = k.gamma * k.inv_std;
        #[inline(always)]
        move |x, dy| {
            let (xhat, z) = k.z(x);
            scale * (k.through(z, dy) - mb - xhat * mg)
        }
    });
    let dgamma = sums.iter().map(|v| v.1 as f32).collect();
    let dbeta = sums.iter().map(|v| v.0 as f32).collect();
    (dx, dgamma, dbeta)
}

fn run_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    relu6: bool,
) -> (FlexTensor, FlexTensor, FlexTensor, Saved) {
    let dims = x.layout().shape().to_vec();
    let [n, c] = [dims[0], dims[1]];
    let hw = dims[2..].iter().product();
    let (y, var, saved) = with_floats(x, |x| {
        with_floats(gamma, |g| {
            with_floats(beta, |b| forward(x, [n, c, hw], g, b, epsilon, relu6))
        })
    });
    let mean = tensor(saved.mean.clone(), vec![c]);
    (tensor(y, dims), mean, tensor(var, vec![c]), saved)
}

impl BatchNormBackend for Flex {
    fn batch_norm_act_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu6: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (y, mean, var, _) = run_forward(&x, &gamma, &beta, epsilon, relu6);
        (y, mean, var)
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = Arc<(Saved, FlexTensor)>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pg, pb] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (saved, x) = &*ops.state;
        let (dx, dgamma, dbeta) = with_floats(x, |x| with_floats(&dy, |dy| backward(saved, x, dy)));
        if let Some(node) = px {
            let dims = x.layout().shape().to_vec();
            grads.register::<Flex>(node.id, tensor(dx, dims));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(dgamma, vec![saved.c]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(dbeta, vec![saved.c]));
        }
    }
}

impl<C: CheckpointStrategy> BatchNormBackend for Autodiff<Flex, C> {
    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (y, mean, var, saved) = run_forward(
            x.primitive(),
            gamma.primitive(),
            beta.primitive(),
            epsilon,
            relu6,
        );
        let y = match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Arc::new((saved, x.primitive().clone())), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }
}

/// Whether `norm` on `x` runs as the op: training mode, on the autodiff CPU backend, in f32.
pub fn fits(norm: &BatchNorm, x: &Tensor<4>) -> bool {
    let device = x.device();
    super::enabled()
        && device.is_autodiff()
        && device == Device::flex()
        && norm.training.is_enabled()
        && x.dtype() == DType::F32
}

/// `norm.forward(x)`, then `clamp(0, 6)` when `relu6`, as the op when it [`fits`], else through
/// burn's modules; running statistics move as `BatchNorm::forward` moves them.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, relu6: bool) -> Tensor<4> {
    if !fits(norm, &x) {
        let y = norm.forward(x);
        return if relu6 { y.clamp(0.0, 6.0) } else { y };
    }
    let (y, mean, var) = <Dispatch as BatchNormBackend>::batch_norm_act_train(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
        relu6,
    );
    super::move_running(
        norm,
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    );
    Tensor::from_dispatch(y)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{close, loss_weights};
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::Distribution;

    /// Output, gradients and running statistics against burn's `BatchNorm` (then `clamp(0, 6)`),
    /// with inputs that ReLU6 clips at both ends, odd plane sizes and a single-pixel plane, planes
    /// under 64 values (summed as one run per channel) and over.
    #[test]
    fn the_batch_norm_op_equals_burns_batch_norm_and_relu6_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(5);
        for (n, c, h, w, relu6) in [
            (3, 4, 5, 7, true),
            (2, 3, 9, 9, false),
            (4, 5, 1, 1, true),
            (2, 17, 6, 3, true),
            (3, 6, 8, 10, true),
        ] {
            let r =
                |lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device);
            let fresh = || {
                let mut norm = BatchNormConfig::new(c)
                    .with_epsilon(1e-3)
                    .with_momentum(0.01)
                    .init(&device);
                norm.gamma = Param::from_tensor(r(0.5, 4.0));
                norm.beta = Param::from_tensor(r(-1.0, 5.0));
                norm
            };
            let base = fresh();
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &device);
            let case = format!("n{n} c{c} {h}x{w} relu6 {relu6}");
            assert!(fits(&base, &x), "{case}: fits");
            let run = |op: bool| {
                let mut norm = fresh();
                norm.gamma = Param::from_tensor(base.gamma.val());
                norm.beta = Param::from_tensor(base.beta.val());
                let x = x.clone().require_grad();
                let y = if op {
                    batch_norm(&norm, x.clone(), relu6)
                } else {
                    let y = norm.forward(x.clone());
                    if relu6 { y.clamp(0.0, 6.0) } else { y }
                };
                let weights = loss_weights(&y);
                let grads = (y.clone() * weights).sum().backward();
                let dx = x.grad(&grads).expect("dx");
                let dg = norm.gamma.val().grad(&grads).expect("dgamma");
                let db = norm.beta.val().grad(&grads).expect("dbeta");
                (
                    y,
                    dx,
                    dg,
                    db,
                    norm.running_mean.value(),
                    norm.running_var.value(),
                )
            };
            let (y, dx, dg, db, m, v) = run(true);
            let (ry, rdx, rdg, rdb, rm, rv) = run(false);
            close(y, ry, &format!("{case}: output"));
            close(dx, rdx, &format!("{case}: dx"));
            close(dg, rdg, &format!("{case}: dgamma"));
            close(db, rdb, &format!("{case}: dbeta"));
            close(m, rm, &format!("{case}: running mean"));
            close(v, rv, &format!("{case}: running var"));
        }
    }

    #[test]
    fn batch_norm_in_eval_mode_or_inference_keeps_burns_module() {
        let device = Device::flex().autodiff();
        let norm = BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::zeros([2, 3, 4, 4], &device);
        assert!(fits(&norm, &x));
        assert!(!fits(&norm.clone().valid(), &x), "eval mode");
        let plain = Tensor::<4>::zeros([2, 3, 4, 4], &Device::flex());
        assert!(!fits(&norm, &plain), "no autodiff");
    }
}
