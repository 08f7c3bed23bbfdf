//! The one scoring path: decoded images → [`Decision`]s.
//!
//! [`Ensemble::prepare`] brings a decoded image to every member's input (its size, resize or
//! native-resolution crop: [`crate::data::prepare`]); a [`Batch`] gathers prepared images into one
//! set per member; [`Ensemble::score`] runs each member over its set, averages their `p_fake`,
//! maps the mean through the ensemble's calibration ([`Ensemble::combine`]) and decides it
//! ([`Ensemble::decide_image`]). `predict`, `evaluate`, `robustness`, `explain` and the server's
//! batcher all score through here; a single model is an ensemble of one.
//!
//! An image prepared from its file's bytes ([`Ensemble::prepare_bytes`]) also carries the
//! file's provenance evidence, read before decoding; [`Ensemble::score_with`] combines it with
//! the pixel decision by the one rule, [`crate::decision::with_provenance`].

use super::Ensemble;
use crate::data::ImageSet;
use crate::data::decode::{self, Need};
use crate::data::prepare::Preprocess;
use crate::decision::{Decision, with_provenance};
use crate::error::{Error, Result};
use provenance::Evidence;
use std::path::Path;

/// One decoded image prepared for every member that scores it, in member order (empty for a
/// member that does not: a routed ensemble prepares only for the member the image goes to), with
/// the size it was decoded at (the decision rule refuses shapes no detector can judge), and the
/// provenance evidence of the original file when it was read (set by the caller from the file's
/// bytes, before decoding: [`Ensemble::prepare_bytes`]; `None` for pixels alone).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub inputs: Vec<Vec<u8>>,
    pub width: u32,
    pub height: u32,
    pub provenance: Option<Evidence>,
}

/// A file that could not be prepared: why, and its provenance evidence when its bytes were
/// inspected (read once: the caller need not inspect the file again).
#[derive(Debug)]
pub struct Unprepared {
    pub error: Error,
    pub evidence: Option<Box<Evidence>>,
}

impl From<Unprepared> for Error {
    fn from(u: Unprepared) -> Self {
        u.error
    }
}

/// Prepared images gathered into one set per member (set `m` holds member `m`'s inputs, the
/// images in the same order), ready for [`Ensemble::score`].
#[derive(Clone, Debug)]
pub struct Batch {
    sets: Vec<ImageSet>,
    /// Each image's decoded size; `None` where it is not known (sets loaded already prepared),
    /// and then only the score decides.
    shapes: Vec<Option<(u32, u32)>>,
    /// Which members score each image (bit `m` for member `m`).
    scored_by: Vec<u64>,
    /// Each image's provenance evidence, where its file was inspected.
    provenance: Vec<Option<Evidence>>,
}

