//! Walks the containers (PNG chunks, JPEG segments, RIFF/WebP chunks, TIFF) and pulls out
//! the metadata blobs: text entries, EXIF, XMP. Every length is checked against what is
//! left; every count and size is capped; problems are recorded, never panicked on.

use crate::limits;

/// The container format recognised from the leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Tiff,
    Gif,
    Heif,
    Other,
}

impl Format {
    /// Sniff the format from magic bytes.
    pub fn sniff(b: &[u8]) -> Format {
        if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Format::Jpeg
        } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
            Format::Png
        } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
            Format::Webp
        } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
            Format::Tiff
        } else if b.starts_with(b"GIF8") {
            Format::Gif
        } else if b.len() >= 12 && &b[4..8] == b"ftyp" {
            Format::Heif
        } else {
            Format::Other
        }
    }

    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Gif => "gif",
            Format::Heif => "heif",
            Format::Other => "unknown",
        }
    }

    /// MIME type, as the C2PA SDK wants it.
    #[cfg_attr(not(feature = "c2pa"), allow(dead_code))]
    pub fn mime(self) -> Option<&'static str> {
        match self {
            Format::Jpeg => Some("image/jpeg"),
            Format::Png => Some("image/png"),
            Format::Webp => Some("image/webp"),
            Format::Tiff => Some("image/tiff"),
            Format::Gif => Some("image/gif"),
            Format::Heif => Some("image/heif"),
            Format::Other => None,
        }
    }
}

/// One key/value text entry (PNG tEXt/zTXt/iTXt, JPEG COM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEntry {
    /// `tEXt`, `zTXt`, `iTXt` or `COM`.
    pub chunk: &'static str,
    pub key: String,
    pub value: String,
}

/// The metadata blobs found in a file.
#[derive(Debug, Default)]
pub struct Blobs {
    pub texts: Vec<TextEntry>,
    /// TIFF-structured EXIF data (starting at the byte-order mark).
    pub exif: Option<Vec<u8>>,
    /// XMP packets as text.
    pub xmp: Vec<String>,
    /// A JUMBF / caBX box was seen (a C2PA store may be present).
    pub jumbf_seen: bool,
    /// The text-entry cap was hit.
    pub texts_capped: bool,
    pub errors: Vec<String>,
}

impl Blobs {
    fn add_xmp(&mut self, data: &[u8]) {
        let total: usize = self.xmp.iter().map(String::len).sum();
        if total + data.len() > limits::MAX_XMP_BYTES {
            self.errors.push(format!(
                "XMP packet of {} bytes skipped: over the {} byte cap",
                data.len(),
                limits::MAX_XMP_BYTES
            ));
            return;
        }
        self.xmp.push(String::from_utf8_lossy(data).into_owned());
    }

    fn set_exif(&mut self, data: &[u8]) {
        if data.len() > limits::MAX_EXIF_BYTES {
            self.errors.push(format!(
                "EXIF block of {} bytes skipped: over the cap",
                data.len()
            ));
        } else if self.exif.is_none() {
            self.exif = Some(data.to_vec());
        }
    }
}

/// Pull the metadata blobs out of `b`.
pub fn extract(b: &[u8], format: Format) -> Blobs {
    let mut blobs = Blobs::default();
    match format {
        Format::Png => walk_png(b, &mut blobs),
        Format::Jpeg => walk_jpeg(b, &mut blobs),
        Format::Webp => walk_riff(b, &mut blobs),
        Format::Tiff => blobs.set_exif(&b[..b.len().min(limits::MAX_EXIF_BYTES)]),
        _ => {}
    }
    if blobs.xmp.is_empty()
        && let Some(packet) = scan_xmp(b)
    {
        blobs.add_xmp(packet);
    }
    blobs
}

