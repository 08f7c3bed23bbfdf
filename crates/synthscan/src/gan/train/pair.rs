//! The pair being trained — generator, discriminator, their optimisers and where they stand —
//! and its files: the `.gan` networks and the `state/` folder `--resume` continues from.

use crate::error::{Error, Result, read_file, write_file};
use crate::gan::config::GanConfig;
use crate::gan::model::{
    Discriminator, Generator, NetFileMeta, NetKind, NetSpec, decode_net, encode_net,
};
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Resume bookkeeping, saved after every epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ResumeState {
    pub epoch: usize,
    pub train_seconds: f64,
}

pub(super) fn spec_g(cfg: &GanConfig) -> NetSpec {
    NetSpec {
        image_size: cfg.image_size,
        latent: cfg.latent,
        width: cfg.g_width,
    }
}

pub(super) fn spec_d(cfg: &GanConfig) -> NetSpec {
    NetSpec {
        width: cfg.d_width,
        ..spec_g(cfg)
    }
}

fn adam(cfg: &GanConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(cfg.beta1)
        .with_beta_2(cfg.beta2)
        .with_epsilon(1e-8)
        .init()
}

/// Write one network as a `.gan` file.
pub(super) fn save_net<M: Module>(
    path: &Path,
    kind: NetKind,
    spec: &NetSpec,
    epoch: usize,
    net: M,
) -> Result<()> {
    let meta = NetFileMeta {
        kind,
        spec: spec.clone(),
        epoch,
    };
    write_file(path, encode_net(&meta, net)?)
}

/// The pair being trained, their optimisers and where they stand.
pub(super) struct Pair {
    pub g: Generator,
    pub d: Discriminator,
    pub opt_g: ModuleOptimizer,
    pub opt_d: ModuleOptimizer,
    pub state: ResumeState,
}

impl Pair {
    pub fn fresh(cfg: &GanConfig, device: &Device) -> Self {
        Self {
            g: Generator::new(&spec_g(cfg), device),
            d: Discriminator::new(&spec_d(cfg), device),
            opt_g: adam(cfg),
            opt_d: adam(cfg),
            state: ResumeState::default(),
        }
    }

    /// Both networks (as evaluated: no autodiff) at `g_path` and `d_path`.
    pub fn save_nets(&self, cfg: &GanConfig, g_path: &Path, d_path: &Path) -> Result<()> {
        let e = self.state.epoch;
        save_net(g_path, NetKind::Generator, &spec_g(cfg), e, self.g.valid())?;
        save_net(
            d_path,
            NetKind::Discriminator,
            &spec_d(cfg),
            e,
            self.d.valid(),
        )
    }

    /// `state/`: both networks, both optimisers and the resume bookkeeping.
    pub fn save_state(&self, cfg: &GanConfig, run_dir: &Path) -> Result<()> {
        let st = run_dir.join("state");
        let e = self.state.epoch;
        let g = self.g.clone();
        save_net(&st.join("G.gan"), NetKind::Generator, &spec_g(cfg), e, g)?;
        let d = self.d.clone();
        save_net(
            &st.join("D.gan"),
            NetKind::Discriminator,
            &spec_d(cfg),
            e,
            d,
        )?;
        for (name, opt) in [("optim-G.bpk", &self.opt_g), ("optim-D.bpk", &self.opt_d)] {
            opt.save(st.join(name))
                .map_err(|err| Error::output(st.join(name), err))?;
        }
        write_file(
            &st.join("resume.json"),
            serde_json::to_vec(&self.state).unwrap_or_default(),
        )
    }

