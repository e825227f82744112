//! The bad-input table: broken, hostile and conflicting inputs to every command, each run
//! through the real binary in a fresh temporary folder.
//!
//! Every case asserts the exit code (2 for bad input, 1 for a verification failure), that
//! stderr is exactly one line starting with `error:` that names the offending file or flag
//! (and says what the case is about), that nothing printed a panic, that no operating
//! system message is printed twice, and that no file in the folder was created, changed or
//! removed (a snapshot of every path and its contents' SHA-256, before and after).
//!
//! The inputs are tiny and written by the test: a linear model on 1×2×2 images
//! (safetensors + architecture JSON), four images as `.npy`, PNG and `.npy` headers that
//! claim far more than the file holds, keys and a signature made by `robust keygen` and
//! `robust sign`, and a results file made by `robust eval`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Longest a case may run before it counts as a hang (a regression that allocates without
/// bound would otherwise stall the suite).
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Cases run at once.
const PARALLEL: usize = 8;

// ---------------------------------------------------------------------------------------
// Files.

/// An `.npy` file: the header for `descr` and `shape`, then `data` as given.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({shape}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data);
    b
}

/// An int64 labels `.npy`.
fn labels_npy(labels: &[i64]) -> Vec<u8> {
    let data: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    npy("<i8", &format!("{},", labels.len()), &data)
}

/// A float32 feature table `.npy` of `rows × cols`.
fn features_npy(rows: usize, cols: usize, f: impl Fn(usize) -> f32) -> Vec<u8> {
    let data: Vec<u8> = (0..rows * cols).flat_map(|i| f(i).to_le_bytes()).collect();
    npy("<f4", &format!("{rows}, {cols}"), &data)
}

/// CRC-32 (IEEE), for PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header declares `width × height` gray pixels, with one tiny IDAT chunk: the
/// header of a decompression bomb (a real one compresses 22000×22000 zeros into ~470 KB).
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A safetensors file holding `fc.weight` `[3, 4]` and `fc.bias` `[3]`.
fn safetensors(weight: &[f32; 12], bias: &[f32; 3]) -> Vec<u8> {
    let mut header = concat!(
        r#"{"fc.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},"#,
        r#""fc.bias":{"dtype":"F32","shape":[3],"data_offsets":[48,60]}}"#
    )
    .to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    for v in weight.iter().chain(bias) {
        b.extend(v.to_le_bytes());
    }
    b
}

const ARCH: &str = concat!(
    r#"{"input_shape": [1, 2, 2], "layers": [{"type": "flatten"}, "#,
    r#"{"type": "linear", "name": "fc", "in": 4, "out": 3}]}"#
);
const WEIGHT: [f32; 12] = [
    1.0, -1.0, 0.5, 0.0, //
    -0.5, 1.0, 0.0, 1.0, //
    0.0, 0.5, -1.0, 0.5,
];

/// The files every case starts from (a fresh copy per case).
fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    let shared = shared();
    let mut nan = WEIGHT;
    nan[0] = f32::NAN;
    let pixels: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37)).collect();
    vec![
        ("tiny.json", ARCH.as_bytes().to_vec()),
        ("tiny.safetensors", safetensors(&WEIGHT, &[0.1, 0.0, -0.1])),
        ("nan.safetensors", safetensors(&nan, &[0.0; 3])),
        ("images.npy", npy("|u1", "4, 2, 2", &pixels)),
        ("labels.npy", labels_npy(&[0, 1, 2, 0])),
        ("m.onnx", b"a model file".to_vec()),
        ("m.onnx.sig.json", shared.signature.clone()),
        ("robust.key", shared.private_key.clone()),
        ("robust.pub", shared.public_key.clone()),
        ("other.pub", shared.other_public_key.clone()),
        ("r.json", shared.results.clone()),
        ("ref.csv", b"a,b\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n".to_vec()),
        ("cur.csv", b"a,b\n0.1,1\n0.2,2\n0.3,3\n0.5,4\n".to_vec()),
        ("ref.npy", features_npy(6, 2, |i| i as f32)),
        ("cur.npy", features_npy(6, 3, |i| i as f32)),
    ]
}

