//! The part that calls the C2PA SDK (feature `c2pa`).

use super::{C2paAction, C2paInfo, TRUST_LIST, Validation, classify};
use crate::container::Format;
use crate::evidence::excerpt;
use serde_json::Value;
use std::io::Cursor;

/// What reading the store gave.
pub enum Outcome {
    /// No manifest store, or a format the SDK does not read.
    Absent,
    /// Nothing to validate, but something to say (a remote manifest that is not fetched).
    Note(String),
    /// A manifest store, valid or not.
    Found(Box<C2paInfo>),
    /// The SDK could not parse the asset and nothing suggests a manifest store is there
    /// (a truncated or malformed file): an error for the record, not a credential.
    AssetError(String),
}

/// Settings: nothing is fetched (no OCSP, no remote manifests, no network host allowed).
const SETTINGS: &str = r#"{
  "verify": {"ocsp_fetch": false, "remote_manifest_fetch": false},
  "core": {"allowed_network_hosts": []}
}"#;

/// Read and validate the manifest store of `bytes`. `manifest_sign`: a JUMBF/C2PA box
/// was seen, so a parse failure means a broken credential rather than a broken file.
pub fn read(bytes: &[u8], format: Format, manifest_sign: bool) -> Outcome {
    let Some(mime) = format.mime() else {
        return Outcome::Absent;
    };
    if format == Format::Tiff
        && let Err(e) = crate::container::tiff_guard(bytes)
    {
        return Outcome::Found(Box::new(unreadable(e)));
    }
    if bytes.len() > crate::limits::MAX_C2PA_INPUT {
        return Outcome::Note("file too large for the C2PA reader: credentials not read".into());
    }
    let context = match c2pa::Context::new().with_settings(SETTINGS) {
        Ok(c) => c,
        Err(e) => return Outcome::Note(format!("C2PA reader not configured: {e}")),
    };
    // The SDK is third-party code run on hostile bytes: a panic in it must not take the
    // caller down (this only helps where panics unwind, the default).
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c2pa::Reader::from_context(context)
            .with_stream(mime, Cursor::new(bytes))
            .map(|reader| reader.json())
    }));
    match read {
        Ok(Ok(json)) => match serde_json::from_str::<Value>(&json) {
            Ok(v) => Outcome::Found(Box::new(summarise(&v))),
            Err(e) => Outcome::Found(Box::new(unreadable(format!("SDK JSON unreadable: {e}")))),
        },
        Ok(Err(e)) => from_error(e, manifest_sign),
        Err(_) => Outcome::Found(Box::new(unreadable(
            "the C2PA SDK panicked on this file".into(),
        ))),
    }
}

fn from_error(e: c2pa::Error, manifest_sign: bool) -> Outcome {
    use c2pa::Error as E;
    match e {
        E::JumbfNotFound | E::ProvenanceMissing | E::UnsupportedType => Outcome::Absent,
        E::RemoteManifestUrl(url) | E::RemoteManifestFetch(url) => Outcome::Note(format!(
            "a remote C2PA manifest is referenced ({}); it is not fetched (no network), so it \
             is not evidence",
            excerpt(&url, 200)
        )),
        E::PrereleaseError => Outcome::Found(Box::new(unreadable(
            "pre-release (pre-1.0) C2PA manifest: not a valid credential".into(),
        ))),
        other if manifest_sign => {
            Outcome::Found(Box::new(unreadable(excerpt(&other.to_string(), 300))))
        }
        other => Outcome::AssetError(format!("C2PA reader: {}", excerpt(&other.to_string(), 300))),
    }
}

fn unreadable(error: String) -> C2paInfo {
    C2paInfo {
        validation: Validation::Unreadable,
        validation_state: None,
        failure_codes: Vec::new(),
        active_manifest: None,
        manifests: 0,
        claim_generator: None,
        title: None,
        digital_source_types: Vec::new(),
        actions: Vec::new(),
        signer: None,
        signer_common_name: None,
        signed_at: None,
        trust_list: TRUST_LIST.into(),
        error: Some(error),
    }
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|s| excerpt(s, 200))
}

