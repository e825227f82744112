//! A pickle opcode walker: lists every import a pickle makes when loaded, without running it.
//!
//! Unpickling runs code through imports: `GLOBAL`/`INST` (module and name inline) and
//! `STACK_GLOBAL` (module and name taken from the stack, possibly through the memo), after
//! which `REDUCE`, `NEWOBJ`, `OBJ` or `BUILD` call what was imported. The walker follows the
//! stack and memo only as far as strings go, which is enough to resolve every
//! `STACK_GLOBAL` a real pickler writes; one whose operands are not plain strings is
//! reported as unresolved (an obfuscation sign). Every protocol (0-5) is read; consecutive
//! pickles in one file (PyTorch's legacy format) are walked one after another.

use super::{Finding, Severity};

/// An import a pickle makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Module, e.g. `os`.
    pub module: String,
    /// Name within it, e.g. `system`.
    pub name: String,
    /// Byte offset of the opcode.
    pub offset: usize,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every import, in order.
    pub imports: Vec<Import>,
    /// Structural problems (unknown opcode, truncation, unresolved STACK_GLOBAL, ...).
    pub problems: Vec<(usize, String)>,
    /// Bytes consumed by the pickle(s).
    pub consumed: usize,
    /// How many pickles were walked.
    pub pickles: usize,
}

#[derive(Clone)]
enum Val {
    Str(String),
    Mark,
    Other,
}

const MAX_STACK: usize = 1 << 20;

/// Walks the pickle(s) at the start of `data`. After a pickle's `STOP`, another pickle is
/// walked when the next byte is a `PROTO` opcode (as in PyTorch's legacy format).
pub fn walk(data: &[u8]) -> Walk {
    let mut w = Walk::default();
    let mut at = 0usize;
    loop {
        let problems_before = w.problems.len();
        match walk_one(data, at, &mut w) {
            Some(end) => {
                w.pickles += 1;
                at = end;
                w.consumed = end;
                if data.get(at) != Some(&0x80) {
                    break;
                }
            }
            None => {
                // After the first pickle, bytes that only look like another one (PyTorch's
                // legacy format stores raw tensor data there) are trailing data, not a
                // damaged pickle; imports read before the failure are kept.
                if w.pickles > 0 {
                    w.problems.truncate(problems_before);
                }
                break;
            }
        }
    }
    w
}

