//! Models reachable by name (`--model cifake`, `--model realworld`, `--model auto`) from any
//! working directory: they are compiled into the binary. A file of that name in the working
//! directory takes precedence.

use std::path::Path;

/// The CIFAKE detector (32×32 inputs; see `models/MODEL_CARD.md`).
static CIFAKE: &[u8] = include_bytes!("../../../models/default.synthscan");

/// The real-world photograph detector (EfficientNet-Lite0 backbone; see
/// `models/realworld.MODEL_CARD.md`).
static REALWORLD: &[u8] = include_bytes!("../../../models/realworld.synthscan");

/// The default: each image goes to the built-in model whose domain it is in (CIFAKE-sized
/// images to `cifake`, everything else to `realworld`).
pub const AUTO: &str = "auto";

/// Names that resolve to a built-in model, `auto` included.
pub const NAMES: [&str; 3] = [AUTO, "cifake", "realworld"];

/// The built-in models `auto` routes between, in the order they are asked.
pub const AUTO_MEMBERS: [&str; 2] = ["cifake", "realworld"];

/// The bytes and a label for messages of the built-in model called `name`, if there is one
/// (`auto` is several models: see [`AUTO_MEMBERS`]).
pub fn named(name: &Path) -> Option<(&'static [u8], &'static str)> {
    match name.to_str()? {
        "cifake" => Some((CIFAKE, "<built-in cifake model>")),
        "realworld" => Some((REALWORLD, "<built-in realworld model>")),
        _ => None,
    }
}

/// Whether `path` names the routed built-in default (and no file of that name exists).
pub fn is_auto(path: &Path) -> bool {
    path == Path::new(AUTO) && !path.exists()
}