/// Files made once by the binary itself: a results file, keys and a signature.
struct Shared {
    results: Vec<u8>,
    private_key: Vec<u8>,
    public_key: Vec<u8>,
    other_public_key: Vec<u8>,
    signature: Vec<u8>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pixels: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37)).collect();
        std::fs::write(d.join("tiny.json"), ARCH).unwrap();
        std::fs::write(
            d.join("tiny.safetensors"),
            safetensors(&WEIGHT, &[0.1, 0.0, -0.1]),
        )
        .unwrap();
        std::fs::write(d.join("images.npy"), npy("|u1", "4, 2, 2", &pixels)).unwrap();
        std::fs::write(d.join("labels.npy"), labels_npy(&[0, 1, 2, 0])).unwrap();
        std::fs::write(d.join("m.onnx"), b"a model file").unwrap();
        let ok = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_robust"))
                .args(args)
                .current_dir(d)
                .env("XDG_RUNTIME_DIR", std::env::temp_dir())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "setup `robust {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&[
            "eval",
            "--model",
            "tiny.safetensors",
            "--arch",
            "tiny.json",
            "--data",
            "images.npy",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            "out",
        ]);
        ok(&["keygen", "--out-dir", "k"]);
        ok(&["keygen", "--out-dir", "k2"]);
        ok(&["sign", "m.onnx", "--key", "k/robust.key"]);
        let read = |p: &str| std::fs::read(d.join(p)).unwrap();
        Shared {
            results: read("out/results.json"),
            private_key: read("k/robust.key"),
            public_key: read("k/robust.pub"),
            other_public_key: read("k2/robust.pub"),
            signature: read("m.onnx.sig.json"),
        }
    })
}

/// `r.json` with `edit` applied.
fn results_with(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&shared().results).unwrap();
    edit(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// The signature with `edit` applied.
fn signature_with(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&shared().signature).unwrap();
    edit(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

// A public RSA key and a private EC key made with OpenSSL, for the "only Ed25519" cases
// (throwaway keys, used for nothing else).
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDH75egAD5bUQ1Y6hNPWsYOOAmA
JB+BFHAt3tq4gSd/lu0Ft24VIeF4dN09gaOHDnp2aQN+gK7HTP5OlYDPs5spO3TT
5oIxrV9k9XM5coaVlA5o/tm21fCFuOfRPnNNE+scVYnY4888ghCEu3Vfxzgqt5VW
79tGONKGRDWzK5/TEwIDAQAB
-----END PUBLIC KEY-----
";
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLH+jkqxkjuxyNRP+
I4uqrgz98eOCqY5OaPNsdOh5UgahRANCAATlx+i+CV5mT9KrvIhS8ErAETwzfg99
M//49ThmBOyL8YpfkymyXdgbaS97pF/dKDNbPRseOa3WVCDjvY3tOibV
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------------------
// Cases.

type Setup = Box<dyn Fn(&Path) + Send + Sync>;

struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    /// Substrings the error line must hold: the offending file or flag, and the gist.
    says: Vec<&'static str>,
    setup: Setup,
}

/// A case run on the base files only.
fn case(name: &'static str, args: &str, code: i32, says: &[&'static str]) -> Case {
    with(name, args, code, says, |_| {})
}

/// A case with extra files written by `setup`.
fn with(
    name: &'static str,
    args: &str,
    code: i32,
    says: &[&'static str],
    setup: impl Fn(&Path) + Send + Sync + 'static,
) -> Case {
    Case {
        name,
        args: args.split_whitespace().map(String::from).collect(),
        code,
        says: says.to_vec(),
        setup: Box::new(setup),
    }
}

fn write(d: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = d.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, bytes).unwrap();
}

fn mkdir(d: &Path, rel: &str) {
    std::fs::create_dir_all(d.join(rel)).unwrap();
}

/// `eval` on the tiny model and data, with `extra` flags.
fn eval(extra: &str) -> String {
    format!(
        "eval --model tiny.safetensors --arch tiny.json --data images.npy --attack fgsm \
         --eps 0,0.1 --device cpu --quiet {extra}"
    )
}

/// `predict` with the tiny model and `extra` flags.
fn predict(extra: &str) -> String {
    format!("predict --model tiny.safetensors --arch tiny.json --device cpu {extra}")
}

