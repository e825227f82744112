//! OpenSSF model signing (`model_signing` 1.x, github sigstore/model-transparency), key mode:
//! sigstore bundles that `model_signing sign key` writes and `model_signing verify key`
//! checks, both directions.
//!
//! # The format
//!
//! A bundle is the JSON of a sigstore bundle v0.3
//! (`"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"`) holding:
//!
//! * `verificationMaterial.publicKey.hint`: the SHA-256 (hex) of the signer's public key as
//!   SubjectPublicKeyInfo **PEM text** (not DER), and an empty `tlogEntries` list (no
//!   transparency log in key mode);
//! * `dsseEnvelope`: a DSSE envelope whose `payload` (base64) is an in-toto Statement v1
//!   (`payloadType` `application/vnd.in-toto+json`) and whose one signature `sig` (base64)
//!   is a DER ECDSA signature over the DSSE pre-authentication encoding
//!   `DSSEv1 <len(type)> <type> <len(payload)> <payload>`, with SHA-256 for a P-256 key and
//!   SHA-384 for P-384.
//!
//! The statement's `predicateType` is `https://model_signing/signature/v1.0`; its predicate
//! lists one `resources` entry per file (`name` relative to the model folder with `/`
//! separators, `algorithm` `sha256`, hex `digest`) and records the `serialization`
//! (`method: files`, `hash_type: sha256`, `allow_symlinks`, and the `ignore_paths`). The
//! statement's one subject is named after the model folder (or file) and its digest is the
//! SHA-256 of the resources' raw digests concatenated in the listed order. A single-file
//! model has one resource named `.`.
//!
//! # What is checked
//!
//! [`verify_bundle`] checks, in order: the bundle's shape; the key hint against the key
//! given ([`SignatureError::WrongKey`]); the signature over the payload
//! ([`SignatureError::BadSignature`]); the statement (types, the root digest over the
//! resources); and then the model on disk against the signed list
//! ([`SignatureError::Tampered`], naming every changed, missing, added or renamed file).
//! Paths listed in `ignore_paths` (by default `.git`, `.gitattributes`, `.github`,
//! `.gitignore` at the top of the model folder, and the bundle itself when it lies inside
//! the folder) are skipped, exactly as `model_signing` skips them; every other file counts.
//!
//! Not implemented (refused as [`SignatureError::UnsupportedBundle`]): sharded
//! serialization, hashes other than SHA-256, the pre-1.0 predicate, certificate and
//! Sigstore (keyless) bundles, symbolic links, and P-521 keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::sha256_file;
use crate::error::IntegrityError;
use crate::keys::{PrivateKey, PublicKey};
use crate::signing_error::{SignatureError, SignatureResult};

/// The bundle media type `model_signing` writes and requires.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The model signature predicate type.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths `model_signing` ignores by default (`--ignore-git-paths`).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

const KEY_TYPES: &str = "EC P-256 and P-384 keys";

/// One signed file: its name relative to the model and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// Path relative to the model folder, `/`-separated (`.` for a single-file model).
    pub name: String,
    /// SHA-256, 64 lower-case hex digits.
    pub sha256: String,
}

/// Options for [`sign_bundle`].
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Paths relative to the model folder to leave out (a folder leaves out all below it).
    pub ignore_paths: Vec<String>,
    /// Also leave out [`GIT_PATHS`] (`model_signing`'s default).
    pub ignore_git_paths: bool,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
        }
    }
}

/// A model whose bundle verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedBundle {
    /// The subject name recorded (the model folder's name when signed).
    pub model_name: String,
    /// The root digest (the subject's SHA-256).
    pub root_sha256: String,
    /// The files, as signed (and found).
    pub resources: Vec<Resource>,
    /// The paths that were ignored.
    pub ignore_paths: Vec<String>,
    /// The key's type, `EC P-256` or `EC P-384`.
    pub key_type: String,
    /// SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub public_key_sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<KeyIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x509_certificate_chain: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct KeyIdentifier {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default)]
    keyid: String,
}

/// The DSSE pre-authentication encoding of an in-toto payload.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The key hint `model_signing` records: SHA-256 (hex) of the SPKI PEM text.
pub fn key_hint(key: &PublicKey) -> SignatureResult<String> {
    Ok(crate::digest::sha256_bytes(key.to_spki_pem()?.as_bytes()))
}

