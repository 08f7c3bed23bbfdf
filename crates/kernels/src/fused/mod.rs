//! A fused training op for the CPU backend: convolution → optional 2×2 max-pool → batch-norm
//! with batch statistics → ReLU as one autodiff node with a handwritten backward pass.
//!
//! burn's CPU backend trains these units as five separate ops: a convolution whose gradients go
//! through a transposed convolution and a convolution with swapped axes, a max-pool whose
//! gradient is a scatter, and batch-norm and ReLU as element-wise graphs, each with its own
//! layout copies and buffers. Here the unit is one burn *backend extension*
//! (`#[backend_extension]`, implemented for `Flex` and `Autodiff<Flex>`), whose kernels
//! ([`kernels`]) do the convolution and both of its gradients as three matrix products in one
//! channel-major layout — or, for 3×3 stride-1 convolutions, through Winograd's F(2×2, 3×3)
//! ([`winograd_pass`]), 16 smaller products per block instead. [`ConvUnit`](super::ConvUnit) calls it in training mode on the CPU
//! backend when its configuration fits ([`fits`]); everything else, and every other backend,
//! keeps burn's modules. The op is tested against burn's own ops, forward and backward.
//! `SYNTHSCAN_TRAIN_KERNELS=burn` turns it off (for comparisons), and with it the other training
//! ops of this folder, for the real-world backbone: its depthwise convolutions ([`depthwise`]),
//! its stem and 1×1 convolutions ([`dense`]) and its batch-norms with ReLU6 ([`batch_norm`]).

pub mod batch_norm;
mod conv_op;
pub mod dense;
pub mod depthwise;
pub mod kernels;
mod shape;
pub mod winograd_pass;

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::nn::{BatchNorm, PaddingConfig2d, conv::Conv2d};
use burn::prelude::*;
use kernels::UnitShape;
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// The fused unit as a backend operation: returns the output, the batch mean and the batch
/// (biased) variance.
#[backend_extension(Flex, Autodiff)]
pub trait ConvUnitBackend: Backend {
    fn conv_unit_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stride: usize,
        pool: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn floats(t: &FlexTensor) -> Vec<f32> {
    let t = t.to_contiguous();
    match t.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => t
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap_or_default(),
    }
}

fn with_floats<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    let t = t.to_contiguous();
    match t.as_slice::<f32>() {
        Some(s) => f(s),
        None => f(&floats(&t)),
    }
}

/// Values a parallel task of [`map_planes`] and [`gather_planes`] takes at least: whole planes,
/// several when they are small (a 2×2 plane per task would spend its time in the scheduler).
const TASK_VALUES: usize = 4096;

/// Planes of `plane` values per parallel task.
fn planes_per_task(plane: usize) -> usize {
    (TASK_VALUES / plane.max(1)).max(1)
}

/// A new vector as long as `a` and `b`: plane `p` (each `plane` values) is `f(p)` applied to the
/// pairs of plane `p` of `a` and `b`, planes in parallel (several per task when they are
/// small), compiled for the widest vectors the CPU has (mark the closure `f` returns
/// `#[inline(always)]`). The vector is not zero-filled first: every value is written exactly
/// once.
fn map_planes<F>(a: &[f32], b: &[f32], plane: usize, f: impl Fn(usize) -> F + Sync) -> Vec<f32>
where
    F: Fn(f32, f32) -> f32,
{
    assert_eq!(a.len(), b.len());
    let (plane, per) = (plane.max(1), planes_per_task(plane));
    let mut out = Vec::with_capacity(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(per * plane)
        .zip(a.par_chunks(per * plane).zip(b.par_chunks(per * plane)))
        .enumerate()
        .for_each(|(t, (o, (a, b)))| {
            crate::vector::wide(
                #[inline(always)]
                || {
                    let planes = o
                        .chunks_mut(plane)
                        .zip(a.chunks(plane).zip(b.chunks(plane)));
                    for (i, (o, (a, b))) in planes.enumerate() {
                        let g = f(t * per + i);
                        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                            o.write(g(a, b));
                        }
                    }
                },
            );
        });
    // SAFETY: the chunks of `out`'s first `a.len()` slots are zipped with the chunks of `a` and
    // `b`, which have the same lengths (same total, same chunk sizes), and every slot of each
    // chunk was written in the loop above.
    unsafe { out.set_len(a.len()) };
    out
}

