//! Mutation fuzzing of every loader, on the stable toolchain, as an ordinary test that stays
//! in CI.
//!
//! Each file type robust reads has real seed files (the repository's models, data sets and
//! `robust.toml`; a results file, a history, keys and signatures made by running the
//! binary once). For each type the test writes mutants of its seeds (bit flips, bytes and
//! words overwritten with boundary values, truncation, duplicated and deleted slices,
//! inserted random bytes, and, for text, numbers replaced by huge, negative, NaN or
//! infinite values, lines deleted or repeated, strings emptied or lengthened, stray syntax)
//! into a temporary folder, and loads each one the way `robust` does: the library loaders
//! in-process (`robust_models::Model::load`, `robust_data::Dataset::open` and every batch,
//! `RunResults::read` and the renderers, `read_history`, `SignatureFile::read` and
//! `verify`, the PEM key parsers, `FeatureTable::read` and `detect_drift`, and the real
//! `robust.toml` parser), and, for the small and fast commands, the real binary too
//! (`robust eval --config`, `report`, `sign`, `verify`, `drift`).
//!
//! Every mutant must give either success or an error whose message is one line naming a
//! file of the case; a panic (caught with `catch_unwind`, or a child process that panicked
//! or died from a signal), a load running longer than 20 s, or a peak resident set above
//! 1 GiB fails the test. Mutants are a pure function of the seed, the file type and the
//! mutant's number, so a failure is reproduced by running again with the printed seed;
//! each failing mutant is also saved under `target/tmp/fuzz-failures/`.
//!
//! # Running
//!
//! The default budget, 500 mutants per file type (9,000 in all), takes about 15 s in
//! release mode on two cores and peaks at about 45 MB:
//!
//! ```text
//! cargo test --release --workspace --test fuzz_loaders -- --nocapture
//! ```
//!
//! A longer campaign raises the count per type and picks another seed (the default seed is
//! fixed, so CI runs the same mutants every time). 2,500 per type (45,000 in all) takes
//! about 65 s and peaks near 450 MB (architecture files that widen the input within the
//! default `[model.limits]`); the time grows linearly, mostly in `robust-toml` (a real
//! `robust eval` per mutant) and the PEM keys (a `robust sign` or `verify` each):
//!
//! ```text
//! ROBUST_FUZZ_MUTANTS=20000 ROBUST_FUZZ_SEED=$RANDOM \
//!     cargo test --release --workspace --test fuzz_loaders -- --nocapture
//! ```
//!
//! Mutation is blind to structure except where a checksum or encoding would stop every
//! mutant at the door: PNG chunk CRCs are recomputed, IDX files are also mutated inside a
//! (stored) gzip stream, and PEM keys also as their DER. Most ONNX mutants end at the
//! protobuf decoder; a protobuf-aware mutator would reach the graph checks more often.
//!
//! `ROBUST_FUZZ_THREADS` sets how many file types run at once (default: the number of
//! CPUs), `ROBUST_FUZZ_ONLY=onnx,npy-images` restricts the run to some types, and
//! `ROBUST_FUZZ_VERBOSE=1` prints each mutant before it is loaded (to find the input that
//! aborted the process, which no test can catch).
//!
//! # Regressions
//!
//! Every input that once crashed a loader is kept under `tests/fuzz_regressions/`, named
//! `<type>__s<seed>__<what>.<ext>` (the type and seed slot as in this file), and the
//! `fuzz_regressions_stay_fixed` test loads each one again. To keep a new crasher, copy it
//! from `target/tmp/fuzz-failures/` into that folder.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use robust_data::{DataSpec, Dataset};
use robust_integrity::sign::{parse_private_key, parse_public_key, verify_signature};
use robust_integrity::{manifest_for, sign_manifest, verify, SignatureFile};
use robust_models::{Model, ModelSpec};
use robust_monitor::{detect_drift, DriftOptions, FeatureTable};
use robust_report::{
    evaluate_gate, read_history, render_html, render_junit, render_markdown, HtmlOptions, MinRule,
    RunResults, Thresholds,
};

/// The real `robust.toml` parser of the binary (private to it), compiled into this test.
#[allow(dead_code)]
#[path = "../src/config.rs"]
mod config;

/// Longest one mutant may take to load before it counts as a hang.
const MUTANT_TIMEOUT: Duration = Duration::from_secs(20);

/// Mutants per file type unless `ROBUST_FUZZ_MUTANTS` says otherwise.
const DEFAULT_MUTANTS: usize = 500;

/// The seed unless `ROBUST_FUZZ_SEED` says otherwise (fixed, so CI is repeatable).
const DEFAULT_SEED: u64 = 0x5eed_f022;

/// Largest peak resident set the whole test may reach.
const PEAK_RSS_LIMIT_KB: u64 = 1 << 20;

/// Failures of one file type listed in full; the rest are counted.
const FAILURES_SHOWN: usize = 10;

// ---------------------------------------------------------------------------------------
// A small deterministic PRNG (splitmix64): no dependency, same mutants on every machine.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A position in a buffer of `len > 0` bytes, biased towards the head and the tail,
    /// where headers, lengths and (in ONNX) the graph's inputs and outputs live.
    fn position(&mut self, len: usize) -> usize {
        let edge = len.min(1024);
        match self.below(3) {
            0 => self.below(edge),
            1 => len - 1 - self.below(edge),
            _ => self.below(len),
        }
    }
}

/// The seed of one mutant: a hash of the campaign seed, the file type, the seed file and
/// the mutant's number (FNV-1a, then splitmix64's mixer through [`Rng`]).
fn mutant_seed(seed: u64, kind: &str, seed_file: usize, index: usize) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in kind.bytes().chain((seed_file as u64).to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = Rng::new(h ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.next()
}

// ---------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_BYTES: [u8; 10] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x20, 0x0a, 0x30, 0x39];

const INTERESTING_WORDS: [u64; 17] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// What a number in a text file (or a header inside a binary one) is replaced with.
const NUMBERS: [&str; 40] = [
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "255",
    "256",
    "65535",
    "65536",
    "100000",
    "100000000",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "1099511627776",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e308",
    "-1e308",
    "1e309",
    "1e-320",
    "3.4e38",
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "0.5",
    "-0.5",
    "1.5",
    "0x10",
    "",
];

/// Stray syntax inserted into text files.
const SYNTAX: [&[u8]; 20] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b"\"",
    b"'",
    b",",
    b":",
    b"=",
    b"#",
    b"\n",
    b"\r\n",
    b"\\",
    b"\0",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"-----",
    b"\xc3\xa9",
];

