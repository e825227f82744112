//! `robust digest`, `keygen`, `sign`, `verify` and `drift`: thin wrappers around
//! `robust_integrity`, one submodule per command, each with an `Args` struct and
//! `pub fn run(args: &Args) -> anyhow::Result<ExitCode>`.
//!
//! Exit codes (see `crate::exit`): 0 success; 1 a failed check (tampered model, wrong
//! key, drift found); 2 unusable input (missing or malformed file, bad flag value).
//! Every output file is written atomically (temporary file in the same directory, then
//! rename), so an interrupted run never leaves a partial file.

use std::path::Path;

use crate::exit::bad_input;

pub use digest::DigestArgs;
pub use drift::DriftArgs;
pub use keygen::KeygenArgs;
pub use sign::SignArgs;
pub use verify::VerifyArgs;

pub mod digest {
    //! `robust digest MODEL`.

    use std::path::PathBuf;
    use std::process::ExitCode;

    use anyhow::Result;
    use robust_integrity::{manifest_for, write_atomic};

    use crate::exit::bad_input;

    /// Print the SHA-256 of a model file, or the manifest and root digest of a model directory.
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust digest models/mnist.onnx
          prints `<sha256>  models/mnist.onnx` (the same as sha256sum)
      robust digest models/resnet/
          prints one `<sha256> <size> <path>` line per file (sorted) and the root digest
      robust digest models/resnet/ --json manifest.json")]
    pub struct DigestArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Also write the manifest as JSON to this file.
        #[arg(long, value_name = "OUT")]
        pub json: Option<PathBuf>,
    }

    /// Runs `robust digest`.
    pub fn run(args: &DigestArgs) -> Result<ExitCode> {
        let manifest = manifest_for(&args.model).map_err(bad_input)?;
        if args.model.is_file() {
            // A single file: its own digest, as sha256sum prints it.
            if let Some(e) = manifest.entries().first() {
                println!("{}  {}", e.sha256, args.model.display());
            }
        } else {
            print!("{}", String::from_utf8_lossy(&manifest.canonical_bytes()));
            println!("root {}", manifest.root_sha256());
        }
        if let Some(out) = &args.json {
            write_atomic(out, manifest.to_json_pretty().as_bytes()).map_err(bad_input)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub mod keygen {
    //! `robust keygen`.

    use std::path::PathBuf;
    use std::process::ExitCode;

    use anyhow::Result;
    use robust_integrity::{generate_keypair, write_new_atomic, Permissions};

    use crate::exit::bad_input;

    /// Generate an Ed25519 key pair (PKCS#8 / SPKI PEM files that OpenSSL reads).
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust keygen --out-dir keys/
          writes keys/robust.key (private, mode 0600) and keys/robust.pub
      robust keygen --private ci.key --public ci.pub
      openssl pkey -in keys/robust.key -noout     # OpenSSL reads the keys

    Existing files are never overwritten.")]
    pub struct KeygenArgs {
        /// Directory for `robust.key` (private) and `robust.pub` (public); created if missing.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["private", "public"])]
        pub out_dir: Option<PathBuf>,
        /// Path of the private key file.
        #[arg(long, value_name = "PATH", requires = "public")]
        pub private: Option<PathBuf>,
        /// Path of the public key file.
        #[arg(long, value_name = "PATH", requires = "private")]
        pub public: Option<PathBuf>,
    }

    /// Runs `robust keygen`.
    pub fn run(args: &KeygenArgs) -> Result<ExitCode> {
        let (private_path, public_path) = match (&args.out_dir, &args.private, &args.public) {
            (Some(dir), _, _) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    bad_input(format!("cannot create directory {}: {e}", dir.display()))
                })?;
                (dir.join("robust.key"), dir.join("robust.pub"))
            }
            (None, Some(private), Some(public)) => (private.clone(), public.clone()),
            _ => {
                return Err(bad_input(
                    "give --out-dir DIR, or both --private PATH and --public PATH",
                ))
            }
        };
        if private_path == public_path {
            return Err(bad_input("--private and --public must be different files"));
        }
        // Check both before writing either, so a refusal leaves nothing behind.
        for p in [&private_path, &public_path] {
            if p.symlink_metadata().is_ok() {
                return Err(bad_input(format!(
                    "{} already exists; refusing to overwrite it",
                    p.display()
                )));
            }
        }
        let (private_pem, public_pem) = generate_keypair()?;
        write_new_atomic(
            &private_path,
            private_pem.as_bytes(),
            Permissions::OwnerOnly,
        )
        .map_err(bad_input)?;
        if let Err(e) = write_new_atomic(&public_path, public_pem.as_bytes(), Permissions::Default)
        {
            // Do not leave a private key without its public half.
            let _ = std::fs::remove_file(&private_path);
            return Err(bad_input(e));
        }
        println!("private key: {}", private_path.display());
        println!("public key:  {}", public_path.display());
        Ok(ExitCode::SUCCESS)
    }
}