/// Find an `<x:xmpmeta …</x:xmpmeta>` packet anywhere in the first bytes of the file.
pub fn scan_xmp(b: &[u8]) -> Option<&[u8]> {
    let hay = &b[..b.len().min(limits::MAX_SCAN_BYTES)];
    let start = find(hay, b"<x:xmpmeta")?;
    let rest = &hay[start..];
    let end = find(rest, b"</x:xmpmeta>").map(|e| e + "</x:xmpmeta>".len());
    let end = end.unwrap_or(rest.len()).min(limits::MAX_XMP_BYTES);
    Some(&rest[..end])
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&c| c == first) {
            None => return None,
            Some(p) => {
                let at = i + p;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Walk the PNG chunks: text chunks, eXIf, caBX. Stops at IEND, at a chunk that claims
/// more bytes than are left, or at the chunk-count cap.
fn walk_png(b: &[u8], blobs: &mut Blobs) {
    let mut at = 8;
    let mut count = 0usize;
    while at < b.len() {
        let (Some(len), Some(kind)) = (be_u32(b, at), b.get(at + 4..at + 8)) else {
            blobs
                .errors
                .push(format!("PNG truncated inside a chunk header at byte {at}"));
            return;
        };
        let len = len as usize;
        let data_start = at + 8;
        let kind_name = String::from_utf8_lossy(kind).into_owned();
        let Some(data) = data_start
            .checked_add(len)
            .and_then(|end| b.get(data_start..end))
        else {
            blobs.errors.push(format!(
                "PNG chunk {kind_name} at byte {at} claims {len} bytes but only {} remain",
                b.len().saturating_sub(data_start)
            ));
            return;
        };
        count += 1;
        if count > limits::MAX_PNG_CHUNKS {
            blobs.errors.push(format!(
                "PNG has over {} chunks: rest ignored",
                limits::MAX_PNG_CHUNKS
            ));
            return;
        }
        match kind {
            b"tEXt" | b"zTXt" | b"iTXt" => png_text(kind, data, blobs),
            b"eXIf" => blobs.set_exif(data),
            b"caBX" => blobs.jumbf_seen = true,
            b"IEND" => return,
            _ => {}
        }
        at = data_start + len + 4; // + CRC
    }
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Inflate zlib data, refusing to produce more than `max` bytes.
pub fn inflate_zlib(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, max)
        .map_err(|e| format!("{:?}", e.status))
}

fn png_text(kind: &[u8], data: &[u8], blobs: &mut Blobs) {
    if blobs.texts.len() >= limits::MAX_TEXT_ENTRIES {
        if !blobs.texts_capped {
            blobs.texts_capped = true;
            blobs.errors.push(format!(
                "over {} text chunks: the rest are ignored",
                limits::MAX_TEXT_ENTRIES
            ));
        }
        return;
    }
    let Some(nul) = data.iter().position(|&c| c == 0) else {
        blobs
            .errors
            .push("PNG text chunk without a keyword terminator".into());
        return;
    };
    let key = latin1(&data[..nul.min(79)]);
    let rest = &data[nul + 1..];
    let parsed = match kind {
        b"tEXt" => Ok(("tEXt", latin1(rest))),
        b"zTXt" => match rest.split_first() {
            Some((0, z)) => inflate_zlib(z, limits::MAX_TEXT_BYTES).map(|v| ("zTXt", latin1(&v))),
            _ => Err("unknown compression method".to_string()),
        },
        _ => itxt_value(rest).map(|v| ("iTXt", v)),
    };
    match parsed {
        Ok((chunk, value)) => {
            if chunk == "iTXt" && key == "XML:com.adobe.xmp" {
                blobs.add_xmp(value.as_bytes());
            }
            blobs.texts.push(TextEntry { chunk, key, value });
        }
        Err(e) => blobs
            .errors
            .push(format!("PNG text chunk {key:?} unreadable: {e}")),
    }
}

/// The text of an iTXt chunk after its keyword.
fn itxt_value(rest: &[u8]) -> Result<String, String> {
    let (&flag, rest) = rest.split_first().ok_or("iTXt truncated")?;
    let (_method, rest) = rest.split_first().ok_or("iTXt truncated")?;
    let lang_end = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or("iTXt language not terminated")?;
    let rest = &rest[lang_end + 1..];
    let tk_end = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or("iTXt keyword not terminated")?;
    let text = &rest[tk_end + 1..];
    if flag == 1 {
        let v = inflate_zlib(text, limits::MAX_TEXT_BYTES)?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    } else if text.len() > limits::MAX_TEXT_BYTES {
        Err(format!("{} bytes: over the cap", text.len()))
    } else {
        Ok(String::from_utf8_lossy(text).into_owned())
    }
}

const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXT_SIG: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";

/// Walk the JPEG segments up to the start of scan.
fn walk_jpeg(b: &[u8], blobs: &mut Blobs) {
    let mut at = 2;
    let mut count = 0usize;
    loop {
        while b.get(at) == Some(&0xFF) && b.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes
        }
        let (Some(&0xFF), Some(&marker)) = (b.get(at), b.get(at + 1)) else {
            if at < b.len() {
                blobs.errors.push(format!("JPEG: no marker at byte {at}"));
            } else {
                blobs
                    .errors
                    .push("JPEG truncated before the image data".into());
            }
            return;
        };
        count += 1;
        if count > limits::MAX_JPEG_SEGMENTS {
            blobs
                .errors
                .push("JPEG has too many segments: rest ignored".into());
            return;
        }
        if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            at += 2;
            continue;
        }
        if marker == 0xD9 || marker == 0xDA {
            return; // end of image or start of scan: no metadata after
        }
        let Some(len) = b
            .get(at + 2..at + 4)
            .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
        else {
            blobs
                .errors
                .push("JPEG truncated inside a segment header".into());
            return;
        };
        let Some(data) = b.get(at + 4..at + 2 + len.max(2)) else {
            blobs.errors.push(format!(
                "JPEG segment FF{marker:02X} at byte {at} claims {len} bytes past the end"
            ));
            return;
        };
        jpeg_segment(marker, data, blobs);
        at += 2 + len.max(2);
    }
}