/// Summarise the Reader JSON.
fn summarise(v: &Value) -> C2paInfo {
    let active = str_at(v, "active_manifest");
    let manifests = v.get("manifests").and_then(Value::as_object);
    let m = active
        .as_deref()
        .and_then(|a| manifests?.get(a))
        .unwrap_or(&Value::Null);
    let mut codes = failure_codes(v);
    codes.sort();
    codes.dedup();
    let mut actions = Vec::new();
    for (label, manifest) in manifests.into_iter().flatten() {
        collect_actions(
            manifest,
            Some(label.as_str()) == active.as_deref(),
            &mut actions,
        );
    }
    actions.truncate(200);
    let mut dst: Vec<String> = actions
        .iter()
        .filter_map(|a| a.digital_source_type.as_deref())
        .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        .collect();
    dst.sort();
    dst.dedup();
    let sig = m.get("signature_info").unwrap_or(&Value::Null);
    let mut info = unreadable(String::new());
    info.error = None;
    info.validation = classify(&codes);
    info.validation_state = str_at(v, "validation_state");
    info.failure_codes = codes;
    info.manifests = manifests.map_or(0, |m| m.len());
    info.claim_generator = claim_generator(m);
    info.title = str_at(m, "title");
    info.digital_source_types = dst;
    info.actions = actions;
    info.signer = str_at(sig, "issuer");
    info.signer_common_name = str_at(sig, "common_name");
    info.signed_at = str_at(sig, "time");
    info.active_manifest = active;
    if m.is_null() {
        info.validation = Validation::Unreadable;
        info.error = Some("no active manifest in the store".into());
    }
    info
}

/// Failure codes from `validation_results` (active manifest and ingredient deltas), or from
/// the older flat `validation_status` list.
fn failure_codes(v: &Value) -> Vec<String> {
    let codes_of = |list: Option<&Value>| -> Vec<String> {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("code").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mut codes = codes_of(v.get("validation_status"));
    if let Some(r) = v.get("validation_results") {
        codes.extend(codes_of(
            r.get("activeManifest").and_then(|a| a.get("failure")),
        ));
        for d in r
            .get("ingredientDeltas")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = d.get("validationDeltas").and_then(|x| x.get("failure"));
            codes.extend(codes_of(f));
        }
    }
    codes.truncate(100);
    codes
}

fn claim_generator(m: &Value) -> Option<String> {
    if let Some(g) = str_at(m, "claim_generator").filter(|g| !g.is_empty()) {
        return Some(g);
    }
    let infos = m.get("claim_generator_info").and_then(Value::as_array)?;
    let names: Vec<String> = infos
        .iter()
        .filter_map(|i| {
            let name = i.get("name").and_then(Value::as_str)?;
            Some(match i.get("version").and_then(Value::as_str) {
                Some(ver) => format!("{name}/{ver}"),
                None => name.to_string(),
            })
        })
        .collect();
    (!names.is_empty()).then(|| excerpt(&names.join(" "), 200))
}

fn collect_actions(manifest: &Value, active: bool, out: &mut Vec<C2paAction>) {
    let assertions = manifest.get("assertions").and_then(Value::as_array);
    for a in assertions.into_iter().flatten() {
        let label = a.get("label").and_then(Value::as_str).unwrap_or("");
        if !label.starts_with("c2pa.actions") {
            continue;
        }
        let list = a
            .get("data")
            .and_then(|d| d.get("actions"))
            .and_then(Value::as_array);
        for act in list.into_iter().flatten() {
            let agent = act
                .get("softwareAgent")
                .and_then(|s| s.as_str().map(str::to_string).or_else(|| str_at(s, "name")));
            out.push(C2paAction {
                action: str_at(act, "action").unwrap_or_default(),
                software_agent: agent,
                digital_source_type: str_at(act, "digitalSourceType"),
                active,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_reader_json() {
        let v: Value = serde_json::json!({
            "active_manifest": "urn:a",
            "manifests": {
                "urn:a": {
                    "claim_generator_info": [{"name": "Adobe_Firefly", "version": "1"}],
                    "title": "x.jpg",
                    "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [
                        {"action": "c2pa.created",
                         "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                         "softwareAgent": {"name": "Firefly"}}]}}],
                    "signature_info": {"issuer": "Adobe Inc.", "time": "2024-01-01T00:00:00+00:00"}
                }
            },
            "validation_results": {"activeManifest": {"failure": [{"code": "signingCredential.untrusted"}]}},
            "validation_state": "Valid"
        });
        let i = summarise(&v);
        assert_eq!(i.validation, Validation::UntrustedSigner);
        assert_eq!(i.claim_generator.as_deref(), Some("Adobe_Firefly/1"));
        assert_eq!(
            i.digital_source_types,
            vec!["trainedAlgorithmicMedia".to_string()]
        );
        assert_eq!(i.actions[0].software_agent.as_deref(), Some("Firefly"));
        assert_eq!(i.signer.as_deref(), Some("Adobe Inc."));
        assert_eq!(i.manifests, 1);
    }

    #[test]
    fn empty_json_is_unreadable_and_garbage_is_absent() {
        assert_eq!(summarise(&Value::Null).validation, Validation::Unreadable);
        let broken = b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff";
        assert!(matches!(
            read(broken, Format::Png, false),
            Outcome::AssetError(_) | Outcome::Absent
        ));
        assert!(matches!(
            read(broken, Format::Png, true),
            Outcome::Found(_) | Outcome::Absent
        ));
        assert!(matches!(read(b"xx", Format::Other, true), Outcome::Absent));
    }
}