/// The subject digest: SHA-256 of the resources' raw digests in order.
fn root_digest(resources: &[Resource]) -> SignatureResult<String> {
    let mut h = Sha256::new();
    for r in resources {
        let raw = hex::decode(&r.sha256).map_err(|_| IntegrityError::InvalidManifest {
            reason: format!("digest of {} is not hex", r.name),
        })?;
        h.update(raw);
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether `rel` is an ignored path or lies below one.
fn is_ignored(rel: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|i| {
        let i = i.trim_end_matches('/');
        rel == i || (rel.starts_with(i) && rel.as_bytes().get(i.len()) == Some(&b'/'))
    })
}

/// The files of a model as `model_signing` serializes them, ignored paths left out, sorted
/// as Python sorts paths (component by component).
pub fn model_resources(model: &Path, ignore: &[String]) -> SignatureResult<Vec<Resource>> {
    let meta =
        std::fs::symlink_metadata(model).map_err(|e| IntegrityError::io("read", model, e))?;
    if meta.is_file() {
        return Ok(vec![Resource {
            name: ".".to_string(),
            sha256: sha256_file(model)?,
        }]);
    }
    let meta = std::fs::metadata(model).map_err(|e| IntegrityError::io("read", model, e))?;
    if !meta.is_dir() {
        return Err(IntegrityError::NotAFile {
            path: model.to_path_buf(),
        }
        .into());
    }
    let mut out = Vec::new();
    walk(model, "", ignore, &mut out)?;
    out.sort_by(|a, b| a.name.split('/').cmp(b.name.split('/')));
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &str,
    ignore: &[String],
    out: &mut Vec<Resource>,
) -> SignatureResult<()> {
    let reader = std::fs::read_dir(dir).map_err(|e| IntegrityError::io("list", dir, e))?;
    for item in reader {
        let item = item.map_err(|e| IntegrityError::io("list", dir, e))?;
        let full = item.path();
        let name = item.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| IntegrityError::UnsupportedFileName {
                path: full.clone(),
                reason: "it is not valid UTF-8",
            })?;
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if is_ignored(&rel, ignore) {
            continue;
        }
        let meta =
            std::fs::symlink_metadata(&full).map_err(|e| IntegrityError::io("read", &full, e))?;
        if meta.file_type().is_symlink() {
            return Err(IntegrityError::Symlink { path: full }.into());
        } else if meta.is_dir() {
            walk(&full, &rel, ignore, out)?;
        } else if meta.is_file() {
            out.push(Resource {
                sha256: sha256_file(&full)?,
                name: rel,
            });
        } else {
            return Err(IntegrityError::NotAFile { path: full }.into());
        }
    }
    Ok(())
}

/// The path of `inner` relative to the folder `model`, `/`-separated, when it lies inside it.
fn relative_inside(model: &Path, inner: &Path) -> Option<String> {
    let model = model.canonicalize().ok()?;
    let inner = match inner.canonicalize() {
        Ok(p) => p,
        // Not written yet: resolve its folder.
        Err(_) => inner
            .parent()?
            .canonicalize()
            .ok()?
            .join(inner.file_name()?),
    };
    let rel = inner.strip_prefix(&model).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The subject name of a model: the folder's (or file's) final component.
fn model_name(model: &Path) -> String {
    let name = model.file_name().and_then(|n| n.to_str());
    match name {
        Some(n) if !n.is_empty() && n != ".." => n.to_string(),
        _ => model
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .unwrap_or_default(),
    }
}

