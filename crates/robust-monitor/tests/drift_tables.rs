//! Feature tables (.npy and CSV) and feature-wise drift detection: formats, corrections,
//! and every kind of bad input.

use std::fs;
use std::path::{Path, PathBuf};

use robust_monitor::{
    detect_drift, ks_2samp, Correction, DriftOptions, FeatureTable, MonitorError,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "robust-monitor-drift-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a .npy file by hand (format 1.0), independently of the reader under test.
fn write_npy(path: &Path, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) {
    let shape_txt = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_txt}, }}",
        if fortran { "True" } else { "False" }
    );
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    fs::write(path, out).unwrap();
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_dtypes_orders_and_shapes() {
    let s = Scratch::new("npy");
    let values: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();

    let p = s.file("f8.npy");
    write_npy(&p, "<f8", false, &[4, 6], &le_f64(&values));
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.n_samples(), t.n_features()), (4, 6));
    assert_eq!(t.values(), &values[..]);
    assert_eq!(t.source(), Some(p.as_path()));

    let p = s.file("f4.npy");
    let v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    write_npy(&p, "<f4", false, &[4, 6], &le_f32(&v32));
    assert_eq!(FeatureTable::read(&p).unwrap().values(), &values[..]);

    // Big-endian doubles.
    let p = s.file("be.npy");
    let be: Vec<u8> = values.iter().flat_map(|x| x.to_be_bytes()).collect();
    write_npy(&p, ">f8", false, &[4, 6], &be);
    assert_eq!(FeatureTable::read(&p).unwrap().values(), &values[..]);

    // u8 images [N, C, H, W] flattened per sample in C order.
    let p = s.file("u8.npy");
    let bytes: Vec<u8> = (0..2 * 3 * 2 * 2).map(|i| i as u8).collect();
    write_npy(&p, "|u1", false, &[2, 3, 2, 2], &bytes);
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.n_samples(), t.n_features()), (2, 12));
    assert_eq!(t.row(1)[0], 12.0);

    // Fortran order: element (i, j) of a 4 × 6 matrix stored at j*4 + i.
    let p = s.file("fortran.npy");
    let mut fdata = vec![0.0; 24];
    for i in 0..4 {
        for j in 0..6 {
            fdata[j * 4 + i] = values[i * 6 + j];
        }
    }
    write_npy(&p, "<f8", true, &[4, 6], &le_f64(&fdata));
    assert_eq!(FeatureTable::read(&p).unwrap().values(), &values[..]);

    // Fortran order, 3-D.
    let p = s.file("fortran3.npy");
    let shape = [2usize, 3, 4];
    let mut f3 = vec![0.0; 24];
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                f3[i + 2 * j + 6 * k] = values[i * 12 + j * 4 + k];
            }
        }
    }
    write_npy(&p, "<f8", true, &shape, &le_f64(&f3));
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.n_samples(), t.n_features()), (2, 12));
    assert_eq!(t.values(), &values[..]);

    // 1-D: one feature. i8 integers.
    let p = s.file("i8.npy");
    let ints: Vec<u8> = [5i64, -7, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy(&p, "<i8", false, &[3], &ints);
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.n_samples(), t.n_features()), (3, 1));
    assert_eq!(t.values(), &[5.0, -7.0, 9.0]);
}

