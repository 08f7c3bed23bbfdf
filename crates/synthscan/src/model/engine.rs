//! The compiled inference path of a [`Network`]: its blocks mapped onto the kernels crate's
//! [`CnnEngine`] ops (batch-norm folded into the convolutions at load time), or `None` when the
//! network has parts that path does not reproduce exactly (it then runs through burn).

use super::efficientnet::MbConv;
use super::{Activation, Block, ConvUnit, GlobalPool, Network};
use synthscan_kernels::engine::{Act, CnnEngine, Op, Pool};

/// The engine for `net`, or `None` when it has parts the engine does not reproduce exactly.
pub fn compile(net: &Network) -> Option<CnnEngine> {
    let mut ops = Vec::new();
    for block in &net.blocks {
        match block {
            Block::Plain(units) => {
                for u in units {
                    ops.push(unit(u)?);
                }
            }
            Block::ConvBn(u) => ops.push(Op::conv(&u.conv, Some(&u.bn), false, Act::Relu6)?),
            Block::MbConv(blocks) => {
                for b in blocks {
                    ops.push(mbconv(b)?);
                }
            }
            _ => return None,
        }
    }
    let h = &net.head;
    if h.hidden_norm.is_some() || (h.act != Activation::Relu && !h.hidden.is_empty()) {
        return None;
    }
    let pool = match h.pool {
        GlobalPool::Max => Pool::Max,
        GlobalPool::Avg => Pool::Avg,
        GlobalPool::Flatten => Pool::Flatten,
    };
    CnnEngine::new(ops, pool, &h.hidden, &h.output)
}

fn unit(u: &ConvUnit) -> Option<Op> {
    if u.act != Activation::Relu {
        return None;
    }
    Op::conv(&u.conv, u.norm.as_ref(), u.pool, Act::Relu)
}

/// Expansion 1×1 (absent at expansion 1), depthwise, projection 1×1, and the skip.
fn mbconv(b: &MbConv) -> Option<Op> {
    let mut body = Vec::new();
    match (&b.expand_conv, &b.bn0) {
        (Some(conv), Some(bn)) => body.push(Op::conv(conv, Some(bn), false, Act::Relu6)?),
        (None, None) => {}
        _ => return None,
    }
    body.push(Op::depthwise(&b.depthwise_conv, &b.bn1, Act::Relu6)?);
    body.push(Op::conv(&b.project_conv, Some(&b.bn2), false, Act::None)?);
    Some(Op::block(body, b.residual))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchConfig, CnnConfig, StageConfig};
    use burn::prelude::*;
    use burn::tensor::Distribution;

    fn cnn(
        stem: usize,
        stride: usize,
        pool: GlobalPool,
        hidden: Vec<usize>,
        bn: bool,
    ) -> ArchConfig {
        ArchConfig::Cnn(CnnConfig {
            stem,
            stem_stride: stride,
            stages: vec![
                StageConfig {
                    channels: 8,
                    convs: 2,
                    pool: true,
                },
                StageConfig {
                    channels: 12,
                    convs: 1,
                    pool: false,
                },
                StageConfig {
                    channels: 16,
                    convs: 2,
                    pool: true,
                },
            ],
            kernel: 3,
            batch_norm: bn,
            activation: Activation::Relu,
            global_pool: pool,
            hidden,
            dropout: 0.0,
        })
    }

    /// A network whose batch-norm statistics are not the identity: one training-mode forward
    /// pass on the autodiff device moves the running mean and variance.
    fn trained_stats(arch: &ArchConfig, size: usize) -> Network {
        let ad = Device::default().autodiff();
        ad.seed(11);
        let net = arch.init(size, &ad);
        let x = Tensor::<4>::random([6, 3, size, size], Distribution::Normal(0.3, 1.5), &ad);
        let _ = net.forward(x);
        net.valid()
    }

    /// The engine's logits for `n` random images against burn's forward pass of the same
    /// network, to 1e-4 of the largest logit.
    fn assert_matches_burn(arch: &ArchConfig, size: usize, n: usize) {
        let net = trained_stats(arch, size);
        let engine = compile(&net).expect("the network compiles");
        let d = Device::default();
        let x = Tensor::<4>::random([n, 3, size, size], Distribution::Normal(0.0, 1.0), &d);
        let floats = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let want = net.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let got = engine.logits(&floats, n, size);
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            err <= 1e-4 * scale,
            "{arch:?} at {size}: max error {err} (scale {scale})"
        );
    }

    #[test]
    fn the_engine_matches_burns_forward_on_random_networks_and_odd_sizes() {
        let cases = [
            (cnn(8, 2, GlobalPool::Max, vec![], true), 32, 5),
            (cnn(6, 1, GlobalPool::Avg, vec![10], true), 19, 3),
            (cnn(0, 1, GlobalPool::Flatten, vec![7], false), 17, 2),
            (cnn(5, 3, GlobalPool::Max, vec![], true), 33, 1),
            (crate::model::preset("default").unwrap(), 32, 4),
        ];
        for (arch, size, n) in cases {
            assert_matches_burn(&arch, size, n);
        }
    }

    #[test]
    fn the_engine_matches_burns_forward_on_efficientnet_lite0() {
        let arch = ArchConfig::Efficientnet(crate::model::EfficientNetConfig {
            hidden: vec![16],
            ..crate::model::EfficientNetConfig::lite0()
        });
        // 64 and an odd 45: "same" padding is asymmetric at stride 2 on odd sizes.
        for (size, n) in [(64, 2), (45, 1)] {
            assert_matches_burn(&arch, size, n);
        }
    }

    #[test]
    fn networks_it_cannot_reproduce_are_declined() {
        let d = Device::default();
        let gelu = crate::model::preset("fullres").unwrap();
        assert!(compile(&gelu.init(32, &d)).is_none());
        let resnet = crate::model::preset("resnet8").unwrap();
        assert!(compile(&resnet.init(32, &d)).is_none());
    }
}