/// Walks one pickle from `start`; returns the offset after its STOP, or `None` after a
/// structural problem (recorded in `w`).
fn walk_one(data: &[u8], start: usize, w: &mut Walk) -> Option<usize> {
    let mut stack: Vec<Val> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Val> = std::collections::HashMap::new();
    let mut at = start;
    macro_rules! bail {
        ($off:expr, $($t:tt)*) => {{
            w.problems.push(($off, format!($($t)*)));
            return None;
        }};
    }
    loop {
        let op_at = at;
        let Some(&op) = data.get(at) else {
            bail!(op_at, "truncated: no STOP opcode at the end");
        };
        at += 1;
        // Fixed-size argument.
        let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
            let s = data.get(*at..at.checked_add(n)?)?;
            *at += n;
            Some(s)
        };
        let line = |at: &mut usize| -> Option<String> {
            let rest = data.get(*at..)?;
            let end = rest.iter().position(|&b| b == b'\n')?;
            *at += end + 1;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        let pop = |stack: &mut Vec<Val>| stack.pop().unwrap_or(Val::Other);
        let pop_mark = |stack: &mut Vec<Val>| {
            while let Some(v) = stack.pop() {
                if matches!(v, Val::Mark) {
                    break;
                }
            }
        };
        macro_rules! arg {
            ($n:expr) => {
                match take(&mut at, $n) {
                    Some(s) => s,
                    None => bail!(op_at, "truncated argument of opcode 0x{op:02x}"),
                }
            };
        }
        macro_rules! len_arg {
            ($n:expr) => {{
                let b = arg!($n);
                let mut v = [0u8; 8];
                v[..$n].copy_from_slice(b);
                u64::from_le_bytes(v)
            }};
        }
        macro_rules! text_line {
            () => {
                match line(&mut at) {
                    Some(s) => s,
                    None => bail!(op_at, "truncated text argument of opcode {:?}", op as char),
                }
            };
        }
        macro_rules! bytes_of_len {
            ($len:expr) => {{
                let len = $len;
                if len > (data.len() - at) as u64 {
                    bail!(op_at, "a {len}-byte string runs past the end of the data");
                }
                arg!(len as usize)
            }};
        }
        match op {
            b'(' => stack.push(Val::Mark),
            b'.' => return Some(at),
            b'0' => {
                pop(&mut stack);
            }
            b'1' => pop_mark(&mut stack),
            b'2' => {
                let top = stack.last().cloned().unwrap_or(Val::Other);
                stack.push(top);
            }
            b'F' | b'I' | b'L' => {
                text_line!();
                stack.push(Val::Other);
            }
            b'S' => {
                let s = text_line!();
                let s = s.trim_matches(|c| c == '\'' || c == '"').to_string();
                stack.push(Val::Str(s));
            }
            b'V' => {
                let s = text_line!();
                stack.push(Val::Str(s));
            }
            b'P' => {
                text_line!();
                stack.push(Val::Other);
            }
            b'J' => {
                arg!(4);
                stack.push(Val::Other);
            }
            b'K' => {
                arg!(1);
                stack.push(Val::Other);
            }
            b'M' => {
                arg!(2);
                stack.push(Val::Other);
            }
            b'G' => {
                arg!(8);
                stack.push(Val::Other);
            }
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f => stack.push(Val::Other),
            0x8a => {
                let n = len_arg!(1);
                bytes_of_len!(n);
                stack.push(Val::Other);
            }
            0x8b => {
                let n = len_arg!(4);
                bytes_of_len!(n);
                stack.push(Val::Other);
            }
            b'T' | b'X' => {
                let n = len_arg!(4);
                let s = bytes_of_len!(n);
                stack.push(Val::Str(String::from_utf8_lossy(s).into_owned()));
            }
            b'U' | 0x8c => {
                let n = len_arg!(1);
                let s = bytes_of_len!(n);
                stack.push(Val::Str(String::from_utf8_lossy(s).into_owned()));
            }
            0x8d => {
                let n = len_arg!(8);
                let s = bytes_of_len!(n);
                stack.push(Val::Str(String::from_utf8_lossy(s).into_owned()));
            }
            b'B' => {
                let n = len_arg!(4);
                bytes_of_len!(n);
                stack.push(Val::Other);
            }
            b'C' => {
                let n = len_arg!(1);
                bytes_of_len!(n);
                stack.push(Val::Other);
            }
            0x8e | 0x96 => {
                let n = len_arg!(8);
                bytes_of_len!(n);
                stack.push(Val::Other);
            }
            b'Q' => {
                pop(&mut stack);
                stack.push(Val::Other);
            }
            b'R' => {
                pop(&mut stack);
                pop(&mut stack);
                stack.push(Val::Other);
            }
            b'b' | b'a' => {
                pop(&mut stack);
            }
            b's' => {
                pop(&mut stack);
                pop(&mut stack);
            }
            b'e' | b'u' | 0x90 => pop_mark(&mut stack),
            b't' | b'l' | b'd' | 0x91 => {
                pop_mark(&mut stack);
                stack.push(Val::Other);
            }
            0x85 => {
                pop(&mut stack);
                stack.push(Val::Other);
            }
            0x86 => {
                pop(&mut stack);
                pop(&mut stack);
                stack.push(Val::Other);
            }
            0x87 => {
                pop(&mut stack);
                pop(&mut stack);
                pop(&mut stack);
                stack.push(Val::Other);
            }
            b'c' | b'i' => {
                let module = text_line!();
                let name = text_line!();
                w.imports.push(Import {
                    module,
                    name,
                    offset: op_at,
                });
                if op == b'i' {
                    pop_mark(&mut stack);
                }
                stack.push(Val::Other);
            }
            0x93 => {
                let name = pop(&mut stack);
                let module = pop(&mut stack);
                match (module, name) {
                    (Val::Str(module), Val::Str(name)) => w.imports.push(Import {
                        module,
                        name,
                        offset: op_at,
                    }),
                    _ => w.problems.push((
                        op_at,
                        "STACK_GLOBAL whose module and name are not plain strings (obfuscated \
                         import)"
                            .to_string(),
                    )),
                }
                stack.push(Val::Other);
            }
            b'o' => {
                pop_mark(&mut stack);
                stack.push(Val::Other);
            }
            0x81 => {
                pop(&mut stack);
                pop(&mut stack);
                stack.push(Val::Other);
            }
            0x92 => {
                pop(&mut stack);
                pop(&mut stack);
                pop(&mut stack);
                stack.push(Val::Other);
            }
            0x82..=0x84 => {
                let n = [1usize, 2, 4][usize::from(op - 0x82)];
                let code = len_arg!(n);
                w.problems.push((
                    op_at,
                    format!(
                        "extension-registry import (code {code}): the object loaded depends \
                         on the loading process's copyreg table"
                    ),
                ));
                stack.push(Val::Other);
            }
            b'g' => {
                let idx = text_line!().trim().parse::<u64>().unwrap_or(u64::MAX);
                stack.push(memo.get(&idx).cloned().unwrap_or(Val::Other));
            }
            b'h' => {
                let idx = len_arg!(1);
                stack.push(memo.get(&idx).cloned().unwrap_or(Val::Other));
            }
            b'j' => {
                let idx = len_arg!(4);
                stack.push(memo.get(&idx).cloned().unwrap_or(Val::Other));
            }
            b'p' => {
                let idx = text_line!().trim().parse::<u64>().unwrap_or(u64::MAX);
                memo.insert(idx, stack.last().cloned().unwrap_or(Val::Other));
            }
            b'q' => {
                let idx = len_arg!(1);
                memo.insert(idx, stack.last().cloned().unwrap_or(Val::Other));
            }
            b'r' => {
                let idx = len_arg!(4);
                memo.insert(idx, stack.last().cloned().unwrap_or(Val::Other));
            }
            0x94 => {
                let idx = memo.len() as u64;
                memo.insert(idx, stack.last().cloned().unwrap_or(Val::Other));
            }
            0x80 => {
                let proto = arg!(1)[0];
                if proto > 5 {
                    bail!(op_at, "unknown pickle protocol {proto}");
                }
            }
            0x95 => {
                arg!(8);
            }
            0x97 => stack.push(Val::Other),
            0x98 => {}
            other => bail!(
                op_at,
                "unknown opcode 0x{other:02x}: not a pickle, or a damaged one"
            ),
        }
        if stack.len() > MAX_STACK || memo.len() > MAX_STACK {
            bail!(
                op_at,
                "more than {MAX_STACK} stack or memo entries: refusing to go on"
            );
        }
    }
}