/// What a quoted string's contents are replaced with.
fn string_replacement(rng: &mut Rng) -> Vec<u8> {
    match rng.below(7) {
        0 => Vec::new(),
        1 => vec![b'a'; 5000],
        2 => b"../../nonexistent".to_vec(),
        3 => b"\\u0000".to_vec(),
        4 => "\u{e9}\u{202e}".as_bytes().to_vec(),
        5 => b"*".to_vec(),
        _ => b"0".to_vec(),
    }
}

/// The spans of ASCII numbers (`-12`, `0.5`, `1e-3`) in `d`.
fn number_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let starts = d[i].is_ascii_digit()
            && (i == 0 || !(d[i - 1].is_ascii_alphanumeric() || d[i - 1] == b'.'));
        if !starts {
            i += 1;
            continue;
        }
        let start = if i > 0 && d[i - 1] == b'-' { i - 1 } else { i };
        let mut j = i;
        while j < d.len() && (d[j].is_ascii_digit() || d[j] == b'.' || d[j] == b'_') {
            j += 1;
        }
        if j < d.len() && (d[j] == b'e' || d[j] == b'E') {
            let mut k = j + 1;
            if k < d.len() && (d[k] == b'-' || d[k] == b'+') {
                k += 1;
            }
            if k < d.len() && d[k].is_ascii_digit() {
                j = k;
                while j < d.len() && d[j].is_ascii_digit() {
                    j += 1;
                }
            }
        }
        spans.push((start, j));
        i = j;
    }
    spans
}

/// The contents of double-quoted strings in `d` (no escapes: good enough to find them).
fn string_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut open = None;
    for (i, &b) in d.iter().enumerate() {
        if b == b'\n' {
            open = None;
        } else if b == b'"' {
            match open.take() {
                None => open = Some(i + 1),
                Some(s) => spans.push((s, i)),
            }
        }
    }
    spans
}

