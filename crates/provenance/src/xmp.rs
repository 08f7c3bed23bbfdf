//! A small, bounded scan of XMP packets for the few properties that name a source.
//! XMP writes a property either as an attribute (`ns:Name="v"`), as an element
//! (`<ns:Name>v</ns:Name>`, possibly wrapping `rdf:Alt`/`rdf:Seq` lists) or as a resource
//! (`<ns:Name rdf:resource="v"/>`); all three are read. No DTDs, no entities beyond the
//! five predefined ones, no recursion.

/// At most this many values are returned per property.
const MAX_VALUES: usize = 64;

/// Every value of the property `name`, given as `prefix:Local`. The prefix is ignored:
/// XMP writers bind namespaces to prefixes of their choice (`xap:` for `xmp:` in older
/// Adobe files), so any `p:Local` matches.
pub fn values(xmp: &str, name: &str) -> Vec<String> {
    let local = name.rsplit(':').next().unwrap_or(name);
    let needle = format!(":{local}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = xmp[from..].find(&needle) {
        let at = from + p;
        from = at + needle.len();
        if out.len() >= MAX_VALUES {
            break;
        }
        let prefix_start = xmp[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
            .last()
            .map_or(at, |(i, _)| i);
        let before = xmp[..prefix_start].chars().next_back();
        let after = &xmp[from..];
        let value = match before {
            _ if prefix_start == at => None,
            Some('<') => element_value(after),
            Some(c) if c.is_whitespace() => attribute_value(after).map(str::to_string),
            _ => None,
        };
        if let Some(v) = value.map(|v| unescape(v.trim())).filter(|v| !v.is_empty()) {
            out.push(v);
        }
    }
    out
}

/// `="v"` or `='v'` right after an attribute name.
fn attribute_value(after: &str) -> Option<&str> {
    let rest = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    body.find(quote).map(|end| &body[..end])
}

/// The text of an element after its name: `rdf:resource`, or the text with tags removed.
fn element_value(after: &str) -> Option<String> {
    let first = after.chars().next()?;
    if !(first == '>' || first == '/' || first.is_whitespace()) {
        return None; // a longer name that starts the same
    }
    let tag_end = after.find('>')?;
    let open_tag = &after[..tag_end];
    if let Some(r) = open_tag.find("rdf:resource") {
        return attribute_value(&open_tag[r + "rdf:resource".len()..]).map(str::to_string);
    }
    if open_tag.ends_with('/') {
        return None;
    }
    let body = &after[tag_end + 1..];
    let end = body.find("</").map_or(body.len(), |e| e);
    // Lists: keep the text of the first rdf:li.
    let inner = if body[..end].trim_start().starts_with('<') || body[..end].trim().is_empty() {
        let li = body.find("<rdf:li")?;
        let li_body = &body[li..];
        let open = li_body.find('>')?;
        let text = &li_body[open + 1..];
        &text[..text.find('<').unwrap_or(text.len())]
    } else {
        &body[..end]
    };
    Some(inner.to_string())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attribute_element_and_resource_forms() {
        let x = r#"<x:xmpmeta><rdf:Description xmp:CreatorTool="Adobe Photoshop CS3"
            Iptc4xmpExt:DigitalSourceType='http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia'>
            <tiff:Make>Canon</tiff:Make>
            <dc:description><rdf:Alt><rdf:li xml:lang="x-default">a &amp; b</rdf:li></rdf:Alt></dc:description>
            <dcterms:provenance rdf:resource="https://example.test/m.c2pa"/>
            </rdf:Description></x:xmpmeta>"#;
        assert_eq!(values(x, "xmp:CreatorTool"), vec!["Adobe Photoshop CS3"]);
        assert!(values(x, "Iptc4xmpExt:DigitalSourceType")[0].ends_with("trainedAlgorithmicMedia"));
        assert_eq!(values(x, "tiff:Make"), vec!["Canon"]);
        assert_eq!(values(x, "dc:description"), vec!["a & b"]);
        assert_eq!(
            values(x, "dcterms:provenance"),
            vec!["https://example.test/m.c2pa"]
        );
        assert!(values(x, "xmp:Creator").is_empty());
        assert_eq!(
            values(r#"<r xap:CreatorTool="PS"/>"#, "xmp:CreatorTool"),
            vec!["PS"]
        );
        assert!(values(r#"<r :CreatorTool="PS"/>"#, "xmp:CreatorTool").is_empty());
    }

    #[test]
    fn hostile_text_does_not_panic_and_is_bounded() {
        for s in [
            "xmp:CreatorTool",
            "<xmp:CreatorTool",
            " xmp:CreatorTool=\"",
            "<é xmp:CreatorTool=é",
        ] {
            assert!(values(s, "xmp:CreatorTool").is_empty(), "{s}");
        }
        let many = " a:B=\"v\"".repeat(10_000);
        assert_eq!(values(&many, "a:B").len(), MAX_VALUES);
    }
}
