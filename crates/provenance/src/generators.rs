//! The table of known generator, editor and non-camera strings (`generators.json`).

use crate::Verdict;
use serde::Deserialize;
use std::sync::OnceLock;

/// A PNG text keyword written by a generator.
#[derive(Debug, Deserialize)]
pub struct TextKey {
    pub key: String,
    pub generator: String,
    /// The value must look like JSON (`{` or `[` first) to count.
    #[serde(default)]
    pub json: bool,
}

/// A string found in Software / CreatorTool / Make.
#[derive(Debug, Deserialize)]
pub struct Pattern {
    pub contains: String,
    #[serde(default)]
    pub generator: String,
    #[serde(default)]
    pub what: String,
    #[serde(default)]
    pub says: Option<String>,
}

/// IPTC digital source type terms, by the verdict they point to.
#[derive(Debug, Deserialize)]
pub struct SourceTypes {
    #[serde(rename = "AI")]
    pub ai: Vec<String>,
    #[serde(rename = "CAMERA")]
    pub camera: Vec<String>,
    #[serde(rename = "EDITED")]
    pub edited: Vec<String>,
}

/// The whole table.
#[derive(Debug, Deserialize)]
pub struct Table {
    pub png_text_keys: Vec<TextKey>,
    /// Each inner list: all of these substrings together mark generation parameters.
    pub parameter_markers: Vec<Vec<String>>,
    pub software: Vec<Pattern>,
    pub ai_text_markers: Vec<Pattern>,
    pub non_camera_makes: Vec<Pattern>,
    pub digital_source_types: SourceTypes,
}

const TABLE_JSON: &str = include_str!("../generators.json");

/// The table, parsed once. The JSON is part of the build and checked by a test.
pub fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str(TABLE_JSON).unwrap_or_else(|_| Table {
            png_text_keys: Vec::new(),
            parameter_markers: Vec::new(),
            software: Vec::new(),
            ai_text_markers: Vec::new(),
            non_camera_makes: Vec::new(),
            digital_source_types: SourceTypes {
                ai: Vec::new(),
                camera: Vec::new(),
                edited: Vec::new(),
            },
        })
    })
}

/// `needle` occurs in `hay` (ASCII case-insensitive) with no letter or digit on either side.
pub fn contains_word(hay: &str, needle: &str) -> bool {
    let h = hay.to_ascii_lowercase();
    let n = needle.to_ascii_lowercase();
    if n.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(p) = h[from..].find(&n) {
        let at = from + p;
        let end = at + n.len();
        let before_ok = !h[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        let after_ok = !h[end..].chars().next().is_some_and(char::is_alphanumeric);
        if before_ok && after_ok {
            return true;
        }
        from = at + h[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The first software pattern found in `value`, with the verdict it points to.
pub fn match_software(value: &str) -> Option<(Verdict, &'static str)> {
    table()
        .software
        .iter()
        .find(|p| contains_word(value, &p.contains))
        .map(|p| {
            let says = match p.says.as_deref() {
                Some("AI") => Verdict::Ai,
                Some("CAMERA") => Verdict::Camera,
                _ => Verdict::Edited,
            };
            (says, p.generator.as_str())
        })
}

/// The text looks like generation parameters (A1111 settings line, Comfy graph, JSON settings).
pub fn looks_like_parameters(value: &str) -> bool {
    table()
        .parameter_markers
        .iter()
        .any(|all| all.iter().all(|m| value.contains(m.as_str())))
}

/// A self-declared AI marker (Midjourney job ID, "AI generated image").
pub fn ai_text_marker(value: &str) -> Option<&'static str> {
    table()
        .ai_text_markers
        .iter()
        .find(|p| value.contains(p.contains.as_str()))
        .map(|p| p.generator.as_str())
}

/// A Make that is not a camera (game photo modes, generators).
pub fn non_camera_make(make: &str) -> Option<&'static str> {
    table()
        .non_camera_makes
        .iter()
        .find(|p| contains_word(make, &p.contains))
        .map(|p| p.what.as_str())
}

/// The verdict an IPTC digital source type (URI or bare term) points to.
pub fn source_type_verdict(dst: &str) -> Option<Verdict> {
    let term = dst.rsplit('/').next().unwrap_or(dst).trim();
    let t = &table().digital_source_types;
    let has = |list: &[String]| list.iter().any(|x| x == term);
    if has(&t.ai) {
        Some(Verdict::Ai)
    } else if has(&t.camera) {
        Some(Verdict::Camera)
    } else if has(&t.edited) {
        Some(Verdict::Edited)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_is_not_empty() {
        let t: Table = serde_json::from_str(TABLE_JSON).expect("generators.json parses");
        assert!(t.png_text_keys.len() >= 8);
        assert!(t.software.len() >= 30);
        assert!(
            t.software
                .iter()
                .all(|p| matches!(p.says.as_deref(), Some("AI" | "EDITED")))
        );
        assert_eq!(table().software.len(), t.software.len());
    }

    #[test]
    fn word_matching() {
        assert!(contains_word("Adobe Photoshop CS3 Windows", "photoshop"));
        assert!(contains_word("Adobe_Firefly", "Firefly"));
        assert!(!contains_word("Canvas 11", "Canva"));
        assert!(!contains_word("xGIMP", "GIMP"));
        assert!(contains_word("ÄGIMP 2", "GIMP") || !contains_word("ÄGIMP 2", "GIMP"));
    }

    #[test]
    fn software_verdicts() {
        assert_eq!(
            match_software("GIMP 2.4.5"),
            Some((Verdict::Edited, "GIMP"))
        );
        assert_eq!(match_software("NovelAI"), Some((Verdict::Ai, "NovelAI")));
        assert_eq!(match_software("Nikon Transfer 1.1 W"), None);
        assert_eq!(
            match_software("Stable Diffusion 1D44365E").map(|m| m.0),
            Some(Verdict::Ai)
        );
    }

    #[test]
    fn parameters_and_source_types() {
        assert!(looks_like_parameters(
            "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7"
        ));
        assert!(!looks_like_parameters("Steps to the beach"));
        let base = "http://cv.iptc.org/newscodes/digitalsourcetype/";
        assert_eq!(
            source_type_verdict(&format!("{base}trainedAlgorithmicMedia")),
            Some(Verdict::Ai)
        );
        assert_eq!(source_type_verdict("digitalCapture"), Some(Verdict::Camera));
        assert_eq!(source_type_verdict("somethingElse"), None);
        assert_eq!(
            non_camera_make("Polyphony Digital Inc."),
            Some("Gran Turismo photo mode (rendered CG)")
        );
    }
}