/// The byte ranges of the lines of `d`, each with its newline.
fn line_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, &b) in d.iter().enumerate() {
        if b == b'\n' {
            spans.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < d.len() {
        spans.push((start, d.len()));
    }
    spans
}

/// Applies one to four random mutations to `seed`; returns the mutant and what was done.
fn mutate(seed: &[u8], text: bool, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut d = seed.to_vec();
    let rounds = if rng.below(2) == 0 {
        1
    } else {
        2 + rng.below(3)
    };
    let mut done = Vec::new();
    for _ in 0..rounds {
        done.push(mutate_once(&mut d, text, rng));
    }
    (d, done.join(", "))
}

fn mutate_once(d: &mut Vec<u8>, text: bool, rng: &mut Rng) -> String {
    // Text files get token-level mutations more often; binary files also get them, for the
    // numbers in their headers (.npy shapes, safetensors offsets).
    let op = if text {
        rng.below(14)
    } else {
        [0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7][rng.below(11)]
    };
    if d.is_empty() {
        let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
        d.extend(&bytes);
        return format!("random {} bytes into an empty file", bytes.len());
    }
    let len = d.len();
    match op {
        0 => {
            let flips = 1 + rng.below(4);
            let at = rng.position(len);
            for _ in 0..flips {
                let p = (at + rng.below(8)).min(len - 1);
                d[p] ^= 1 << rng.below(8);
            }
            format!("{flips} bit flips at {at}")
        }
        1 => {
            let at = rng.position(len);
            let v = *rng.pick(&INTERESTING_BYTES);
            d[at] = v;
            format!("byte {at} = {v:#04x}")
        }
        2 => {
            let at = rng.position(len);
            let v = *rng.pick(&INTERESTING_WORDS);
            let width = *rng.pick(&[2usize, 4, 8]);
            let be = rng.below(2) == 0;
            let bytes = if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let bytes = if be {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            let end = (at + width).min(len);
            d[at..end].copy_from_slice(&bytes[..end - at]);
            format!(
                "{width}-byte {} word {v:#x} at {at}",
                if be { "big-endian" } else { "little-endian" }
            )
        }
        3 => {
            let keep = if rng.below(2) == 0 {
                len - 1 - rng.below(len.min(64))
            } else {
                rng.below(len)
            };
            d.truncate(keep);
            format!("truncated to {keep} bytes")
        }
        4 => {
            let from = rng.position(len);
            let n = 1 + rng.below((len - from).min(4096));
            let at = rng.below(len + 1);
            let slice = d[from..from + n].to_vec();
            d.splice(at..at, slice);
            format!("{n} bytes from {from} duplicated at {at}")
        }
        5 => {
            let at = rng.position(len);
            let n = 1 + rng.below(32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            d.splice(at..at, bytes);
            format!("{n} random bytes inserted at {at}")
        }
        6 => {
            let from = rng.position(len);
            let n = 1 + rng.below((len - from).min(256));
            d.drain(from..from + n);
            format!("{n} bytes deleted at {from}")
        }
        7..=9 => {
            let spans = number_spans(d);
            if spans.is_empty() {
                return mutate_once(d, false, rng);
            }
            let (s, e) = *rng.pick(&spans);
            let v = *rng.pick(&NUMBERS);
            let old = String::from_utf8_lossy(&d[s..e]).into_owned();
            d.splice(s..e, v.bytes());
            format!("number {old:?} at {s} replaced with {v:?}")
        }
        10 => {
            let lines = line_spans(d);
            let (s, e) = *rng.pick(&lines);
            if rng.below(2) == 0 {
                d.drain(s..e);
                format!("line at {s} deleted")
            } else {
                let line = d[s..e].to_vec();
                let times = 1 + rng.below(3);
                for _ in 0..times {
                    d.splice(e..e, line.iter().copied());
                }
                format!("line at {s} repeated {times} times")
            }
        }
        11 => {
            let spans = string_spans(d);
            if spans.is_empty() {
                return mutate_once(d, false, rng);
            }
            let (s, e) = *rng.pick(&spans);
            let v = string_replacement(rng);
            let n = v.len();
            d.splice(s..e, v);
            format!("string at {s} replaced with {n} bytes")
        }
        _ => {
            let at = rng.position(len);
            let v = *rng.pick(&SYNTAX);
            d.splice(at..at, v.iter().copied());
            format!("{:?} inserted at {at}", String::from_utf8_lossy(v))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Catching panics quietly.

thread_local! {
    /// Set on the threads that load mutants: their panics are recorded, not printed.
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    /// The last panic of this thread, as the panic hook saw it (message and location).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that is quiet on the mutant-loading threads and on unnamed
/// threads (thread pools working for them), and prints as usual elsewhere, so an assertion
/// of the test itself still shows its message.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let quiet = IN_FUZZ.with(Cell::get) || std::thread::current().name().is_none();
            if quiet {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

// ---------------------------------------------------------------------------------------
// File types.

/// A loader: `Ok` when the file was accepted, `Err(message)` with the message the user
/// sees when it was refused. Panics are failures.
type Loader = Arc<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// One seed file: where its mutants are written, what is mutated, and how a mutant is
/// finished into a file.
struct Seed {
    slot: PathBuf,
    /// What the mutations apply to: the file, or its payload when `wrap` encodes one.
    bytes: Vec<u8>,
    wrap: Wrap,
}

/// How a mutated payload becomes a file. Formats with checksums or an outer encoding get
/// them made valid again (most of the time), so that mutants reach the parser behind them.
#[derive(Clone, Copy)]
enum Wrap {
    /// The mutant is the file.
    None,
    /// PNG: every chunk's CRC is recomputed (three mutants in four).
    PngCrc,
    /// The payload is gzipped (as stored deflate blocks); one mutant in four is mutated
    /// again afterwards.
    Gzip,
    /// The payload is DER, written as PEM with this label; one mutant in four is mutated
    /// again afterwards, as text.
    Pem(&'static str),
}

/// One file type: its seeds, in a folder of their own with the files they need beside
/// them, and how robust loads it.
struct Target {
    name: &'static str,
    text: bool,
    /// Holds every file of the case; a message naming a path under it names the case's file.
    dir: PathBuf,
    seeds: Vec<Seed>,
    load: Loader,
}

/// Shared state: the temporary folder, the device, the files made by running the binary.
struct Ctx {
    root: PathBuf,
    repo: PathBuf,
    device: burn::tensor::Device,
    results: PathBuf,
    history: PathBuf,
    private_key: PathBuf,
    public_key: PathBuf,
    signed_model: PathBuf,
    signature: PathBuf,
    signed_dir: PathBuf,
    dir_signature: PathBuf,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_robust")
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) {
    let path = path.as_ref();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// An `.npy` file: a version 1.0 header for `descr` and `shape`, then `data`.
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

/// The data of a version 1.0 `.npy` file (after its header).
fn npy_data(bytes: &[u8]) -> &[u8] {
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    &bytes[10 + header_len..]
}

/// The first `n` images and labels of the bundled MNIST demo, as `.npy` files in `dir`.
fn write_demo_slice(ctx_repo: &Path, dir: &Path, n: usize) {
    let demo = ctx_repo.join("datasets/mnist-demo");
    let images = read(demo.join("images.npy"));
    let labels = read(demo.join("labels.npy"));
    write(
        dir.join("images.npy"),
        npy(
            "|u1",
            &format!("{n}, 28, 28"),
            &npy_data(&images)[..n * 784],
        ),
    );
    write(
        dir.join("labels.npy"),
        npy("<i8", &format!("{n},"), &npy_data(&labels)[..n * 8]),
    );
}

/// Runs `robust` with `args` in `cwd`; `Ok` on exit 0, `Err(stderr)` on exit 1 or 2.
/// A panic, a death by signal, another exit code or a run longer than the timeout panics
/// (and so counts as a crash of the mutant).
fn run_robust(cwd: &Path, args: &[OsString]) -> Result<(), String> {
    let stderr_path = cwd.join(".robust-stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("robust starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > MUTANT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("robust {args:?} ran longer than {MUTANT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let text = String::from_utf8_lossy(&read(&stderr_path)).into_owned();
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        panic!("robust {args:?} panicked: {text}");
    }
    match status.code() {
        // Exit 1 with nothing on stderr is a finding reported on stdout (drift, a gate).
        Some(0) => Ok(()),
        Some(1) if text.trim().is_empty() => Ok(()),
        Some(1 | 2) => Err(text.trim_end().to_string()),
        Some(c) => panic!("robust {args:?} exited with {c}: {text}"),
        None => panic!("robust {args:?} was killed by a signal ({status}): {text}"),
    }
}

fn args<const N: usize>(items: [&dyn AsRef<std::ffi::OsStr>; N]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn model_load(device: &burn::tensor::Device, spec: &ModelSpec) -> Result<Model, String> {
    Model::load(spec, device).map_err(|e| e.to_string())
}

/// Opens a data set and reads every batch, as `eval` does.
fn read_data(
    spec: &DataSpec,
    shape: [usize; 3],
    bounds: [f32; 2],
    limit: Option<usize>,
) -> Result<(), String> {
    let data = Dataset::open(spec, shape, bounds, limit).map_err(|e| e.to_string())?;
    for batch in data.batches(8) {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn mnist_data(spec: &DataSpec) -> Result<(), String> {
    read_data(spec, [1, 28, 28], [0.0, 1.0], None)
}

impl Ctx {
    /// Makes the shared files: runs `robust eval` twice (results and a two-run history),
    /// `robust keygen` and `robust sign` (a model file and a model folder).
    fn new(root: PathBuf) -> Ctx {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)
            .expect("the CPU device")
            .device;
        let made = root.join("made");
        std::fs::create_dir_all(&made).unwrap();
        let history = made.join("history.jsonl");
        for seed in ["0", "1"] {
            let out = made.join(format!("eval-{seed}"));
            let config = repo.join("robust.toml");
            run_robust(
                &made,
                &args([
                    &"eval",
                    &"--config",
                    &config,
                    &"--limit",
                    &"20",
                    &"--attack",
                    &"fgsm,pgd",
                    &"--eps",
                    &"0,0.05,0.1",
                    &"--seed",
                    &seed,
                    &"--device",
                    &"cpu",
                    &"--quiet",
                    &"--min-robust",
                    &"FGSM Linf@0.1=0",
                    &"--out",
                    &out,
                    &"--history",
                    &history,
                ]),
            )
            .expect("robust eval makes the seed results");
        }
        run_robust(&made, &args([&"keygen", &"--out-dir", &"keys"])).expect("robust keygen");
        let signed_model = made.join("signed/model.onnx");
        write(&signed_model, read(repo.join("models/mlp/model.onnx")));
        let signature = made.join("model.onnx.sig.json");
        run_robust(
            &made,
            &args([
                &"sign",
                &signed_model,
                &"--key",
                &"keys/robust.key",
                &"--out",
                &signature,
            ]),
        )
        .expect("robust sign (file)");
        let signed_dir = made.join("signed-dir");
        for f in ["model.safetensors", "arch.json"] {
            write(signed_dir.join(f), read(repo.join("models/cnn-bn").join(f)));
        }
        let dir_signature = made.join("signed-dir.sig.json");
        run_robust(
            &made,
            &args([
                &"sign",
                &signed_dir,
                &"--key",
                &"keys/robust.key",
                &"--out",
                &dir_signature,
            ]),
        )
        .expect("robust sign (folder)");
        Ctx {
            results: made.join("eval-0/results.json"),
            history,
            private_key: made.join("keys/robust.key"),
            public_key: made.join("keys/robust.pub"),
            signed_model,
            signature,
            signed_dir,
            dir_signature,
            root,
            repo,
            device,
        }
    }

    /// A folder for one file type.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// `bytes` copied to `slot` and kept as the seed.
fn seed_at(slot: PathBuf, bytes: Vec<u8>) -> Seed {
    seed_wrapped(slot, bytes, Wrap::None)
}

/// A seed whose mutants are `payload`'s, finished by `wrap`; the file at `slot` is the
/// unmutated payload, wrapped.
fn seed_wrapped(slot: PathBuf, payload: Vec<u8>, wrap: Wrap) -> Seed {
    let seed = Seed {
        slot,
        bytes: payload,
        wrap,
    };
    write(&seed.slot, seed.file());
    seed
}

impl Seed {
    /// The unmutated file.
    fn file(&self) -> Vec<u8> {
        match self.wrap {
            Wrap::None | Wrap::PngCrc => self.bytes.clone(),
            Wrap::Gzip => gzip_stored(&self.bytes),
            Wrap::Pem(label) => pem(label, &self.bytes),
        }
    }

    /// A mutant of this seed and what was done to it.
    fn mutant(&self, text: bool, rng: &mut Rng) -> (Vec<u8>, String) {
        let text = text && !matches!(self.wrap, Wrap::Pem(_));
        let (payload, mut what) = mutate(&self.bytes, text, rng);
        let again = |file: Vec<u8>, text: bool, rng: &mut Rng, what: &mut String| {
            if rng.below(4) == 0 {
                let (file, more) = mutate(&file, text, rng);
                what.push_str(&format!("; then {more}"));
                file
            } else {
                file
            }
        };
        let file = match self.wrap {
            Wrap::None => payload,
            Wrap::PngCrc => {
                if rng.below(4) == 0 {
                    payload
                } else {
                    what.push_str("; CRCs fixed");
                    fix_png_crcs(payload)
                }
            }
            Wrap::Gzip => again(gzip_stored(&payload), false, rng, &mut what),
            Wrap::Pem(label) => again(pem(label, &payload), true, rng, &mut what),
        };
        (file, what)
    }
}

/// CRC-32 (IEEE), as PNG and gzip use it.
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

/// Recomputes the CRC of every PNG chunk that lies whole inside the file.
fn fix_png_crcs(mut png: Vec<u8>) -> Vec<u8> {
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= png.len()) else {
            break;
        };
        let crc = crc32(&png[at + 4..end]);
        png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
    png
}

/// `data` as a gzip file of stored (uncompressed) deflate blocks, with a valid CRC.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        gz.extend([1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        gz.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        gz.extend(len.to_le_bytes());
        gz.extend((!len).to_le_bytes());
        gz.extend(block);
    }
    gz.extend(crc32(data).to_le_bytes());
    gz.extend((data.len() as u32).to_le_bytes());
    gz
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `der` as a PEM block with `label`.
fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text.into_bytes()
}

/// The DER inside a PEM file.
fn pem_der(text: &[u8]) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut der = Vec::new();
    let body = String::from_utf8_lossy(text);
    for c in body
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.bytes())
    {
        let Some(v) = BASE64.iter().position(|&b| b == c) else {
            continue;
        };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            der.push((bits >> n) as u8);
        }
    }
    der
}

/// Every file type and how robust loads it.
fn targets(ctx: &Ctx) -> Vec<Target> {
    let mut t = Vec::new();
    model_targets(ctx, &mut t);
    data_targets(ctx, &mut t);
    config_targets(ctx, &mut t);
    report_targets(ctx, &mut t);
    integrity_targets(ctx, &mut t);
    t
}

fn model_targets(ctx: &Ctx, t: &mut Vec<Target>) {
    let dir = ctx.dir("onnx");
    let device = ctx.device.clone();
    t.push(Target {
        name: "onnx",
        text: false,
        seeds: ["mlp", "cnn-bn"]
            .iter()
            .map(|m| {
                seed_at(
                    dir.join(format!("{m}.onnx")),
                    read(ctx.repo.join("models").join(m).join("model.onnx")),
                )
            })
            .collect(),
        dir,
        load: Arc::new(move |p| model_load(&device, &ModelSpec::new(p)).map(drop)),
    });

    // safetensors + arch.json: the same folders, once mutating the weights and once the
    // architecture.
    for (name, file, text) in [
        ("safetensors", "model.safetensors", false),
        ("arch-json", "arch.json", true),
    ] {
        let dir = ctx.dir(name);
        let mut seeds = Vec::new();
        for m in ["mlp", "cnn-bn"] {
            let sub = dir.join(m);
            for f in ["model.safetensors", "arch.json"] {
                write(sub.join(f), read(ctx.repo.join("models").join(m).join(f)));
            }
            seeds.push(seed_at(sub.join(file), read(sub.join(file))));
        }
        let device = ctx.device.clone();
        t.push(Target {
            name,
            text,
            dir,
            seeds,
            load: Arc::new(move |p| {
                let weights = p.with_file_name("model.safetensors");
                model_load(&device, &ModelSpec::new(weights)).map(drop)
            }),
        });
    }
}

fn data_targets(ctx: &Ctx, t: &mut Vec<Target>) {
    // .npy images and labels (20 samples of the demo set, no classes file: classes come
    // from the labels), and a classes file beside them.
    for (name, file, text) in [
        ("npy-images", "images.npy", false),
        ("npy-labels", "labels.npy", false),
        ("classes-txt", "classes.txt", true),
    ] {
        let dir = ctx.dir(name);
        write_demo_slice(&ctx.repo, &dir, 20);
        let with_classes = file == "classes.txt";
        if with_classes {
            write(
                dir.join(file),
                read(ctx.repo.join("datasets/mnist-demo/classes.txt")),
            );
        }
        let seeds = vec![seed_at(dir.join(file), read(dir.join(file)))];
        t.push(Target {
            name,
            text,
            dir,
            seeds,
            load: Arc::new(move |p| {
                let mut spec = DataSpec::new(p.with_file_name("images.npy"));
                if with_classes {
                    spec.classes = Some(p.to_path_buf());
                }
                mnist_data(&spec)
            }),
        });
    }

    // IDX: the first 10 images and labels of the plain files; the same gzipped (the
    // mutation applied inside the gzip stream); and the repository's gzipped files as they
    // are (the mutation applied to the compressed bytes).
    let dir = ctx.dir("idx");
    let idx = ctx.repo.join("datasets/mnist-idx");
    let mut images = read(idx.join("images-idx3-ubyte"));
    images.truncate(16 + 10 * 784);
    images[4..8].copy_from_slice(&10u32.to_be_bytes());
    let mut labels = read(idx.join("labels-idx1-ubyte"));
    labels.truncate(8 + 10);
    labels[4..8].copy_from_slice(&10u32.to_be_bytes());
    let (images_gz, labels_gz) = (
        read(idx.join("images-idx3-ubyte.gz")),
        read(idx.join("labels-idx1-ubyte.gz")),
    );
    let (image_file, label_file) = ("images-idx3-ubyte", "labels-idx1-ubyte");
    let (image_gz, label_gz) = ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz");
    let mut seeds = Vec::new();
    for (sub, file, bytes, wrap, partner, partner_bytes) in [
        (
            "plain-images",
            image_file,
            &images,
            Wrap::None,
            label_file,
            labels.clone(),
        ),
        (
            "plain-labels",
            label_file,
            &labels,
            Wrap::None,
            image_file,
            images.clone(),
        ),
        (
            "gz-images",
            image_gz,
            &images,
            Wrap::Gzip,
            label_gz,
            gzip_stored(&labels),
        ),
        (
            "gz-labels",
            label_gz,
            &labels,
            Wrap::Gzip,
            image_gz,
            gzip_stored(&images),
        ),
        (
            "raw-gz-images",
            image_gz,
            &images_gz,
            Wrap::None,
            label_gz,
            labels_gz.clone(),
        ),
        (
            "raw-gz-labels",
            label_gz,
            &labels_gz,
            Wrap::None,
            image_gz,
            images_gz.clone(),
        ),
    ] {
        write(dir.join(sub).join(partner), partner_bytes);
        seeds.push(seed_wrapped(dir.join(sub).join(file), bytes.clone(), wrap));
    }
    t.push(Target {
        name: "idx",
        text: false,
        dir,
        seeds,
        load: Arc::new(|p| {
            let folder = p.parent().unwrap();
            let gz = p.extension().is_some_and(|e| e == "gz");
            let images = if gz {
                "images-idx3-ubyte.gz"
            } else {
                "images-idx3-ubyte"
            };
            mnist_data(&DataSpec::new(folder.join(images)))
        }),
    });

    // PNG and JPEG files in an image folder (one file mutated, the others intact).
    let dir = ctx.dir("png");
    let folder = ctx.repo.join("datasets/mnist-folder");
    let seeds = [("0", "2023.png"), ("1", "2010.png"), ("3", "2008.png")]
        .iter()
        .map(|(class, file)| {
            seed_wrapped(
                dir.join("data").join(class).join(file),
                read(folder.join(class).join(file)),
                Wrap::PngCrc,
            )
        })
        .collect();
    t.push(Target {
        name: "png",
        text: false,
        dir: dir.clone(),
        seeds,
        load: Arc::new(move |_| mnist_data(&DataSpec::new(dir.join("data")))),
    });
    let dir = ctx.dir("jpeg");
    let jpegs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds");
    let seeds = [("gray", "digit3-gray.jpg"), ("rgb", "digit3-rgb.jpg")]
        .iter()
        .map(|(class, file)| {
            seed_at(
                dir.join("data").join(class).join(file),
                read(jpegs.join(file)),
            )
        })
        .collect();
    t.push(Target {
        name: "jpeg",
        text: false,
        dir: dir.clone(),
        seeds,
        load: Arc::new(move |_| mnist_data(&DataSpec::new(dir.join("data")))),
    });

    // CSV: the repository's mnist-folder.csv with the images it names copied beside it
    // (its paths are relative to its folder, so they point at the copies).
    let dir = ctx.dir("csv");
    let csv = read(ctx.repo.join("datasets/mnist-folder.csv"));
    for line in String::from_utf8_lossy(&csv).lines().skip(1) {
        let path = line.split(',').next().unwrap();
        write(dir.join(path), read(ctx.repo.join("datasets").join(path)));
    }
    let seeds = vec![seed_at(dir.join("data.csv"), csv)];
    t.push(Target {
        name: "csv",
        text: true,
        dir,
        seeds,
        load: Arc::new(|p| mnist_data(&DataSpec::new(p))),
    });
}

/// The `robust.toml` example of `src/config.rs`, with paths to the case's copies and a gate
/// rule every run can meet.
const EXAMPLE_TOML: &str = r#"[model]
path = "model.onnx"
bounds = [0.0, 1.0]
mean = [0.1307]
std = [0.3081]

[data]
path = "images.npy"
classes = "classes.txt"

[data.limits]
max_classes = 100_000
max_image_pixels = 67_108_864

[eval]
attacks = ["fgsm", "pgd"]
eps = [0.0, 0.01, 0.03, 0.1]
batch_size = 250
seed = 0

[[attack]]
name = "pgd"
steps = 20
restarts = 2

[gate]
max_drop = 0.5
baseline = "baseline.json"
min = [{ attack = "*", eps = 0.1, min_robust_accuracy = 0.0 }]
"#;

fn config_targets(ctx: &Ctx, t: &mut Vec<Target>) {
    let dir = ctx.dir("robust-toml");
    write_demo_slice(&ctx.repo, &dir, 20);
    write(
        dir.join("classes.txt"),
        read(ctx.repo.join("datasets/mnist-demo/classes.txt")),
    );
    write(
        dir.join("model.onnx"),
        read(ctx.repo.join("models/mnist-cnn/model.onnx")),
    );
    // The example's gate compares with a baseline of the same sweep (the gate refuses an
    // unlike one): the binary makes it from the example without its [gate] section.
    let no_gate = dir.join("no-gate.toml");
    write(&no_gate, EXAMPLE_TOML.split("[gate]").next().unwrap());
    run_robust(
        &dir,
        &args([
            &"eval",
            &"--config",
            &no_gate,
            &"--device",
            &"cpu",
            &"--quiet",
            &"--out",
            &dir.join("baseline-out"),
            &"--save-baseline",
            &dir.join("baseline.json"),
        ]),
    )
    .expect("the example's baseline run");
    let repo_toml = String::from_utf8(read(ctx.repo.join("robust.toml")))
        .unwrap()
        .replace("models/mnist-cnn/model.onnx", "model.onnx")
        .replace("datasets/mnist-demo/images.npy", "images.npy")
        .replace("datasets/mnist-demo/classes.txt", "classes.txt");
    let seeds = vec![
        seed_at(dir.join("robust.toml"), repo_toml.into_bytes()),
        seed_at(dir.join("example.toml"), EXAMPLE_TOML.as_bytes().to_vec()),
    ];
    let device = ctx.device.clone();
    let out = dir.join("out");
    let case = dir.clone();
    t.push(Target {
        name: "robust-toml",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            // In-process: the binary's own parser, then the model and data it names.
            let cfg = config::Config::read(p)?;
            for spec in &cfg.attack {
                let _ = robust_attacks::AttackRegistry::builtin().build(spec);
            }
            if let Some(m) = &cfg.model {
                if let Ok(model) = model_load(&device, m) {
                    let info = model.info();
                    if let (Some(d), &[c, h, w]) = (&cfg.data, info.input_shape.as_slice()) {
                        let _ = read_data(d, [c, h, w], info.bounds, cfg.eval.limit.or(Some(20)));
                    }
                }
            }
            // The binary, whose message is the one checked: every setting from the file,
            // except the device and the output folder, and the attacks when the file asks
            // for more gradient steps than a quick run (then a single FGSM), so that a
            // mutated step count does not make a legitimately long run.
            let mut a = args([
                &"eval",
                &"--config",
                &p,
                &"--device",
                &"cpu",
                &"--quiet",
                &"--out",
                &out,
            ]);
            if attack_steps(&cfg) > 400 {
                a.extend(args([&"--attack", &"fgsm"]));
            }
            run_robust(&case, &a)
        }),
    });
}

/// Roughly how many gradient steps per sample a configuration's sweep takes.
fn attack_steps(cfg: &config::Config) -> usize {
    let run_eps = cfg.eval.eps.as_ref().map_or(4, Vec::len);
    if cfg.attack.is_empty() {
        let names = cfg.eval.attacks.as_ref().map_or(2, Vec::len);
        return names.saturating_mul(10).saturating_mul(run_eps);
    }
    cfg.attack
        .iter()
        .map(|a| {
            a.steps
                .unwrap_or(10)
                .saturating_mul(a.restarts.unwrap_or(1))
                .saturating_mul(a.eps.as_ref().map_or(run_eps, Vec::len))
        })
        .fold(0usize, usize::saturating_add)
}

fn report_targets(ctx: &Ctx, t: &mut Vec<Target>) {
    let seed_run = Arc::new(RunResults::read(&ctx.results).expect("seed results"));

    let dir = ctx.dir("results-json");
    let seeds = vec![seed_at(dir.join("results.json"), read(&ctx.results))];
    let out = dir.join("out");
    let case = dir.clone();
    let baseline = Arc::clone(&seed_run);
    t.push(Target {
        name: "results-json",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            let run = RunResults::read(p).map_err(|e| e.to_string())?;
            render_markdown(&run);
            render_junit(&run);
            let _ = render_html(&run, &HtmlOptions::default());
            let thresholds = Thresholds {
                min: vec![MinRule {
                    attack: "*".into(),
                    eps: None,
                    min_robust_accuracy: 0.5,
                }],
                max_drop: Some(0.02),
            };
            evaluate_gate(&run, Some(("baseline.json", &baseline)), &thresholds);
            evaluate_gate(&baseline, Some(("mutant.json", &run)), &thresholds);
            run_robust(
                &case,
                &args([&"report", &p, &"--format", &"html,md,junit", &"--out", &out]),
            )
        }),
    });

    let dir = ctx.dir("history-jsonl");
    let seeds = vec![seed_at(dir.join("history.jsonl"), read(&ctx.history))];
    write(dir.join("results.json"), read(&ctx.results));
    let case = dir.clone();
    t.push(Target {
        name: "history-jsonl",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            let entries = read_history(p).map_err(|e| e.to_string())?;
            let _ = render_html(
                &seed_run,
                &HtmlOptions {
                    history: Some(&entries),
                    ..HtmlOptions::default()
                },
            );
            let html = case.join("report.html");
            let _ = std::fs::remove_file(&html);
            run_robust(
                &case,
                &args([
                    &"report",
                    &"results.json",
                    &"--history",
                    &p,
                    &"--format",
                    &"html",
                    &"--out",
                    &html,
                ]),
            )
        }),
    });
}

fn integrity_targets(ctx: &Ctx, t: &mut Vec<Target>) {
    // Signature files, checked against the model and the folder they were made for.
    let dir = ctx.dir("signature");
    let seeds = vec![
        seed_at(dir.join("model.onnx.sig.json"), read(&ctx.signature)),
        seed_at(dir.join("signed-dir.sig.json"), read(&ctx.dir_signature)),
    ];
    let (model, folder, public) = (
        ctx.signed_model.clone(),
        ctx.signed_dir.clone(),
        ctx.public_key.clone(),
    );
    let case = dir.clone();
    t.push(Target {
        name: "signature",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            let target = if p.to_string_lossy().contains("signed-dir") {
                &folder
            } else {
                &model
            };
            let sig = SignatureFile::read(p).map_err(|e| e.to_string())?;
            let pem = String::from_utf8(read(&public)).unwrap();
            let _ = verify(target, &sig, &pem);
            run_robust(
                &case,
                &args([&"verify", target, &"--signature", &p, &"--pubkey", &public]),
            )
        }),
    });

    // PEM keys: the private key signs, the public key verifies.
    let dir = ctx.dir("pem-private");
    let key = read(&ctx.private_key);
    let seeds = vec![
        seed_at(dir.join("robust.key"), key.clone()),
        seed_wrapped(dir.join("der.key"), pem_der(&key), Wrap::Pem("PRIVATE KEY")),
    ];
    let (model, case) = (ctx.signed_model.clone(), dir.clone());
    t.push(Target {
        name: "pem-private",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            if let Ok(text) = std::fs::read_to_string(p) {
                if parse_private_key(&text).is_ok() {
                    let manifest = manifest_for(&model).unwrap();
                    sign_manifest(&manifest, &text).unwrap();
                }
            }
            let out = case.join("out.sig.json");
            let _ = std::fs::remove_file(&out);
            run_robust(
                &case,
                &args([&"sign", &model, &"--key", &p, &"--out", &out]),
            )
        }),
    });
    let dir = ctx.dir("pem-public");
    let key = read(&ctx.public_key);
    let seeds = vec![
        seed_at(dir.join("robust.pub"), key.clone()),
        seed_wrapped(dir.join("der.pub"), pem_der(&key), Wrap::Pem("PUBLIC KEY")),
    ];
    let (model, signature, case) = (ctx.signed_model.clone(), ctx.signature.clone(), dir.clone());
    t.push(Target {
        name: "pem-public",
        text: true,
        dir,
        seeds,
        load: Arc::new(move |p| {
            if let Ok(text) = std::fs::read_to_string(p) {
                let _ = parse_public_key(&text);
                let sig = SignatureFile::read(&signature).unwrap();
                let _ = verify_signature(&sig, &text);
            }
            run_robust(
                &case,
                &args([
                    &"verify",
                    &model,
                    &"--signature",
                    &signature,
                    &"--pubkey",
                    &p,
                ]),
            )
        }),
    });

    // Feature tables for drift: the KS fixtures' reference features as .npy, and their
    // first 60 rows as CSV; compared with the current features.
    let dir = ctx.dir("features");
    let ks = ctx.repo.join("datasets/ks");
    let reference = FeatureTable::read(ks.join("ref_features.npy")).unwrap();
    let mut csv = (0..reference.n_features())
        .map(|j| format!("f{j}"))
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for i in 0..60 {
        let row: Vec<String> = reference.row(i).iter().map(|v| format!("{v}")).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    write(dir.join("current.npy"), read(ks.join("cur_features.npy")));
    let current_csv = dir.join("current.csv");
    let mut current = String::from(csv.lines().next().unwrap());
    current.push('\n');
    let cur = FeatureTable::read(dir.join("current.npy")).unwrap();
    for i in 0..60 {
        let row: Vec<String> = cur.row(i).iter().map(|v| format!("{v}")).collect();
        current.push_str(&row.join(","));
        current.push('\n');
    }
    write(&current_csv, current);
    for (name, file, bytes, text) in [
        (
            "features-npy",
            "reference.npy",
            read(ks.join("ref_features.npy")),
            false,
        ),
        ("features-csv", "reference.csv", csv.into_bytes(), true),
    ] {
        let seeds = vec![seed_at(dir.join(name).join(file), bytes)];
        let case = dir.join(name);
        let current = if text {
            current_csv.clone()
        } else {
            dir.join("current.npy")
        };
        t.push(Target {
            name,
            text,
            dir: case.clone(),
            seeds,
            load: Arc::new(move |p| {
                let table = FeatureTable::read(p).map_err(|e| e.to_string())?;
                let cur = FeatureTable::read(&current).unwrap();
                let _ = detect_drift(&table, &cur, &DriftOptions::default());
                run_robust(
                    &case,
                    &args([
                        &"drift",
                        &"--reference",
                        &p,
                        &"--current",
                        &current,
                        &"--input",
                        &"features",
                    ]),
                )
            }),
        });
    }
}