/// Signs a model file or folder into a bundle that `model_signing verify key` accepts;
/// returns the bundle's JSON. `bundle_path` is where it will be written: when that lies
/// inside the model folder it is ignored (and recorded as ignored), as `model_signing` does.
pub fn sign_bundle(
    model: &Path,
    private_pem: &str,
    bundle_path: &Path,
    opts: &BundleOptions,
) -> SignatureResult<String> {
    let key = PrivateKey::from_pem(private_pem)?;
    if !matches!(key, PrivateKey::P256(_) | PrivateKey::P384(_)) {
        return Err(SignatureError::UnsupportedKey {
            kind: "private",
            found: format!("this is an {} key", key.public_key().type_name()),
            format: "an OpenSSF model-signing bundle",
            supported: KEY_TYPES,
        });
    }
    let is_dir = std::fs::metadata(model)
        .map_err(|e| IntegrityError::io("read", model, e))?
        .is_dir();
    let mut ignore: Vec<String> = opts.ignore_paths.clone();
    if opts.ignore_git_paths {
        ignore.extend(GIT_PATHS.iter().map(|s| s.to_string()));
    }
    if is_dir {
        if let Some(rel) = relative_inside(model, bundle_path) {
            ignore.push(rel);
        }
    }
    ignore.sort();
    ignore.dedup();
    let resources = model_resources(model, if is_dir { &ignore } else { &[] })?;
    if resources.is_empty() {
        return Err(IntegrityError::EmptyModel {
            path: model.to_path_buf(),
        }
        .into());
    }
    let statement = statement_json(&model_name(model), &resources, &ignore)?;
    let payload = serde_json::to_vec_pretty(&statement).map_err(|e| SignatureError::Usage {
        reason: format!("cannot encode the statement: {e}"),
    })?;
    let message = pae(&payload);
    let sig_der = match &key {
        PrivateKey::P256(k) => {
            use ecdsa::signature::Signer;
            let s: p256::ecdsa::Signature = k.sign(&message);
            s.to_der().as_bytes().to_vec()
        }
        PrivateKey::P384(k) => {
            use ecdsa::signature::Signer;
            let s: p384::ecdsa::Signature = k.sign(&message);
            s.to_der().as_bytes().to_vec()
        }
        _ => unreachable!("checked above"),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.to_string(),
        verification_material: VerificationMaterial {
            public_key: Some(KeyIdentifier {
                hint: Some(key_hint(&key.public_key())?),
            }),
            certificate: None,
            x509_certificate_chain: None,
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Envelope {
            payload: b64.encode(&payload),
            payload_type: PAYLOAD_TYPE.to_string(),
            signatures: vec![EnvelopeSignature {
                sig: b64.encode(sig_der),
                keyid: String::new(),
            }],
        },
    };
    serde_json::to_string(&bundle).map_err(|e| SignatureError::Usage {
        reason: format!("cannot encode the bundle: {e}"),
    })
}

fn statement_json(
    name: &str,
    resources: &[Resource],
    ignore: &[String],
) -> SignatureResult<serde_json::Value> {
    let mut serialization = serde_json::json!({
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": false,
    });
    if !ignore.is_empty() {
        serialization["ignore_paths"] = serde_json::json!(ignore);
    }
    let res: Vec<serde_json::Value> = resources
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "algorithm": "sha256", "digest": r.sha256}))
        .collect();
    Ok(serde_json::json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest(resources)?}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"serialization": serialization, "resources": res},
    }))
}

/// Whether a file's bytes look like a sigstore bundle (JSON with a sigstore `mediaType`).
pub fn looks_like_bundle(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.bundle"))
}

