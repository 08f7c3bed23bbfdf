//! Experiment files: the YAML schema, defaults, presets, validation and grids.
//!
//! Unknown keys are rejected with their name. An experiment file is either one config, or a
//! grid: `base:` plus `variants:` (named overrides) and/or `grid:` (cartesian product over dotted
//! keys), with optional `seeds:` for repeats.

use crate::data::{AugmentConfig, Normalization};
use crate::decision::ThresholdRule;
use crate::error::{Error, Result};
use crate::model::{ArchConfig, preset};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use yaml_serde::{Mapping, Value};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (the run folder is named after it).
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `preset: NAME` plus any overrides of that preset's fields, or a full `arch:` spec.
    pub model: ModelSpec,
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    #[serde(default)]
    pub normalization: NormalizationChoice,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub label_smoothing: f32,
    /// Exponential moving average of the weights; the averaged model is evaluated and saved.
    #[serde(default)]
    pub ema: Option<EmaConfig>,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub threshold: ThresholdRule,
    /// The uncertain band stored in the model is chosen on validation so that answers outside
    /// it are at least this accurate.
    #[serde(default = "default_confident_accuracy")]
    pub confident_accuracy: f64,
    /// Average the score of the image and its mirror at prediction time (stored in the model).
    #[serde(default)]
    pub tta: bool,
    /// Start from the weights of this synthscan model file (same architecture and input size)
    /// instead of fresh ones; its normalisation is kept. For fine-tuning a trained detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Pretrained backbone weights (.pth/.safetensors) for `arch: efficientnet` or `tvresnet`;
    /// the head stays fresh and the input normalisation is the one the weights expect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Train the head only: the pretrained blocks get no gradient.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_backbone: bool,
}

fn default_name() -> String {
    "run".into()
}
fn default_seed() -> u64 {
    42
}
fn default_input_size() -> u32 {
    32
}
fn default_epochs() -> usize {
    10
}
fn default_confident_accuracy() -> f64 {
    0.99
}
fn default_batch() -> usize {
    128
}

/// The model section, resolved: presets expanded and overrides applied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "Value", into = "ArchConfig")]
pub struct ModelSpec(pub ArchConfig);

impl From<ModelSpec> for ArchConfig {
    fn from(m: ModelSpec) -> Self {
        m.0
    }
}

