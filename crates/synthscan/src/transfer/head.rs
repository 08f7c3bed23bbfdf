//! Training a network's head on precomputed backbone features (the backbone stays frozen).

use super::HeadTraining;
use super::features::Features;
use crate::detector::fake_probability;
use crate::model::Network;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use burn::prelude::*;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

fn feature_tensor(f: &Features, rows: &[usize], device: &Device) -> Tensor<4> {
    let mut data = Vec::with_capacity(rows.len() * f.dim);
    for &r in rows {
        data.extend_from_slice(f.row(r));
    }
    Tensor::from_data(TensorData::new(data, [rows.len(), f.dim, 1, 1]), device)
}

/// Train the head of `net` (on an autodiff device) on the given feature rows; the blocks are
/// not run, so they stay as they are. Returns the network with its trained head.
pub fn train_head(
    mut net: Network,
    f: &Features,
    rows: &[usize],
    cfg: &HeadTraining,
    seed: u64,
    device: &Device,
) -> Network {
    let last = net.layer_names().len() - 1;
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    let mut optim = AdamConfig::new().with_weight_decay(decay).init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order = rows.to_vec();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(cfg.batch_size.max(1)) {
            let x = feature_tensor(f, batch, device);
            let y: Vec<i64> = batch.iter().map(|&r| f.labels[f.image[r]] as i64).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch.len()]), device);
            let loss = loss_fn.forward(net.classify_from(x, last), y);
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(cfg.lr, net, grads);
        }
    }
    net
}

/// p_fake per row, from the head alone (inference mode).
pub fn score_rows(net: &Network, f: &Features, rows: &[usize]) -> Vec<f32> {
    let device = &crate::detector::default_device();
    let net = net.valid();
    let last = net.layer_names().len() - 1;
    rows.chunks(512)
        .flat_map(|chunk| {
            let p = fake_probability(net.classify_from(feature_tensor(f, chunk, device), last));
            p.into_data().try_to_vec::<f32>().unwrap_or_default()
        })
        .collect()
}