/// A PKCS#1 RSA private key's PEM label around a body that is no key at all: the label
/// alone tells the key type.
const RSA_PKCS1_STUB: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";

fn cases() -> Vec<Case> {
    [
        // ---- eval: the defects of issue 12.
        with(
            "eval: label 2^31 without classes file",
            &eval("--out o"),
            2,
            &["labels.npy", "2147483648", "too large", "100000"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, 2, 1 << 31])),
        ),
        with(
            "eval: label 2^62 in a CSV",
            &eval("--out o").replace("images.npy", "data.csv"),
            2,
            &["data.csv", "4611686018427387904", "too large"],
            |d| {
                write(d, "a.png", png_bomb(2, 2));
                write(
                    d,
                    "data.csv",
                    "path,label\na.png,0\na.png,4611686018427387904\n",
                );
            },
        ),
        with(
            "eval: PNG bomb",
            &eval("--out o").replace("images.npy", "imgs"),
            2,
            &["bomb.png", "22000×22000", "max_image_pixels"],
            |d| write(d, "imgs/a/bomb.png", png_bomb(22_000, 22_000)),
        ),
        with(
            "eval: npy shape that overflows",
            &eval("--out o"),
            2,
            &["images.npy", "too large"],
            |d| {
                write(
                    d,
                    "images.npy",
                    npy("|u1", "4, 4294967296, 4294967296, 4294967296", &[0; 16]),
                )
            },
        ),
        case(
            "eval: --limit 0",
            &eval("--limit 0 --out o"),
            2,
            &["--limit 0", "no sample"],
        ),
        case(
            "eval: NaN logits",
            &eval("--out o").replace("tiny.safetensors", "nan.safetensors"),
            2,
            &["nan.safetensors", "not finite"],
        ),
        case(
            "eval: --targeted 42 on a 3-class model",
            &eval("--targeted 42 --out o"),
            2,
            &["--targeted 42", "3 classes"],
        ),
        with(
            "eval: results.json would overwrite the baseline",
            &eval("--baseline o/results.json --max-drop 0.1 --out o"),
            2,
            &["o/results.json", "overwrite"],
            |d| write(d, "o/results.json", &shared().results),
        ),
        case(
            "eval: --history is the data",
            &eval("--history images.npy --out o"),
            2,
            &["images.npy", "overwrite"],
        ),
        with(
            "eval: --out holds the config",
            &eval("--config o/summary.md --out o"),
            2,
            &["o/summary.md", "overwrite"],
            |d| write(d, "o/summary.md", "[eval]\n"),
        ),
        with(
            "eval: a later output cannot be written",
            &eval("--out o --history h.jsonl"),
            2,
            &["o/junit.xml", "cannot write"],
            |d| mkdir(d, "o/junit.xml"),
        ),
        with(
            "eval: results.json is a folder (no doubled OS error)",
            &eval("--out o"),
            2,
            &["o/results.json", "cannot write"],
            |d| mkdir(d, "o/results.json"),
        ),
        with(
            "eval: baseline out of range",
            &eval("--baseline neg.json --out o"),
            2,
            &["neg.json", "clean_accuracy is -5, outside [0, 1]"],
            |d| {
                write(
                    d,
                    "neg.json",
                    results_with(|v| v["clean_accuracy"] = (-5.0).into()),
                )
            },
        ),
        with(
            "eval: malformed history is refused before anything is written",
            &eval("--history h.jsonl --out o"),
            2,
            &["h.jsonl", "line 1"],
            |d| write(d, "h.jsonl", "{not json\n"),
        ),
        case(
            "eval: RSA key for --require-signature",
            &eval("--require-signature m.onnx.sig.json --pubkey rsa.pub --out o")
                .replace("tiny.safetensors --arch", "m.onnx --arch"),
            2,
            &["rsa.pub", "RSA", "only Ed25519"],
        ),
        with(
            "eval: edited signature entry is a verification failure",
            &eval("--require-signature e.sig.json --pubkey robust.pub --out o")
                .replace("tiny.safetensors --arch", "m.onnx --arch"),
            1,
            &["e.sig.json", "altered"],
            |d| {
                write(
                    d,
                    "e.sig.json",
                    signature_with(|v| v["manifest"]["entries"][0]["size"] = 99.into()),
                )
            },
        ),
        // ---- eval: other bad input.
        case(
            "eval: missing model",
            &eval("--out o").replace("tiny.safetensors", "nope.safetensors"),
            2,
            &["nope.safetensors"],
        ),
        case(
            "eval: no model at all",
            "eval --data images.npy --device cpu",
            2,
            &["--model"],
        ),
        case(
            "eval: missing data",
            &eval("--out o").replace("images.npy", "nope.npy"),
            2,
            &["nope.npy"],
        ),
        with(
            "eval: labels and images disagree",
            &eval("--out o"),
            2,
            &["labels.npy", "3 labels", "4 images"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, 2])),
        ),
        with(
            "eval: negative label",
            &eval("--out o"),
            2,
            &["labels.npy", "-1", "negative"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, -1, 0])),
        ),
        with(
            "eval: label beyond the model's classes",
            &eval("--out o"),
            2,
            &["images.npy", "8 classes", "3 outputs"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, 7, 0])),
        ),
        case(
            "eval: --batch-size 0",
            &eval("--batch-size 0 --out o"),
            2,
            &["--batch-size"],
        ),
        case(
            "eval: --max-drop without baseline",
            &eval("--max-drop 0.1 --out o"),
            2,
            &["--max-drop", "--baseline"],
        ),
        case(
            "eval: --max-drop above 1",
            &eval("--max-drop 2 --baseline r.json --out o"),
            2,
            &["--max-drop 2"],
        ),
        case(
            "eval: --bounds reversed",
            &eval("--bounds 1,0 --out o"),
            2,
            &["--bounds"],
        ),
        case(
            "eval: --input-shape with a zero",
            &eval("--input-shape 1,0,2 --out o"),
            2,
            &["--input-shape"],
        ),
        case(
            "eval: unknown attack",
            &eval("--out o").replace("--attack fgsm", "--attack nosuch"),
            2,
            &["nosuch"],
        ),
        case(
            "eval: unknown device",
            &eval("--out o").replace("--device cpu", "--device tpu"),
            2,
            &["tpu"],
        ),
        with(
            "eval: invalid config",
            &eval("--config bad.toml --out o"),
            2,
            &["bad.toml", "invalid configuration"],
            |d| write(d, "bad.toml", "[eval\nattacks = 3\n"),
        ),
        with(
            "eval: config [[attack]] with a NaN epsilon",
            &eval("--config c.toml --out o"),
            2,
            &["c.toml", "[[attack]]", "NaN"],
            |d| write(d, "c.toml", "[[attack]]\nname = \"fgsm\"\neps = [nan]\n"),
        ),
        with(
            "eval: config batch_size 0",
            &eval("--config c.toml --out o"),
            2,
            &["c.toml", "batch_size"],
            |d| write(d, "c.toml", "[eval]\nbatch_size = 0\n"),
        ),
        with(
            "eval: config gate rule above 1",
            &eval("--config c.toml --out o"),
            2,
            &["c.toml", "[gate]", "between 0 and 1"],
            |d| {
                write(
                    d,
                    "c.toml",
                    "[gate]\nmin = [{ attack = \"*\", min_robust_accuracy = 5.0 }]\n",
                )
            },
        ),
        case(
            "eval: missing config",
            &eval("--config nope.toml --out o"),
            2,
            &["nope.toml"],
        ),
        with(
            "eval: baseline not JSON",
            &eval("--baseline bad.json --out o"),
            2,
            &["bad.json"],
            |d| write(d, "bad.json", "not json"),
        ),
        with(
            "eval: --out is a file",
            &eval("--out f.txt"),
            2,
            &["--out f.txt", "not a folder"],
            |d| write(d, "f.txt", "x"),
        ),
        with(
            "eval: folder without class folders",
            &eval("--out o").replace("images.npy", "empty"),
            2,
            &["empty"],
            |d| mkdir(d, "empty"),
        ),
        with(
            "eval: CSV without a label column",
            &eval("--out o").replace("images.npy", "data.csv"),
            2,
            &["data.csv", "label"],
            |d| write(d, "data.csv", "path,klass\na.png,0\n"),
        ),
        with(
            "eval: IDX file with a wrong magic number",
            &eval("--out o").replace("images.npy", "t10k-images-idx3-ubyte"),
            2,
            &["t10k-images-idx3-ubyte", "magic"],
            |d| {
                write(
                    d,
                    "t10k-images-idx3-ubyte",
                    [0u8, 0, 9, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4],
                )
            },
        ),
        with(
            "eval: classes file with a blank line",
            &eval("--classes c.txt --out o"),
            2,
            &["c.txt", "blank"],
            |d| write(d, "c.txt", "a\n\nc\n"),
        ),
        with(
            "eval: model file that is not ONNX",
            &eval("--out o").replace("tiny.safetensors --arch tiny.json", "junk.onnx"),
            2,
            &["junk.onnx"],
            |d| write(d, "junk.onnx", "this is not a protobuf"),
        ),
        // ---- predict.
        case(
            "predict: --out is the data",
            &predict("--data images.npy --out images.npy"),
            2,
            &["images.npy", "overwrite"],
        ),
        case(
            "predict: missing model",
            "predict --model nope.onnx --data images.npy --device cpu --out l.npy",
            2,
            &["nope.onnx"],
        ),
        case(
            "predict: missing data",
            &predict("--data nope.npy --out l.npy"),
            2,
            &["nope.npy"],
        ),
        case(
            "predict: --batch-size 0",
            &predict("--data images.npy --batch-size 0 --out l.npy"),
            2,
            &["--batch-size"],
        ),
        with(
            "predict: label 2^40 without classes file",
            &predict("--data images.npy --out l.npy"),
            2,
            &["labels.npy", "1099511627776", "too large"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, 2, 1 << 40])),
        ),
        // ---- report.
        case(
            "report: missing results",
            "report nope.json",
            2,
            &["nope.json"],
        ),
        with(
            "report: not JSON",
            "report bad.json",
            2,
            &["bad.json"],
            |d| write(d, "bad.json", "{"),
        ),
        with(
            "report: accuracy of -5",
            "report neg.json --format md --out neg.md",
            2,
            &["neg.json", "clean_accuracy is -5, outside [0, 1]"],
            |d| {
                write(
                    d,
                    "neg.json",
                    results_with(|v| v["clean_accuracy"] = (-5.0).into()),
                )
            },
        ),
        with(
            "report: more attacked samples than the data set",
            "report n.json",
            2,
            &["n.json", "more samples than the data set"],
            |d| {
                write(
                    d,
                    "n.json",
                    results_with(|v| v["attacks"][0]["points"][0]["n"] = 1000.into()),
                )
            },
        ),
        with(
            "report: newer schema",
            "report new.json",
            2,
            &["new.json", "upgrade"],
            |d| {
                write(
                    d,
                    "new.json",
                    results_with(|v| v["schema_version"] = 99.into()),
                )
            },
        ),
        case(
            "report: --out is the results",
            "report r.json --format md --out r.json",
            2,
            &["r.json", "overwrite"],
        ),
        case(
            "report: --history is the results",
            "report r.json --history r.json",
            2,
            &["r.json"],
        ),
        case(
            "report: stdout with several formats",
            "report r.json --format html,md --out -",
            2,
            &["--out -"],
        ),
        with(
            "report: several formats into a file",
            "report r.json --format html,md --out f.txt",
            2,
            &["--out f.txt"],
            |d| write(d, "f.txt", "x"),
        ),
        with(
            "report: a later format cannot be written",
            "report r.json --format html,md,junit --out o",
            2,
            &["o/junit.xml", "cannot write"],
            |d| mkdir(d, "o/junit.xml"),
        ),
        with(
            "report: history is appended only after the outputs",
            "report r.json --history h.jsonl --out o.html",
            2,
            &["o.html", "cannot write"],
            |d| mkdir(d, "o.html"),
        ),
        with(
            "report: malformed history",
            "report r.json --history h.jsonl",
            2,
            &["h.jsonl", "line 2"],
            |d| write(d, "h.jsonl", "\n{\"started_at\": 3}\n"),
        ),
        // ---- digest.
        case(
            "digest: missing model",
            "digest nope.onnx",
            2,
            &["nope.onnx"],
        ),
        case(
            "digest: --json is the model",
            "digest m.onnx --json m.onnx",
            2,
            &["m.onnx", "overwrite"],
        ),
        with(
            "digest: --json inside the model folder",
            "digest md --json md/manifest.json",
            2,
            &["md/manifest.json", "inside the model folder"],
            |d| write(d, "md/w.bin", "w"),
        ),
        with(
            "digest: empty model folder",
            "digest md",
            2,
            &["md", "no files"],
            |d| mkdir(d, "md"),
        ),
        case(
            "digest: --json into a missing folder",
            "digest m.onnx --json nodir/x.json",
            2,
            &["nodir/x.json"],
        ),
        // ---- keygen.
        with(
            "keygen: key exists",
            "keygen --out-dir k",
            2,
            &["k/robust.key", "already exists"],
            |d| write(d, "k/robust.key", "old"),
        ),
        case(
            "keygen: one file for both keys",
            "keygen --private a.key --public ./a.key",
            2,
            &["--private a.key", "different files"],
        ),
        case(
            "keygen: existing private key",
            "keygen --private robust.key --public new.pub",
            2,
            &["robust.key", "already exists"],
        ),
        with(
            "keygen: --out-dir is a file",
            "keygen --out-dir f.txt",
            2,
            &["f.txt"],
            |d| write(d, "f.txt", "x"),
        ),
        // ---- sign.
        case(
            "sign: --out is the model",
            "sign m.onnx --key robust.key --out m.onnx",
            2,
            &["m.onnx", "overwrite"],
        ),
        case(
            "sign: --out is the key",
            "sign m.onnx --key robust.key --out robust.key",
            2,
            &["robust.key", "overwrite"],
        ),
        with(
            "sign: --out inside the model folder",
            "sign md --key robust.key --out md/sig.json",
            2,
            &["md/sig.json", "inside the model folder"],
            |d| write(d, "md/w.bin", "w"),
        ),
        with(
            "sign: EC private key",
            "sign m.onnx --key ec.key --out s.json",
            2,
            &["ec.key", "EC P-256", "Ed25519", "--format openssl"],
            |d| write(d, "ec.key", EC_PRIVATE),
        ),
        with(
            "sign: PKCS#1 RSA private key",
            "sign m.onnx --key rsa.key --out s.json",
            2,
            &["rsa.key", "RSA", "only Ed25519"],
            |d| write(d, "rsa.key", RSA_PKCS1_STUB),
        ),
        case(
            "sign: public key given as private",
            "sign m.onnx --key robust.pub --out s.json",
            2,
            &["robust.pub", "private key"],
        ),
        case(
            "sign: missing key",
            "sign m.onnx --key nope.key --out s.json",
            2,
            &["nope.key"],
        ),
        case(
            "sign: missing model",
            "sign nope.onnx --key robust.key --out s.json",
            2,
            &["nope.onnx"],
        ),
        // ---- verify.
        with(
            "verify: edited manifest entry",
            "verify m.onnx --signature e.sig.json --pubkey robust.pub",
            1,
            &["e.sig.json", "altered", "verification FAILED"],
            |d| {
                write(
                    d,
                    "e.sig.json",
                    signature_with(|v| {
                        v["manifest"]["entries"][0]["sha256"] = "0".repeat(64).into()
                    }),
                )
            },
        ),
        with(
            "verify: signature bytes altered",
            "verify m.onnx --signature b.sig.json --pubkey robust.pub",
            1,
            &["b.sig.json", "does not match", "verification FAILED"],
            |d| {
                write(
                    d,
                    "b.sig.json",
                    signature_with(|v| {
                        let hex = v["signature"].as_str().unwrap();
                        let flipped = if hex.starts_with('0') { "1" } else { "0" };
                        v["signature"] = format!("{flipped}{}", &hex[1..]).into();
                    }),
                )
            },
        ),
        with(
            "verify: tampered model",
            "verify m.onnx --signature m.onnx.sig.json --pubkey robust.pub",
            1,
            &["m.onnx", "verification FAILED"],
            |d| write(d, "m.onnx", "a model file!"),
        ),
        case(
            "verify: wrong key",
            "verify m.onnx --signature m.onnx.sig.json --pubkey other.pub",
            1,
            &["other.pub", "wrong public key", "verification FAILED"],
        ),
        with(
            "verify: RSA public key",
            "verify m.onnx --signature m.onnx.sig.json --pubkey rsa.pub",
            2,
            &["rsa.pub", "RSA", "only Ed25519"],
            |d| write(d, "rsa.pub", RSA_PUBLIC),
        ),
        with(
            "verify: signature not JSON",
            "verify m.onnx --signature s.json --pubkey robust.pub",
            2,
            &["s.json", "malformed"],
            |d| write(d, "s.json", "{"),
        ),
        case(
            "verify: missing signature",
            "verify m.onnx --signature nope.json --pubkey robust.pub",
            2,
            &["nope.json"],
        ),
        case(
            "verify: missing key",
            "verify m.onnx --signature m.onnx.sig.json --pubkey nope.pub",
            2,
            &["nope.pub"],
        ),
        // ---- drift.
        case(
            "drift: --json is the reference",
            "drift --reference ref.npy --current ref.npy --json ref.npy",
            2,
            &["ref.npy", "overwrite"],
        ),
        case(
            "drift: --json is the current table",
            "drift --reference ref.csv --current cur.csv --json cur.csv",
            2,
            &["cur.csv", "overwrite"],
        ),
        case(
            "drift: --json is a file of a data folder",
            "drift --reference d1 --current d1 --input-shape 1,2,2 --json d1/labels.npy",
            2,
            &["d1/labels.npy", "overwrite"],
        ),
        case(
            "drift: --p-val out of range",
            "drift --reference ref.csv --current cur.csv --p-val 2",
            2,
            &["--p-val 2"],
        ),
        case(
            "drift: missing reference",
            "drift --reference nope.csv --current cur.csv",
            2,
            &["nope.csv"],
        ),
        case(
            "drift: feature counts differ",
            "drift --reference ref.npy --current cur.npy",
            2,
            &["ref.npy", "2 features", "cur.npy has 3"],
        ),
        with(
            "drift: npy header claiming 4 GiB",
            "drift --reference h.npy --current ref.npy",
            2,
            &["h.npy"],
            |d| write(d, "h.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'"),
        ),
        case(
            "drift: table against data set",
            "drift --reference ref.csv --current images.npy",
            2,
            &["ref.csv", "images.npy"],
        ),
        case(
            "drift: --feature-space without model",
            "drift --reference ref.csv --current cur.csv --feature-space logits",
            2,
            &["--feature-space logits"],
        ),
        case(
            "drift: --json into a missing folder",
            "drift --reference ref.csv --current cur.csv --json nodir/d.json",
            2,
            &["nodir/d.json"],
        ),
        // ---- scan.
        with(
            "scan: label 2^31 without classes file",
            "scan --data images.npy",
            2,
            &["labels.npy", "2147483648", "too large"],
            |d| write(d, "labels.npy", labels_npy(&[0, 1, 2, 1 << 31])),
        ),
        with(
            "scan: PNG bomb",
            "scan --data imgs --input-shape 1,2,2",
            2,
            &["bomb.png", "22000×22000"],
            |d| write(d, "imgs/a/bomb.png", png_bomb(22_000, 22_000)),
        ),
        with(
            "scan: label 2^62 in a CSV",
            "scan --data data.csv --input-shape 1,2,2",
            2,
            &["data.csv", "4611686018427387904", "too large"],
            |d| {
                write(d, "a.png", png_bomb(2, 2));
                write(d, "data.csv", "path,label\na.png,4611686018427387904\n");
            },
        ),
        case(
            "scan: --json is a file of the data folder",
            "scan --data d1 --json d1/images.npy",
            2,
            &["d1/images.npy", "overwrite"],
        ),
        case(
            "scan: --json and --html one file",
            "scan --data images.npy --json s.out --html s.out",
            2,
            &["s.out", "two outputs"],
        ),
        case(
            "scan: --confidence above 1",
            "scan --data images.npy --confidence 2",
            2,
            &["--confidence 2"],
        ),
        case(
            "scan: --max-hamming above 63",
            "scan --data images.npy --max-hamming 99",
            2,
            &["--max-hamming 99"],
        ),
        case(
            "scan: missing data",
            "scan --data nope.npy",
            2,
            &["nope.npy"],
        ),
        with(
            "scan: npy header whose shape overflows",
            "scan --data images.npy",
            2,
            &["images.npy", "too large"],
            |d| {
                write(
                    d,
                    "images.npy",
                    npy("|u1", "4, 4294967296, 4294967296, 4294967296", &[0; 16]),
                )
            },
        ),
        with(
            "scan: IDX header whose size overflows",
            "scan --data x-images-idx3-ubyte --input-shape 1,2,2",
            2,
            &["x-images-idx3-ubyte", "too large"],
            |d| {
                let mut b = vec![0u8, 0, 8, 3];
                b.extend([0xFF; 12]);
                write(d, "x-images-idx3-ubyte", b);
            },
        ),
        with(
            "scan: images.npy header claims more than the file",
            "scan --data images.npy",
            2,
            &["images.npy", "truncated"],
            |d| write(d, "images.npy", npy("|u1", "4, 90, 90", &[0; 16])),
        ),
        with(
            "scan: images above the pixel limit",
            "scan --data images.npy",
            2,
            &["images.npy", "9000×9000", "max_image_pixels"],
            |d| write(d, "images.npy", npy("|u1", "4, 9000, 9000", &[0; 16])),
        ),
    ]
    .into_iter()
    .map(|c| {
        // Cases that need a data folder `d1` get one.
        if c.args.iter().any(|a| a == "d1" || a.starts_with("d1/")) {
            let setup = c.setup;
            Case {
                setup: Box::new(move |d: &Path| {
                    let pixels: Vec<u8> = (0..16u8).collect();
                    write(d, "d1/images.npy", npy("|u1", "4, 2, 2", &pixels));
                    write(d, "d1/labels.npy", labels_npy(&[0, 1, 2, 0]));
                    setup(d);
                }),
                ..c
            }
        } else if c.args.iter().any(|a| a == "rsa.pub") && c.name.starts_with("eval") {
            let setup = c.setup;
            Case {
                setup: Box::new(move |d: &Path| {
                    write(d, "rsa.pub", RSA_PUBLIC);
                    setup(d);
                }),
                ..c
            }
        } else {
            c
        }
    })
    .collect()
}