// ---------------------------------------------------------------------------------------
// Running a campaign.

/// How one mutant fared.
enum Outcome {
    Accepted,
    Refused(String),
    Panicked(String),
    Hung,
}

/// Loads `path` with `load` on a worker thread (8 MiB of stack, as a main thread has),
/// catching a panic; gives up after [`MUTANT_TIMEOUT`].
fn run_one(name: &str, load: &Loader, path: &Path) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let (load, path) = (Arc::clone(load), path.to_path_buf());
    std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(8 << 20)
        .spawn(move || {
            IN_FUZZ.with(|f| f.set(true));
            let result = panic::catch_unwind(AssertUnwindSafe(|| load(&path)));
            let outcome = match result {
                Ok(Ok(())) => Outcome::Accepted,
                Ok(Err(message)) => Outcome::Refused(message),
                Err(payload) => {
                    let seen = LAST_PANIC.with(|p| p.borrow_mut().take());
                    Outcome::Panicked(seen.unwrap_or_else(|| panic_text(&*payload)))
                }
            };
            let _ = tx.send(outcome);
        })
        .expect("a worker thread");
    match rx.recv_timeout(MUTANT_TIMEOUT) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::Hung,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Outcome::Panicked("the worker thread ended without a result".into())
        }
    }
}

/// Why a refusal's message is not acceptable, if it is not: it must be one non-empty line
/// (after an optional `error: ` prefix) naming a file of the case.
fn message_problem(message: &str, dir: &Path, slot: &Path) -> Option<&'static str> {
    let line = message.trim();
    if line.is_empty() {
        return Some("empty error message");
    }
    if line.lines().count() != 1 {
        return Some("error message of several lines");
    }
    let file_name = slot.file_name().unwrap().to_string_lossy();
    let names_file = line.contains(&*dir.to_string_lossy()) || line.contains(&*file_name);
    if !names_file {
        return Some("error message names no file of the case");
    }
    None
}

