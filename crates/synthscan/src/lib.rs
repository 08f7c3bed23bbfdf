//! synthscan: tell real photographs from AI-generated images.
//!
//! The CLI (in the binary), the tests and the server all go through these modules; see
//! `ARCHITECTURE.md` for the data flow. Nothing here parses arguments or prints results.

pub mod adapt;
pub mod bench;
pub mod config;
pub mod data;
pub mod decision;
pub mod detector;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod explain;
pub mod gan;
pub mod model;
pub mod pipeline;
pub mod predict;
pub mod progress;
pub mod report;
pub mod robust;
pub mod run;
pub mod serve;
pub mod train;
pub mod transfer;
pub mod zoo;

pub use config::TrainConfig;
pub use data::ImageSet;
pub use detector::Detector;
pub use error::{Error, Result};
/// The provenance-evidence crate (content credentials, generator metadata, invisible
/// watermarks), for callers that name its types.
pub use provenance;