/// Verifies a model file or folder against a bundle and a PEM public key. See the
/// [module documentation](self) for the checks and their order.
pub fn verify_bundle(
    model: &Path,
    bundle_path: &Path,
    public_pem: &str,
) -> SignatureResult<VerifiedBundle> {
    let malformed = |reason: String| SignatureError::MalformedBundle {
        path: bundle_path.to_path_buf(),
        reason,
    };
    let unsupported = |reason: String| SignatureError::UnsupportedBundle {
        path: bundle_path.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read(bundle_path).map_err(|e| IntegrityError::io("read", bundle_path, e))?;
    let bundle: Bundle =
        serde_json::from_slice(&text).map_err(|e| malformed(format!("not a bundle ({e})")))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(unsupported(format!(
            "media type {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
            bundle.media_type
        )));
    }
    let vm = &bundle.verification_material;
    if vm.certificate.is_some()
        || vm.x509_certificate_chain.is_some()
        || !vm.tlog_entries.is_empty()
    {
        return Err(unsupported(
            "it was signed with a certificate or Sigstore, not a key (only key mode is \
             implemented: use `model_signing verify` for it)"
                .to_string(),
        ));
    }
    let key = PublicKey::from_pem(public_pem)?;
    if !matches!(key, PublicKey::P256(_) | PublicKey::P384(_)) {
        return Err(SignatureError::UnsupportedKey {
            kind: "public",
            found: format!("this is an {} key", key.type_name()),
            format: "an OpenSSF model-signing bundle",
            supported: KEY_TYPES,
        });
    }
    let hint = key_hint(&key)?;
    if let Some(expected) = vm.public_key.as_ref().and_then(|k| k.hint.as_deref()) {
        if !expected.eq_ignore_ascii_case(&hint) {
            return Err(SignatureError::WrongKey {
                expected: expected.to_string(),
                actual: hint,
            });
        }
    }
    let env = &bundle.dsse_envelope;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(&env.payload)
        .map_err(|e| malformed(format!("payload is not base64 ({e})")))?;
    let [sig] = env.signatures.as_slice() else {
        return Err(malformed(format!(
            "{} signatures in the envelope, expected one",
            env.signatures.len()
        )));
    };
    let sig = b64
        .decode(&sig.sig)
        .map_err(|e| malformed(format!("signature is not base64 ({e})")))?;
    let message = pae(&payload);
    let ok = match &key {
        PublicKey::P256(k) => {
            use ecdsa::signature::Verifier;
            let s = p256::ecdsa::Signature::from_der(&sig)
                .map_err(|e| malformed(format!("signature is not DER ECDSA P-256 ({e})")))?;
            k.verify(&message, &s).is_ok()
        }
        PublicKey::P384(k) => {
            use ecdsa::signature::Verifier;
            let s = p384::ecdsa::Signature::from_der(&sig)
                .map_err(|e| malformed(format!("signature is not DER ECDSA P-384 ({e})")))?;
            k.verify(&message, &s).is_ok()
        }
        _ => false,
    };
    if !ok {
        return Err(SignatureError::BadSignature {
            scheme: format!("bundle's {} ECDSA", key.type_name()),
        });
    }
    if env.payload_type != PAYLOAD_TYPE {
        return Err(unsupported(format!(
            "payload type {:?}, expected {PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let signed = parse_statement(&payload).map_err(|r| match r {
        StatementProblem::Malformed(r) => malformed(r),
        StatementProblem::Unsupported(r) => unsupported(r),
    })?;
    // The model on disk.
    let is_dir = std::fs::metadata(model)
        .map_err(|e| IntegrityError::io("read", model, e))?
        .is_dir();
    let mut ignore = signed.ignore_paths.clone();
    if is_dir {
        if let Some(rel) = relative_inside(model, bundle_path) {
            ignore.push(rel);
        }
    }
    let actual = model_resources(model, if is_dir { &ignore } else { &[] })?;
    let differences = diff(&signed.resources, &actual);
    if !differences.is_empty() {
        return Err(SignatureError::Tampered {
            path: model.to_path_buf(),
            differences,
        });
    }
    Ok(VerifiedBundle {
        model_name: signed.model_name,
        root_sha256: signed.root,
        resources: signed.resources,
        ignore_paths: signed.ignore_paths,
        key_type: key.type_name(),
        public_key_sha256: key.fingerprint()?,
    })
}

struct SignedStatement {
    model_name: String,
    root: String,
    resources: Vec<Resource>,
    ignore_paths: Vec<String>,
}

enum StatementProblem {
    Malformed(String),
    Unsupported(String),
}

fn parse_statement(payload: &[u8]) -> Result<SignedStatement, StatementProblem> {
    use StatementProblem::{Malformed, Unsupported};
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| Malformed(format!("the signed statement is not JSON ({e})")))?;
    let s = |v: &serde_json::Value, what: &str| -> Result<String, StatementProblem> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| Malformed(format!("statement field {what} is missing or not a string")))
    };
    if s(&v["_type"], "_type")? != STATEMENT_TYPE {
        return Err(Unsupported(format!("statement type {}", v["_type"])));
    }
    let predicate_type = s(&v["predicateType"], "predicateType")?;
    if predicate_type != PREDICATE_TYPE {
        return Err(Unsupported(format!(
            "predicate type {predicate_type:?}, expected {PREDICATE_TYPE:?}"
        )));
    }
    let subjects = v["subject"]
        .as_array()
        .ok_or_else(|| Malformed("statement has no subject list".to_string()))?;
    let [subject] = subjects.as_slice() else {
        return Err(Malformed(format!(
            "{} subjects, expected one",
            subjects.len()
        )));
    };
    let model_name = s(&subject["name"], "subject.name")?;
    let root = s(&subject["digest"]["sha256"], "subject.digest.sha256")?;
    let ser = &v["predicate"]["serialization"];
    let method = s(&ser["method"], "serialization.method")?;
    if method != "files" {
        return Err(Unsupported(format!(
            "serialization method {method:?} (only \"files\" is implemented)"
        )));
    }
    let hash_type = s(&ser["hash_type"], "serialization.hash_type")?;
    if hash_type != "sha256" {
        return Err(Unsupported(format!(
            "hash type {hash_type:?} (only sha256 is implemented)"
        )));
    }
    if ser["allow_symlinks"].as_bool() == Some(true) {
        return Err(Unsupported(
            "it allows symbolic links, which robust never follows".to_string(),
        ));
    }
    let ignore_paths = match &ser["ignore_paths"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|p| s(p, "ignore_paths[]"))
            .collect::<Result<_, _>>()?,
        _ => return Err(Malformed("ignore_paths is not a list".to_string())),
    };
    let list = v["predicate"]["resources"]
        .as_array()
        .ok_or_else(|| Malformed("predicate has no resources list".to_string()))?;
    let mut resources = Vec::new();
    for r in list {
        let name = s(&r["name"], "resources[].name")?;
        let algorithm = s(&r["algorithm"], "resources[].algorithm")?;
        if algorithm != "sha256" {
            return Err(Unsupported(format!("{name} is hashed with {algorithm}")));
        }
        let digest = s(&r["digest"], "resources[].digest")?.to_ascii_lowercase();
        if digest.len() != 64 || hex::decode(&digest).is_err() {
            return Err(Malformed(format!(
                "the digest of {name} is not 64 hex digits"
            )));
        }
        resources.push(Resource {
            name,
            sha256: digest,
        });
    }
    let computed = root_digest(&resources).map_err(|e| Malformed(e.to_string()))?;
    if !computed.eq_ignore_ascii_case(&root) {
        return Err(Malformed(format!(
            "the subject digest {root} is not the digest of the listed resources ({computed})"
        )));
    }
    Ok(SignedStatement {
        model_name,
        root,
        resources,
        ignore_paths,
    })
}