/// The tally of one file type.
#[derive(Default)]
struct Tally {
    mutants: usize,
    accepted: usize,
    refused: usize,
    failures: Vec<String>,
    seconds: f64,
}

fn settings() -> (usize, u64, usize) {
    let env_num = |name: &str| {
        std::env::var(name).ok().map(|v| {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
    };
    let mutants = env_num("ROBUST_FUZZ_MUTANTS").map_or(DEFAULT_MUTANTS, |n| n as usize);
    let seed = env_num("ROBUST_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let threads = env_num("ROBUST_FUZZ_THREADS").map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |n| (n as usize).max(1),
    );
    (mutants, seed, threads)
}

/// Where failing inputs are saved for triage.
fn failures_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures")
}

fn fuzz_target(target: &Target, mutants: usize, seed: u64, verbose: bool) -> Tally {
    let start = Instant::now();
    let mut tally = Tally::default();
    for i in 0..mutants {
        let s = i % target.seeds.len();
        let seed_file = &target.seeds[s];
        let mut rng = Rng::new(mutant_seed(seed, target.name, s, i));
        let (bytes, what) = seed_file.mutant(target.text, &mut rng);
        write(&seed_file.slot, &bytes);
        if verbose {
            let _ = writeln!(std::io::stderr(), "fuzz {} s{s} #{i}: {what}", target.name);
        }
        tally.mutants += 1;
        let outcome = run_one(target.name, &target.load, &seed_file.slot);
        if !matches!(outcome, Outcome::Hung) {
            // The other seeds of a type are read with it (images of one folder): keep them whole.
            write(&seed_file.slot, seed_file.file());
        }
        if verbose {
            let said = match &outcome {
                Outcome::Accepted => "accepted".to_string(),
                Outcome::Refused(m) => format!("refused: {m}"),
                Outcome::Panicked(m) => format!("PANIC: {m}"),
                Outcome::Hung => "HANG".to_string(),
            };
            let _ = writeln!(std::io::stderr(), "  -> {said}");
        }
        let failure = match outcome {
            Outcome::Accepted => {
                tally.accepted += 1;
                None
            }
            Outcome::Refused(message) => {
                tally.refused += 1;
                message_problem(&message, &target.dir, &seed_file.slot)
                    .map(|problem| format!("{problem}: {message:?}"))
            }
            Outcome::Panicked(message) => Some(format!("PANIC: {message}")),
            Outcome::Hung => Some(format!("HANG: still loading after {MUTANT_TIMEOUT:?}")),
        };
        if let Some(failure) = failure {
            let ext = seed_file
                .slot
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            let saved = failures_dir().join(format!("{}__s{s}__m{i}{ext}", target.name));
            write(&saved, &bytes);
            tally.failures.push(format!(
                "{} seed {s} mutant {i} ({what}; saved as {}): {failure}",
                target.name,
                saved.display()
            ));
            if failure.starts_with("HANG") {
                // The worker still holds the file: stop this type here.
                break;
            }
        }
    }
    tally.seconds = start.elapsed().as_secs_f64();
    tally
}

/// The peak resident set of this process in KiB (Linux), if known.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The shared files and file types, made once for both tests of this file, with one lock
/// per file type, held while a test writes into its slots.
struct Setup {
    _tmp: tempfile::TempDir,
    targets: Vec<Target>,
    locks: Vec<Mutex<()>>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(tmp.path().to_path_buf());
        let targets = targets(&ctx);
        let locks = targets.iter().map(|_| Mutex::new(())).collect();
        Setup {
            _tmp: tmp,
            targets,
            locks,
        }
    })
}

