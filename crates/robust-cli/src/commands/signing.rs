//! The signature formats of `robust sign --format` and `robust verify` besides robust's own
//! JSON: raw openssl signatures and OpenSSF model-signing bundles. `integrity::sign` and
//! `integrity::verify` hand over to [`sign_other`] and [`verify_other`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use robust_integrity::openssf::BundleOptions;
use robust_integrity::openssl::{HashAlg, RsaPadding, SignOptions};
use robust_integrity::{detect_kind, verify_any, write_atomic, SignatureError, SignatureKind};

use super::integrity::{SignArgs, VerifyArgs};
use crate::exit::bad_input;

/// The format `robust sign` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SignFormat {
    /// robust's JSON signature file (Ed25519 keys; names every changed file on failure).
    #[default]
    Robust,
    /// Raw signature bytes, as `openssl dgst -sha256 -sign` writes them (RSA, EC P-256/P-384)
    /// or `openssl pkeyutl -sign -rawin` (Ed25519).
    Openssl,
    /// An OpenSSF model-signing sigstore bundle, as `model_signing sign key` writes it
    /// (EC P-256/P-384 keys).
    Openssf,
}

/// The format `robust verify` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VerifyFormat {
    /// Decided by the file's content: robust JSON, a sigstore bundle, or else raw openssl bytes.
    #[default]
    Auto,
    /// robust's JSON signature file.
    Robust,
    /// Raw openssl signature bytes.
    Openssl,
    /// An OpenSSF model-signing bundle.
    Openssf,
}

fn parse_hash(s: &str) -> std::result::Result<HashAlg, String> {
    s.parse()
}

fn parse_padding(s: &str) -> std::result::Result<RsaPadding, String> {
    s.parse()
}

/// `robust sign` flags for the other formats.
#[derive(Debug, Clone, clap::Args)]
pub struct SignFormatArgs {
    /// Signature format: robust (JSON, Ed25519), openssl (raw bytes; RSA, EC, Ed25519) or
    /// openssf (sigstore bundle; EC P-256/P-384).
    #[arg(long, value_enum, default_value = "robust", value_name = "FORMAT")]
    pub format: SignFormat,
    /// Digest for --format openssl (openssl dgst's -sha256/-sha384/-sha512).
    #[arg(long, value_name = "HASH", default_value = "sha256", value_parser = parse_hash)]
    pub digest: HashAlg,
    /// RSA padding for --format openssl: pkcs1 (openssl's default) or pss
    /// (`-sigopt rsa_padding_mode:pss`, digest-length salt).
    #[arg(long, value_name = "PADDING", default_value = "pkcs1", value_parser = parse_padding)]
    pub padding: RsaPadding,
    /// For --format openssf: a path relative to the model folder to leave unsigned
    /// (repeatable); `.git`, `.gitattributes`, `.github` and `.gitignore` are left out
    /// unless --no-ignore-git-paths.
    #[arg(long, value_name = "REL")]
    pub ignore_path: Vec<String>,
    /// For --format openssf: sign the git files too.
    #[arg(long)]
    pub no_ignore_git_paths: bool,
}

/// `robust verify` flags for the other formats.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyFormatArgs {
    /// Signature format: auto (by content), robust, openssl or openssf.
    #[arg(long, value_enum, default_value = "auto", value_name = "FORMAT")]
    pub signature_format: VerifyFormat,
    /// Digest of a raw openssl signature (openssl dgst's -sha256/-sha384/-sha512).
    #[arg(long, value_name = "HASH", default_value = "sha256", value_parser = parse_hash)]
    pub digest: HashAlg,
}

/// The default output of `--format openssl` (`<model>.sig`) or `openssf`
/// (`<model>.sigstore.json`), beside the model.
fn default_out(model: &Path, format: SignFormat) -> Option<PathBuf> {
    match format {
        SignFormat::Openssf => robust_integrity::openssf::default_bundle_path(model),
        _ => {
            let mut file = model.file_name()?.to_os_string();
            file.push(".sig");
            Some(model.with_file_name(file))
        }
    }
}

fn read_key(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read {what} {}: {e}", path.display())))
}