/// Every difference between the signed resources and those on disk, one line each.
fn diff(expected: &[Resource], actual: &[Resource]) -> Vec<String> {
    let exp: BTreeMap<&str, &str> = expected
        .iter()
        .map(|r| (r.name.as_str(), r.sha256.as_str()))
        .collect();
    let act: BTreeMap<&str, &str> = actual
        .iter()
        .map(|r| (r.name.as_str(), r.sha256.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (name, digest) in &exp {
        match act.get(name) {
            None => missing.push((*name, *digest)),
            Some(a) if a != digest => out.push((
                name.to_string(),
                format!("changed: {name} (sha256 {digest} -> {a})"),
            )),
            Some(_) => {}
        }
    }
    let mut added: Vec<(&str, &str, bool)> = act
        .iter()
        .filter(|(n, _)| !exp.contains_key(*n))
        .map(|(n, d)| (*n, *d, false))
        .collect();
    for (name, digest) in missing {
        match added.iter_mut().find(|(_, d, used)| !used && d == &digest) {
            Some(a) => {
                a.2 = true;
                out.push((name.to_string(), format!("renamed: {name} -> {}", a.0)));
            }
            None => out.push((name.to_string(), format!("missing: {name}"))),
        }
    }
    for (name, _, used) in added {
        if !used {
            out.push((name.to_string(), format!("added: {name}")));
        }
    }
    out.sort();
    out.into_iter().map(|(_, line)| line).collect()
}

/// The default bundle path beside a model: `model_signing`'s default name is `model.sig`;
/// robust writes `<model>.sigstore.json` beside the model (outside a model folder).
pub fn default_bundle_path(model: &Path) -> Option<PathBuf> {
    let name = model.file_name()?;
    let mut file = name.to_os_string();
    file.push(".sigstore.json");
    Some(model.with_file_name(file))
}