#[test]
fn fuzz_loaders() {
    install_quiet_hook();
    let (mutants, seed, threads) = settings();
    let only: Option<Vec<String>> = std::env::var("ROBUST_FUZZ_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let verbose = std::env::var_os("ROBUST_FUZZ_VERBOSE").is_some();
    let _ = std::fs::remove_dir_all(failures_dir());
    let start = Instant::now();
    let setup = setup();
    let chosen: Vec<(&Target, &Mutex<()>)> = setup
        .targets
        .iter()
        .zip(&setup.locks)
        .filter(|(t, _)| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name)))
        .collect();
    assert!(!chosen.is_empty(), "ROBUST_FUZZ_ONLY names no file type");
    println!(
        "fuzzing {} file types, {mutants} mutants each, seed {seed:#x}, {threads} at once \
         (ROBUST_FUZZ_MUTANTS, ROBUST_FUZZ_SEED, ROBUST_FUZZ_THREADS)",
        chosen.len()
    );

    // Every seed must load: a mutant of a seed that fails anyway tests nothing. The lock
    // keeps `fuzz_regressions_stay_fixed`, which shares the slots, from writing meanwhile.
    for (target, lock) in &chosen {
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        for seed in &target.seeds {
            match run_one(target.name, &target.load, &seed.slot) {
                Outcome::Accepted => {}
                Outcome::Refused(m) | Outcome::Panicked(m) => {
                    panic!(
                        "{}: the seed {} fails: {m}",
                        target.name,
                        seed.slot.display()
                    )
                }
                Outcome::Hung => panic!("{}: the seed {} hangs", target.name, seed.slot.display()),
            }
        }
    }

    // Each lane takes the next file type.
    let next = AtomicUsize::new(0);
    let tallies: Mutex<BTreeMap<usize, Tally>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(chosen.len()) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some((target, lock)) = chosen.get(k) else {
                    break;
                };
                let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                let tally = fuzz_target(target, mutants, seed, verbose);
                tallies.lock().unwrap().insert(k, tally);
            });
        }
    });
    let tallies = tallies.into_inner().unwrap();

    let mut total = 0;
    let mut failures = Vec::new();
    println!(
        "{:<15} {:>8} {:>9} {:>8} {:>9} {:>8}",
        "file type", "mutants", "accepted", "refused", "failures", "seconds"
    );
    for (k, tally) in &tallies {
        println!(
            "{:<15} {:>8} {:>9} {:>8} {:>9} {:>8.1}",
            chosen[*k].0.name,
            tally.mutants,
            tally.accepted,
            tally.refused,
            tally.failures.len(),
            tally.seconds
        );
        total += tally.mutants;
        let shown = tally.failures.len().min(FAILURES_SHOWN);
        failures.extend(tally.failures[..shown].iter().cloned());
        if tally.failures.len() > shown {
            failures.push(format!(
                "{}: {} more failures",
                chosen[*k].0.name,
                tally.failures.len() - shown
            ));
        }
    }
    let peak = peak_rss_kb();
    println!(
        "{total} mutants in {:.1} s, seed {seed:#x}; peak resident set {}",
        start.elapsed().as_secs_f64(),
        peak.map_or("unknown".into(), |kb| format!("{} MiB", kb / 1024))
    );
    // Printed as well as asserted: a model load swaps the process's panic hook while it
    // probes, so a concurrent load can leave a silent hook behind.
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} failing mutants (seed {seed:#x}; inputs saved under {}):\n{}",
        failures.len(),
        failures_dir().display(),
        failures.join("\n")
    );
    if let Some(kb) = peak {
        assert!(
            kb < PEAK_RSS_LIMIT_KB,
            "peak resident set {} MiB is over the 1 GiB limit",
            kb / 1024
        );
    }
}

