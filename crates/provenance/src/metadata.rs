//! Turns text chunks, EXIF and XMP into metadata signals (unsigned claims).

use crate::container::{Blobs, TextEntry};
use crate::exif_read::ExifFacts;
use crate::generators::{
    ai_text_marker, looks_like_parameters, match_software, non_camera_make, source_type_verdict,
    table,
};
use crate::{Signal, Verdict, xmp};

/// Keys whose value names the writing software.
const SOFTWARE_KEYS: &[&str] = &["Software", "Source", "CreatorTool", "Generator"];

/// All metadata signals of a file.
pub fn signals(blobs: &Blobs, exif: Option<&ExifFacts>) -> Vec<Signal> {
    let mut out = Vec::new();
    for t in &blobs.texts {
        text_signals(t, &mut out);
    }
    if let Some(e) = exif {
        exif_signals(e, &mut out);
    }
    for packet in &blobs.xmp {
        xmp_signals(packet, &mut out);
    }
    dedupe(out)
}

/// Keep the first signal of each (field, generator, says).
fn dedupe(v: Vec<Signal>) -> Vec<Signal> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|s| seen.insert((s.field.clone(), s.generator.clone(), s.says)))
        .collect()
}

fn text_signals(t: &TextEntry, out: &mut Vec<Signal>) {
    let field = format!("PNG {} {}", t.chunk, t.key);
    let field = if t.chunk == "COM" {
        "JPEG comment".to_string()
    } else {
        field
    };
    if t.key == "XML:com.adobe.xmp" {
        return;
    }
    let known = table()
        .png_text_keys
        .iter()
        .find(|k| k.key.eq_ignore_ascii_case(&t.key));
    if let Some(k) = known {
        let v = t.value.trim_start();
        if !k.json || v.starts_with('{') || v.starts_with('[') {
            let generator = refine_parameters(&t.key, &t.value).unwrap_or(&k.generator);
            out.push(Signal::metadata(
                Verdict::Ai,
                &field,
                &t.value,
                Some(generator),
            ));
            return;
        }
    }
    if SOFTWARE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(&t.key))
        && let Some((says, g)) = match_software(&t.value)
    {
        out.push(Signal::metadata(says, &field, &t.value, Some(g)));
        return;
    }
    free_text_signal(&field, &t.value, out);
}

/// Fooocus writes its own JSON under `parameters`.
fn refine_parameters(key: &str, value: &str) -> Option<&'static str> {
    (key == "parameters" && value.trim_start().starts_with('{') && value.contains("\"Fooocus"))
        .then_some("Fooocus (parameters JSON)")
}

/// Generation parameters or a self-declared AI marker in free text.
fn free_text_signal(field: &str, value: &str, out: &mut Vec<Signal>) {
    if looks_like_parameters(value) {
        out.push(Signal::metadata(Verdict::Ai, field, value, None));
    } else if let Some(g) = ai_text_marker(value) {
        out.push(Signal::metadata(Verdict::Ai, field, value, Some(g)));
    }
}

fn exif_signals(e: &ExifFacts, out: &mut Vec<Signal>) {
    if let Some(sw) = &e.software
        && let Some((says, g)) = match_software(sw)
    {
        out.push(Signal::metadata(says, "EXIF Software", sw, Some(g)));
    }
    for (field, v) in [
        ("EXIF UserComment", &e.user_comment),
        ("EXIF ImageDescription", &e.description),
        ("EXIF Artist", &e.artist),
    ] {
        if let Some(v) = v {
            free_text_signal(field, v, out);
        }
    }
    camera_signal(e, out);
}

/// Camera Make/Model with exposure data, or exposure time with a second exposure tag
/// (some trail and industrial cameras write no Make): weak, unsigned evidence of a capture.
fn camera_signal(e: &ExifFacts, out: &mut Vec<Signal>) {
    // ComfyUI's WebP/JPEG savers put the graph into Make/Model as `workflow:{…}`/`prompt:{…}`.
    for (field, v) in [("EXIF Make", &e.make), ("EXIF Model", &e.model)] {
        if let Some(v) = v
            .as_deref()
            .filter(|v| v.starts_with("workflow:") || v.starts_with("prompt:"))
        {
            out.push(Signal::metadata(
                Verdict::Ai,
                field,
                v,
                Some("ComfyUI (graph in EXIF)"),
            ));
            return;
        }
    }
    let name = match (&e.make, &e.model) {
        (Some(m), Some(d)) if d.to_lowercase().starts_with(&m.to_lowercase()) => Some(d.clone()),
        (Some(m), Some(d)) => Some(format!("{m} {d}")),
        (Some(m), None) => Some(m.clone()),
        (None, Some(d)) => Some(d.clone()),
        (None, None) => None,
    };
    if let Some(make) = e.make.as_deref().or(name.as_deref())
        && let Some(what) = non_camera_make(make)
    {
        let mut s = Signal::metadata(Verdict::None, "EXIF Make", make, Some(what));
        s.detail = format!("EXIF Make {make:?} is not a camera: {what}");
        out.push(s);
        return;
    }
    let exposure_only = e.exposure.len() >= 2 && e.exposure.contains(&"ExposureTime");
    if e.exposure.is_empty() || (name.is_none() && !exposure_only) {
        return;
    }
    let shown = name
        .clone()
        .unwrap_or_else(|| "camera with no Make/Model".into());
    let value = format!("{shown}; {}", e.exposure.join(", "));
    let mut s = Signal::metadata(Verdict::Camera, "EXIF Make/Model", &value, name.as_deref());
    s.detail = format!(
        "camera EXIF ({shown}, with {}): weak evidence, unsigned and easy to fake",
        e.exposure.join(", ")
    );
    out.push(s);
}

