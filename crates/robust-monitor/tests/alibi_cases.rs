//! robust's alibi-compatible detectors against alibi-detect 0.13 itself, on the cases in
//! `datasets/alibi/cases.json` (made by `datasets/alibi/make_alibi.py`, which ran
//! alibi-detect as an oracle):
//!
//! * `KSDrift` (and black-box shift detection, KS on softmax outputs, and
//!   `ClassifierUncertaintyDrift` on the prediction entropy): the verdict and threshold
//!   exactly; p-values and distances as alibi's float32 values (equal, or one float32
//!   step apart where SciPy's and robust's double-precision results round differently).
//! * `MMDDrift`: the median-heuristic bandwidth to float32 precision (alibi keeps it in a
//!   float32 parameter), the MMD² to 1e-6 relative (the bandwidth's rounding is the only
//!   difference), the verdict exactly, and the permutation p-value within Monte-Carlo
//!   error of alibi's (both from 2000 permutations, different generators).

use std::path::PathBuf;

use robust_monitor::{
    alibi_ks_drift, entropy, median_heuristic_sigma, mmd_drift, softmax, AlibiKsOptions,
    AlibiKsReport, AlibiThreshold, Correction, FeatureTable, MmdOptions,
};
use serde_json::Value;

fn load() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/alibi/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// SplitMix64 uniforms, exactly as `make_alibi.py` makes them.
fn splitmix(spec: &Value) -> Vec<f64> {
    let mut state = spec["seed"].as_u64().unwrap();
    let n = spec["n"].as_u64().unwrap() as usize;
    let (scale, offset) = (
        spec["scale"].as_f64().unwrap(),
        spec["offset"].as_f64().unwrap(),
    );
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            offset + scale * ((z >> 11) as f64 / 9_007_199_254_740_992.0)
        })
        .collect()
}

fn table(v: &Value) -> FeatureTable {
    let rows = v["rows"].as_u64().unwrap() as usize;
    let cols = v["cols"].as_u64().unwrap() as usize;
    let values: Vec<f64> = if let Some(spec) = v.get("splitmix") {
        splitmix(spec)
    } else {
        let f32_data = v["dtype"] == "float32";
        v["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let x = x.as_f64().unwrap();
                if f32_data {
                    x as f32 as f64
                } else {
                    x
                }
            })
            .collect()
    };
    FeatureTable::new(rows, cols, values).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Float32 values equal, or adjacent (one unit in the last place apart).
fn assert_f32_close(name: &str, what: &str, got: &[f32], want: &[f32]) -> u32 {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    let mut max_ulps = 0;
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        let ulps = (g.to_bits() as i64 - w.to_bits() as i64).unsigned_abs() as u32;
        assert!(
            ulps <= 1,
            "{name}: {what}[{j}] = {g:e}, alibi-detect {w:e} ({ulps} float32 steps apart)"
        );
        max_ulps = max_ulps.max(ulps);
    }
    max_ulps
}

fn check_ks(name: &str, report: &AlibiKsReport, expected: &Value) {
    assert_eq!(
        u64::from(report.data.is_drift),
        expected["is_drift"].as_u64().unwrap(),
        "{name}: is_drift"
    );
    let p = assert_f32_close(name, "p_val", &report.data.p_val, &f32s(&expected["p_val"]));
    let d = assert_f32_close(
        name,
        "distance",
        &report.data.distance,
        &f32s(&expected["distance"]),
    );
    match (&report.data.threshold, &expected["threshold"]) {
        (AlibiThreshold::Single(t), Value::Number(w)) => {
            assert_eq!(*t, w.as_f64().unwrap(), "{name}: threshold")
        }
        (AlibiThreshold::PerRank(t), Value::Array(w)) => {
            let w: Vec<f64> = w.iter().map(|x| x.as_f64().unwrap()).collect();
            assert_eq!(t, &w, "{name}: per-rank thresholds");
        }
        (got, want) => panic!("{name}: threshold {got:?}, alibi-detect {want}"),
    }
    eprintln!(
        "{name:<28} is_drift {}  p_val/distance max float32 steps {p}/{d}  features {}",
        report.data.is_drift,
        report.data.p_val.len()
    );
}

fn options(case: &Value) -> AlibiKsOptions {
    AlibiKsOptions {
        p_val: case["p_val_level"].as_f64().unwrap(),
        correction: case["correction"]
            .as_str()
            .unwrap()
            .parse::<Correction>()
            .unwrap(),
    }
}