/// A new vector of `count` planes of `plane` values: plane `p` a copy of `src(p)` (which must
/// be `plane` values long), in parallel (several planes per task when they are small), without
/// zero-filling the vector first.
fn gather_planes<'a>(
    count: usize,
    plane: usize,
    src: impl Fn(usize) -> &'a [f32] + Sync,
) -> Vec<f32> {
    let (len, per) = (count * plane, planes_per_task(plane));
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(per * plane.max(1))
        .enumerate()
        .for_each(|(t, o)| {
            for (i, o) in o.chunks_mut(plane.max(1)).enumerate() {
                let src = src(t * per + i);
                assert_eq!(src.len(), o.len());
                for (o, &v) in o.iter_mut().zip(src) {
                    o.write(v);
                }
            }
        });
    // SAFETY: every plane of `out`'s first `len` slots was written in full (its source has its
    // length, checked above).
    unsafe { out.set_len(len) };
    out
}

/// Makes `buf` `len` zeros the first time; later, with the same length, leaves it as it is:
/// for buffers that every task of one call rewrites at the same places, so the padding and gaps
/// around those places are still zero.
fn zeroed(buf: &mut Vec<f32>, len: usize) {
    if buf.len() != len {
        buf.clear();
        buf.resize(len, 0.0);
    }
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn run_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    stride: usize,
    pool: bool,
    epsilon: f64,
) -> kernels::Forward {
    let [n, c, h, w] = x.layout().shape().dims::<4>();
    let [co, _, k, _] = weight.layout().shape().dims::<4>();
    let shape = UnitShape {
        n,
        c,
        h,
        w,
        co,
        k,
        stride,
        pool,
    };
    let (weight, gamma, beta) = (floats(weight), floats(gamma), floats(beta));
    with_floats(x, |x| {
        kernels::forward(x, shape, &weight, &gamma, &beta, epsilon)
    })
}

fn outputs(f: kernels::Forward) -> (FlexTensor, FlexTensor, FlexTensor, kernels::Saved) {
    let s = f.saved.shape;
    let (hp, wp) = s.out();
    (
        tensor(f.y, vec![s.n, s.co, hp, wp]),
        tensor(f.mean, vec![s.co]),
        tensor(f.var, vec![s.co]),
        f.saved,
    )
}

impl ConvUnitBackend for Flex {
    fn conv_unit_train(
        x: FlexTensor,
        weight: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stride: usize,
        pool: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (y, mean, var, _) = outputs(run_forward(
            &x, &weight, &gamma, &beta, stride, pool, epsilon,
        ));
        (y, mean, var)
    }
}

#[derive(Debug)]
struct UnitBackward;

impl Backward<Flex, 4> for UnitBackward {
    /// What the forward pass saved, and its input (the im2col blocks are rebuilt from it).
    type State = Arc<(kernels::Saved, FlexTensor)>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pg, pb] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (saved, x) = &*ops.state;
        let s = saved.shape;
        let g = with_floats(x, |x| {
            with_floats(&dy, |dy| kernels::backward(saved, x, dy, px.is_some()))
        });
        if let (Some(node), Some(dx)) = (px, g.dx) {
            grads.register::<Flex>(node.id, tensor(dx, vec![s.n, s.c, s.h, s.w]));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, tensor(g.dweight, vec![s.co, s.c, s.k, s.k]));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(g.dgamma, vec![s.co]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(g.dbeta, vec![s.co]));
        }
    }
}

impl<C: CheckpointStrategy> ConvUnitBackend for Autodiff<Flex, C> {
    fn conv_unit_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stride: usize,
        pool: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let forward = run_forward(
            x.primitive(),
            weight.primitive(),
            gamma.primitive(),
            beta.primitive(),
            stride,
            pool,
            epsilon,
        );
        let (y, mean, var, saved) = outputs(forward);
        let y = match UnitBackward
            .prepare::<C>([x.node(), weight.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Arc::new((saved, x.primitive().clone())), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }
}

/// Whether the fused op is switched on (`SYNTHSCAN_TRAIN_KERNELS=burn` switches it off).
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("SYNTHSCAN_TRAIN_KERNELS").map_or(true, |v| !v.eq_ignore_ascii_case("burn"))
    })
}