pub mod sign {
    //! `robust sign MODEL --key KEY`.

    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use anyhow::Result;
    use robust_integrity::{manifest_for, sign_manifest};

    use super::read_text;
    use crate::exit::bad_input;

    /// Sign a model file or directory with an Ed25519 private key.
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust sign models/mnist.onnx --key keys/robust.key
          writes models/mnist.onnx.sig.json
      robust sign models/resnet/ --key keys/robust.key --out release/resnet.sig.json

    The signature covers every file's path, size and SHA-256, so a changed byte, a renamed,
    missing or added file all fail `robust verify`.")]
    pub struct SignArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Private key (PKCS#8 PEM, e.g. from `robust keygen` or `openssl genpkey -algorithm ed25519`).
        #[arg(long, value_name = "KEY")]
        pub key: PathBuf,
        /// Signature file to write (default: `<MODEL>.sig.json` beside the model).
        #[arg(long, value_name = "SIG")]
        pub out: Option<PathBuf>,
    }

    /// `<model>.sig.json` beside the model (for a directory `m/`, the sibling `m.sig.json`).
    pub(crate) fn default_signature_path(model: &Path) -> Option<PathBuf> {
        let name = model.file_name()?;
        let mut file = name.to_os_string();
        file.push(".sig.json");
        Some(model.with_file_name(file))
    }