// ---------------------------------------------------------------------------------------
// Running.

/// Every path under `dir` (relative, `/`-separated) with the SHA-256 of its contents
/// (`dir` for a folder).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What differs between two snapshots, as one line per path.
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, h) in after {
        match before.get(p) {
            None => out.push(format!("created {p}")),
            Some(b) if b != h => out.push(format!("changed {p}")),
            _ => {}
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            out.push(format!("removed {p}"));
        }
    }
    out
}

/// Runs one case; `Err` says what went wrong.
fn run_case(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, bytes) in base_files() {
        write(d, name, bytes);
    }
    (case.setup)(d);
    let before = snapshot(d);
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_robust"))
        .args(&case.args)
        .current_dir(d)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {CASE_TIMEOUT:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let mut problems = Vec::new();
    if status.code() != Some(case.code) {
        problems.push(format!("exit {:?}, expected {}", status.code(), case.code));
    }
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        problems.push("stderr is not exactly one line starting with `error: `".into());
    }
    for s in &case.says {
        if !stderr.contains(s) {
            problems.push(format!("stderr does not say {s:?}"));
        }
    }
    if format!("{stdout}{stderr}").contains("panicked") {
        problems.push("a panic was printed".into());
    }
    if stderr.matches("(os error").count() > 1 {
        problems.push("an operating system error is printed twice".into());
    }
    let change = changes(&before, &snapshot(d));
    if !change.is_empty() {
        problems.push(format!("the folder changed: {}", change.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n    stderr: {}    stdout: {}",
            problems.join("; "),
            if stderr.is_empty() {
                "(empty)\n".into()
            } else {
                stderr.clone()
            },
            stdout.lines().take(3).collect::<Vec<_>>().join(" | ")
        ))
    }
}

#[test]
fn every_bad_input_fails_cleanly_and_changes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let commands: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.args[0].as_str()).collect();
    for cmd in [
        "eval", "predict", "report", "digest", "keygen", "sign", "verify", "drift", "scan",
    ] {
        assert!(commands.contains(cmd), "no case for `robust {cmd}`");
    }
    shared();
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                if let Err(why) = run_case(case) {
                    failures.lock().unwrap().push(format!(
                        "{}\n    robust {}\n    {why}",
                        case.name,
                        case.args.join(" ")
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