/// Whether a conv → [pool] → batch-norm → ReLU unit can run as the fused op on input `x`: a
/// training pass (autodiff, batch-norm in training mode) on the CPU backend, in f32, with an
/// odd square kernel, padding `k / 2`, no bias, no dilation or groups.
pub fn fits(conv: &Conv2d, norm: &BatchNorm, x: &Tensor<4>) -> bool {
    let k = conv.kernel_size[0];
    let p = k / 2;
    conv_op::fits(conv, x)
        && norm.training.is_enabled()
        && conv.groups == 1
        && k % 2 == 1
        && matches!(conv.padding, PaddingConfig2d::Explicit(a, b, c, d) if [a, b, c, d] == [p; 4])
}

/// Runs the unit as the fused op (check [`fits`] first) and moves batch-norm's running
/// statistics as `BatchNorm::forward` does in training mode.
pub fn conv_unit(conv: &Conv2d, norm: &BatchNorm, pool: bool, x: Tensor<4>) -> Tensor<4> {
    let (y, mean, var) = <Dispatch as ConvUnitBackend>::conv_unit_train(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        conv.stride[0],
        pool,
        norm.epsilon,
    );
    move_running(
        norm,
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    );
    Tensor::from_dispatch(y)
}

/// Moves batch-norm's running statistics towards a batch's mean and (biased) variance, as
/// `BatchNorm::forward` does in training mode.
fn move_running(norm: &BatchNorm, mean: Tensor<1>, var: Tensor<1>) {
    let device = mean.device();
    let m = norm.momentum;
    let running = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let moved = state
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch.detach().mul_scalar(m));
        state.update(moved.detach());
    };
    running(&norm.running_mean, mean);
    running(&norm.running_var, var);
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// A unit's conv and norm on the autodiff CPU device, with non-trivial gamma and beta.
    fn unit(c: usize, co: usize, k: usize, stride: usize, device: &Device) -> (Conv2d, BatchNorm) {
        let p = k / 2;
        let conv = Conv2dConfig::new([c, co], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(device);
        let r = |shift: f64| {
            Tensor::<1>::random([co], Distribution::Uniform(-0.5, 0.5), device) + shift
        };
        (conv, fresh_norm(r(1.0), r(0.1)))
    }

    /// A batch-norm with these gamma and beta and its own (initial) running statistics.
    fn fresh_norm(gamma: Tensor<1>, beta: Tensor<1>) -> BatchNorm {
        let mut norm = BatchNormConfig::new(gamma.dims()[0]).init(&gamma.device());
        norm.gamma = Param::from_tensor(gamma);
        norm.beta = Param::from_tensor(beta);
        norm
    }

    /// burn's ops, in the order the model applies them.
    fn reference(conv: &Conv2d, norm: &BatchNorm, pool: bool, x: Tensor<4>) -> Tensor<4> {
        let mut z = conv.forward(x);
        if pool {
            z = burn::nn::pool::MaxPool2dConfig::new([2, 2])
                .with_strides([2, 2])
                .init()
                .forward(z);
        }
        burn::tensor::activation::relu(norm.forward(z))
    }

    /// `a` equals `b` to 1e-4 of `b`'s largest magnitude (at least 1): the tolerance every op of
    /// this folder is held to against burn's own ops.
    pub(super) fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shape");
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (a - b).abs().max().into_scalar::<f32>();
        assert!(
            err <= 1e-4 * scale,
            "{what}: max error {err} (scale {scale})"
        );
    }

    /// Output, input gradient and weight gradient of a convolution op (`op(conv, x)`) against
    /// burn's module (`conv.forward(x)`), each to [`close`].
    pub(super) fn conv_op_equals_burn(
        conv: &Conv2d,
        x: &Tensor<4>,
        op: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4>,
        case: &str,
    ) {
        let run = |through_op: bool| {
            let x = x.clone().require_grad();
            let y = if through_op {
                op(conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let weights = loss_weights(&y);
            let grads = (y.clone() * weights).sum().backward();
            let dx = x.grad(&grads).expect("dx");
            let dw = conv.weight.val().grad(&grads).expect("dw");
            (y, dx, dw)
        };
        let (y, dx, dw) = run(true);
        let (ry, rdx, rdw) = run(false);
        close(y, ry, &format!("{case}: output"));
        close(dx, rdx, &format!("{case}: dx"));
        close(dw, rdw, &format!("{case}: dweight"));
    }

    /// Weights of a test loss `Σ y·weights` whose gradient differs at every image, channel, row
    /// and column: a gradient that repeats across channels or images would hide a kernel that
    /// reads the wrong one.
    pub(super) fn loss_weights(y: &Tensor<4>) -> Tensor<4> {
        let ones = y.clone().ones_like();
        ones.cumsum(0)
            .cumsum(1)
            .cumsum(2)
            .cumsum(3)
            .mul_scalar(0.37)
            .sin()
    }

    fn grad_of<const D: usize>(t: &Tensor<D>, g: &burn::tensor::Gradients) -> Tensor<D> {
        t.grad(g).expect("a gradient")
    }

    /// Forward, backward and running statistics of the fused op against burn's modules, on odd
    /// sizes, strides 1–3, kernels 1/3/5, with and without the pool, on planes built both by
    /// table gather and by whole-plane shifts.
    #[test]
    fn fused_unit_equals_burns_conv_pool_batch_norm_relu_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let cases = [
            (3, 4, 9, 7, 5, 3, 1, true),
            (2, 6, 2, 2, 5, 3, 1, false),
            (2, 3, 8, 8, 6, 3, 2, false),
            (2, 5, 7, 10, 4, 5, 1, true),
            (4, 3, 6, 5, 8, 1, 1, false),
            (2, 2, 13, 14, 3, 3, 3, true),
            (2, 3, 13, 9, 4, 3, 1, false),
            (3, 2, 12, 12, 3, 3, 1, true),
            // Several im2col blocks per pass (a block holds about 2^18 floats).
            (4, 32, 16, 16, 8, 3, 1, true),
            (5, 32, 17, 15, 6, 3, 1, false),
            // Square 3×3, stride 1 (through Winograd): odd sides, several blocks, pool or not.
            (5, 32, 15, 15, 6, 3, 1, true),
            (3, 4, 9, 9, 5, 3, 1, false),
        ];
        for (n, c, h, w, co, k, stride, pool) in cases {
            let (conv, norm) = unit(c, co, k, stride, &device);
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            assert!(fits(&conv, &norm, &x.clone().require_grad()));
            let run = |fused: bool| {
                let conv = conv.clone();
                let norm = fresh_norm(norm.gamma.val(), norm.beta.val());
                let x = x.clone().require_grad();
                let y = if fused {
                    conv_unit(&conv, &norm, pool, x.clone())
                } else {
                    reference(&conv, &norm, pool, x.clone())
                };
                let weights = loss_weights(&y);
                let grads = (y.clone() * weights).sum().backward();
                let g = (
                    grad_of(&x, &grads),
                    grad_of(&conv.weight.val(), &grads),
                    grad_of(&norm.gamma.val(), &grads),
                    grad_of(&norm.beta.val(), &grads),
                );
                (y, g, norm.running_mean.value(), norm.running_var.value())
            };
            let (y, (dx, dw, dg, db), mean, var) = run(true);
            let (ry, (rdx, rdw, rdg, rdb), rmean, rvar) = run(false);
            let case = format!("n{n} c{c} {h}x{w} co{co} k{k} s{stride} pool {pool}");
            assert_eq!(y.dims(), ry.dims(), "{case}");
            close(y, ry, &format!("{case}: output"));
            close(dx, rdx, &format!("{case}: dx"));
            close(dw, rdw, &format!("{case}: dweight"));
            close(dg, rdg, &format!("{case}: dgamma"));
            close(db, rdb, &format!("{case}: dbeta"));
            close(mean, rmean, &format!("{case}: running mean"));
            close(var, rvar, &format!("{case}: running var"));
        }
    }

    #[test]
    fn fused_op_is_not_used_outside_training_or_for_unsupported_convs() {
        let device = Device::flex().autodiff();
        let (conv, norm) = unit(3, 4, 3, 1, &device);
        let x = Tensor::<4>::zeros([2, 3, 8, 8], &device);
        assert!(fits(&conv, &norm, &x));
        let plain = Tensor::<4>::zeros([2, 3, 8, 8], &Device::flex());
        assert!(
            !fits(&conv, &norm, &plain),
            "inference passes keep burn's modules"
        );
        assert!(
            !fits(&conv, &norm.clone().valid(), &x),
            "batch-norm in eval mode keeps burn's modules"
        );
        let even = Conv2dConfig::new([3, 4], [2, 2])
            .with_bias(false)
            .init(&device);
        assert!(!fits(&even, &norm, &x), "even kernels keep burn's modules");
        let biased = Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        assert!(
            !fits(&biased, &norm, &x),
            "a conv bias keeps burn's modules"
        );
    }
}