fn jpeg_segment(marker: u8, data: &[u8], blobs: &mut Blobs) {
    match marker {
        0xE1 if data.starts_with(b"Exif\0") && data.len() > 6 => blobs.set_exif(&data[6..]),
        0xE1 if data.starts_with(XMP_SIG) => blobs.add_xmp(&data[XMP_SIG.len()..]),
        0xE1 if data.starts_with(XMP_EXT_SIG) => {
            // GUID (32) + full length (4) + offset (4), then a slice of the packet.
            if let Some(part) = data.get(XMP_EXT_SIG.len() + 40..) {
                blobs.add_xmp(part);
            }
        }
        0xEB => blobs.jumbf_seen = true,
        0xFE if blobs.texts.len() < limits::MAX_TEXT_ENTRIES => {
            let value = String::from_utf8_lossy(data).into_owned();
            blobs.texts.push(TextEntry {
                chunk: "COM",
                key: "Comment".into(),
                value,
            });
        }
        _ => {}
    }
}

/// Walk RIFF (WebP) chunks: EXIF, XMP, C2PA.
fn walk_riff(b: &[u8], blobs: &mut Blobs) {
    let mut at = 12;
    let mut count = 0usize;
    while at + 8 <= b.len() {
        let kind = &b[at..at + 4];
        let len = le_u32(b, at + 4).unwrap_or(0) as usize;
        let Some(data) = (at + 8).checked_add(len).and_then(|end| b.get(at + 8..end)) else {
            blobs.errors.push(format!(
                "RIFF chunk {} claims {len} bytes past the end",
                String::from_utf8_lossy(kind)
            ));
            return;
        };
        count += 1;
        if count > limits::MAX_PNG_CHUNKS {
            blobs
                .errors
                .push("RIFF has too many chunks: rest ignored".into());
            return;
        }
        match kind {
            b"EXIF" => {
                let d = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
                blobs.set_exif(d);
            }
            b"XMP " => blobs.add_xmp(data),
            b"C2PA" => blobs.jumbf_seen = true,
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
}

#[cfg_attr(not(feature = "c2pa"), allow(dead_code))]
fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(if le {
        u16::from_le_bytes([s[0], s[1]])
    } else {
        u16::from_be_bytes([s[0], s[1]])
    })
}

#[cfg_attr(not(feature = "c2pa"), allow(dead_code))]
fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    if le { le_u32(b, at) } else { be_u32(b, at) }
}