fn xmp_signals(packet: &str, out: &mut Vec<Signal>) {
    for name in ["Iptc4xmpExt:DigitalSourceType"] {
        for v in xmp::values(packet, name) {
            if let Some(says) = source_type_verdict(&v) {
                let term = v.rsplit('/').next().unwrap_or(&v).to_string();
                out.push(Signal::metadata(
                    says,
                    &format!("XMP {name}"),
                    &v,
                    Some(&term),
                ));
            }
        }
    }
    for name in ["xmp:CreatorTool", "stEvt:softwareAgent", "photoshop:Source"] {
        for v in xmp::values(packet, name) {
            if let Some((says, g)) = match_software(&v) {
                out.push(Signal::metadata(says, &format!("XMP {name}"), &v, Some(g)));
            }
        }
    }
    for name in [
        "Iptc4xmpExt:AISystemUsed",
        "Iptc4xmpExt:AIPromptInformation",
    ] {
        if let Some(v) = xmp::values(packet, name).into_iter().next() {
            out.push(Signal::metadata(
                Verdict::Ai,
                &format!("XMP {name}"),
                &v,
                None,
            ));
        }
    }
    for name in [
        "dc:description",
        "exif:UserComment",
        "tiff:ImageDescription",
    ] {
        for v in xmp::values(packet, name) {
            free_text_signal(&format!("XMP {name}"), &v, out);
        }
    }
}

/// A remote C2PA manifest named in XMP (`dcterms:provenance`), which is never fetched.
pub fn remote_manifest(blobs: &Blobs) -> Option<String> {
    blobs
        .xmp
        .iter()
        .find_map(|p| xmp::values(p, "dcterms:provenance").into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunk: &'static str, key: &str, value: &str) -> TextEntry {
        TextEntry {
            chunk,
            key: key.into(),
            value: value.into(),
        }
    }

    fn blobs_with(texts: Vec<TextEntry>, xmp: Vec<String>) -> Blobs {
        Blobs {
            texts,
            xmp,
            ..Blobs::default()
        }
    }

    #[test]
    fn generator_text_keys_are_ai() {
        let b = blobs_with(
            vec![
                text("tEXt", "parameters", "cat\nSteps: 20, Sampler: Euler"),
                text("tEXt", "prompt", "{\"3\": {}}"),
                text("tEXt", "prompt", "not json"),
                text("iTXt", "invokeai_metadata", "{}"),
            ],
            vec![],
        );
        let s = signals(&b, None);
        let gens: Vec<_> = s.iter().filter_map(|s| s.generator.as_deref()).collect();
        assert_eq!(
            gens,
            vec![
                "AUTOMATIC1111 / Forge / SD.Next (parameters)",
                "ComfyUI (prompt graph)",
                "InvokeAI"
            ]
        );
        assert!(s.iter().all(|s| s.says == Verdict::Ai));
    }

    #[test]
    fn software_keys_and_markers() {
        let b = blobs_with(
            vec![
                text("tEXt", "Software", "NovelAI"),
                text("tEXt", "Title", "AI generated image"),
            ],
            vec![],
        );
        let s = signals(&b, None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].generator.as_deref(), Some("NovelAI"));
        assert_eq!(s[1].field.as_deref(), Some("PNG tEXt Title"));
    }

    #[test]
    fn exif_camera_editor_and_parameters() {
        let mut e = ExifFacts {
            make: Some("Canon".into()),
            model: Some("Canon EOS 40D".into()),
            exposure: vec!["ExposureTime"],
            ..ExifFacts::default()
        };
        let s = signals(&Blobs::default(), Some(&e));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].says, s[0].generator.as_deref()),
            (Verdict::Camera, Some("Canon EOS 40D"))
        );
        assert!(s[0].detail.contains("weak evidence"));
        e.software = Some("GIMP 2.4.5".into());
        e.user_comment = Some("x\nSteps: 30, Sampler: DPM++".into());
        let says: Vec<_> = signals(&Blobs::default(), Some(&e))
            .iter()
            .map(|s| s.says)
            .collect();
        assert_eq!(says, vec![Verdict::Edited, Verdict::Ai, Verdict::Camera]);
    }

    #[test]
    fn comfy_graph_in_exif_make_is_ai_not_a_camera() {
        let e = ExifFacts {
            make: Some("workflow:{\"nodes\": []}".into()),
            exposure: vec!["ExposureTime", "FNumber"],
            ..ExifFacts::default()
        };
        let s = signals(&Blobs::default(), Some(&e));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].says, Verdict::Ai);
    }

    #[test]
    fn camera_needs_exposure_and_a_real_camera_make() {
        let e = ExifFacts {
            make: Some("Canon".into()),
            ..ExifFacts::default()
        };
        assert!(signals(&Blobs::default(), Some(&e)).is_empty());
        let e = ExifFacts {
            make: Some("Polyphony Digital Inc.".into()),
            model: Some("Gran Turismo 5".into()),
            exposure: vec!["FNumber"],
            ..ExifFacts::default()
        };
        let s = signals(&Blobs::default(), Some(&e));
        assert_eq!(s[0].says, Verdict::None);
    }

    #[test]
    fn xmp_source_type_creator_tool_and_remote() {
        let x = r#"<x:xmpmeta><rdf:Description xmp:CreatorTool="Adobe Photoshop CS3 Windows"
          Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
          dcterms:provenance="https://x.test/m"/></x:xmpmeta>"#;
        let b = blobs_with(vec![], vec![x.to_string()]);
        let s = signals(&b, None);
        assert_eq!(
            s.iter().map(|s| s.says).collect::<Vec<_>>(),
            vec![Verdict::Ai, Verdict::Edited]
        );
        assert_eq!(remote_manifest(&b).as_deref(), Some("https://x.test/m"));
    }
}
