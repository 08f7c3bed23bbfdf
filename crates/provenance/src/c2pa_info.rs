#![cfg_attr(not(feature = "c2pa"), allow(dead_code))]
//! C2PA content credentials, read and validated with the C2PA reference SDK.
//!
//! The SDK's `Reader` JSON (the same as c2pa-python's and c2patool's) is summarised into a
//! [`C2paInfo`]; its validation codes are classified into one [`Validation`] state.

pub use crate::c2pa_record::{C2paAction, C2paInfo, Validation};
use crate::container::{Blobs, Format};
use crate::{Evidence, Signal, SignalKind, Strength, Verdict};

/// No trust list is bundled (see the crate README): this is what the record says.
pub const TRUST_LIST: &str = "none bundled: signatures are checked, but signers are not \
                              checked against a trust list (signed, signer not on a trust list)";

/// Add the C2PA signal (if any) and notes to the record.
pub fn add_signals(bytes: &[u8], format: Format, blobs: &Blobs, ev: &mut Evidence) {
    if let Some(url) = crate::metadata::remote_manifest(blobs) {
        ev.notes.push(format!(
            "a remote C2PA manifest is referenced ({}); it is not fetched (no network)",
            crate::evidence::excerpt(&url, 200)
        ));
    }
    read_signal(bytes, format, blobs, ev);
}

#[cfg(not(feature = "c2pa"))]
fn read_signal(_bytes: &[u8], _format: Format, blobs: &Blobs, ev: &mut Evidence) {
    if blobs.jumbf_seen {
        ev.notes.push(
            "a JUMBF box that may hold C2PA credentials is present, but this build has no \
             C2PA support (feature `c2pa` off)"
                .into(),
        );
    }
}

#[cfg(feature = "c2pa")]
fn read_signal(bytes: &[u8], format: Format, blobs: &Blobs, ev: &mut Evidence) {
    let sign = blobs.jumbf_seen || crate::container::find(bytes, b"jumb").is_some();
    match sdk::read(bytes, format, sign) {
        sdk::Outcome::Absent => {}
        sdk::Outcome::Note(n) => ev.notes.push(n),
        sdk::Outcome::Found(info) => ev.signals.push(signal(*info)),
        sdk::Outcome::AssetError(e) => ev.errors.push(e),
    }
}

/// Turn the summary into a signal, applying the C2PA part of the decision rule.
pub fn signal(info: C2paInfo) -> Signal {
    let ai = info
        .digital_source_types
        .iter()
        .any(|t| crate::generators::source_type_verdict(t) == Some(Verdict::Ai));
    let capture = info
        .digital_source_types
        .iter()
        .any(|t| crate::generators::source_type_verdict(t) == Some(Verdict::Camera));
    let edits = info.actions.iter().any(|a| is_edit(&a.action));
    let (says, strength) = match info.validation {
        Validation::Tampered | Validation::Unreadable => {
            (Verdict::Invalid, Strength::SignedInvalid)
        }
        _ if ai => (Verdict::Ai, trust_strength(info.validation)),
        Validation::Expired | Validation::IdentityInvalid => {
            (Verdict::Invalid, Strength::SignedInvalid)
        }
        v if edits => (Verdict::Edited, trust_strength(v)),
        v if capture => (Verdict::Camera, trust_strength(v)),
        v => (Verdict::None, trust_strength(v)),
    };
    let mut s = Signal::new(SignalKind::C2pa, says, strength, describe(&info, says));
    s.generator = info.claim_generator.clone();
    s.c2pa = Some(info);
    s
}

fn trust_strength(v: Validation) -> Strength {
    match v {
        Validation::Trusted => Strength::SignedValid,
        _ => Strength::SignedUntrusted,
    }
}

/// An action that changes the content (anything but creating, opening, publishing…).
fn is_edit(action: &str) -> bool {
    let name = action.trim_start_matches("c2pa.");
    !matches!(
        name,
        "created" | "opened" | "published" | "watermarked" | "repackaged" | "transcoded"
    )
}

fn describe(info: &C2paInfo, says: Verdict) -> String {
    let who = info.signer.as_deref().unwrap_or("an unknown signer");
    let state = match info.validation {
        Validation::Trusted => "valid, signer trusted".to_string(),
        Validation::UntrustedSigner => "signature valid, signer not on a trust list".to_string(),
        Validation::Expired => "signing certificate expired".to_string(),
        Validation::IdentityInvalid | Validation::Tampered => {
            format!("fails validation ({})", info.failure_codes.join(", "))
        }
        Validation::Unreadable => format!(
            "manifest store unreadable ({})",
            info.error.as_deref().unwrap_or("unknown error")
        ),
    };
    let what = match says {
        Verdict::Ai => format!(
            "content credential declares AI generation ({})",
            info.digital_source_types.join(", ")
        ),
        Verdict::Camera => "content credential of a camera capture".to_string(),
        Verdict::Edited => "content credential records edits".to_string(),
        Verdict::Invalid => "content credential present but invalid".to_string(),
        Verdict::None => "content credential without a source type or edits".to_string(),
    };
    format!("{what}; signed by {who}; {state}")
}