/// Imports that load data, not code: the classes and rebuild functions that PyTorch,
/// NumPy and plain containers pickle.
const SAFE: &[(&str, &[&str])] = &[
    (
        "collections",
        &["OrderedDict", "defaultdict", "deque", "Counter"],
    ),
    (
        "torch._utils",
        &[
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_nested_tensor",
        ],
    ),
    (
        "torch",
        &[
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "ComplexFloatStorage",
            "ComplexDoubleStorage",
            "Size",
            "device",
            "float16",
            "float32",
            "float64",
            "bfloat16",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "bool",
            "complex64",
            "complex128",
            "strided",
            "sparse_coo",
            "contiguous_format",
            "channels_last",
            "preserve_format",
        ],
    ),
    ("torch.storage", &["UntypedStorage", "TypedStorage"]),
    ("numpy.core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy._core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy", &["ndarray", "dtype"]),
    (
        "builtins",
        &[
            "set",
            "frozenset",
            "slice",
            "range",
            "complex",
            "bytearray",
            "bytes",
            "dict",
            "list",
            "tuple",
            "int",
            "float",
            "str",
            "bool",
            "object",
        ],
    ),
    (
        "__builtin__",
        &[
            "set",
            "frozenset",
            "slice",
            "xrange",
            "complex",
            "bytearray",
            "dict",
            "list",
            "tuple",
            "int",
            "long",
            "float",
            "str",
            "unicode",
            "bool",
            "object",
        ],
    ),
    ("copyreg", &["_reconstructor"]),
    ("copy_reg", &["_reconstructor"]),
    ("_codecs", &["encode"]),
    (
        "datetime",
        &["datetime", "date", "time", "timedelta", "timezone"],
    ),
    ("decimal", &["Decimal"]),
    ("argparse", &["Namespace"]),
];

