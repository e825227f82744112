//! `robust digest`, `keygen`, `sign` and `verify`: thin wrappers around
//! `robust_integrity`, one submodule per command, each with an `Args` struct and
//! `pub fn run(args: &Args) -> anyhow::Result<ExitCode>`; [`inputs`] turns feature tables
//! and data sets (through a model, if given) into features for `drift` (in
//! `commands::drift`) and `scan`.
//!
//! Exit codes (see `crate::exit`): 0 success; 1 a failed check (tampered model, wrong
//! key, drift found); 2 unusable input (missing or malformed file, bad flag value).
//! Every output file is written atomically (temporary file in the same directory, then
//! rename), so an interrupted run never leaves a partial file.

use std::path::Path;

use crate::exit::bad_input;

pub use digest::DigestArgs;
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
      robust digest models/resnet/ --json manifest.json

    The root digest is the SHA-256 of the manifest text (the per-file lines), and it is what
    `robust sign` signs and prints: for a single file it is not the file's own SHA-256.

    Exit code 0: digested; 2: bad input (a missing or unreadable model, a --json that would
    overwrite the model or land inside the model folder, or that cannot be written).")]
    pub struct DigestArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Also write the manifest as JSON to this file.
        #[arg(long, value_name = "OUT")]
        pub json: Option<PathBuf>,
    }

    /// Runs `robust digest`.
    pub fn run(args: &DigestArgs) -> Result<ExitCode> {
        if let Some(out) = &args.json {
            crate::commands::refuse_overlap(&[&args.model], &[out])?;
            crate::commands::refuse_inside_model(&args.model, out)?;
        }
        let manifest = manifest_for(&args.model).map_err(bad_input)?;
        // The file first, so that a failed write is the only thing printed.
        if let Some(out) = &args.json {
            write_atomic(out, manifest.to_json_pretty().as_bytes()).map_err(bad_input)?;
        }
        if args.model.is_file() {
            // A single file: its own digest, as sha256sum prints it.
            if let Some(e) = manifest.entries().first() {
                println!("{}  {}", e.sha256, args.model.display());
            }
        } else {
            print!("{}", String::from_utf8_lossy(&manifest.canonical_bytes()));
            println!("root {}", manifest.root_sha256());
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

    Existing files are never overwritten.
    Exit code 0: written; 2: bad input (a key file exists already, both paths name one file,
    a folder cannot be created or a file cannot be written).")]
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
        if crate::commands::refuse_overlap(&[], &[&private_path, &public_path]).is_err() {
            return Err(bad_input(format!(
                "--private {} and --public {} must be different files",
                private_path.display(),
                public_path.display()
            )));
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

    /// Sign a model file or directory: robust's JSON (Ed25519), raw openssl bytes (RSA, EC,
    /// Ed25519) or an OpenSSF model-signing bundle (EC).
    #[derive(Debug, clap::Args)]
    #[command(after_help = "Examples:
      robust sign models/mnist.onnx --key keys/robust.key
          writes models/mnist.onnx.sig.json
      robust sign models/resnet/ --key keys/robust.key --out release/resnet.sig.json
      robust sign model.h5 --key private_key.pem --format openssl --out model.sig
          the bytes of `openssl dgst -sha256 -sign private_key.pem -out model.sig model.h5`
      robust sign models/resnet/ --key ec.key --format openssf --out resnet.sig
          a bundle `model_signing verify key` accepts

    RSA signing uses the `rsa` crate (advisory RUSTSEC-2023-0071, a timing side channel):
    sign with RSA keys on machines you trust; verifying is not affected.

    The signature covers every file's path, size and SHA-256, so a changed byte, a renamed,
    missing or added file all fail `robust verify`.
    Exit code 0: signed; 2: bad input (a missing model, a key that is not an Ed25519 PKCS#8
    PEM private key, an --out that would overwrite the model or the key or land inside the
    model folder, or that cannot be written).")]
    pub struct SignArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Private key (PKCS#8 PEM, e.g. from `robust keygen` or `openssl genpkey -algorithm ed25519`).
        #[arg(long, value_name = "KEY")]
        pub key: PathBuf,
        /// Signature file to write (default beside the model: `<MODEL>.sig.json`; with
        /// --format openssl `<MODEL>.sig`, openssf `<MODEL>.sigstore.json`).
        #[arg(long, value_name = "SIG")]
        pub out: Option<PathBuf>,
        #[command(flatten)]
        pub formats: crate::commands::signing::SignFormatArgs,
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
        if args.formats.format != crate::commands::signing::SignFormat::Robust {
            return crate::commands::signing::sign_other(args);
        }
        let out = match &args.out {
            Some(p) => p.clone(),
            None => default_signature_path(&args.model).ok_or_else(|| {
                bad_input(format!(
                    "cannot derive a signature file name from {}; give --out",
                    args.model.display()
                ))
            })?,
        };
        crate::commands::refuse_overlap(&[&args.model, &args.key], &[&out])?;
        crate::commands::refuse_inside_model(&args.model, &out)?;
        let key = read_text(&args.key, "private key")?;
        let manifest = manifest_for(&args.model).map_err(bad_input)?;
        let signature = sign_manifest(&manifest, &key).map_err(|e| {
            // robust's JSON is Ed25519 only; the other formats take RSA and EC keys.
            match robust_integrity::PrivateKey::from_pem(&key).map(|k| k.public_key()) {
                Ok(k) if !matches!(k, robust_integrity::PublicKey::Ed25519(_)) => {
                    bad_input(format!(
                        "{}: this is an {} key, and robust's JSON signatures are Ed25519: \
                         use --format openssl (or openssf for an EC key)",
                        args.key.display(),
                        k.type_name()
                    ))
                }
                _ => bad_input(format!("{}: {e}", args.key.display())),
            }
        })?;
        signature.write(&out).map_err(bad_input)?;
        // A file's own SHA-256 (what `robust digest` and sha256sum print) is not the root
        // digest: the root is the SHA-256 of the manifest text that is signed.
        let file_digest = match manifest.entries() {
            [one] if args.model.is_file() => format!("sha256 {}, ", one.sha256),
            _ => String::new(),
        };
        println!(
            "signed {} ({} file{}, {file_digest}manifest root sha256 {}) -> {}",
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
      robust verify model.h5 --signature model.sig --pubkey public_key.pem
          a raw signature from `openssl dgst -sha256 -sign` (RSA PKCS#1 v1.5 or PSS, ECDSA)
          or `openssl pkeyutl -sign -rawin` (Ed25519)
      robust verify models/resnet/ --signature model.sig --pubkey ec.pub
          an OpenSSF bundle from `model_signing sign key`

    The signature's format is told from its content (--signature-format overrides).

    Exit code 0: verified; 1: tampered model, altered signature file or wrong key
    (the message names what differs); 2: unreadable or malformed input.")]
    pub struct VerifyArgs {
        /// Model file or directory.
        pub model: PathBuf,
        /// Signature file: robust's JSON, raw openssl bytes or an OpenSSF bundle.
        #[arg(long, value_name = "SIG")]
        pub signature: PathBuf,
        /// Public key (SPKI PEM; PKCS#1 PEM for RSA).
        #[arg(long, value_name = "PUB")]
        pub pubkey: PathBuf,
        #[command(flatten)]
        pub formats: crate::commands::signing::VerifyFormatArgs,
    }

    /// Runs `robust verify`.
    pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
        if let Some(code) = crate::commands::signing::verify_other(args)? {
            return Ok(code);
        }
        let failed = |e: IntegrityError| {
            // One line: the differences of a tampered model joined with "; ".
            let line = e.to_string().replace(":\n  ", ": ").replace("\n  ", "; ");
            // Name the files a failure is about where the message itself does not: the
            // signature file and the key disagree.
            let line = match &e {
                IntegrityError::WrongKey { .. } | IntegrityError::BadSignature => format!(
                    "{} with {}: {line}",
                    args.signature.display(),
                    args.pubkey.display()
                ),
                _ => line,
            };
            eprintln!(
                "error: verification FAILED: {}",
                crate::commands::join_lines(&line)
            );
            ExitCode::from(1)
        };
        let signature = match SignatureFile::read(&args.signature) {
            Ok(s) => s,
            Err(e) if e.is_verification_failure() => return Ok(failed(e)),
            Err(e) => return Err(bad_input(e)),
        };
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
            Err(e) if e.is_verification_failure() => Ok(failed(e)),
            Err(e @ (IntegrityError::Key { .. } | IntegrityError::UnsupportedKeyType { .. })) => {
                Err(bad_input(format!("{}: {e}", args.pubkey.display())))
            }
            Err(e) => Err(bad_input(e)),
        }
    }
}

pub mod inputs {
    //! What `robust drift` and `robust scan` read: feature tables as they are, or data sets
    //! turned into features (pixels, or a model's penultimate features or logits).
    //!
    //! An input path is a *feature table* or a *data set*. `--input auto` (the default)
    //! decides by the file: a folder, an IDX images file, a `.npy` of rank 3 or more
    //! (images `[N, H, W]`, `[N, C, H, W]`, `[N, H, W, C]`) and a CSV whose header names
    //! `path` and `label` columns are data sets; a `.npy` of rank 1 or 2 and any other CSV
    //! are feature tables. `--input features|data` overrides the guess.

    use std::io::BufRead as _;
    use std::path::{Path, PathBuf};

    use anyhow::Result;
    use burn::tensor::{Tensor, TensorData};
    use indicatif::{ProgressBar, ProgressStyle};
    use robust_data::{DataSpec, Dataset};
    use robust_models::{select_device, DeviceChoice, Model};
    use robust_monitor::{npy_shape, FeatureTable};

    use crate::model_flags::ModelFlags;

    use crate::exit::bad_input;

    /// How to read an input path.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum InputKind {
        /// Decide by the file (see the module documentation).
        Auto,
        /// A feature table: `.npy` (`[samples, ...]`, flattened per sample) or CSV with a header.
        Features,
        /// A data set: image folder, CSV of path,label, images `.npy`, IDX.
        Data,
    }

    /// Which features a data set becomes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum FeatureSpace {
        /// One feature per pixel and channel (the model's input, in its bounds).
        Pixels,
        /// The model's penultimate features (the input of its last dense layer), or `--layer`.
        Penultimate,
        /// The model's logits (its first output).
        Logits,
    }

    impl FeatureSpace {
        /// The flag value.
        pub fn name(self) -> &'static str {
            match self {
                FeatureSpace::Pixels => "pixels",
                FeatureSpace::Penultimate => "penultimate",
                FeatureSpace::Logits => "logits",
            }
        }
    }

    /// Model flags shared by `drift` and `scan` (the names `robust eval` uses).
    #[derive(Debug, Clone, clap::Args)]
    pub struct ModelArgs {
        /// The model: file, architecture, shape, bounds, normalization.
        #[command(flatten)]
        pub spec: ModelFlags,
        /// The model value used as penultimate features (default: the input of the last
        /// Gemm/MatMul), e.g. a graph output such as `features`.
        #[arg(long, value_name = "NAME", requires = "model")]
        pub layer: Option<String>,
        /// Device: auto (a hardware GPU if present, else the CPU), cpu or wgpu.
        #[arg(long, default_value = "auto")]
        pub device: String,
        /// Samples per batch.
        #[arg(long, default_value_t = 256)]
        pub batch_size: usize,
        /// No progress bar.
        #[arg(long, short)]
        pub quiet: bool,
    }

    impl ModelArgs {
        /// Checks the flags that need no file.
        pub fn validate(&self) -> Result<()> {
            if self.batch_size == 0 {
                return Err(bad_input("--batch-size must be at least 1"));
            }
            self.spec.validate()?;
            let f = &self.spec;
            if f.model.is_none() && (f.arch.is_some() || f.mean.is_some() || f.std.is_some()) {
                return Err(bad_input(
                    "--arch, --mean and --std describe a model: give --model too",
                ));
            }
            self.device.parse::<DeviceChoice>().map_err(bad_input)?;
            Ok(())
        }

        /// Loads the model, if one was given.
        pub fn load(&self) -> Result<Option<Model>> {
            let Some(spec) = self.spec.spec() else {
                return Ok(None);
            };
            let device = select_device(self.device.parse::<DeviceChoice>().map_err(bad_input)?)
                .map_err(bad_input)?;
            if let Some(note) = &device.fallback_note {
                if !self.quiet {
                    eprintln!("warning: --device auto: {note}");
                }
            }
            Ok(Some(Model::load(&spec, &device.device).map_err(bad_input)?))
        }

        /// The bounds data are scaled to: the model's, else `--bounds`, else [0, 1].
        pub fn bounds(&self, model: Option<&Model>) -> [f32; 2] {
            match (model, &self.spec.bounds) {
                (Some(m), _) => m.info().bounds,
                (None, Some(b)) => [b[0], b[1]],
                (None, None) => [0.0, 1.0],
            }
        }
    }

    /// Whether `path` is a feature table or a data set.
    pub fn resolve_kind(path: &Path, kind: InputKind) -> Result<InputKind> {
        if kind != InputKind::Auto {
            return Ok(kind);
        }
        if !path.exists() {
            return Err(bad_input(format!("{} not found", path.display())));
        }
        if path.is_dir() {
            return Ok(InputKind::Data);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with("idx3-ubyte") || name.ends_with("idx3-ubyte.gz") {
            return Ok(InputKind::Data);
        }
        if name.ends_with(".npy") {
            let shape = npy_shape(path).map_err(bad_input)?;
            return Ok(if shape.len() >= 3 {
                InputKind::Data
            } else {
                InputKind::Features
            });
        }
        if name.ends_with(".csv") {
            let file = std::fs::File::open(path)
                .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
            let mut header = String::new();
            std::io::BufReader::new(file)
                .read_line(&mut header)
                .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
            let cols: Vec<String> = header
                .trim_start_matches('\u{feff}')
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
                .collect();
            let is_data = cols.iter().any(|c| c == "path") && cols.iter().any(|c| c == "label");
            return Ok(if is_data {
                InputKind::Data
            } else {
                InputKind::Features
            });
        }
        Ok(InputKind::Features)
    }

    /// The `[C, H, W]` of a data set read without a model: `--input-shape`, else the
    /// header of an images `.npy` or a plain IDX file.
    pub fn native_shape(path: &Path, given: Option<&[usize]>) -> Result<[usize; 3]> {
        if let Some(s) = given {
            return Ok([s[0], s[1], s[2]]);
        }
        let need = || {
            bad_input(format!(
                "{}: cannot tell the image size without decoding the images; pass \
                 --input-shape C,H,W (or --model)",
                path.display()
            ))
        };
        let images = if path.is_dir() && path.join("images.npy").is_file() {
            path.join("images.npy")
        } else if path.is_dir() {
            // A folder of IDX files: any plain images file gives the size.
            let mut plain: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| bad_input(format!("cannot list {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name().is_some_and(|n| {
                            n.to_string_lossy()
                                .to_ascii_lowercase()
                                .ends_with("idx3-ubyte")
                        })
                })
                .collect();
            plain.sort();
            match plain.into_iter().next() {
                Some(p) => p,
                None => return Err(need()),
            }
        } else {
            path.to_path_buf()
        };
        let name = images
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".npy") {
            let shape = npy_shape(&images).map_err(bad_input)?;
            if shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none()
            {
                return Err(bad_input(format!(
                    "{}: shape {shape:?} is too large: its size overflows",
                    images.display()
                )));
            }
            let chw = match shape.as_slice() {
                [_, h, w] => [1, *h, *w],
                [_, c, h, w] if matches!(c, 1 | 3) && !matches!(w, 1 | 3 | 4) => [*c, *h, *w],
                [_, h, w, c] if matches!(c, 1 | 3 | 4) => [(*c).min(3), *h, *w],
                _ => {
                    return Err(bad_input(format!(
                    "{}: cannot tell the image layout of shape {shape:?}; pass --input-shape C,H,W",
                    images.display()
                )))
                }
            };
            return within_pixel_limit(&images, chw);
        }
        if name.ends_with("idx3-ubyte") {
            let mut head = [0u8; 16];
            let mut f = std::fs::File::open(&images)
                .map_err(|e| bad_input(format!("cannot read {}: {e}", images.display())))?;
            std::io::Read::read_exact(&mut f, &mut head).map_err(|e| {
                bad_input(format!("{}: truncated IDX header ({e})", images.display()))
            })?;
            let be =
                |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            if be(0) != 0x0803 {
                return Err(bad_input(format!(
                    "{}: not an IDX images file (magic {:#010x})",
                    images.display(),
                    be(0)
                )));
            }
            return within_pixel_limit(&images, [1, be(8) as usize, be(12) as usize]);
        }
        Err(need())
    }

    /// `shape`, read from the header of `file`, if its images are within the default
    /// [`robust_data::DataLimits::max_image_pixels`]; else a bad-input error naming the file.
    fn within_pixel_limit(file: &Path, shape: [usize; 3]) -> Result<[usize; 3]> {
        let [_, h, w] = shape;
        let max = robust_data::DataLimits::default().max_image_pixels;
        if (h as u64).checked_mul(w as u64).is_none_or(|p| p > max) {
            return Err(bad_input(format!(
                "{}: images of {h}×{w} pixels are above the limit of {max} pixels per image \
                 ([data.limits] max_image_pixels)",
                file.display()
            )));
        }
        Ok(shape)
    }

    /// Opens a data set for inputs of `shape` in `bounds`. With `labels_optional`, an images
    /// `.npy` without a labels file is opened with placeholder labels (all 0).
    pub fn open_dataset(
        path: &Path,
        labels: Option<&Path>,
        shape: [usize; 3],
        bounds: [f32; 2],
        limit: Option<usize>,
        labels_optional: bool,
    ) -> Result<Dataset> {
        let mut spec = DataSpec::new(path);
        spec.labels = labels.map(Path::to_path_buf);
        spec.unlabelled = labels_optional;
        Dataset::open(&spec, shape, bounds, limit).map_err(bad_input)
    }

    /// What one pass over a data set produced.
    pub struct Extraction {
        /// The label of every sample.
        pub labels: Vec<usize>,
        /// `n × C·H·W` pixel values, when asked for.
        pub pixels: Option<Vec<f32>>,
        /// Per requested model value: its width `d` and `n × d` values.
        pub values: Vec<(usize, Vec<f32>)>,
    }

    /// Reads every batch of `dataset`, keeping the pixels if `keep_pixels` and running the
    /// model for the values `names` (flattened per sample).
    pub fn extract(
        dataset: &Dataset,
        shape: [usize; 3],
        model: Option<&Model>,
        names: &[String],
        keep_pixels: bool,
        batch_size: usize,
        quiet: bool,
    ) -> Result<Extraction> {
        let [c, h, w] = shape;
        let n_total = dataset.len();
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(n_total as u64);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} samples {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_message(format!("reading {}", dataset.info().source));
            b
        };
        let mut out = Extraction {
            labels: Vec::with_capacity(n_total),
            pixels: keep_pixels.then(|| Vec::with_capacity(n_total * c * h * w)),
            values: names.iter().map(|_| (0, Vec::new())).collect(),
        };
        for batch in dataset.batches(batch_size) {
            let batch = batch.map_err(bad_input)?;
            let n = batch.len();
            if let (Some(m), false) = (model, names.is_empty()) {
                let x = Tensor::<4>::from_data(
                    TensorData::new(batch.pixels.clone(), [n, c, h, w]),
                    m.device(),
                );
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let vals = m.forward_values(x, &refs).map_err(bad_input)?;
                for ((name, v), slot) in names.iter().zip(vals).zip(&mut out.values) {
                    let numel = v.numel();
                    if v.shape.first() != Some(&n) || numel == 0 {
                        return Err(bad_input(format!(
                            "model value '{name}' has shape {:?}, expected [batch ({n}), ...]",
                            v.shape
                        )));
                    }
                    let d = numel / n;
                    if slot.0 != 0 && slot.0 != d {
                        return Err(bad_input(format!(
                            "model value '{name}' changed width between batches ({} then {d})",
                            slot.0
                        )));
                    }
                    slot.0 = d;
                    slot.1.extend(robust_models::to_host(v.t));
                }
            }
            if let Some(p) = &mut out.pixels {
                p.extend_from_slice(&batch.pixels);
            }
            out.labels.extend_from_slice(&batch.labels);
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// The model value behind a feature space (`None` for pixels).
    pub fn value_name(
        model: &Model,
        space: FeatureSpace,
        layer: Option<&str>,
    ) -> Result<Option<String>> {
        Ok(match space {
            FeatureSpace::Pixels => None,
            FeatureSpace::Logits => Some(model.info().outputs[0].clone()),
            FeatureSpace::Penultimate => Some(match layer {
                Some(l) => l.to_string(),
                None => model.penultimate_value().ok_or_else(|| {
                    bad_input(format!(
                        "{}: the graph does not end in a dense layer (Gemm/MatMul), so it has \
                         no penultimate features; pass --layer NAME or --feature-space logits",
                        model.info().path.display()
                    ))
                })?,
            }),
        })
    }

    /// One side of a drift test (or the input of a scan) as a feature table, with a
    /// description of where its features came from.
    pub fn features_of(
        path: &Path,
        kind: InputKind,
        space: FeatureSpace,
        model: Option<&Model>,
        args: &ModelArgs,
    ) -> Result<(FeatureTable, String)> {
        match kind {
            InputKind::Features | InputKind::Auto => {
                let t = FeatureTable::read(path).map_err(bad_input)?;
                let what = format!(
                    "{}: feature table, {} samples × {} features",
                    path.display(),
                    t.n_samples(),
                    t.n_features()
                );
                Ok((t, what))
            }
            InputKind::Data => {
                let shape = match model {
                    Some(m) => <[usize; 3]>::try_from(m.info().input_shape.clone())
                        .map_err(|_| bad_input("model input shape is not [C, H, W]"))?,
                    None => native_shape(path, args.spec.input_shape.as_deref())?,
                };
                let dataset = open_dataset(path, None, shape, args.bounds(model), None, true)?;
                let name = match model {
                    Some(m) => value_name(m, space, args.layer.as_deref())?,
                    None => None,
                };
                let names: Vec<String> = name.iter().cloned().collect();
                let ex = extract(
                    &dataset,
                    shape,
                    model,
                    &names,
                    name.is_none(),
                    args.batch_size,
                    args.quiet,
                )?;
                let n = ex.labels.len();
                let (d, values, what) = match (name, ex.pixels) {
                    (Some(name), _) => {
                        let (d, v) = ex.values.into_iter().next().unwrap_or_default();
                        (d, v, format!("{} `{name}`", space.name()))
                    }
                    (None, Some(p)) => (shape.iter().product(), p, "pixels".to_string()),
                    (None, None) => unreachable!("pixels are kept when no model value is read"),
                };
                let t = FeatureTable::new(n, d, values.into_iter().map(f64::from).collect())
                    .map_err(bad_input)?;
                let what = format!(
                    "{}: {} data, {n} samples → {d} {what} features",
                    path.display(),
                    dataset.info().format.name(),
                );
                Ok((t, what))
            }
        }
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