#[test]
fn bad_npy_files_are_rejected_with_their_path() {
    let s = Scratch::new("badnpy");
    let check = |name: &str, needle: &str| {
        let p = s.file(name);
        let err = FeatureTable::read(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name), "{name}: no path in {msg}");
        assert!(msg.contains(needle), "{name}: {msg:?} lacks {needle:?}");
    };
    write_npy(
        &s.file("short.npy"),
        "<f8",
        false,
        &[4, 6],
        &le_f64(&[1.0; 10]),
    );
    check("short.npy", "");
    fs::write(s.file("garbage.npy"), b"definitely not numpy").unwrap();
    check("garbage.npy", "not a .npy file");
    write_npy(&s.file("complex.npy"), "<c16", false, &[2], &[0u8; 32]);
    check("complex.npy", "unsupported dtype");
    write_npy(&s.file("bool.npy"), "|b1", false, &[2], &[0u8, 1]);
    check("bool.npy", "unsupported dtype");
    write_npy(&s.file("scalar.npy"), "<f8", false, &[], &le_f64(&[1.0]));
    check("scalar.npy", "0-d");
    check("missing.npy", "cannot read");
    fs::write(s.file("table.txt"), "a\n1\n").unwrap();
    check("table.txt", "expected a .npy or .csv file");
}

#[test]
fn csv_tables_and_their_errors() {
    let s = Scratch::new("csv");
    let p = s.file("ok.csv");
    fs::write(
        &p,
        "age, income ,score\n30,1000,0.5\n 40 ,2000.5,-1e-3\n\n50,nan,inf\n",
    )
    .unwrap();
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.n_samples(), t.n_features()), (3, 3));
    assert_eq!(t.names().unwrap(), ["age", "income", "score"]);
    assert_eq!(t.column(0), [30.0, 40.0, 50.0]);
    assert!(t.column(1)[2].is_nan());
    assert_eq!(t.column(2)[2], f64::INFINITY);

    let check = |name: &str, text: &str, needles: &[&str]| {
        let p = s.file(name);
        fs::write(&p, text).unwrap();
        let msg = FeatureTable::read(&p).unwrap_err().to_string();
        assert!(msg.contains(name), "{name}: no path in {msg}");
        for n in needles {
            assert!(msg.contains(n), "{name}: {msg:?} lacks {n:?}");
        }
    };
    check(
        "text.csv",
        "a,b\n1,2\n3,oops\n",
        &["line 3", "column \"b\"", "\"oops\""],
    );
    check(
        "ragged.csv",
        "a,b\n1,2\n3\n",
        &["line 3", "1 fields, the header has 2"],
    );
    check("empty.csv", "", &["empty header"]);
    check("blankcell.csv", "a,b\n1,\n", &["line 2", "is not a number"]);
}

fn table(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> FeatureTable {
    let v = (0..rows * cols).map(|k| f(k / cols, k % cols)).collect();
    FeatureTable::new(rows, cols, v).unwrap()
}

#[test]
fn drift_errors() {
    let s = Scratch::new("drifterr");
    let (pa, pb) = (s.file("ref.npy"), s.file("cur.npy"));
    write_npy(&pa, "<f8", false, &[3, 4], &le_f64(&[0.0; 12]));
    write_npy(&pb, "<f8", false, &[3, 5], &le_f64(&[0.0; 15]));
    let (a, b) = (
        FeatureTable::read(&pa).unwrap(),
        FeatureTable::read(&pb).unwrap(),
    );
    let err = detect_drift(&a, &b, &DriftOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MonitorError::Shape { .. }), "{msg}");
    assert!(msg.contains("ref.npy") && msg.contains("cur.npy"), "{msg}");
    assert!(msg.contains("4 features") && msg.contains("has 5"), "{msg}");

    // Empty samples.
    let empty = FeatureTable::new(0, 4, vec![]).unwrap();
    let err = detect_drift(&a, &empty, &DriftOptions::default()).unwrap_err();
    assert!(matches!(err, MonitorError::Empty { .. }), "{err}");
    let err = detect_drift(&empty, &a, &DriftOptions::default()).unwrap_err();
    assert!(err.to_string().contains("reference"), "{err}");

    // NaN, located.
    let nan = table(3, 4, |i, j| if (i, j) == (2, 1) { f64::NAN } else { 0.0 });
    let err = detect_drift(&a, &nan, &DriftOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            MonitorError::NotANumber {
                sample: 2,
                feature: 1,
                ..
            }
        ),
        "{err}"
    );

    // No features.
    let none = FeatureTable::new(3, 0, vec![]).unwrap();
    assert!(detect_drift(&none, &none, &DriftOptions::default()).is_err());

    // p_val out of range.
    for p in [0.0, 1.0, -0.1, f64::NAN] {
        let o = DriftOptions {
            p_val: p,
            ..Default::default()
        };
        let err = detect_drift(&a, &a, &o).unwrap_err();
        assert!(
            matches!(err, MonitorError::InvalidParameter { .. }),
            "{err}"
        );
    }
}