/// Every input kept under `tests/fuzz_regressions/` (`<type>__s<seed>__<what>.<ext>`) is
/// loaded again into its file type's slot and must neither panic nor hang, and give an
/// acceptable message if refused.
#[test]
fn fuzz_regressions_stay_fixed() {
    install_quiet_hook();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("__"))
        .collect();
    cases.sort();
    let setup = setup();
    let mut failures = Vec::new();
    for case in &cases {
        let file = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut parts = file.split("__");
        let (kind, slot) = (parts.next().unwrap(), parts.next().unwrap_or("s0"));
        let k = setup
            .targets
            .iter()
            .position(|t| t.name == kind)
            .unwrap_or_else(|| panic!("{file}: no file type {kind:?}"));
        let target = &setup.targets[k];
        let s: usize = slot
            .strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{file}: {slot:?} is not a seed slot like s0"));
        let seed_file = &target.seeds[s];
        let _guard = setup.locks[k].lock().unwrap_or_else(|e| e.into_inner());
        write(&seed_file.slot, read(case));
        let failure = match run_one(target.name, &target.load, &seed_file.slot) {
            Outcome::Accepted => None,
            Outcome::Refused(m) => {
                message_problem(&m, &target.dir, &seed_file.slot).map(|p| format!("{p}: {m:?}"))
            }
            Outcome::Panicked(m) => Some(format!("PANIC: {m}")),
            Outcome::Hung => Some("HANG".into()),
        };
        write(&seed_file.slot, seed_file.file());
        if let Some(f) = failure {
            failures.push(format!("{file}: {f}"));
        }
    }
    println!("{} regression inputs loaded again", cases.len());
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
