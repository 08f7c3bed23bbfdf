//! The evidence record: one verdict, the signals behind it, notes and errors.

use serde::Serialize;

/// What the file's own provenance says about how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Nothing usable was found (most platforms strip metadata: this changes nothing).
    None,
    /// A capture credential, or camera EXIF with no AI sign (weak when unsigned).
    Camera,
    /// Recorded edits (an editor, edit actions) without an AI source type.
    Edited,
    /// A content credential is present but fails validation or cannot be parsed.
    Invalid,
    /// An AI source type, an AI vendor's claim, generator parameters or a generator watermark.
    Ai,
}

impl Verdict {
    /// The name used in JSON and in the fixtures' manifest (`NONE` there is `UNKNOWN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "NONE",
            Verdict::Camera => "CAMERA",
            Verdict::Edited => "EDITED",
            Verdict::Invalid => "INVALID",
            Verdict::Ai => "AI",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a signal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    /// C2PA content credentials (JUMBF manifest store), read with the C2PA SDK.
    C2pa,
    /// PNG text chunks, EXIF, XMP, stealth PNG info.
    Metadata,
    /// An invisible watermark decoded from the pixels.
    Watermark,
}

/// How much a signal can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strength {
    /// A C2PA signature that validates and whose signer is on a configured trust list.
    SignedValid,
    /// A C2PA signature that validates cryptographically, but the signer is not on a
    /// trust list (none is bundled), or its certificate has expired.
    SignedUntrusted,
    /// A C2PA manifest that fails validation (tampered, bad signature, unparseable).
    SignedInvalid,
    /// Metadata written by whatever saved the file: a claim anyone can write or strip.
    UnsignedClaim,
    /// A statistical mark in the pixels, with its bit agreement.
    Statistical,
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// `c2pa`, `metadata` or `watermark`.
    pub kind: SignalKind,
    /// The verdict this signal alone points to.
    pub says: Verdict,
    /// How strong it is.
    pub strength: Strength,
    /// One human-readable sentence.
    pub detail: String,
    /// The generating tool, camera or editor named, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Where it was read: `PNG tEXt parameters`, `EXIF Software`, `XMP CreatorTool`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value read (cut to a few hundred characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Watermarks: the fraction of payload bits decoded as embedded (0.5 is chance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_agreement: Option<f64>,
    /// Watermarks: the payload name (`StableDiffusionV1`, `SDV2`, `SDXL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// C2PA: what the SDK read and how it validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2pa: Option<crate::c2pa_record::C2paInfo>,
}

impl Signal {
    /// A signal with the required fields and no details.
    pub fn new(kind: SignalKind, says: Verdict, strength: Strength, detail: String) -> Self {
        Signal {
            kind,
            says,
            strength,
            detail,
            generator: None,
            field: None,
            value: None,
            bit_agreement: None,
            payload: None,
            c2pa: None,
        }
    }

    /// A metadata signal (always an unsigned claim).
    pub fn metadata(says: Verdict, field: &str, value: &str, generator: Option<&str>) -> Self {
        let detail = match (says, generator) {
            (Verdict::Ai, Some(g)) => format!("{field} names the AI generator {g}"),
            (Verdict::Ai, None) => format!("{field} holds AI generation data"),
            (Verdict::Edited, Some(g)) => format!("{field} names the editor {g}"),
            (Verdict::Camera, Some(g)) => format!("{field} names the camera {g}"),
            (_, Some(g)) => format!("{field}: {g}"),
            (_, None) => format!("{field} is present"),
        };
        let mut s = Signal::new(SignalKind::Metadata, says, Strength::UnsignedClaim, detail);
        s.field = Some(field.to_string());
        s.value = Some(excerpt(value, 300));
        s.generator = generator.map(str::to_string);
        s
    }
}

/// The provenance record of one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The combined verdict (see the crate documentation for the rule).
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
    /// Every signal found, strongest first.
    pub signals: Vec<Signal>,
    /// Caveats a reader must know (metadata is a claim; no trust list…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What could not be read, and why (malformed boxes, truncation, caps hit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The container format recognised from the bytes (`jpeg`, `png`…), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// The first `max` characters of `s` (on a char boundary), with `…` when cut,
/// and control characters replaced.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_json_names_and_order() {
        assert_eq!(serde_json::to_string(&Verdict::Ai).unwrap(), "\"AI\"");
        assert_eq!(serde_json::to_string(&Verdict::None).unwrap(), "\"NONE\"");
        assert!(Verdict::Ai > Verdict::Invalid && Verdict::Invalid > Verdict::Edited);
        assert!(Verdict::Edited > Verdict::Camera && Verdict::Camera > Verdict::None);
    }

    #[test]
    fn strength_and_kind_json_names() {
        assert_eq!(
            serde_json::to_string(&Strength::SignedUntrusted).unwrap(),
            "\"signed-untrusted\""
        );
        assert_eq!(
            serde_json::to_string(&SignalKind::C2pa).unwrap(),
            "\"c2pa\""
        );
    }

    #[test]
    fn excerpt_cuts_on_char_boundaries() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("ab", 5), "ab");
        assert_eq!(excerpt("a\u{0}b", 5), "a b");
    }

    #[test]
    fn metadata_signal_is_an_unsigned_claim() {
        let s = Signal::metadata(
            Verdict::Ai,
            "PNG tEXt parameters",
            "Steps: 20",
            Some("A1111"),
        );
        assert_eq!(s.strength, Strength::UnsignedClaim);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["kind"], "metadata");
        assert_eq!(v["says"], "AI");
        assert!(v.get("bit_agreement").is_none());
    }
}
