//! The optimiser of a run and its parameter groups.

use crate::config::{OptimizerConfig, OptimizerKind};
use crate::model::Network;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

/// Ids of rank-1 parameters (biases, batch-norm scales and shifts): kept out of weight decay.
pub fn rank1_param_ids(model: &Network) -> Vec<ParamId> {
    struct Rank1(Vec<ParamId>);
    impl ModuleVisitor for Rank1 {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut v = Rank1(Vec::new());
    model.visit(&mut v);
    v.0
}

/// `whole` for every parameter, plus `bare` (the same optimiser without weight decay) for the
/// rank-1 parameters when `no_decay` names them.
fn with_no_decay_group<O: burn::optim::DynOptimizer + 'static>(
    whole: ModuleOptimizer,
    bare: O,
    no_decay: Option<ParamGroup>,
) -> ModuleOptimizer {
    match no_decay {
        Some(group) => whole.with_group(group, bare, None),
        None => whole,
    }
}

/// The optimiser the experiment asks for, with biases and norms out of weight decay unless
/// `optimizer.decay_norms_and_biases` is set.
pub fn build_optimizer(o: &OptimizerConfig, model: &Network) -> ModuleOptimizer {
    let split = o.weight_decay > 0.0 && !o.decay_norms_and_biases;
    let no_decay = split.then(|| ParamGroup::from_ids(rank1_param_ids(model)));
    let decay = |wd: f64| (wd > 0.0).then_some(WeightDecayConfig::new(wd as f32));
    match o.kind {
        OptimizerKind::Adam => {
            let make = |wd: f64| {
                AdamConfig::new()
                    .with_beta_1(o.beta1)
                    .with_beta_2(o.beta2)
                    .with_epsilon(1e-8)
                    .with_weight_decay(decay(wd))
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
        OptimizerKind::Adamw => {
            let make = |wd: f64| {
                AdamWConfig::new()
                    .with_beta_1(o.beta1)
                    .with_beta_2(o.beta2)
                    .with_epsilon(1e-8)
                    .with_weight_decay(wd as f32)
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
        OptimizerKind::Sgd => {
            let momentum = (o.momentum > 0.0).then_some(MomentumConfig {
                momentum: o.momentum,
                dampening: 0.0,
                nesterov: o.nesterov,
            });
            let make = |wd: f64| {
                SgdConfig::new()
                    .with_momentum(momentum.clone())
                    .with_weight_decay(decay(wd))
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank1_ids_are_the_biases_and_norms() {
        let net = crate::model::preset("fast")
            .unwrap()
            .init(32, &Device::default());
        let ids = rank1_param_ids(&net);
        struct Count(usize, usize);
        impl ModuleVisitor for Count {
            fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
                if D == 1 {
                    self.0 += 1;
                } else {
                    self.1 += 1;
                }
            }
        }
        let mut c = Count(0, 0);
        net.visit(&mut c);
        assert_eq!(ids.len(), c.0);
        assert!(c.1 > 0 && c.0 > 0);
    }
}
