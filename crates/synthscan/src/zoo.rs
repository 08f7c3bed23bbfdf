//! Models reachable by name (`--model realworld`) from any working directory: they are compiled
//! into the binary. A file of that name in the working directory takes precedence.

use std::path::Path;

/// The real-world photograph detector (EfficientNet-Lite0 backbone; see
/// `models/realworld.MODEL_CARD.md`).
static REALWORLD: &[u8] = include_bytes!("../../../models/realworld.synthscan");

/// Names that resolve to a built-in model.
pub const NAMES: [&str; 1] = ["realworld"];

/// The bytes and a label for messages of the built-in model called `name`, if there is one.
pub fn named(name: &Path) -> Option<(&'static [u8], &'static str)> {
    match name.to_str()? {
        "realworld" => Some((REALWORLD, "<built-in realworld model>")),
        _ => None,
    }
}
