//! Generation: a DCGAN that learns any folder of images, its samples, a progress GIF, a
//! Fréchet distance in a synthscan detector's feature space, and detectors tested on its fakes.

pub mod config;
pub mod detect;
pub mod fid;
pub mod gif;
pub mod images;
pub mod model;
pub mod sample;
pub mod step;
pub mod train;

pub use config::{GanConfig, GanLoss};
pub use model::{Discriminator, Generator};