/// Modules whose every name runs or reaches code, the network or the file system.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "socket",
    "runpy",
    "shutil",
    "pty",
    "commands",
    "webbrowser",
    "importlib",
    "ctypes",
    "multiprocessing",
    "signal",
    "code",
    "codeop",
    "pdb",
    "bdb",
    "timeit",
    "requests",
    "urllib",
    "urllib2",
    "http",
    "httplib",
    "ftplib",
    "smtplib",
    "telnetlib",
    "asyncio",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "marshal",
    "shelve",
    "tempfile",
    "io",
    "zipimport",
    "pip",
    "setuptools",
    "distutils",
    "types",
];

/// Names in otherwise harmless modules that run code or reach objects freely.
const DANGEROUS_NAMES: &[(&str, &[&str])] = &[
    (
        "builtins",
        &[
            "eval",
            "exec",
            "execfile",
            "compile",
            "open",
            "__import__",
            "getattr",
            "setattr",
            "delattr",
            "globals",
            "locals",
            "vars",
            "input",
            "breakpoint",
            "help",
            "exit",
            "quit",
            "memoryview",
            "super",
            "type",
        ],
    ),
    (
        "__builtin__",
        &[
            "eval",
            "exec",
            "execfile",
            "compile",
            "open",
            "file",
            "__import__",
            "getattr",
            "setattr",
            "delattr",
            "globals",
            "locals",
            "vars",
            "input",
            "raw_input",
            "apply",
            "reload",
        ],
    ),
    ("operator", &["attrgetter", "methodcaller", "itemgetter"]),
    ("functools", &["partial", "reduce"]),
    ("numpy.testing._private.utils", &["runstring"]),
    ("torch", &["load", "hub", "compile"]),
    ("torch.serialization", &["load"]),
    ("torch.storage", &["_load_from_bytes"]),
];

/// The severity of one import: `None` when it is on the safe list.
pub fn classify(module: &str, name: &str) -> Option<Severity> {
    let top = module.split('.').next().unwrap_or(module);
    if DANGEROUS_NAMES
        .iter()
        .any(|(m, names)| *m == module && names.contains(&name))
        || DANGEROUS_MODULES.contains(&top)
    {
        return Some(Severity::Critical);
    }
    if SAFE
        .iter()
        .any(|(m, names)| *m == module && names.contains(&name))
    {
        return None;
    }
    Some(Severity::Medium)
}

/// The findings of a pickle at `location` (a file, or `archive.pt:archive/data.pkl`).
pub fn findings(data: &[u8], location: &str) -> (Walk, Vec<Finding>) {
    let w = walk(data);
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for imp in &w.imports {
        let Some(severity) = classify(&imp.module, &imp.name) else {
            continue;
        };
        if !seen.insert((imp.module.clone(), imp.name.clone())) {
            continue;
        }
        let (kind, what) = if severity == Severity::Critical {
            (
                "dangerous-import",
                "loading it imports and can call code that runs commands, reads or writes \
                 files, or opens connections",
            )
        } else {
            (
                "unknown-import",
                "not on the safe list of data-only imports: loading it runs that module's code",
            )
        };
        out.push(Finding {
            severity,
            kind: kind.to_string(),
            location: format!("{location} @ byte {}", imp.offset),
            message: format!("imports {}.{}: {what}", imp.module, imp.name),
        });
    }
    for (offset, problem) in &w.problems {
        out.push(Finding {
            severity: Severity::High,
            kind: "malformed-pickle".to_string(),
            location: format!("{location} @ byte {offset}"),
            message: format!(
                "{problem} (scanners stop here; Python's unpickler may not, and code after \
                 this point was not checked)"
            ),
        });
    }
    (w, out)
}