    /// Runs `robust sign`.
    pub fn run(args: &SignArgs) -> Result<ExitCode> {
        let key = read_text(&args.key, "private key")?;
        let manifest = manifest_for(&args.model).map_err(bad_input)?;
        let signature = sign_manifest(&manifest, &key)
            .map_err(|e| bad_input(format!("{}: {e}", args.key.display())))?;
        let out = match &args.out {
            Some(p) => p.clone(),
            None => default_signature_path(&args.model).ok_or_else(|| {
                bad_input(format!(
                    "cannot derive a signature file name from {}; give --out",
                    args.model.display()
                ))
            })?,
        };
        signature.write(&out).map_err(bad_input)?;
        println!(
            "signed {} ({} file{}, root sha256 {}) -> {}",
            args.model.display(),
            manifest.entries().len(),
            if manifest.entries().len() == 1 {
                ""
            } else {
                "s"
            },
            manifest.root_sha256(),
            out.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

pub mod verify {
    //! `robust verify MODEL --signature SIG --pubkey PUB`.

    use std::path::PathBuf;
    use std::process::ExitCode;

    use anyhow::Result;
    use robust_integrity::{verify, IntegrityError, SignatureFile};

    use super::read_text;
    use crate::exit::bad_input;

    /// Verify a model against its signature; exit 1 naming every difference if it does not.
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust verify models/mnist.onnx --signature models/mnist.onnx.sig.json --pubkey keys/robust.pub
      robust verify models/resnet/ --signature resnet.sig.json --pubkey keys/robust.pub

    Exit code 0: verified; 1: tampered model, altered signature file or wrong key
    (the message names what differs); 2: unreadable or malformed input.")]
    pub struct VerifyArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Signature file written by `robust sign`.
        #[arg(long, value_name = "SIG")]
        pub signature: PathBuf,
        /// Public key (SPKI PEM).
        #[arg(long, value_name = "PUB")]
        pub pubkey: PathBuf,
    }

    /// Runs `robust verify`.
    pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
        let signature = SignatureFile::read(&args.signature).map_err(bad_input)?;
        let public_pem = read_text(&args.pubkey, "public key")?;
        match verify(&args.model, &signature, &public_pem) {
            Ok(v) => {
                println!(
                    "verified {} ({} file{}, root sha256 {}, key sha256 {})",
                    args.model.display(),
                    v.manifest.entries().len(),
                    if v.manifest.entries().len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    v.manifest.root_sha256(),
                    v.public_key_sha256
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.is_verification_failure() => {
                eprintln!("verification FAILED: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e @ IntegrityError::Key { .. }) => {
                Err(bad_input(format!("{}: {e}", args.pubkey.display())))
            }
            Err(e) => Err(bad_input(e)),
        }
    }
}

pub mod drift {
    //! `robust drift --reference A --current B`.

    use std::path::PathBuf;
    use std::process::ExitCode;

    use anyhow::Result;
    use robust_integrity::{
        detect_drift, write_atomic, Correction, DriftOptions, FeatureTable, IntegrityError,
    };

    use crate::exit::bad_input;

    fn parse_correction(s: &str) -> std::result::Result<Correction, String> {
        s.parse().map_err(|e: IntegrityError| e.to_string())
    }

    /// Test every feature of two tables for drift (two-sample Kolmogorov–Smirnov); exit 1 on drift.
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust drift --reference train_features.npy --current prod_features.npy
      robust drift --reference ref.csv --current today.csv --p-val 0.01 --correction fdr --json drift.json

    Inputs are feature tables: .npy (f4/f8/u1/i4/i8; [samples, features], or [samples, ...]
    flattened per sample) or CSV with a header row. p-values follow scipy.stats.ks_2samp
    (exact up to 10000 samples, asymptotic above). Exit code 0: no drift; 1: drift; 2: bad input.")]
    pub struct DriftArgs {
        /// Reference feature table (.npy or .csv).
        #[arg(long, value_name = "A")]
        pub reference: PathBuf,
        /// Current feature table (.npy or .csv), with the same number of features.
        #[arg(long, value_name = "B")]
        pub current: PathBuf,
        /// Significance level, in (0, 1).
        #[arg(long, value_name = "P", default_value_t = 0.05)]
        pub p_val: f64,
        /// Multiple-testing correction: `bonferroni` or `fdr` (Benjamini–Hochberg).
        #[arg(long, value_name = "METHOD", default_value = "bonferroni", value_parser = parse_correction)]
        pub correction: Correction,
        /// Write the full report as JSON to this file.
        #[arg(long, value_name = "OUT")]
        pub json: Option<PathBuf>,
        /// List every feature in the table, not only the drifted ones.
        #[arg(long)]
        pub all: bool,
    }

    /// Runs `robust drift`.
    pub fn run(args: &DriftArgs) -> Result<ExitCode> {
        let reference = FeatureTable::read(&args.reference).map_err(bad_input)?;
        let current = FeatureTable::read(&args.current).map_err(bad_input)?;
        let options = DriftOptions {
            p_val: args.p_val,
            correction: args.correction,
            ..DriftOptions::default()
        };
        let report = detect_drift(&reference, &current, &options).map_err(bad_input)?;
        print!("{}", report.to_table(!args.all));
        if let Some(out) = &args.json {
            let mut json = serde_json::to_string_pretty(&report)?;
            json.push('\n');
            write_atomic(out, json.as_bytes()).map_err(bad_input)?;
        }
        Ok(if report.is_drift {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// Reads a small text file (a key), naming it in the error.
fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::sign::default_signature_path;

    #[test]
    fn signature_path_sits_beside_the_model() {
        assert_eq!(
            default_signature_path(Path::new("models/m.onnx")),
            Some(PathBuf::from("models/m.onnx.sig.json"))
        );
        assert_eq!(
            default_signature_path(Path::new("models/resnet/")),
            Some(PathBuf::from("models/resnet.sig.json"))
        );
        assert_eq!(default_signature_path(Path::new("/")), None);
    }
}