#[test]
fn ks_uncertainty_and_bbsd_match_alibi_detect() {
    let doc = load();
    let mut seen = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (reference, current) = (table(&case["reference"]), table(&case["current"]));
        let report = match case["kind"].as_str().unwrap() {
            "ks" => alibi_ks_drift(&reference, &current, &options(case)).unwrap(),
            "bbsd" => alibi_ks_drift(
                &softmax(&reference).unwrap(),
                &softmax(&current).unwrap(),
                &options(case),
            )
            .unwrap(),
            "uncertainty" => alibi_ks_drift(
                &entropy(&softmax(&reference).unwrap()).unwrap(),
                &entropy(&softmax(&current).unwrap()).unwrap(),
                &options(case),
            )
            .unwrap(),
            _ => continue,
        };
        check_ks(name, &report, &case["expected"]);
        seen += 1;
    }
    assert_eq!(seen, 10, "every KS-type case ran");
}

#[test]
fn ks_strictness_and_fdr_thresholds_differ_from_scipy_mode() {
    // The FDR no-drift case returns alibi's vector of rank thresholds, and the Bonferroni
    // shift case flags exactly the features below p_val / k (strictly).
    let doc = load();
    let cases = doc["cases"].as_array().unwrap();
    let get = |n: &str| cases.iter().find(|c| c["name"] == n).unwrap();
    let none = get("ks_fdr_none");
    let r = alibi_ks_drift(
        &table(&none["reference"]),
        &table(&none["current"]),
        &options(none),
    )
    .unwrap();
    assert!(matches!(r.data.threshold, AlibiThreshold::PerRank(ref v) if v.len() == 6));
    assert!(r.drifted_features().is_empty());
    let shift = get("ks_bonferroni_shift");
    let r = alibi_ks_drift(
        &table(&shift["reference"]),
        &table(&shift["current"]),
        &options(shift),
    )
    .unwrap();
    let t = 0.05 / 6.0;
    let expected: Vec<usize> = f32s(&shift["expected"]["p_val"])
        .iter()
        .enumerate()
        .filter(|(_, p)| f64::from(**p) < t)
        .map(|(j, _)| j)
        .collect();
    assert_eq!(r.drifted_features(), expected);
    assert_eq!(expected, vec![5]);
}

#[test]
fn mmd_matches_alibi_detect() {
    let doc = load();
    let mut seen = 0;
    for case in doc["cases"].as_array().unwrap() {
        if case["kind"] != "mmd" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let (reference, current) = (table(&case["reference"]), table(&case["current"]));
        let n_perm = case["n_permutations"].as_u64().unwrap() as usize;
        let options = MmdOptions {
            p_val: case["p_val_level"].as_f64().unwrap(),
            n_permutations: n_perm,
            sigma: None,
            seed: 1,
        };
        let r = mmd_drift(&reference, &current, &options).unwrap();

        // Bandwidth: alibi stores it as a float32 parameter (via its logarithm).
        let sigma_alibi = e["sigma"].as_f64().unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
        assert!(
            rel(r.meta.sigma, sigma_alibi) < 3e-7,
            "{name}: sigma {} vs {sigma_alibi}",
            r.meta.sigma
        );
        assert_eq!(median_heuristic_sigma(&reference), r.meta.sigma);

        // Statistic: with alibi's float32 bandwidth, the MMD² agrees to double precision
        // up to that bandwidth's rounding.
        let with_alibi_sigma = mmd_drift(
            &reference,
            &current,
            &MmdOptions {
                sigma: Some(sigma_alibi),
                ..options
            },
        )
        .unwrap();
        let d_alibi = e["distance"].as_f64().unwrap();
        let d_err = (with_alibi_sigma.data.distance - d_alibi).abs();
        assert!(
            d_err <= 1e-7 * d_alibi.abs() + 1e-12,
            "{name}: MMD² {} vs alibi {d_alibi} (error {d_err:e})",
            with_alibi_sigma.data.distance
        );
        assert!(
            (r.data.distance - d_alibi).abs() <= 1e-6 * d_alibi.abs(),
            "{name}: MMD² with the f64 bandwidth {} vs {d_alibi}",
            r.data.distance
        );

        // p-value: two Monte-Carlo estimates from n_perm permutations each.
        let (p, p_alibi) = (r.data.p_val, e["p_val"].as_f64().unwrap());
        let pm = (p + p_alibi) / 2.0;
        let sd = (2.0 * pm * (1.0 - pm) / n_perm as f64).sqrt();
        let tol = 4.5 * sd + 2.0 / n_perm as f64;
        assert!(
            (p - p_alibi).abs() <= tol,
            "{name}: p {p} vs alibi {p_alibi} (tolerance {tol})"
        );
        assert_eq!(
            u64::from(r.data.is_drift),
            e["is_drift"].as_u64().unwrap(),
            "{name}: is_drift"
        );
        eprintln!(
            "{name:<16} sigma {:.7} (alibi {sigma_alibi:.7})  MMD² {:.9} (alibi {d_alibi:.9}, \
             error {d_err:.1e})  p {p:.4} (alibi {p_alibi:.4}, tol {tol:.4})  is_drift {}",
            r.meta.sigma, r.data.distance, r.data.is_drift
        );
        seen += 1;
    }
    assert_eq!(seen, 3);
}