impl Batch {
    /// Add one image (its inputs are moved into the sets of the members that score it).
    pub fn push(&mut self, p: Prepared) {
        let mut mask = 0u64;
        for (m, (set, px)) in self.sets.iter_mut().zip(p.inputs).enumerate() {
            if !px.is_empty() {
                set.pixels.extend_from_slice(&px);
                set.labels.push(0);
                mask |= 1 << m;
            }
        }
        self.shapes.push(Some((p.width, p.height)));
        self.scored_by.push(mask);
        self.provenance.push(p.provenance);
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
    /// Each member's input pixels for one decoded image (routed: only the member it goes to),
    /// with the image's size.
    pub fn prepare(&self, img: &image::RgbImage) -> Prepared {
        self.prepare_as(img, img.width(), img.height())
    }

    /// [`Self::prepare`] of pixels that stand for a `width`×`height` image (routed and sized
    /// by that size; the pixels may be a reduction of it).
    fn prepare_as(&self, img: &image::RgbImage, width: u32, height: u32) -> Prepared {
        let route = self.routed.then(|| self.route(width, height));
        let inputs = self
            .members
            .iter()
            .enumerate()
            .map(|(m, d)| match route {
                Some(r) if r != m => Vec::new(),
                _ => d.prepare(img),
            })
            .collect();
        Prepared {
            inputs,
            width,
            height,
            provenance: None,
        }
    }

    /// What the members that would score a `width`×`height` image need of its pixels: every
    /// pixel when one of them crops at native resolution, else the largest input side among them
    /// (routed: the member it goes to, either way round).
    pub fn need(&self, width: u32, height: u32) -> Need {
        let routes = self
            .routed
            .then(|| [self.route(width, height), self.route(height, width)]);
        let mut side = 0;
        for (m, d) in self.members.iter().enumerate() {
            if routes.is_some_and(|r| !r.contains(&m)) {
                continue;
            }
            match d.meta.preprocess {
                Preprocess::Resize => side = side.max(d.meta.input_size),
                Preprocess::CenterCrop => return Need::All,
            }
        }
        Need::Side(side)
    }

    /// [`Self::prepare`] of a decoded file: routed and sized by the file's own size (the
    /// decode may be a reduction of it: [`decode::Decoded::scale`]).
    pub fn prepare_decoded(&self, decoded: &decode::Decoded) -> Prepared {
        self.prepare_as(&decoded.image, decoded.width, decoded.height)
    }

    /// A file's bytes decoded with what the members need ([`Self::need`]: a photograph far
    /// larger than their inputs is decoded at a reduced JPEG scale) and prepared, without
    /// provenance: what `evaluate` scores.
    pub fn prepare_pixels(&self, bytes: &[u8], name: &Path) -> Result<Prepared> {
        let (w, h) = decode::header_dimensions(bytes, name, decode::MAX_PIXELS)?;
        let decoded =
            decode::decode_within(bytes, name, decode::MAX_PIXELS, self.need(w, h), false)?;
        Ok(self.prepare_decoded(&decoded))
    }

    /// [`Self::prepare`] from a file's original bytes, the one way `predict` and the server
    /// bring a file to the scoring path: the header is checked against the decoder's limits
    /// ([`decode::MAX_PIXELS`]), the image decoded once with what the members need, and the
    /// file's provenance evidence read from the bytes ([`provenance::inspect_with`]: content
    /// credentials, generator metadata, and watermarks read from the same decode), then the
    /// image is prepared. `name` names the file in errors and hints its format. A file that
    /// cannot be decoded is an error (its evidence is dropped: [`Self::prepare_bytes_within`]
    /// keeps it).
    pub fn prepare_bytes(&self, bytes: &[u8], name: &Path) -> Result<Prepared> {
        Ok(self
            .prepare_bytes_within(bytes, name, decode::MAX_PIXELS, false)?
            .0)
    }

    /// [`Self::prepare_bytes`] with the decoder refusing images over `max_pixels` (the server's
    /// limit); `keep_image` decodes every pixel and returns the upright image too (the server's
    /// Grad-CAM needs the pixels again). A file that cannot be prepared comes back with its
    /// provenance evidence where its bytes could be inspected (a HEIC or TIFF may still carry
    /// credentials).
    pub fn prepare_bytes_within(
        &self,
        bytes: &[u8],
        name: &Path,
        max_pixels: u64,
        keep_image: bool,
    ) -> std::result::Result<(Prepared, Option<image::RgbImage>), Unprepared> {
        let hint = name.file_name().and_then(|n| n.to_str());
        let unprepared = |error: Error| {
            // Pixels over the size limit are not decoded for provenance either (a bomb stays
            // unopened); any other failure leaves the readers their own bounded attempt.
            let pixels = match error {
                Error::TooLarge { .. } | Error::TooManyPixels { .. } => {
                    provenance::Pixels::Skip("pixels not read: the image is over the size limit")
                }
                _ => provenance::Pixels::Decode,
            };
            let evidence = provenance::inspect_with(bytes, hint, pixels);
            Unprepared {
                error,
                evidence: Some(Box::new(evidence)),
            }
        };
        // Refuse what the decoder would refuse before reading anything else from the file.
        let (w, h) = decode::header_dimensions(bytes, name, max_pixels).map_err(unprepared)?;
        let need = match keep_image {
            true => Need::All,
            false => self.need(w, h),
        };
        let mut decoded =
            decode::decode_within(bytes, name, max_pixels, need, true).map_err(unprepared)?;
        let skipped = format!(
            "watermark and stealth-info readers not run: the image ({}x{}) was decoded at 1/{} \
             scale for the model (`synthscan provenance` reads its full pixels)",
            decoded.width, decoded.height, decoded.scale
        );
        let evidence = decoded.with_raw(|raw| {
            let pixels = match raw {
                Some(raw) => provenance::Pixels::Decoded(raw),
                None => provenance::Pixels::Skip(&skipped),
            };
            provenance::inspect_with(bytes, hint, pixels)
        });
        let mut prepared = self.prepare_decoded(&decoded);
        prepared.provenance = Some(evidence);
        Ok((prepared, keep_image.then_some(decoded.image)))
    }

    /// Files decoded and scored together when a folder is scored piece by piece (so that
    /// memory stays bounded and progress can be told): four rounds of full passes on every
    /// core of the largest member's input, at least 64.
    pub fn chunk_len(&self) -> usize {
        let size = self.members.iter().map(|d| d.meta.input_size).max();
        let passes = self
            .members
            .first()
            .map_or(1, |d| crate::detector::parallel_passes(d.device()));
        (4 * passes * crate::detector::images_per_pass(size.unwrap_or(32) as usize)).max(64)
    }

    /// An empty batch for this ensemble's members.
    pub fn batch(&self) -> Batch {
        Batch {
            sets: self.members.iter().map(|d| d.image_set(&[])).collect(),
            shapes: Vec::new(),
            scored_by: Vec::new(),
            provenance: Vec::new(),
        }
    }

    /// `items` gathered into a batch.
    pub fn batch_of(&self, items: impl IntoIterator<Item = Prepared>) -> Batch {
        let mut batch = self.batch();
        items.into_iter().for_each(|p| batch.push(p));
        batch
    }

    /// The decision on every image of `batch`, in order, its passes spread over the cores.
    pub fn score(&self, batch: &Batch) -> Vec<Decision> {
        self.score_with(batch, Passes::AcrossCores)
    }

    /// [`Self::score`], with the forward passes scheduled as `passes` says. An image that
    /// carries provenance evidence gets it combined with its pixel decision
    /// ([`with_provenance`]).
    pub fn score_with(&self, batch: &Batch, passes: Passes) -> Vec<Decision> {
        // Each member's scores of the images it was given, in batch order.
        let mut per_member: Vec<std::vec::IntoIter<f32>> = self
            .members
            .iter()
            .zip(&batch.sets)
            .map(|(det, set)| {
                let n = set.len();
                let scores = match passes {
                    _ if n == 0 => Vec::new(),
                    Passes::ThisThread if n > 1 => {
                        det.score_batch(set, &(0..n).collect::<Vec<_>>())
                    }
                    _ => det.score_set(set),
                };
                scores.into_iter()
            })
            .collect();
        batch
            .scored_by
            .iter()
            .zip(&batch.shapes)
            .zip(&batch.provenance)
            .map(|((&mask, shape), evidence)| {
                let (mut sum, mut count, mut only) = (0f32, 0usize, 0usize);
                for (m, scores) in per_member.iter_mut().enumerate() {
                    if mask & (1 << m) != 0 {
                        sum += scores.next().unwrap_or(f32::NAN);
                        count += 1;
                        only = m;
                    }
                }
                let mean = sum / count.max(1) as f32;
                let pixels = match (self.routed, shape) {
                    // A routed image is answered by its member alone, by that member's rule.
                    (true, Some((w, h))) => self.members[only].decide_image(mean, *w, *h),
                    (true, None) => self.members[only].decide(mean),
                    (false, Some((w, h))) => self.decide_image(self.combine(mean), *w, *h),
                    (false, None) => self.decide(self.combine(mean)),
                };
                match evidence {
                    Some(ev) => with_provenance(pixels, ev.clone()),
                    None => pixels,
                }
            })
            .collect()
    }

    /// The decisions' `p_fake`, for metrics over a labelled set.
    pub fn p_fakes(decisions: &[Decision]) -> Vec<f32> {
        decisions.iter().map(|d| d.p_fake).collect()
    }
}
