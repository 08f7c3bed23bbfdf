//! The one scoring path: decoded images → [`Decision`]s.
//!
//! [`Ensemble::prepare`] brings a decoded image to every member's input (its size, resize or
//! native-resolution crop: [`crate::data::prepare`]); a [`Batch`] gathers prepared images into one
//! set per member; [`Ensemble::score`] runs each member over its set, averages their `p_fake`,
//! maps the mean through the ensemble's calibration ([`Ensemble::combine`]) and decides it
//! ([`Ensemble::decide_image`]). `predict`, `evaluate`, `robustness`, `explain` and the server's
//! batcher all score through here; a single model is an ensemble of one.

use super::Ensemble;
use crate::data::ImageSet;
use crate::decision::Decision;

/// One decoded image prepared for every member, in member order, with the size it was decoded
/// at (the decision rule refuses shapes no detector can judge).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub inputs: Vec<Vec<u8>>,
    pub width: u32,
    pub height: u32,
}

/// Prepared images gathered into one set per member (set `m` holds member `m`'s inputs, the
/// images in the same order), ready for [`Ensemble::score`].
#[derive(Clone, Debug)]
pub struct Batch {
    sets: Vec<ImageSet>,
    /// Each image's decoded size; `None` where it is not known (sets loaded already prepared),
    /// and then only the score decides.
    shapes: Vec<Option<(u32, u32)>>,
}

impl Batch {
    /// Add one image (its inputs are moved into the members' sets).
    pub fn push(&mut self, p: Prepared) {
        for (set, px) in self.sets.iter_mut().zip(p.inputs) {
            set.pixels.extend_from_slice(&px);
            set.labels.push(0);
        }
        self.shapes.push(Some((p.width, p.height)));
    }

    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// The members' sets (labels as loaded).
    pub fn sets(&self) -> &[ImageSet] {
        &self.sets
    }
}

/// How a batch's forward passes use the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    /// Spread over every core (a folder, a validation set): each member's set is cut into one
    /// pass per core; a lone image runs a flip-TTA model's mirror pass beside it.
    AcrossCores,
    /// One pass per member on the calling thread (the server's batch workers, which run side
    /// by side); a lone image still gets its mirror pass beside it, for latency.
    ThisThread,
}

impl Ensemble {
    /// Each member's input pixels for one decoded image, with the image's size.
    pub fn prepare(&self, img: &image::RgbImage) -> Prepared {
        Prepared {
            inputs: self.members.iter().map(|d| d.prepare(img)).collect(),
            width: img.width(),
            height: img.height(),
        }
    }

    /// An empty batch for this ensemble's members.
    pub fn batch(&self) -> Batch {
        Batch {
            sets: self.members.iter().map(|d| d.image_set(&[])).collect(),
            shapes: Vec::new(),
        }
    }

    /// `items` gathered into a batch.
    pub fn batch_of(&self, items: impl IntoIterator<Item = Prepared>) -> Batch {
        let mut batch = self.batch();
        items.into_iter().for_each(|p| batch.push(p));
        batch
    }

    /// A batch of sets already prepared for each member (`sets[m]` for member `m`, the same
    /// images in the same order; the loader of labelled folders makes them), sizes unknown.
    /// `None` when there is not one set per member or the sets disagree on their length.
    pub fn batch_of_sets(&self, sets: Vec<ImageSet>) -> Option<Batch> {
        let n = sets.first().map_or(0, ImageSet::len);
        (sets.len() == self.members.len() && sets.iter().all(|s| s.len() == n)).then(|| Batch {
            sets,
            shapes: vec![None; n],
        })
    }

    /// The decision on every image of `batch`, in order, its passes spread over the cores.
    pub fn score(&self, batch: &Batch) -> Vec<Decision> {
        self.score_with(batch, Passes::AcrossCores)
    }

    /// [`Self::score`], with the forward passes scheduled as `passes` says.
    pub fn score_with(&self, batch: &Batch, passes: Passes) -> Vec<Decision> {
        let n = batch.len();
        let mut sum = vec![0f32; n];
        for (det, set) in self.members.iter().zip(&batch.sets) {
            let scores = match passes {
                Passes::ThisThread if n > 1 => det.score_batch(set, &(0..n).collect::<Vec<_>>()),
                _ => det.score_set(set),
            };
            sum.iter_mut().zip(scores).for_each(|(s, v)| *s += v);
        }
        let members = self.members.len().max(1) as f32;
        sum.into_iter()
            .zip(&batch.shapes)
            .map(|(s, shape)| {
                let p = self.combine(s / members);
                match shape {
                    Some((w, h)) => self.decide_image(p, *w, *h),
                    None => self.decide(p),
                }
            })
            .collect()
    }

    /// The decisions' `p_fake`, for metrics over a labelled set.
    pub fn p_fakes(decisions: &[Decision]) -> Vec<f32> {
        decisions.iter().map(|d| d.p_fake).collect()
    }
}
