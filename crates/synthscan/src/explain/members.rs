//! Maps of an [`Ensemble`]: each member's map for the same class, brought to the finest of
//! their grids, averaged and scaled back to [0, 1]. One member is that member's map.

use super::{Cam, CamMap, CamMethod, CamTarget, render};
use crate::data::FAKE;
use crate::decision::class_at;
use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use image::RgbImage;

/// Class-activation maps of every member of an ensemble with one method, the layers resolved
/// once.
pub struct EnsembleCam<'a> {
    ensemble: &'a Ensemble,
    cams: Vec<Cam<'a>>,
}

impl<'a> EnsembleCam<'a> {
    /// `layers`: one block name per member, or none for each member's default block. A single
    /// name for an ensemble of several is refused: block names belong to one network.
    pub fn new(ensemble: &'a Ensemble, layers: &[String], method: CamMethod) -> Result<Self> {
        if !layers.is_empty() && layers.len() != ensemble.len() {
            return Err(Error::Invalid(format!(
                "{} layer names for {} models: a layer name belongs to one network, and an \
                 ensemble's maps are taken at each member's default block",
                layers.len(),
                ensemble.len()
            )));
        }
        let cams = ensemble
            .iter()
            .enumerate()
            .map(|(k, det)| Cam::new(det, layers.get(k).map(String::as_str), method))
            .collect::<Result<_>>()?;
        Ok(Self { ensemble, cams })
    }

    /// The block of each member the maps are taken at.
    pub fn layer_names(&self) -> Vec<String> {
        self.cams
            .iter()
            .map(|c| c.layer_name().to_string())
            .collect()
    }

    /// The map for one decoded image (any size): the member's own, or the members' mean for
    /// the ensemble's class when `target` is the predicted one. Its `p_fake` and `label` are
    /// the ensemble's decision on the image ([`Ensemble::score`], as `predict` gives it).
    pub fn map(&self, image: &RgbImage, target: CamTarget) -> Result<CamMap> {
        let decision = self
            .ensemble
            .score(&self.ensemble.batch_of([self.ensemble.prepare(image)]))
            .pop()
            .ok_or_else(|| Error::Model("no score was produced".into()))?;
        let target = match target {
            CamTarget::Predicted if class_at(decision.p_fake, decision.threshold) == FAKE => {
                CamTarget::Fake
            }
            CamTarget::Predicted => CamTarget::Real,
            t => t,
        };
        let routed = self
            .ensemble
            .is_routed()
            .then(|| &self.cams[self.ensemble.route(image.width(), image.height())]);
        let mut map =
            if let Some(cam) = routed.or(self.cams.first().filter(|_| self.cams.len() == 1)) {
                cam.map(image, target)?
            } else {
                let maps: Vec<CamMap> = self
                    .cams
                    .iter()
                    .map(|c| c.map(image, target))
                    .collect::<Result<_>>()?;
                self.mean(maps)
            };
        map.p_fake = decision.p_fake;
        map.label = decision.label;
        Ok(map)
    }

    /// The members' maps on the finest grid, averaged; their layers named together.
    fn mean(&self, maps: Vec<CamMap>) -> CamMap {
        let finest = maps
            .iter()
            .max_by_key(|m| m.width * m.height)
            .map_or((0, 0), |m| (m.width, m.height));
        let (w, h) = finest;
        let mut values = vec![0.0f32; w * h];
        for m in &maps {
            let up = render::upsample(m, w, h);
            values.iter_mut().zip(up).for_each(|(v, u)| *v += u);
        }
        let top = values.iter().copied().fold(0.0f32, f32::max);
        if top > 0.0 {
            values.iter_mut().for_each(|v| *v /= top);
        }
        let layer = self
            .ensemble
            .iter()
            .zip(&maps)
            .map(|(d, m)| format!("{}:{}", d.name, m.layer))
            .collect::<Vec<_>>()
            .join(" + ");
        let first = &maps[0];
        CamMap {
            width: w,
            height: h,
            values,
            target: first.target,
            target_name: first.target_name.clone(),
            p_fake: first.p_fake,
            label: first.label.clone(),
            layer,
            method: first.method,
        }
    }
}