/// `robust sign --format openssl|openssf`.
pub fn sign_other(args: &SignArgs) -> Result<ExitCode> {
    let f = &args.formats;
    let out = match &args.out {
        Some(p) => p.clone(),
        None => default_out(&args.model, f.format).ok_or_else(|| {
            bad_input(format!(
                "cannot derive a signature file name from {}; give --out",
                args.model.display()
            ))
        })?,
    };
    crate::commands::refuse_overlap(&[&args.model, &args.key], &[&out])?;
    if f.format == SignFormat::Openssl {
        // A bundle inside the folder is recorded as ignored; a raw signature would change
        // the manifest it signs.
        crate::commands::refuse_inside_model(&args.model, &out)?;
    }
    let pem = read_key(&args.key, "private key")?;
    let key_error = |e: SignatureError| {
        if robust_integrity::formats::is_key_problem(&e) {
            bad_input(format!("{}: {e}", args.key.display()))
        } else {
            bad_input(e)
        }
    };
    match f.format {
        SignFormat::Openssl => {
            let opts = SignOptions {
                hash: f.digest,
                padding: f.padding,
            };
            let (sig, scheme) = robust_integrity::openssl::sign_model(&args.model, &pem, opts)
                .map_err(key_error)?;
            write_atomic(&out, &sig).map_err(bad_input)?;
            let covers = if args.model.is_dir() {
                " (over the manifest text `robust digest` prints, without its root line)"
            } else {
                ""
            };
            println!(
                "signed {} with {scheme}{covers} -> {}",
                args.model.display(),
                out.display()
            );
        }
        SignFormat::Openssf => {
            let opts = BundleOptions {
                ignore_paths: f.ignore_path.clone(),
                ignore_git_paths: !f.no_ignore_git_paths,
            };
            let json = robust_integrity::openssf::sign_bundle(&args.model, &pem, &out, &opts)
                .map_err(key_error)?;
            write_atomic(&out, json.as_bytes()).map_err(bad_input)?;
            println!(
                "signed {} into an OpenSSF model-signing bundle -> {}",
                args.model.display(),
                out.display()
            );
        }
        SignFormat::Robust => unreachable!("robust's own format is signed by integrity::sign"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The format to verify, or `None` for robust's JSON (which `integrity::verify` handles).
fn chosen_kind(args: &VerifyArgs) -> Result<Option<SignatureKind>> {
    let kind = match args.formats.signature_format {
        VerifyFormat::Robust => SignatureKind::Robust,
        VerifyFormat::Openssl => SignatureKind::Openssl,
        VerifyFormat::Openssf => SignatureKind::Openssf,
        VerifyFormat::Auto => {
            let bytes = std::fs::read(&args.signature).map_err(|e| {
                bad_input(format!(
                    "cannot read signature {}: {e}",
                    args.signature.display()
                ))
            })?;
            detect_kind(&bytes)
        }
    };
    Ok((kind != SignatureKind::Robust).then_some(kind))
}

/// `robust verify` for raw openssl signatures and OpenSSF bundles; `Ok(None)` when the
/// signature is robust's JSON.
pub fn verify_other(args: &VerifyArgs) -> Result<Option<ExitCode>> {
    let Some(kind) = chosen_kind(args)? else {
        return Ok(None);
    };
    let pem = read_key(&args.pubkey, "public key")?;
    match verify_any(
        &args.model,
        &args.signature,
        &pem,
        Some(kind),
        args.formats.digest,
    ) {
        Ok(v) => {
            println!(
                "verified {} ({kind} signature, {}, {} key sha256 {}, {} file{}, sha256 {})",
                args.model.display(),
                v.scheme,
                v.key_type,
                v.public_key_sha256,
                v.files,
                if v.files == 1 { "" } else { "s" },
                v.root_sha256
            );
            Ok(Some(ExitCode::SUCCESS))
        }
        Err(e) if e.is_verification_failure() => {
            let line = crate::commands::join_lines(&e.to_string());
            let line = match e {
                SignatureError::BadSignature { .. } | SignatureError::WrongKey { .. } => format!(
                    "{} with {}: {line}",
                    args.signature.display(),
                    args.pubkey.display()
                ),
                _ => line,
            };
            eprintln!("error: verification FAILED: {line}");
            Ok(Some(ExitCode::from(1)))
        }
        Err(e) if robust_integrity::formats::is_key_problem(&e) => {
            Err(bad_input(format!("{}: {e}", args.pubkey.display())))
        }
        Err(e) => Err(bad_input(e)),
    }
}

/// `eval --require-signature`: verifies the model in any format; `Err` holds the one-line
/// reason and whether it is a failed check (exit 1) rather than bad input (exit 2).
pub fn verify_for_eval(
    model: &Path,
    signature: &Path,
    pubkey: &Path,
) -> std::result::Result<robust_integrity::Verified, (bool, String)> {
    let pem = std::fs::read_to_string(pubkey)
        .map_err(|e| (false, format!("{}: cannot read: {e}", pubkey.display())))?;
    verify_any(model, signature, &pem, None, HashAlg::Sha256).map_err(|e| {
        let failure = e.is_verification_failure();
        let line = crate::commands::join_lines(&e.to_string());
        let line = if robust_integrity::formats::is_key_problem(&e) {
            format!("{}: {line}", pubkey.display())
        } else {
            line
        };
        (failure, line)
    })
}