impl TryFrom<Value> for ModelSpec {
    type Error = String;
    fn try_from(value: Value) -> std::result::Result<Self, String> {
        let Value::Mapping(mut map) = value else {
            return Err("model: expected a mapping with `preset:` or `arch:`".into());
        };
        let merged = match map.remove("preset") {
            Some(Value::String(name)) => {
                let base = preset(&name).map_err(|e| e.to_string())?;
                let mut base = yaml_serde::to_value(base).map_err(|e| e.to_string())?;
                merge(&mut base, Value::Mapping(map));
                base
            }
            Some(other) => return Err(format!("model.preset: expected a name, got {other:?}")),
            None => Value::Mapping(map),
        };
        yaml_serde::from_value(merged)
            .map(ModelSpec)
            .map_err(|e| format!("model: {e}"))
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NormalizationChoice {
    /// Pixels in [0, 1].
    Unit,
    /// ImageNet mean/std, for pretrained backbones.
    Imagenet,
    /// Per-channel mean/std measured on the training split (stored in the model file).
    #[default]
    Dataset,
}

impl NormalizationChoice {
    pub fn resolve(self, train: &crate::data::ImageSet) -> Normalization {
        match self {
            NormalizationChoice::Unit => Normalization::unit(),
            NormalizationChoice::Imagenet => Normalization::imagenet(),
            NormalizationChoice::Dataset => {
                let (mean, std) = train.channel_stats();
                Normalization { mean, std }
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset folder; `--data` on the command line takes precedence.
    pub dir: Option<PathBuf>,
    /// Fraction of each class held out of training for validation.
    pub val_fraction: f64,
    /// Fail on the first undecodable file instead of skipping it.
    pub strict: bool,
    /// Use at most this many training images per class (quick experiments).
    pub limit_per_class: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: None,
            val_fraction: 0.05,
            strict: false,
            limit_per_class: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    /// Apply weight decay to batch-norm and bias parameters too (off: the usual practice).
    pub decay_norms_and_biases: bool,
    /// SGD momentum (0 for none).
    pub momentum: f64,
    pub nesterov: bool,
    pub beta1: f32,
    pub beta2: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            decay_norms_and_biases: false,
            momentum: 0.9,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
    OneCycle,
    Plateau,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    /// Linear warm-up, as a fraction of all steps (cosine, one-cycle).
    pub warmup_fraction: f64,
    /// Step schedule: multiply by `gamma` every `step_epochs`.
    pub step_epochs: usize,
    pub gamma: f64,
    /// Floor, as a fraction of the peak rate.
    pub min_lr_fraction: f64,
    /// Plateau schedule: multiply by `gamma` after this many epochs without val-loss improvement.
    pub patience: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_fraction: 0.0,
            step_epochs: 10,
            gamma: 0.1,
            min_lr_fraction: 0.0,
            patience: 2,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    pub decay: f64,
    /// Update the average every this many steps (cheaper; decay is adjusted to match).
    pub every: usize,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.999,
            every: 4,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    #[default]
    ValLoss,
    ValAccuracy,
    ValAuc,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    pub metric: StopMetric,
    pub patience: usize,
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            metric: StopMetric::ValLoss,
            patience: 3,
            min_delta: 0.0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        self.model.0.validate(self.input_size as usize)?;
        if !(8..=1024).contains(&self.input_size) {
            return bad(format!(
                "input_size = {}: must be in 8..=1024",
                self.input_size
            ));
        }
        if self.epochs == 0 {
            return bad("epochs = 0: must be at least 1".into());
        }
        if !(0.5..1.0).contains(&self.confident_accuracy) {
            return bad(format!(
                "confident_accuracy = {}: must be in [0.5, 1)",
                self.confident_accuracy
            ));
        }
        if let ThresholdRule::MaxFpr(f) = self.threshold
            && !(0.0..1.0).contains(&f)
        {
            return bad(format!("threshold.max_fpr = {f}: must be in [0, 1)"));
        }
        if self.batch_size == 0 || self.batch_size > 8192 {
            return bad(format!(
                "batch_size = {}: must be in 1..=8192",
                self.batch_size
            ));
        }
        if !(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite()) {
            return bad(format!(
                "optimizer.lr = {}: must be positive",
                self.optimizer.lr
            ));
        }
        if !(0.0..0.5).contains(&self.data.val_fraction) {
            return bad(format!(
                "data.val_fraction = {}: must be in [0, 0.5)",
                self.data.val_fraction
            ));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing = {}: must be in [0, 0.5)",
                self.label_smoothing
            ));
        }
        if let Some(ema) = &self.ema
            && !(0.0..1.0).contains(&ema.decay)
        {
            return bad(format!("ema.decay = {}: must be in [0, 1)", ema.decay));
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return bad(format!(
                "name = '{}': must be a plain folder name",
                self.name
            ));
        }
        Ok(())
    }

    /// The resolved experiment as YAML (what a run folder's `config.yaml` holds).
    pub fn to_yaml(&self) -> Result<String> {
        yaml_serde::to_string(self).map_err(|e| {
            Error::Invalid(format!(
                "experiment '{}' cannot be written as YAML: {e}",
                self.name
            ))
        })
    }
}

/// Deep-merge `over` into `base` (mappings merge key by key; anything else replaces).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Set a dotted key (`optimizer.kind`) inside a mapping, creating mappings on the way.
fn set_dotted(target: &mut Value, key: &str, value: Value) {
    let mut over = value;
    for part in key.rsplit('.') {
        let mut m = Mapping::new();
        m.insert(Value::String(part.to_string()), over);
        over = Value::Mapping(m);
    }
    merge(target, over);
}

fn parse_config(value: Value, path: &Path) -> Result<TrainConfig> {
    let config: TrainConfig =
        yaml_serde::from_value(value).map_err(|e| Error::config(path, e.to_string()))?;
    config
        .validate()
        .map_err(|e| Error::config(path, e.to_string()))?;
    Ok(config)
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    yaml_serde::from_str(&text).map_err(|e| Error::config(path, e.to_string()))
}

/// Load a single experiment.
pub fn load(path: &Path) -> Result<TrainConfig> {
    let mut runs = load_experiments(path)?;
    if runs.len() != 1 {
        return Err(Error::config(
            path,
            "is a grid of several runs, not one experiment",
        ));
    }
    Ok(runs.remove(0))
}

/// The experiment at `path`, or without one the `default` preset's (5 % validation split, seed
/// 42): what commands that redraw a run's validation split assume when not told.
pub fn load_or_default(path: Option<&Path>) -> Result<TrainConfig> {
    match path {
        Some(path) => load(path),
        None => yaml_serde::from_str("model: {preset: default}")
            .map_err(|e| Error::Invalid(format!("default experiment: {e}"))),
    }
}

/// Load an experiment file: one config, or every run of a grid (in order).
pub fn load_experiments(path: &Path) -> Result<Vec<TrainConfig>> {
    let value = read_yaml(path)?;
    let is_grid = value.get("base").is_some();
    if !is_grid {
        return Ok(vec![parse_config(value, path)?]);
    }
    let Value::Mapping(mut top) = value else {
        return Err(Error::config(path, "expected a mapping"));
    };
    let base = top.remove("base").unwrap_or(Value::Null);
    let variants = top.remove("variants");
    let grid = top.remove("grid");
    let seeds = top.remove("seeds");
    if let Some((k, _)) = top.into_iter().next() {
        return Err(Error::config(
            path,
            format!("unknown grid key {k:?}; expected base, variants, grid, seeds"),
        ));
    }
    let mut runs = variant_runs(path, &base, variants)?;
    if let Some(grid) = grid {
        runs = grid_runs(path, runs, grid)?;
    }
    if let Some(seeds) = seeds {
        runs = seed_runs(path, runs, seeds)?;
    }
    runs.into_iter()
        .map(|(name, mut cfg)| {
            set_dotted(
                &mut cfg,
                "name",
                Value::String(name.replace(['/', ' '], "_")),
            );
            parse_config(cfg, path)
        })
        .collect()
}

type NamedRuns = Vec<(String, Value)>;

/// Named variants (overrides merged into base); `base` itself runs when none are given.
fn variant_runs(path: &Path, base: &Value, variants: Option<Value>) -> Result<NamedRuns> {
    let base_name = base
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("run")
        .to_string();
    let mut runs: Vec<(String, Value)> = Vec::new();
    match variants {
        Some(Value::Sequence(list)) => {
            for (i, v) in list.into_iter().enumerate() {
                let Value::Mapping(mut m) = v else {
                    return Err(Error::config(
                        path,
                        format!("variants[{i}]: expected a mapping"),
                    ));
                };
                let name = match m.remove("name") {
                    Some(Value::String(s)) => s,
                    _ => {
                        return Err(Error::config(
                            path,
                            format!("variants[{i}]: needs a `name`"),
                        ));
                    }
                };
                let mut cfg = base.clone();
                for (k, v) in m {
                    match k.as_str() {
                        Some(key) => set_dotted(&mut cfg, key, v),
                        None => {
                            return Err(Error::config(
                                path,
                                format!("variants[{i}]: keys must be strings"),
                            ));
                        }
                    }
                }
                runs.push((name, cfg));
            }
        }
        Some(_) => return Err(Error::config(path, "variants: expected a list")),
        None => runs.push((base_name, base.clone())),
    }

    Ok(runs)
}

/// Cartesian grid over dotted keys, applied to every run.
fn grid_runs(path: &Path, mut runs: NamedRuns, grid: Value) -> Result<NamedRuns> {
    let Value::Mapping(grid) = grid else {
        return Err(Error::config(
            path,
            "grid: expected a mapping of key: [values]",
        ));
    };
    for (key, values) in grid {
        let key = key
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::config(path, "grid keys must be strings"))?;
        let Value::Sequence(values) = values else {
            return Err(Error::config(path, format!("grid.{key}: expected a list")));
        };
        let mut next = Vec::new();
        for (name, cfg) in &runs {
            for v in &values {
                let mut c = cfg.clone();
                set_dotted(&mut c, &key, v.clone());
                let label = yaml_serde::to_string(v)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let short = key.rsplit('.').next().unwrap_or(&key);
                next.push((format!("{name}-{short}={label}"), c));
            }
        }
        runs = next;
    }
    Ok(runs)
}

/// Every run repeated once per seed.
fn seed_runs(path: &Path, runs: NamedRuns, seeds: Value) -> Result<NamedRuns> {
    let Value::Sequence(seeds) = seeds else {
        return Err(Error::config(path, "seeds: expected a list of integers"));
    };
    let mut next = Vec::new();
    for (name, cfg) in &runs {
        for s in &seeds {
            let mut c = cfg.clone();
            set_dotted(&mut c, "seed", s.clone());
            let label = s
                .as_u64()
                .ok_or_else(|| Error::config(path, "seeds: expected integers"))?;
            next.push((format!("{name}-seed{label}"), c));
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("synthscan-cfg-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn preset_with_override() {
        let p = write(
            "a.yaml",
            "model: {preset: cifake-paper, activation: sigmoid}\nepochs: 3\n",
        );
        let c = load(&p).unwrap();
        let ArchConfig::Cnn(cnn) = &c.model.0 else {
            panic!()
        };
        assert_eq!(cnn.activation, crate::model::Activation::Sigmoid);
        assert_eq!(cnn.stages.len(), 2);
        assert_eq!(c.epochs, 3);
        // The resolved config round-trips without the preset.
        let again: TrainConfig = yaml_serde::from_str(&c.to_yaml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = write("b.yaml", "model: {preset: fast}\nepochz: 3\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("epochz"), "{e}");
        let p = write(
            "c.yaml",
            "model: {preset: fast}\noptimizer: {kind: adam, lrr: 0.1}\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("lrr"), "{e}");
        let p = write("d.yaml", "model: {preset: fast, widht: 3}\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("widht"), "{e}");
        let p = write("e.yaml", "model: {preset: nope}\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let p = write("f.yaml", "model: {preset: fast}\nbatch_size: 0\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("batch_size"), "{e}");
    }

    #[test]
    fn grid_errors_are_named() {
        let p = write(
            "h.yaml",
            "base: {model: {preset: fast}}\nvariants:\n  - {epochs: 3}\n",
        );
        let e = load_experiments(&p).unwrap_err().to_string();
        assert!(e.contains("variants[0]") && e.contains("name"), "{e}");
        let p = write(
            "i.yaml",
            "base: {model: {preset: fast}}\ngird: {epochs: [1]}\n",
        );
        let e = load_experiments(&p).unwrap_err().to_string();
        assert!(e.contains("gird"), "{e}");
        let p = write("j.yaml", "base: {model: {preset: fast}}\nseeds: [one]\n");
        let e = load_experiments(&p).unwrap_err().to_string();
        assert!(e.contains("seeds"), "{e}");
    }

    #[test]
    fn grid_expands_variants_grid_and_seeds() {
        let p = write(
            "g.yaml",
            "base: {name: seed, model: {preset: cifake-paper}, epochs: 20}\n\
             variants:\n  - {name: adam}\n  - {name: sgd, optimizer.kind: sgd}\n\
             grid: {epochs: [10, 20]}\nseeds: [1, 2]\n",
        );
        let runs = load_experiments(&p).unwrap();
        assert_eq!(runs.len(), 8);
        assert_eq!(runs[0].name, "adam-epochs=10-seed1");
        let sgd: Vec<_> = runs
            .iter()
            .filter(|r| r.optimizer.kind == OptimizerKind::Sgd)
            .collect();
        assert_eq!(sgd.len(), 4);
        assert!(runs.iter().any(|r| r.seed == 2 && r.epochs == 20));
    }
}
