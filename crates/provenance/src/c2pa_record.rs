//! The C2PA part of an evidence record: what the SDK read from a manifest store and how its
//! validation came out. Plain data, so that the record ([`crate::Evidence`]) and the reader
//! ([`crate::c2pa_info`]) both use it without importing each other.

use serde::Serialize;

/// What the credential's validation came to, from the SDK's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validation {
    /// Signature and hashes verify and the signer is on a configured trust list.
    Trusted,
    /// Signature and hashes verify; the signer is not on a trust list (none is bundled).
    UntrustedSigner,
    /// Signature and hashes verify, but the signing certificate has expired.
    Expired,
    /// The claim verifies, but a CAWG identity assertion fails.
    IdentityInvalid,
    /// Hashes or signature do not match: the content or the manifest was altered.
    Tampered,
    /// The manifest store cannot be parsed (malformed JUMBF, pre-release format…).
    Unreadable,
}

/// One action of a manifest's `c2pa.actions` assertion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct C2paAction {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digital_source_type: Option<String>,
    /// `true` for the active manifest, `false` for an ingredient's.
    pub active: bool,
}

/// What the SDK read from the manifest store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct C2paInfo {
    pub validation: Validation,
    /// The SDK's own `validation_state` (`Valid`, `Trusted`, `Invalid`), if it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_state: Option<String>,
    /// The failure codes (`claimSignature.mismatch`, `signingCredential.untrusted`…).
    pub failure_codes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_manifest: Option<String>,
    pub manifests: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_generator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// IPTC digital source type terms found in the store's actions (bare terms).
    pub digital_source_types: Vec<String>,
    pub actions: Vec<C2paAction>,
    /// The signing certificate's issuer organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_common_name: Option<String>,
    /// Signing time (from the time stamp), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    /// Which trust list the signer was checked against.
    pub trust_list: String,
    /// The SDK's error when the store could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