/// Refuse TIFF structures built to exhaust a reader: too many pages (IFD chain), or
/// too many subfiles (SubIFDs) declared. The C2PA SDK 0.90 walks every one of them
/// (its own test file `tiff_poc.tiff` takes minutes); later SDK releases reject such files.
/// A truncated structure is not refused here: the SDK reports it.
#[cfg_attr(not(feature = "c2pa"), allow(dead_code))]
pub fn tiff_guard(b: &[u8]) -> Result<(), String> {
    let le = b.starts_with(b"II");
    let mut next = u32_at(b, 4, le).unwrap_or(0) as usize;
    let (mut pages, mut subfiles) = (0usize, 0usize);
    let mut seen = std::collections::HashSet::new();
    while next != 0 {
        if !seen.insert(next) {
            return Err(format!("TIFF IFD chain loops back to byte {next}"));
        }
        pages += 1;
        let Some(n) = u16_at(b, next, le).map(usize::from) else {
            break;
        };
        for i in 0..n {
            let e = next + 2 + 12 * i;
            if u16_at(b, e, le) == Some(0x014A) {
                subfiles += u32_at(b, e + 4, le).unwrap_or(0) as usize;
            }
        }
        if pages > limits::MAX_TIFF_PAGES || subfiles > limits::MAX_TIFF_SUBFILES {
            return Err(format!(
                "TIFF file has too many subfiles ({pages}+ pages, {subfiles}+ SubIFDs): \
                 not handed to the C2PA reader"
            ));
        }
        next = u32_at(b, next + 2 + 12 * n, le).unwrap_or(0) as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(data);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }

    fn png_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        for c in chunks {
            v.extend_from_slice(c);
        }
        v
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(Format::sniff(b"\xFF\xD8\xFF\xE0"), Format::Jpeg);
        assert_eq!(Format::sniff(b"\x89PNG\r\n\x1a\nxxxx"), Format::Png);
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Format::Webp);
        assert_eq!(Format::sniff(b"II*\0"), Format::Tiff);
        assert_eq!(Format::sniff(b""), Format::Other);
    }

    #[test]
    fn reads_png_text_ztxt_and_itxt() {
        let z = miniz_oxide::deflate::compress_to_vec_zlib(b"Steps: 20, Sampler: Euler", 6);
        let mut ztxt = b"parameters\0\0".to_vec();
        ztxt.extend_from_slice(&z);
        let itxt = b"Software\0\0\0en\0\0NovelAI".to_vec();
        let png = png_with(&[
            png_chunk(b"tEXt", b"Title\0hello"),
            png_chunk(b"zTXt", &ztxt),
            png_chunk(b"iTXt", &itxt),
            png_chunk(b"IEND", b""),
        ]);
        let blobs = extract(&png, Format::Png);
        assert!(blobs.errors.is_empty(), "{:?}", blobs.errors);
        let kv: Vec<_> = blobs
            .texts
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("Title", "hello"),
                ("parameters", "Steps: 20, Sampler: Euler"),
                ("Software", "NovelAI")
            ]
        );
    }

    #[test]
    fn png_chunk_lying_about_length_is_an_error_not_a_panic() {
        let mut png = png_with(&[png_chunk(b"tEXt", b"a\0b")]);
        png.extend_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
        png.extend_from_slice(b"tEXtabc");
        let blobs = extract(&png, Format::Png);
        assert_eq!(blobs.texts.len(), 1);
        assert!(blobs.errors[0].contains("claims"), "{:?}", blobs.errors);
    }

    #[test]
    fn thousands_of_text_chunks_are_capped() {
        let chunks: Vec<_> = (0..5000).map(|_| png_chunk(b"tEXt", b"k\0v")).collect();
        let blobs = extract(&png_with(&chunks), Format::Png);
        assert_eq!(blobs.texts.len(), limits::MAX_TEXT_ENTRIES);
        assert!(blobs.errors.iter().any(|e| e.contains("text chunks")));
    }

    #[test]
    fn ztxt_bomb_is_refused() {
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&vec![b'a'; 64 << 20], 9);
        let mut ztxt = b"parameters\0\0".to_vec();
        ztxt.extend_from_slice(&z);
        let blobs = extract(&png_with(&[png_chunk(b"zTXt", &ztxt)]), Format::Png);
        assert!(blobs.texts.is_empty());
        assert!(blobs.errors[0].contains("unreadable"), "{:?}", blobs.errors);
    }

    #[test]
    fn jpeg_segments_give_exif_xmp_and_comment() {
        let mut j = vec![0xFF, 0xD8];
        for (m, payload) in [
            (
                0xE1u8,
                [b"Exif\0\0".as_slice(), b"MM\0*\0\0\0\x08"].concat(),
            ),
            (0xE1, [XMP_SIG, b"<x:xmpmeta>a</x:xmpmeta>"].concat()),
            (0xFE, b"hello".to_vec()),
        ] {
            j.extend_from_slice(&[0xFF, m]);
            j.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            j.extend_from_slice(&payload);
        }
        j.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        let blobs = extract(&j, Format::Jpeg);
        assert_eq!(blobs.exif.as_deref(), Some(b"MM\0*\0\0\0\x08".as_slice()));
        assert_eq!(blobs.xmp, vec!["<x:xmpmeta>a</x:xmpmeta>".to_string()]);
        assert_eq!(blobs.texts[0].value, "hello");
        assert!(blobs.errors.is_empty());
    }

    #[test]
    fn truncated_jpeg_is_recorded() {
        let blobs = extract(&[0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 1, 2], Format::Jpeg);
        assert!(
            blobs.errors[0].contains("past the end"),
            "{:?}",
            blobs.errors
        );
        let blobs = extract(&[0xFF, 0xD8], Format::Jpeg);
        assert!(blobs.errors[0].contains("truncated"));
    }

    #[test]
    fn huge_xmp_is_capped() {
        let mut big = b"<x:xmpmeta>".to_vec();
        big.resize(limits::MAX_XMP_BYTES + 10, b'a');
        let mut blobs = Blobs::default();
        blobs.add_xmp(&big);
        assert!(blobs.xmp.is_empty());
        assert!(blobs.errors[0].contains("cap"));
        let found = scan_xmp(&big).map(<[u8]>::len);
        assert_eq!(found, Some(limits::MAX_XMP_BYTES));
    }

    #[test]
    fn tiff_guard_refuses_loops_and_subfile_floods() {
        // II, IFD at 8 with one SubIFDs entry of 100000 offsets, next IFD 0.
        let mut t = b"II*\0\x08\0\0\0\x01\0".to_vec();
        t.extend_from_slice(&[
            0x4A, 0x01, 4, 0, 0xA0, 0x86, 0x01, 0, 8, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert!(tiff_guard(&t).is_err_and(|e| e.contains("too many subfiles")));
        let mut looped = b"II*\0\x08\0\0\0\0\0".to_vec();
        looped.extend_from_slice(&8u32.to_le_bytes());
        assert!(tiff_guard(&looped).is_err_and(|e| e.contains("loops")));
        let fine = b"MM\0*\0\0\0\x08\0\0\0\0\0\0";
        assert_eq!(tiff_guard(fine), Ok(()));
        assert_eq!(tiff_guard(b"II*\0"), Ok(()));
        assert_eq!(tiff_guard(b"II*\0\xff\xff\0\0"), Ok(()));
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aaa", b""), None);
    }
}
