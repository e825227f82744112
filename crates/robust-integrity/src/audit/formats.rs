//! The non-pickle formats of `robust audit`: NumPy `.npy`, safetensors, ONNX, and Keras
//! model configurations (`.keras` `config.json`, the `model_config` of an HDF5 `.h5`).

use std::path::Path;

use serde_json::Value;

use super::{Finding, Severity};

fn finding(severity: Severity, kind: &str, location: &str, message: String) -> Finding {
    Finding {
        severity,
        kind: kind.to_string(),
        location: location.to_string(),
        message,
    }
}

// ---------------------------------------------------------------------------------------
// NumPy

/// The `descr` and header length of a `.npy` file, or a reason it is not one.
pub fn npy_header(data: &[u8]) -> Result<(String, usize), String> {
    if !data.starts_with(b"\x93NUMPY") || data.len() < 10 {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start): (usize, usize) = match data[6] {
        1 => (usize::from(u16::from_le_bytes([data[8], data[9]])), 10),
        2 | 3 if data.len() >= 12 => (
            u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize,
            12,
        ),
        v => return Err(format!("unknown .npy version {v}")),
    };
    let header = data
        .get(start..start.saturating_add(len))
        .ok_or("the .npy header runs past the end of the file")?;
    let text = String::from_utf8_lossy(header);
    let at = text
        .find("'descr'")
        .ok_or("the .npy header has no 'descr'")?;
    let rest = &text[at + 7..];
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    // A simple descr is a quoted string; a structured one a list up to "], 'fortran_order'".
    let descr = if let Some(stripped) = rest.strip_prefix('\'') {
        stripped.split('\'').next().unwrap_or_default().to_string()
    } else {
        rest.split("'fortran_order'")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    Ok((descr, start + len))
}

/// Findings of a `.npy` file (or an `.npz` member): an object array holds a pickle, which
/// is walked.
pub fn npy(data: &[u8], location: &str) -> Vec<Finding> {
    let (descr, data_at) = match npy_header(data) {
        Ok(h) => h,
        Err(reason) => {
            return vec![finding(Severity::Medium, "malformed-npy", location, reason)];
        }
    };
    let object = descr == "|O" || descr == "O" || descr.contains("'O'") || descr.contains("'|O'");
    if !object {
        return Vec::new();
    }
    let pickle = &data[data_at.min(data.len())..];
    let (_, mut found) = super::pickle::findings(pickle, &format!("{location} (object data)"));
    found.push(finding(
        Severity::Low,
        "object-array",
        location,
        "object array: its data is a pickle, loaded only with numpy.load(allow_pickle=True)"
            .to_string(),
    ));
    found
}

// ---------------------------------------------------------------------------------------
// safetensors

/// Findings of a safetensors file: a header that parses, offsets inside the data, sizes
/// that fit the dtype and shape, no overlaps and no holes (the rules of the reference
/// implementation's validation).
pub fn safetensors(data: &[u8], location: &str) -> Vec<Finding> {
    let bad = |m: String| {
        vec![finding(
            Severity::High,
            "malformed-safetensors",
            location,
            m,
        )]
    };
    let Some(n) = data.get(..8) else {
        return bad("shorter than the 8-byte header length".into());
    };
    let n = u64::from_le_bytes(n.try_into().unwrap_or([0; 8]));
    if n > (data.len() as u64).saturating_sub(8) || n > 100 << 20 {
        return bad(format!(
            "the header length {n} exceeds the file ({} bytes) or 100 MiB",
            data.len()
        ));
    }
    let header = &data[8..8 + n as usize];
    let json: Value = match serde_json::from_slice(header) {
        Ok(v) => v,
        Err(e) => return bad(format!("the header is not JSON ({e})")),
    };
    let Some(map) = json.as_object() else {
        return bad("the header is not a JSON object".into());
    };
    let data_len = (data.len() - 8 - n as usize) as u64;
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let mut out = Vec::new();
    for (name, t) in map {
        if name == "__metadata__" {
            if !t
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string))
            {
                out.push(finding(
                    Severity::Medium,
                    "malformed-safetensors",
                    location,
                    "__metadata__ is not a map of strings".into(),
                ));
            }
            continue;
        }
        let dtype = t["dtype"].as_str().unwrap_or_default();
        let size = match dtype {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
            "I16" | "U16" | "F16" | "BF16" => 2,
            "I32" | "U32" | "F32" => 4,
            "I64" | "U64" | "F64" => 8,
            other => {
                out.push(finding(
                    Severity::High,
                    "malformed-safetensors",
                    location,
                    format!("tensor {name:?} has unknown dtype {other:?}"),
                ));
                continue;
            }
        };
        let shape: Option<Vec<u64>> = t["shape"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let offsets: Option<Vec<u64>> = t["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (Some(shape), Some([begin, end])) = (
            shape,
            offsets.as_deref().and_then(|o| match o {
                [b, e] => Some([*b, *e]),
                _ => None,
            }),
        ) else {
            out.push(finding(
                Severity::High,
                "malformed-safetensors",
                location,
                format!("tensor {name:?} lacks a valid shape or data_offsets"),
            ));
            continue;
        };
        let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes = elements.and_then(|e| e.checked_mul(size));
        if end < begin || end > data_len {
            out.push(finding(
                Severity::High,
                "malformed-safetensors",
                location,
                format!(
                    "tensor {name:?} has offsets {begin}..{end} outside the {data_len}-byte data"
                ),
            ));
            continue;
        }
        if bytes != Some(end - begin) {
            out.push(finding(
                Severity::High,
                "malformed-safetensors",
                location,
                format!(
                    "tensor {name:?}: shape {shape:?} of {dtype} needs {} bytes, its offsets span {}",
                    bytes.map_or("more than 2^64".to_string(), |b| b.to_string()),
                    end - begin
                ),
            ));
        }
        spans.push((begin, end, name.clone()));
    }
    spans.sort();
    let mut covered = 0u64;
    for (begin, end, name) in &spans {
        if *begin < covered {
            out.push(finding(
                Severity::High,
                "malformed-safetensors",
                location,
                format!("tensor {name:?} overlaps the tensor before it (bytes {begin}..{end})"),
            ));
        } else if *begin > covered {
            out.push(finding(
                Severity::Medium,
                "malformed-safetensors",
                location,
                format!("{} unused bytes before tensor {name:?}", begin - covered),
            ));
        }
        covered = covered.max(*end);
    }
    if out.is_empty() && covered != data_len {
        out.push(finding(
            Severity::Medium,
            "malformed-safetensors",
            location,
            format!("{} bytes after the last tensor", data_len - covered),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// ONNX (a protobuf walker over the few fields that matter)

/// One protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The fields of one message, or `None` when it is not valid protobuf.
fn fields(b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut at)?),
            1 => {
                at = at.checked_add(8).filter(|&a| a <= b.len())?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(varint(b, &mut at)?).ok()?;
                let end = at.checked_add(n).filter(|&e| e <= b.len())?;
                let s = &b[at..end];
                at = end;
                Field::Bytes(s)
            }
            5 => {
                at = at.checked_add(4).filter(|&a| a <= b.len())?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((num, f));
    }
    Some(out)
}

fn text(f: &Field<'_>) -> String {
    match f {
        Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// Declared tensors larger than this are flagged (memory exhaustion at load).
const MAX_DECLARED_BYTES: u128 = 16 << 30;

/// Standard operator domains (ONNX, ONNX-ML, ONNX Runtime's contrib operators, training).
const STANDARD_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.microsoft.experimental",
];

struct OnnxCtx<'a> {
    dir: &'a Path,
    location: &'a str,
    out: Vec<Finding>,
    depth: usize,
}

/// Findings of an ONNX model: external data leaving the model's folder, operators from
/// custom domains (they need a native custom-op library), and tensors whose declared size
/// is implausible or disagrees with the data stored.
pub fn onnx(data: &[u8], model_dir: &Path, location: &str) -> Vec<Finding> {
    let mut ctx = OnnxCtx {
        dir: model_dir,
        location,
        out: Vec::new(),
        depth: 0,
    };
    let Some(model) = fields(data) else {
        return vec![finding(
            Severity::High,
            "malformed-onnx",
            location,
            "not a valid protobuf message (damaged or not ONNX)".into(),
        )];
    };
    let mut graphs = 0;
    for (num, f) in &model {
        match (num, f) {
            (7, Field::Bytes(g)) => {
                graphs += 1;
                graph(&mut ctx, g);
            }
            // opset_import { domain = 1 }
            (8, Field::Bytes(o)) => {
                let domain = fields(o)
                    .and_then(|fs| fs.iter().find(|(n, _)| *n == 1).map(|(_, f)| text(f)))
                    .unwrap_or_default();
                if !STANDARD_DOMAINS.contains(&domain.as_str()) {
                    ctx.out.push(finding(
                        Severity::Medium,
                        "custom-domain",
                        location,
                        format!(
                            "imports operator set {domain:?}: its operators come from a custom \
                             operator library (native code) that the runtime must load"
                        ),
                    ));
                }
            }
            // functions (FunctionProto) hold nodes too.
            (25, Field::Bytes(fun)) => {
                if let Some(fs) = fields(fun) {
                    for (n, f) in &fs {
                        if let (4, Field::Bytes(node_bytes)) = (n, f) {
                            node(&mut ctx, node_bytes);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if graphs == 0 {
        ctx.out.push(finding(
            Severity::Medium,
            "malformed-onnx",
            location,
            "holds no graph (not an ONNX model?)".into(),
        ));
    }
    dedupe(ctx.out)
}

fn dedupe(mut v: Vec<Finding>) -> Vec<Finding> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|f| seen.insert((f.kind.clone(), f.message.clone())));
    v
}

fn graph(ctx: &mut OnnxCtx<'_>, g: &[u8]) {
    ctx.depth += 1;
    if ctx.depth > 64 {
        ctx.out.push(finding(
            Severity::High,
            "malformed-onnx",
            ctx.location,
            "subgraphs nested more than 64 deep".into(),
        ));
        return;
    }
    for (num, f) in fields(g).unwrap_or_default() {
        match (num, f) {
            (1, Field::Bytes(n)) => node(ctx, n),
            (5, Field::Bytes(t)) => tensor(ctx, t),
            _ => {}
        }
    }
    ctx.depth -= 1;
}

fn node(ctx: &mut OnnxCtx<'_>, n: &[u8]) {
    let fs = fields(n).unwrap_or_default();
    let op = fs
        .iter()
        .find(|(k, _)| *k == 4)
        .map(|(_, f)| text(f))
        .unwrap_or_default();
    let domain = fs
        .iter()
        .find(|(k, _)| *k == 7)
        .map(|(_, f)| text(f))
        .unwrap_or_default();
    if !STANDARD_DOMAINS.contains(&domain.as_str()) {
        ctx.out.push(finding(
            Severity::Medium,
            "custom-domain",
            ctx.location,
            format!(
                "operator {op} from custom domain {domain:?}: it runs native code from a \
                 custom operator library"
            ),
        ));
    }
    for (k, f) in &fs {
        // attribute { t = 5, g = 6, tensors = 10, graphs = 11 }
        if let (5, Field::Bytes(a)) = (k, f) {
            for (an, af) in fields(a).unwrap_or_default() {
                match (an, af) {
                    (5 | 10, Field::Bytes(t)) => tensor(ctx, t),
                    (6 | 11, Field::Bytes(g)) => graph(ctx, g),
                    _ => {}
                }
            }
        }
    }
}

fn elem_size(data_type: u64) -> u128 {
    match data_type {
        2 | 3 | 9 | 17 | 18 | 19 | 20 => 1,
        5 | 4 | 10 | 16 => 2,
        1 | 6 | 12 => 4,
        7 | 11 | 13 | 14 => 8,
        15 => 16,
        _ => 1,
    }
}

fn tensor(ctx: &mut OnnxCtx<'_>, t: &[u8]) {
    let fs = fields(t).unwrap_or_default();
    let mut dims: Vec<i64> = Vec::new();
    let mut data_type = 0;
    let mut name = String::new();
    let mut raw: Option<usize> = None;
    let mut external: Vec<(String, String)> = Vec::new();
    for (k, f) in &fs {
        match (k, f) {
            (1, Field::Varint(d)) => dims.push(*d as i64),
            (1, Field::Bytes(packed)) => {
                let mut at = 0;
                while at < packed.len() {
                    match varint(packed, &mut at) {
                        Some(d) => dims.push(d as i64),
                        None => break,
                    }
                }
            }
            (2, Field::Varint(d)) => data_type = *d,
            (8, f) => name = text(f),
            (9, Field::Bytes(r)) => raw = Some(r.len()),
            (13, Field::Bytes(e)) => {
                let kv = fields(e).unwrap_or_default();
                let get = |n: u64| kv.iter().find(|(k, _)| *k == n).map(|(_, f)| text(f));
                external.push((get(1).unwrap_or_default(), get(2).unwrap_or_default()));
            }
            _ => {}
        }
    }
    if dims.iter().any(|&d| d < 0) {
        ctx.out.push(finding(
            Severity::High,
            "oversized-tensor",
            ctx.location,
            format!("tensor {name:?} declares a negative dimension {dims:?}"),
        ));
        return;
    }
    let elements = dims
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128));
    let bytes = elements.and_then(|e| e.checked_mul(elem_size(data_type)));
    if bytes.is_none_or(|b| b > MAX_DECLARED_BYTES) {
        ctx.out.push(finding(
            Severity::High,
            "oversized-tensor",
            ctx.location,
            format!(
                "tensor {name:?} declares shape {dims:?} ({} bytes): loading it would try to \
                 allocate that much",
                bytes.map_or("over 2^128".to_string(), |b| b.to_string())
            ),
        ));
    } else if let (Some(raw), Some(b)) = (raw, bytes) {
        if raw as u128 != b {
            ctx.out.push(finding(
                Severity::High,
                "oversized-tensor",
                ctx.location,
                format!(
                    "tensor {name:?} declares shape {dims:?} ({b} bytes) but stores {raw} bytes"
                ),
            ));
        }
    }
    if let Some((_, loc)) = external.iter().find(|(k, _)| k == "location") {
        external_location(ctx, &name, loc, &external, bytes);
    }
}

fn external_location(
    ctx: &mut OnnxCtx<'_>,
    name: &str,
    loc: &str,
    kv: &[(String, String)],
    bytes: Option<u128>,
) {
    let p = Path::new(loc);
    let escapes = p.is_absolute()
        || p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::Prefix(_)
            )
        });
    let target = ctx.dir.join(p);
    let outside = escapes
        || match (target.canonicalize(), ctx.dir.canonicalize()) {
            (Ok(t), Ok(d)) => !t.starts_with(d),
            _ => false,
        };
    if outside {
        ctx.out.push(finding(
            Severity::Critical,
            "external-data-escape",
            ctx.location,
            format!(
                "tensor {name:?} reads its data from {loc:?}, outside the model's folder: \
                 loading the model reads that file"
            ),
        ));
        return;
    }
    let Ok(meta) = std::fs::metadata(&target) else {
        ctx.out.push(finding(
            Severity::Medium,
            "external-data-missing",
            ctx.location,
            format!("tensor {name:?} names external data {loc:?}, which does not exist"),
        ));
        return;
    };
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.parse::<u128>().ok())
    };
    let offset = get("offset").unwrap_or(0);
    let length = get("length").or(bytes).unwrap_or(0);
    if offset + length > u128::from(meta.len()) {
        ctx.out.push(finding(
            Severity::High,
            "external-data-range",
            ctx.location,
            format!(
                "tensor {name:?} reads bytes {offset}..{} of {loc:?}, which has {}",
                offset + length,
                meta.len()
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Keras

/// Findings of a Keras model configuration (the JSON of `config.json` in a `.keras` file or
/// the `model_config` attribute of an `.h5` file): `Lambda` layers, whose function is
/// marshalled Python bytecode (Keras 2) or a Python function reference, and custom objects
/// from modules outside Keras.
pub fn keras_config(config: &Value, location: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    visit(config, location, &mut out, 0);
    dedupe(out)
}

fn visit(v: &Value, location: &str, out: &mut Vec<Finding>, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Value::Object(map) => {
            let class = map.get("class_name").and_then(Value::as_str);
            let layer_name = map
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            if class == Some("Lambda") {
                let function = map.get("config").and_then(|c| c.get("function"));
                let how = match function {
                    Some(Value::Array(_)) | Some(Value::String(_)) => {
                        "its function is marshalled Python bytecode, run when the model loads"
                    }
                    Some(Value::Object(f))
                        if f.get("class_name").and_then(Value::as_str) == Some("__lambda__") =>
                    {
                        "its function is marshalled Python bytecode (Keras 3 refuses it under \
                         safe_mode=True, the default; safe_mode=False runs it)"
                    }
                    _ => "it calls a Python function when the model runs",
                };
                out.push(finding(
                    Severity::Critical,
                    "keras-lambda",
                    location,
                    format!("Lambda layer {layer_name:?}: {how}"),
                ));
            }
            if let (Some(class), Some(module)) = (class, map.get("module").and_then(Value::as_str))
            {
                let standard = module == "builtins"
                    || module.starts_with("keras")
                    || module.starts_with("tensorflow")
                    || module.starts_with("tf_keras");
                if !standard {
                    out.push(finding(
                        Severity::Medium,
                        "keras-custom-object",
                        location,
                        format!(
                            "custom object {class} from module {module:?}: loading the model \
                             imports that module's code"
                        ),
                    ));
                }
            }
            if let Some(reg) = map.get("registered_name").and_then(Value::as_str) {
                if reg.contains('>') {
                    out.push(finding(
                        Severity::Medium,
                        "keras-custom-object",
                        location,
                        format!("custom registered object {reg:?} (code registered by a package)"),
                    ));
                }
            }
            for child in map.values() {
                visit(child, location, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for child in a {
                visit(child, location, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The Keras model configurations stored in an HDF5 file's bytes. `h5py` stores the
/// `model_config` (and `training_config`) string attributes uncompressed and contiguous, so
/// every JSON object that starts with `{"class_name"` or `{"module"` is parsed where it
/// lies; no HDF5 library is needed for that.
pub fn h5_configs(data: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut at = 0;
    let finder = |from: usize| {
        let rest = data.get(from..)?;
        [&b"{\"class_name\""[..], &b"{\"module\""[..]]
            .iter()
            .filter_map(|pat| rest.windows(pat.len()).position(|w| w == *pat))
            .min()
            .map(|p| from + p)
    };
    while let Some(start) = finder(at) {
        let mut stream = serde_json::Deserializer::from_slice(&data[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                at = start + stream.byte_offset();
                out.push(v);
            }
            _ => at = start + 1,
        }
    }
    out
}