#[test]
fn corrections_decide_as_defined() {
    // Four features; feature j of the current table is shifted by shift[j]. SciPy gives
    // p ≈ 0.0297 for feature 1: above Bonferroni's 0.05/4, below BH's 0.05·3/4.
    let n = 200;
    let shift = [0.0, 0.14, 0.2, 1.0];
    let base = |i: usize, j: usize| ((i * 7919 + j * 104_729) % n) as f64 / n as f64;
    let reference = table(n, 4, base);
    let current = table(n, 4, |i, j| base((i * 31 + 3) % n, j) + shift[j]);
    let bonf = detect_drift(&reference, &current, &DriftOptions::default()).unwrap();
    let fdr = detect_drift(
        &reference,
        &current,
        &DriftOptions {
            correction: Correction::Fdr,
            ..Default::default()
        },
    )
    .unwrap();
    // Each feature's p-value is the plain two-sample test's.
    for j in 0..4 {
        let r = ks_2samp(&reference.column(j), &current.column(j)).unwrap();
        assert_eq!(bonf.features[j].p_value, r.p_value);
        assert_eq!(bonf.features[j].statistic, r.statistic);
    }
    let p: Vec<f64> = bonf.features.iter().map(|f| f.p_value).collect();
    // Bonferroni: p ≤ 0.05 / 4.
    assert_eq!(bonf.threshold, 0.0125);
    for f in &bonf.features {
        assert_eq!(f.drifted, f.p_value <= 0.0125);
    }
    // BH, by the textbook step-up rule computed here independently.
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut k_star = 0;
    for (rank, &j) in order.iter().enumerate() {
        if p[j] <= 0.05 * (rank + 1) as f64 / 4.0 {
            k_star = rank + 1;
        }
    }
    let rejected: Vec<usize> = order[..k_star].to_vec();
    for f in &fdr.features {
        assert_eq!(
            f.drifted,
            rejected.contains(&f.index),
            "feature {}",
            f.index
        );
    }
    assert!((p[1] - 0.029_714_824_470_760_7).abs() < 1e-12, "{}", p[1]);
    assert_eq!(
        bonf.features.iter().map(|f| f.drifted).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    assert_eq!(
        fdr.features.iter().map(|f| f.drifted).collect::<Vec<_>>(),
        [false, true, true, true]
    );
    assert!((fdr.threshold - 0.0375).abs() < 1e-15);
    assert_eq!(bonf.is_drift, bonf.n_drifted > 0);

    // JSON has the documented fields; the table lists every feature.
    let json: serde_json::Value = serde_json::to_value(&fdr).unwrap();
    for key in ["is_drift", "threshold", "p_val", "correction", "features"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(json["correction"], "fdr");
    assert!(json["features"][0].get("p_value").is_some());
    let text = fdr.to_table(false);
    assert_eq!(text.lines().count(), 2 + 4);
    assert!(text.starts_with("drift: YES"));
}

#[test]
fn no_drift_between_identical_tables() {
    let t = table(100, 3, |i, j| ((i * 37 + j * 11) % 100) as f64);
    let r = detect_drift(&t, &t, &DriftOptions::default()).unwrap();
    assert!(!r.is_drift);
    assert!(r
        .features
        .iter()
        .all(|f| f.statistic == 0.0 && f.p_value == 1.0));
}
