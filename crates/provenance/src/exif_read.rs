//! EXIF fields that say who made an image, read with `kamadak-exif`.

use exif::{In, Tag, Value};

/// The EXIF facts the decision needs (all strings trimmed; empty ones dropped).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExifFacts {
    pub make: Option<String>,
    pub model: Option<String>,
    pub software: Option<String>,
    pub description: Option<String>,
    pub user_comment: Option<String>,
    pub artist: Option<String>,
    /// Exposure tags present: `ExposureTime`, `FNumber`, `ISO`, `FocalLength`.
    pub exposure: Vec<&'static str>,
    pub date_time_original: Option<String>,
}

/// Parse a TIFF-structured EXIF block. Recoverable errors are returned beside the facts.
pub fn read(data: &[u8]) -> (ExifFacts, Vec<String>) {
    let mut errors = Vec::new();
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    let parsed = reader.read_raw(data.to_vec()).or_else(|e| {
        e.distill_partial_result(|errs| {
            for e in errs.iter().take(5) {
                errors.push(format!("EXIF: {e}"));
            }
        })
    });
    let exif = match parsed {
        Ok(x) => x,
        Err(e) => {
            errors.push(format!("EXIF unreadable: {e}"));
            return (ExifFacts::default(), errors);
        }
    };
    let text = |tag: Tag| -> Option<String> {
        let f = exif.get_field(tag, In::PRIMARY).or_else(|| {
            exif.fields().find(|f| f.tag == tag) // e.g. in the EXIF sub-IFD or a thumbnail IFD
        })?;
        value_text(&f.value)
    };
    let mut facts = ExifFacts {
        make: text(Tag::Make),
        model: text(Tag::Model),
        software: text(Tag::Software),
        description: text(Tag::ImageDescription),
        artist: text(Tag::Artist),
        date_time_original: text(Tag::DateTimeOriginal),
        ..ExifFacts::default()
    };
    facts.user_comment = exif
        .fields()
        .find(|f| f.tag == Tag::UserComment)
        .and_then(|f| match &f.value {
            Value::Undefined(b, _) => user_comment(b),
            v => value_text(v),
        });
    for (tag, name) in [
        (Tag::ExposureTime, "ExposureTime"),
        (Tag::FNumber, "FNumber"),
        (Tag::PhotographicSensitivity, "ISO"),
        (Tag::FocalLength, "FocalLength"),
    ] {
        if exif.fields().any(|f| f.tag == tag) {
            facts.exposure.push(name);
        }
    }
    (facts, errors)
}

/// An ASCII value as trimmed text (several strings joined), `None` when empty.
fn value_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::Ascii(parts) => parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Undefined(b, _) | Value::Byte(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return None,
    };
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// Decode a UserComment: an 8-byte character-code prefix, then the text.
/// `UNICODE` is UTF-16 of either byte order in the wild: the order that decodes to more
/// ASCII is taken.
pub fn user_comment(b: &[u8]) -> Option<String> {
    let (code, body) = if b.len() >= 8 {
        b.split_at(8)
    } else {
        (&b[..0], b)
    };
    let s = if code == b"UNICODE\0" {
        let be = utf16(body, u16::from_be_bytes);
        let le = utf16(body, u16::from_le_bytes);
        let ascii = |s: &String| s.chars().filter(char::is_ascii_graphic).count();
        if ascii(&le) > ascii(&be) { le } else { be }
    } else if code.starts_with(b"ASCII") || code.iter().all(|&c| c == 0) {
        String::from_utf8_lossy(body).into_owned()
    } else {
        String::from_utf8_lossy(b).into_owned()
    };
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn utf16(b: &[u8], f: fn([u8; 2]) -> u16) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| f([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big-endian TIFF with one IFD holding the given ASCII entries.
    pub(crate) fn tiff_ascii(entries: &[(u16, &str)]) -> Vec<u8> {
        let mut v = b"MM\0*\0\0\0\x08".to_vec();
        let n = entries.len();
        v.extend_from_slice(&(n as u16).to_be_bytes());
        let mut data_at = 8 + 2 + 12 * n + 4;
        let mut data = Vec::new();
        for (tag, s) in entries {
            let bytes = [s.as_bytes(), b"\0"].concat();
            v.extend_from_slice(&tag.to_be_bytes());
            v.extend_from_slice(&2u16.to_be_bytes());
            v.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            v.extend_from_slice(&(data_at as u32).to_be_bytes());
            data_at += bytes.len();
            data.extend_from_slice(&bytes);
        }
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&data);
        v
    }

    #[test]
    fn reads_make_model_software() {
        let t = tiff_ascii(&[
            (0x010F, "Canon"),
            (0x0110, "EOS 40D"),
            (0x0131, "GIMP 2.4.5"),
        ]);
        let (f, errs) = read(&t);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(f.make.as_deref(), Some("Canon"));
        assert_eq!(f.model.as_deref(), Some("EOS 40D"));
        assert_eq!(f.software.as_deref(), Some("GIMP 2.4.5"));
        assert!(f.exposure.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (f, errs) = read(b"MM\0*\xff\xff\xff\xff");
        assert_eq!(f, ExifFacts::default());
        assert!(!errs.is_empty());
        let (_, errs) = read(b"");
        assert!(!errs.is_empty());
    }

    #[test]
    fn user_comment_charsets() {
        let mut u = b"UNICODE\0".to_vec();
        for c in "Steps: 20".encode_utf16() {
            u.extend_from_slice(&c.to_be_bytes());
        }
        assert_eq!(user_comment(&u).as_deref(), Some("Steps: 20"));
        let mut l = b"UNICODE\0".to_vec();
        for c in "Seed: 1".encode_utf16() {
            l.extend_from_slice(&c.to_le_bytes());
        }
        assert_eq!(user_comment(&l).as_deref(), Some("Seed: 1"));
        assert_eq!(user_comment(b"ASCII\0\0\0hi").as_deref(), Some("hi"));
        assert_eq!(user_comment(b"\0\0\0\0\0\0\0\0   "), None);
    }
}
