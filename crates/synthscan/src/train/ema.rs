//! Exponential moving average of a network's weights (and batch-norm statistics).

use crate::model::Network;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use std::collections::HashMap;

pub struct Ema {
    pub model: Network,
    decay: f64,
}

struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.insert(param.id, t.reshape([n]));
    }
}

struct Blend {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(cur) = self.current.remove(&param.id) else {
            return param;
        };
        let d = self.decay;
        param.map(|avg| {
            let dims = avg.dims();
            avg.mul_scalar(d) + cur.reshape(dims).mul_scalar(1.0 - d)
        })
    }
}

impl Ema {
    /// Start from a copy of `model` (taken off the autodiff graph).
    pub fn new(model: &Network, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    /// Blend the current weights in; `steps` is how many steps this update stands for.
    pub fn update(&mut self, model: &Network, steps: usize) {
        let mut collect = Collect(HashMap::new());
        model.valid().visit(&mut collect);
        let mut blend = Blend {
            current: collect.0,
            decay: self.decay.powi(steps as i32),
        };
        self.model = self.model.clone().map(&mut blend);
    }
}