/// Classify the SDK's failure codes into one state.
pub fn classify(codes: &[String]) -> Validation {
    let tamper = codes.iter().any(|c| {
        !c.starts_with("cawg.")
            && !matches!(
                c.as_str(),
                "signingCredential.untrusted"
                    | "signingCredential.expired"
                    | "timeStamp.untrusted"
                    | "timeStamp.outsideValidity"
                    | "signingCredential.ocsp.skipped"
                    | "signingCredential.ocsp.inaccessible"
            )
    });
    let identity = codes.iter().any(|c| {
        c.starts_with("cawg.") && !c.ends_with(".untrusted") && !c.ends_with("credential.untrusted")
    });
    if tamper {
        Validation::Tampered
    } else if codes.iter().any(|c| c == "signingCredential.expired") {
        Validation::Expired
    } else if identity {
        Validation::IdentityInvalid
    } else if codes.iter().any(|c| c.ends_with("untrusted")) {
        Validation::UntrustedSigner
    } else {
        Validation::Trusted
    }
}

#[cfg(feature = "c2pa")]
mod sdk;

#[cfg(test)]
mod tests {
    use super::*;

    fn info(validation: Validation, dst: &[&str], actions: &[&str]) -> C2paInfo {
        C2paInfo {
            validation,
            validation_state: None,
            failure_codes: vec![],
            active_manifest: None,
            manifests: 1,
            claim_generator: Some("test".into()),
            title: None,
            digital_source_types: dst.iter().map(|s| s.to_string()).collect(),
            actions: actions
                .iter()
                .map(|a| C2paAction {
                    action: a.to_string(),
                    software_agent: None,
                    digital_source_type: None,
                    active: true,
                })
                .collect(),
            signer: Some("Test CA".into()),
            signer_common_name: None,
            signed_at: None,
            trust_list: TRUST_LIST.into(),
            error: None,
        }
    }

    #[test]
    fn classify_codes() {
        let c = |v: &[&str]| classify(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(c(&[]), Validation::Trusted);
        assert_eq!(
            c(&["signingCredential.untrusted"]),
            Validation::UntrustedSigner
        );
        assert_eq!(
            c(&[
                "signingCredential.untrusted",
                "cawg.x509.credential.untrusted"
            ]),
            Validation::UntrustedSigner
        );
        assert_eq!(c(&["signingCredential.expired"]), Validation::Expired);
        assert_eq!(
            c(&["cawg.ica.did_unavailable", "signingCredential.untrusted"]),
            Validation::IdentityInvalid
        );
        assert_eq!(
            c(&["claimSignature.mismatch", "signingCredential.untrusted"]),
            Validation::Tampered
        );
        assert_eq!(c(&["assertion.dataHash.mismatch"]), Validation::Tampered);
    }

    #[test]
    fn decision_for_credentials() {
        let ai = ["trainedAlgorithmicMedia"];
        let s = signal(info(Validation::UntrustedSigner, &ai, &["c2pa.created"]));
        assert_eq!(
            (s.says, s.strength),
            (Verdict::Ai, Strength::SignedUntrusted)
        );
        assert!(s.detail.contains("signer not on a trust list"));
        assert_eq!(
            signal(info(Validation::IdentityInvalid, &ai, &[])).says,
            Verdict::Ai
        );
        assert_eq!(
            signal(info(Validation::Tampered, &ai, &[])).says,
            Verdict::Invalid
        );
        assert_eq!(
            signal(info(Validation::Expired, &[], &["c2pa.opened"])).says,
            Verdict::Invalid
        );
        let edited = signal(info(
            Validation::UntrustedSigner,
            &[],
            &["c2pa.opened", "c2pa.resized"],
        ));
        assert_eq!(edited.says, Verdict::Edited);
        let cam = signal(info(
            Validation::Trusted,
            &["digitalCapture"],
            &["c2pa.created"],
        ));
        assert_eq!(
            (cam.says, cam.strength),
            (Verdict::Camera, Strength::SignedValid)
        );
        assert_eq!(
            signal(info(Validation::UntrustedSigner, &[], &["c2pa.created"])).says,
            Verdict::None
        );
    }
}