    /// The pair [`Pair::save_state`] wrote into `run_dir`.
    pub fn load_state(cfg: &GanConfig, run_dir: &Path, device: &Device) -> Result<Self> {
        let st = run_dir.join("state");
        let mut pair = Self::fresh(cfg, device);
        let record = |name: &str| -> Result<ModuleRecord> {
            let p = st.join(name);
            decode_net(&read_file(&p)?, &p).map(|(_, r)| r)
        };
        let bad = |name: &str, e: String| Error::ModelFile {
            path: st.join(name),
            message: e,
        };
        pair.g = pair
            .g
            .try_load_record(record("G.gan")?)
            .map_err(|e| bad("G.gan", e.to_string()))?;
        pair.d = pair
            .d
            .try_load_record(record("D.gan")?)
            .map_err(|e| bad("D.gan", e.to_string()))?;
        pair.opt_g = pair
            .opt_g
            .load(st.join("optim-G.bpk"))
            .map_err(|e| bad("optim-G.bpk", e.to_string()))?;
        pair.opt_d = pair
            .opt_d
            .load(st.join("optim-D.bpk"))
            .map_err(|e| bad("optim-D.bpk", e.to_string()))?;
        let p = st.join("resume.json");
        pair.state = serde_json::from_slice(&read_file(&p)?)
            .map_err(|e| Error::dataset(&p, e.to_string()))?;
        Ok(pair)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The tiny pair the GAN tests train: 8 latents, width 4, 32 px.
    pub fn tiny_config() -> GanConfig {
        GanConfig::from_yaml(
            "latent: 8\ng_width: 4\nd_width: 4\nbatch_size: 8\nfid_count: 0\n",
            Path::new("tiny.yaml"),
        )
        .unwrap()
    }

    /// Both networks' answers to one fixed input, as evaluated.
    fn outputs(pair: &Pair) -> (Vec<f32>, Vec<f32>) {
        let z = Tensor::<2>::ones([2, 8], &Device::default());
        let img = pair.g.valid().forward(z);
        let d = pair.d.valid().forward(img.clone());
        let v = |t: TensorData| t.try_to_vec::<f32>().unwrap();
        (v(img.into_data()), v(d.into_data()))
    }

    #[test]
    fn a_saved_pair_loads_with_identical_weights_and_state() {
        let dir = std::env::temp_dir().join(format!("synthscan-ganpair-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = tiny_config();
        let device = Device::default().autodiff();
        let mut pair = Pair::fresh(&cfg, &device);
        pair.state = ResumeState {
            epoch: 3,
            train_seconds: 1.5,
        };
        pair.save_state(&cfg, &dir).unwrap();
        let back = Pair::load_state(&cfg, &dir, &device).unwrap();
        assert_eq!(back.state, pair.state);
        assert_eq!(outputs(&back), outputs(&pair));
        // A fresh pair (another seed of the device) differs: the comparison means something.
        device.seed(99);
        let other = Pair::fresh(&cfg, &device);
        assert_ne!(outputs(&other).0, outputs(&pair).0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_broken_state_is_named() {
        let dir = std::env::temp_dir().join(format!("synthscan-ganstate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = tiny_config();
        let device = Device::default().autodiff();
        let err = Pair::load_state(&cfg, &dir, &device).err().unwrap();
        assert!(err.to_string().contains("G.gan"), "{err}");
        Pair::fresh(&cfg, &device).save_state(&cfg, &dir).unwrap();
        std::fs::write(dir.join("state/resume.json"), "{").unwrap();
        let err = Pair::load_state(&cfg, &dir, &device).err().unwrap();
        assert!(err.to_string().contains("resume.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_saved_networks_carry_their_kind_and_epoch() {
        let dir = std::env::temp_dir().join(format!("synthscan-gannets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = tiny_config();
        let device = Device::default().autodiff();
        let mut pair = Pair::fresh(&cfg, &device);
        pair.state.epoch = 7;
        let (g, d) = (dir.join("G.gan"), dir.join("D.gan"));
        pair.save_nets(&cfg, &g, &d).unwrap();
        let (meta, _) = crate::gan::model::load_generator(&g, &Device::default()).unwrap();
        assert_eq!((meta.kind, meta.epoch), (NetKind::Generator, 7));
        let (meta, _) = crate::gan::model::load_discriminator(&d, &Device::default()).unwrap();
        assert_eq!(
            (meta.kind, meta.epoch, meta.spec.width),
            (NetKind::Discriminator, 7, 4)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
