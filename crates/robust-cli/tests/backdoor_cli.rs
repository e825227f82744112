//! `robust backdoor` end to end on the bundled models: Neural Cleanse on `models/poisoned-cnn`
//! (a 4×4 white patch at rows/cols 23..26 turns sevens into ones), on `models/backdoor-cnn`
//! (the same patch turns every class into 0: the paper's all-to-one MNIST setting) and on the
//! clean demo model `models/mnist-cnn`, and the STRIP screen on patched and clean images.
//!
//! Reduced budget, so the file runs in well under a minute on two cores: 300 clean samples of
//! `datasets/mnist-demo` (30 per class), at most 30 steps per class (a step is one pass over
//! the ~270 samples of the other classes, 9 mini-batches of 32), early stopping on: 4-7 s
//! per model here. At this budget the class ranking and the recovered patch are already
//! those of the full 1000-sample, 100-step run (`models/poisoned-cnn/neural_cleanse_art.md`).
//! backdoor-cnn's search uses all 1000 demo images at the same cost per step (9 mini-batches
//! of 32), which gives its borderline index more room (see its test). STRIP uses 20 overlays
//! per input.
//!
//! What is asserted is what Neural Cleanse delivers on these two models, measured, not what
//! one might hope: on the poisoned model class 1 gets by far the smallest trigger, on the
//! patch, but with the paper's threshold (anomaly index > 2) it is *not* flagged (index
//! about 1.2-1.9 over seeds and budgets: the backdoor was trained on sevens only and the
//! clean classes' norms spread widely on MNIST); on the clean model class 1 is no low
//! outlier, but class 2 sometimes is (a false positive of the method, index 1.2-2.7). ART
//! 1.20's Neural Cleanse reaches the same verdicts and rankings on both models
//! (`models/poisoned-cnn/neural_cleanse_art.md`). So the
//! tests check the ranking, the patch and the exit-code logic against a threshold chosen
//! from the measured indices, and do not assert a verdict the method does not reach. On the
//! all-to-one backdoor-cnn class 0 is flagged at the paper's threshold, by a thin margin
//! (index 2.47 at this budget and seed 0; 1.75-2.47 over seeds 0-7; 2.59 in the full run,
//! ART 1.95 there), its trigger is by far the smallest and sits on the patch, and STRIP
//! flags nearly every patched input (about 95-99% at a 1% false-positive rate).
//!
//! Every number asserted is recomputed here from the files the binary wrote (norms from the
//! mask file, the MAD statistics from the norms, the trigger's success by `robust predict`
//! on images composed here), not read back from the tool's own summary.

use std::path::Path;
use std::process::Output;

mod common;
use common::{robust, root, stderr, write_npy};

const POISONED: &[&str] = &["--model", "models/poisoned-cnn/model.onnx"];
const CLEAN: &[&str] = &[
    "--model",
    "models/mnist-cnn/model.onnx",
    "--mean",
    "0.1307",
    "--std",
    "0.3081",
];
const BUDGET: &[&str] = &[
    "--data",
    "datasets/mnist-demo",
    "--samples",
    "300",
    "--steps",
    "30",
    "--device",
    "cpu",
    "--seed",
    "0",
    "--quiet",
];

fn cleanse(model: &[&str], out: &Path, extra: &[&str]) -> (Output, serde_json::Value, Vec<f32>) {
    cleanse_with(model, BUDGET, out, extra)
}

fn cleanse_with(
    model: &[&str],
    budget: &[&str],
    out: &Path,
    extra: &[&str],
) -> (Output, serde_json::Value, Vec<f32>) {
    let mut args = vec!["backdoor"];
    args.extend_from_slice(model);
    args.extend_from_slice(budget);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let o = robust(&args);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("backdoor.json")).unwrap()).unwrap();
    let (shape, masks) = read_f32(&out.join("backdoor_masks.npy"));
    assert_eq!(shape, vec![10, 28, 28]);
    assert!(out.join("backdoor.html").is_file());
    (o, json, masks)
}

fn read_f32(p: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn read_u8(p: &Path) -> Vec<u8> {
    let bytes = std::fs::read(p).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<u8>()
        .unwrap()
}

fn read_i64(p: &Path) -> Vec<i64> {
    let bytes = std::fs::read(p).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<i64>()
        .unwrap()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Norms from the mask file, and the MAD anomaly indices (signed: negative below the
/// median) computed from them here.
fn norms_and_indices(masks: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let norms: Vec<f64> = masks
        .chunks(784)
        .map(|m| m.iter().map(|&v| f64::from(v)).sum())
        .collect();
    let med = median(&norms);
    let dev: Vec<f64> = norms.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&dev);
    let idx = norms.iter().map(|x| (x - med) / (1.4826 * mad)).collect();
    (norms, idx)
}

/// Checks the report against the masks: norms, indices, flagged set and exit code.
fn check_consistent(
    o: &Output,
    json: &serde_json::Value,
    masks: &[f32],
    threshold: f64,
) -> Vec<f64> {
    let (norms, idx) = norms_and_indices(masks);
    let classes = json["classes"].as_array().unwrap();
    for (k, c) in classes.iter().enumerate() {
        let reported = c["norm"].as_f64().unwrap();
        assert!(
            (reported - norms[k]).abs() < 1e-3 * norms[k],
            "class {k}: {reported} vs {}",
            norms[k]
        );
        let a = c["anomaly_index"].as_f64().unwrap();
        assert!(
            (a - idx[k].abs()).abs() < 1e-4,
            "class {k}: index {a} vs {}",
            idx[k]
        );
    }
    let want: Vec<u64> = (0..10)
        .filter(|&k| idx[k] < 0.0 && -idx[k] > threshold)
        .map(|k| k as u64)
        .collect();
    let got: Vec<u64> = json["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(o.status.code(), Some(if want.is_empty() { 0 } else { 1 }));
    idx
}

/// The trigger of class `target` (from the mask and pattern files in `out`), composed here on
/// every demo image of another class, sent through `robust predict` on `model`: the fraction
/// predicted as `target`.
fn trigger_success_by_predict(dir: &Path, out: &Path, model: &str, target: usize) -> f64 {
    let images = read_u8(&root().join("datasets/mnist-demo/images.npy"));
    let labels = read_i64(&root().join("datasets/mnist-demo/labels.npy"));
    let (_, masks) = read_f32(&out.join("backdoor_masks.npy"));
    let (_, patterns) = read_f32(&out.join("backdoor_patterns.npy"));
    let range = target * 784..(target + 1) * 784;
    let (m, p) = (&masks[range.clone()], &patterns[range]);
    let mut x = Vec::new();
    for (i, &y) in labels.iter().enumerate() {
        if y == target as i64 {
            continue;
        }
        for j in 0..784 {
            let v = f32::from(images[i * 784 + j]) / 255.0;
            x.push((1.0 - m[j]) * v + m[j] * p[j]);
        }
    }
    let n = x.len() / 784;
    let xs = dir.join("triggered.npy");
    write_npy(&xs, &[n as u64, 1, 28, 28], &x);
    let pred = dir.join("pred.npy");
    let o = robust(&[
        "predict",
        "--model",
        model,
        "--data",
        xs.to_str().unwrap(),
        "--unlabelled",
        "--device",
        "cpu",
        "--out",
        dir.join("logits.npy").to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pred = read_i64(&pred);
    pred.iter().filter(|&&c| c == target as i64).count() as f64 / n as f64
}

/// Share of a 28×28 mask's mass inside the true patch (rows and columns 23..26), and the
/// mean mask value there.
fn patch_share(m: &[f32]) -> (f32, f32) {
    let patch: f32 = (23..27)
        .flat_map(|r| (23..27).map(move |c| r * 28 + c))
        .map(|i| m[i])
        .sum();
    (patch / m.iter().sum::<f32>(), patch / 16.0)
}

/// The demo images whose label passes `keep`, with the 4×4 white patch (rows and columns
/// 23..26 set to 255), followed by the same images without it; and their count.
fn patched_and_plain(keep: impl Fn(i64) -> bool) -> (Vec<u8>, usize) {
    let images = read_u8(&root().join("datasets/mnist-demo/images.npy"));
    let labels = read_i64(&root().join("datasets/mnist-demo/labels.npy"));
    let keep: Vec<usize> = (0..labels.len()).filter(|&i| keep(labels[i])).collect();
    let mut x: Vec<u8> = Vec::new();
    for &i in &keep {
        let mut img = images[i * 784..(i + 1) * 784].to_vec();
        for r in 23..27 {
            for c in 23..27 {
                img[r * 28 + c] = 255;
            }
        }
        x.extend(img);
    }
    for &i in &keep {
        x.extend_from_slice(&images[i * 784..(i + 1) * 784]);
    }
    (x, keep.len())
}

#[test]
fn neural_cleanse_finds_the_patch_of_the_poisoned_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("poisoned");
    let (o, json, masks) = cleanse(POISONED, &out, &[]);
    let idx = check_consistent(&o, &json, &masks, 2.0);
    let (norms, _) = norms_and_indices(&masks);

    // Class 1, the backdoor's target, needs the smallest trigger, well below the median.
    let smallest = (0..10)
        .min_by(|&a, &b| norms[a].total_cmp(&norms[b]))
        .unwrap();
    assert_eq!(smallest, 1, "norms {norms:?}");
    assert!(idx[1] < -0.75, "class 1 index {}", idx[1]);
    // Its mask sits on the true patch: rows and columns 23..26 hold 16 of 784 pixels (2%),
    // and at least a fifth of the mask's mass, with a mean mask value there of at least 0.4.
    let (share, mean) = patch_share(&masks[784..1568]);
    assert!(share >= 0.2, "patch share {share}");
    assert!(mean >= 0.4, "patch mean {mean}");
    // The trigger works on unseen samples too (all demo images of other classes, not only
    // the 300 the search used): checked by `robust predict` on images composed here.
    let asr = trigger_success_by_predict(dir.path(), &out, "models/poisoned-cnn/model.onnx", 1);
    assert!(asr >= 0.9, "class-1 trigger success {asr}");
    let reported = json["classes"][1]["attack_success"].as_f64().unwrap();
    assert!(
        reported >= 0.95 && (asr - reported).abs() < 0.08,
        "{asr} vs {reported}"
    );

    // The same run with a threshold between class 1's index and the next one: the flagged
    // set follows the threshold exactly, the exit code is 1, and the seeded run repeats
    // bit for bit.
    let mut below: Vec<f64> = idx.iter().filter(|&&a| a < 0.0).map(|a| -a).collect();
    below.sort_by(|a, b| b.total_cmp(a));
    let threshold = (below[0] + below[1]) / 2.0;
    let out2 = dir.path().join("again");
    let t = format!("{threshold}");
    let (o2, json2, masks2) = cleanse(POISONED, &out2, &["--anomaly-threshold", &t]);
    assert_eq!(masks, masks2, "a seeded run must repeat exactly");
    check_consistent(&o2, &json2, &masks2, threshold);
    assert_eq!(json2["flagged"], serde_json::json!([1]));
    assert_eq!(o2.status.code(), Some(1));

    // On the clean demo model, class 1 is not a low outlier: its trigger is above the median
    // and at least 2.5 times the poisoned model's.
    let outc = dir.path().join("clean");
    let (oc, jc, mc) = cleanse(CLEAN, &outc, &[]);
    let idc = check_consistent(&oc, &jc, &mc, 2.0);
    let (nc, _) = norms_and_indices(&mc);
    assert!(idc[1] > 0.0, "clean model, class 1 index {}", idc[1]);
    assert!(
        nc[1] >= 2.5 * norms[1],
        "clean {} vs poisoned {}",
        nc[1],
        norms[1]
    );
}

/// The per-source scope (`--scope per-source`): every (source, target) pair is screened,
/// the two smallest sources per target are optimised in full, and per target the smallest
/// pair trigger is analysed. Budget: 300 samples (about 30 per source), 5 screen steps per
/// pair and 30 steps per finalist, of 4 mini-batches each (about 4-5 s per model here).
///
/// Checked against the files written: the screen holds all 90 pairs with the two smallest
/// per target marked as finalists (recomputed from the screen rows); each class's norm is
/// the smallest of its finalists and equals its mask's L1 norm; the indices and flags
/// follow from the norms. Measured, not hoped for: the clean demo model flags no class (its
/// all-source false positive, class 2, is gone), and on the poisoned model the way into
/// class 1 is at least 2.5 times cheaper than on the clean model; class 1 is not flagged
/// (natural pair triggers on this MNIST net are as small: 1 → 2 and 9 → 3 need 6-9 pixels),
/// which is asserted too, so that a change in the verdict shows.
#[test]
fn per_source_scope_screens_every_pair_and_keeps_the_clean_model_clean() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--scope",
        "per-source",
        "--batches-per-step",
        "4",
        "--pair-screen-steps",
        "5",
    ];
    let mut class1 = Vec::new();
    for (name, model) in [("poisoned", POISONED), ("clean", CLEAN)] {
        let out = dir.path().join(name);
        let (o, json, masks) = cleanse(model, &out, &extra);
        assert_eq!(json["scope"], "per-source");
        check_consistent(&o, &json, &masks, 2.0);
        let screen = json["pair_screen"].as_array().unwrap();
        assert_eq!(screen.len(), 90, "{name}");
        let pairs = json["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 20, "{name}");
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
        for t in 0..10u64 {
            // The finalists are the two smallest screened sources (reached ones first).
            let mut rows: Vec<&serde_json::Value> =
                screen.iter().filter(|r| r["target"] == t).collect();
            assert_eq!(rows.len(), 9);
            rows.sort_by(|a, b| {
                let key = |r: &serde_json::Value| {
                    if r["reached"].as_bool().unwrap() {
                        (0, f(r, "norm"))
                    } else {
                        (1, -f(r, "attack_success"))
                    }
                };
                let (ka, kb) = (key(a), key(b));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
            });
            let finalists: Vec<u64> = rows
                .iter()
                .filter(|r| r["finalist"] == true)
                .map(|r| r["source"].as_u64().unwrap())
                .collect();
            let want: Vec<u64> = rows[..2]
                .iter()
                .map(|r| r["source"].as_u64().unwrap())
                .collect();
            let (mut a, mut b) = (finalists.clone(), want);
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{name}: finalists of target {t}");
            // The class's trigger is its smallest final pair.
            let finals: Vec<&serde_json::Value> =
                pairs.iter().filter(|p| p["target"] == t).collect();
            let mut srcs: Vec<u64> = finals
                .iter()
                .map(|p| p["source"].as_u64().unwrap())
                .collect();
            srcs.sort_unstable();
            assert_eq!(srcs, a, "{name}: finals of target {t}");
            let best = finals
                .iter()
                .filter(|p| p["reached_threshold"] == true)
                .min_by(|x, y| f(x, "norm").total_cmp(&f(y, "norm")))
                .copied()
                .unwrap_or(finals[0]);
            let row = &json["classes"][t as usize];
            assert_eq!(row["source"], best["source"], "{name}: target {t}");
            assert_eq!(f(row, "norm"), f(best, "norm"), "{name}: target {t}");
        }
        class1.push(f(&json["classes"][1], "norm"));
        let flagged = json["flagged"].as_array().unwrap().len();
        assert_eq!(flagged, 0, "{name}: {}", json["flagged"]);
    }
    assert!(
        class1[1] >= 2.5 * class1[0],
        "class 1: poisoned {} vs clean {}",
        class1[0],
        class1[1]
    );
}

/// STRIP (the 300 clean samples of `BUDGET`, 20 overlays) on `model` over the `2n` images
/// `x` written here, checked against itself: the threshold is the 4th smallest of the 300
/// clean entropies (fpr 0.01: ⌊3⌋ below it), an input is flagged exactly when its entropy is
/// below it, and every entropy is a mean of entropies of 10-class distributions. Returns the
/// output, the inputs' entropies and the threshold.
fn strip_checked(model: &[&str], x: &[u8], n: usize, dir: &Path) -> (Output, Vec<f64>, f64) {
    let screen = dir.join("screen.npy");
    write_npy(&screen, &[2 * n as u64, 28, 28], x);
    let out = dir.join("strip");
    let mut args = vec!["backdoor"];
    args.extend_from_slice(model);
    args.extend_from_slice(BUDGET);
    args.extend_from_slice(&[
        "--screen",
        screen.to_str().unwrap(),
        "--overlays",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = robust(&args);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("strip.json")).unwrap()).unwrap();
    assert!(out.join("strip.html").is_file());
    let mut clean: Vec<f64> = json["clean_entropies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(clean.len(), 300);
    clean.sort_by(f64::total_cmp);
    let threshold = json["threshold"].as_f64().unwrap();
    assert_eq!(threshold, clean[3]);
    assert!(json["clean_flagged"].as_u64().unwrap() <= 3);
    let inputs = json["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2 * n);
    let entropy: Vec<f64> = inputs
        .iter()
        .map(|s| s["entropy"].as_f64().unwrap())
        .collect();
    for (s, &e) in inputs.iter().zip(&entropy) {
        assert_eq!(s["flagged"].as_bool().unwrap(), e < threshold);
        assert!((0.0..=10f64.log2()).contains(&e));
    }
    (o, entropy, threshold)
}

#[test]
fn strip_flags_patched_sevens_and_keeps_the_false_positive_rate() {
    let dir = tempfile::tempdir().unwrap();
    // Screened: every demo seven with the patch, then the same sevens without it.
    let (x, n7) = patched_and_plain(|y| y == 7);
    let (o, entropy, threshold) = strip_checked(POISONED, &x, n7, dir.path());
    let flagged = |r: std::ops::Range<usize>| r.filter(|&i| entropy[i] < threshold).count();
    let (patched, plain) = (flagged(0..n7), flagged(n7..2 * n7));
    // The patch lowers the blend entropy of most sevens, and STRIP flags patched sevens far
    // more often than the same sevens without it (measured: about 30% against 0% with 100
    // overlays and 1000 clean samples).
    let lower = (0..n7).filter(|&i| entropy[i] < entropy[n7 + i]).count();
    assert!(
        lower * 10 >= n7 * 8,
        "{lower} of {n7} patched sevens have a lower entropy"
    );
    assert!(
        patched >= n7 / 10,
        "{patched} of {n7} patched sevens flagged"
    );
    assert!(plain <= n7 / 20, "{plain} of {n7} clean sevens flagged");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

const BACKDOORED: &[&str] = &["--model", "models/backdoor-cnn/model.onnx"];
/// The all-to-one model's budget: all 1000 demo images, at most 30 steps of 9 mini-batches
/// of 32 (the same cost per step as `BUDGET`'s one pass over ~270 samples), seed 0.
const ALL_TO_ONE_BUDGET: &[&str] = &[
    "--data",
    "datasets/mnist-demo",
    "--samples",
    "1000",
    "--batches-per-step",
    "9",
    "--steps",
    "30",
    "--device",
    "cpu",
    "--seed",
    "0",
    "--quiet",
];

/// `models/backdoor-cnn`: Neural Cleanse's own MNIST setting (all-to-one: the 4×4 patch on
/// 10% of every other class relabelled 0; `models/backdoor-cnn/make.py`). Class 0's natural
/// trigger is above the median on the bundled nets, so the flag comes from the backdoor.
///
/// Measured at this budget (seeds 0-7): class 0's trigger is always the smallest, 0.23-0.38
/// of the next smallest, with 76-86% of its mass on the 16 patch pixels (mean mask there
/// 0.62-0.79), and it sends 99.5-99.7% of the non-0 demo images to 0 through `robust
/// predict`. Its anomaly index, though, is only just past the paper's threshold: 2.47 at
/// seed 0, 1.75-2.43 at seeds 1-7 (3 of 8 seeds flagged only at a threshold below 2; with
/// `BUDGET`'s 300 samples 1.68-3.21, 2.06 at seed 0; the full default run 1.84-2.59 over
/// seeds 0-5, 2.59 at seed 0). The natural triggers of this small net spread widely (46-91),
/// so the MAD is large. The flag at seed 0 is asserted, with the exit code; what holds at
/// every seed is asserted with margin.
#[test]
fn neural_cleanse_flags_the_all_to_one_backdoor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backdoor");
    let (o, json, masks) = cleanse_with(BACKDOORED, ALL_TO_ONE_BUDGET, &out, &[]);
    let idx = check_consistent(&o, &json, &masks, 2.0);
    assert_eq!(json["flagged"], serde_json::json!([0]), "indices {idx:?}");
    assert_eq!(o.status.code(), Some(1));
    assert!(idx[0] < -1.5, "class 0 index {}", idx[0]);
    let (norms, _) = norms_and_indices(&masks);
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted[0], norms[0], "norms {norms:?}");
    assert!(norms[0] <= 0.5 * sorted[1], "norms {norms:?}");
    let (share, mean) = patch_share(&masks[..784]);
    assert!(share >= 0.6, "patch share {share}");
    assert!(mean >= 0.45, "patch mean {mean}");
    let asr = trigger_success_by_predict(dir.path(), &out, "models/backdoor-cnn/model.onnx", 0);
    assert!(asr >= 0.95, "class-0 trigger success {asr}");
}

/// STRIP on `models/backdoor-cnn`: the patch on every demo image of classes 1-9 (915), then
/// the same images without it. Measured at this budget (seeds 0-2): 95.4-98.5% of the
/// patched images flagged, 0.8-1.9% of the plain ones, and 912-914 of 915 patched images
/// with a lower entropy than their plain twin (with 100 overlays and 1000 clean samples:
/// 98.9% against 0.9%, the NumPy reference 99.0% against 0.8%;
/// `models/poisoned-cnn/strip_reference.md`).
#[test]
fn strip_flags_the_all_to_one_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let (x, n) = patched_and_plain(|y| y != 0);
    let (o, entropy, threshold) = strip_checked(BACKDOORED, &x, n, dir.path());
    let flagged = |r: std::ops::Range<usize>| r.filter(|&i| entropy[i] < threshold).count();
    let (patched, plain) = (flagged(0..n), flagged(n..2 * n));
    let lower = (0..n).filter(|&i| entropy[i] < entropy[n + i]).count();
    assert!(lower * 100 >= n * 98, "{lower} of {n} lower");
    assert!(patched * 10 >= n * 9, "{patched} of {n} patched flagged");
    assert!(plain * 25 <= n, "{plain} of {n} plain flagged");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--samples", "0"], "--samples"),
        (vec!["--steps", "0"], "steps must be at least 1"),
        (vec!["--success-threshold", "1.5"], "success threshold"),
        (vec!["--anomaly-threshold", "0"], "--anomaly-threshold"),
        (vec!["--screen", "no/such.npy"], "no/such.npy"),
        (
            vec!["--screen", "datasets/mnist-demo/images.npy", "--fpr", "1"],
            "false-positive rate",
        ),
        (
            vec![
                "--screen",
                "datasets/mnist-demo/images.npy",
                "--overlays",
                "5000",
            ],
            "overlays",
        ),
        (
            vec!["--labels", "datasets/mnist-poisoned/poison_mask.npy"],
            "poison_mask.npy",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["backdoor"];
        args.extend_from_slice(POISONED);
        args.extend_from_slice(&[
            "--data",
            "datasets/mnist-demo",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            out,
        ]);
        for (flag, value) in [("--steps", "1"), ("--samples", "50")] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, value]);
            }
        }
        args.extend_from_slice(&extra);
        let o = robust(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{extra:?}: {err}"
        );
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{extra:?} left files"
        );
    }
    // An output that would overwrite an input (the labels file named like an output).
    let labels = dir.path().join("backdoor_masks.npy");
    std::fs::copy(root().join("datasets/mnist-demo/labels.npy"), &labels).unwrap();
    let o = robust(&[
        "backdoor",
        "--model",
        "models/poisoned-cnn/model.onnx",
        "--data",
        "datasets/mnist-demo/images.npy",
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        out,
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would overwrite the input"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&labels).unwrap(),
        std::fs::read(root().join("datasets/mnist-demo/labels.npy")).unwrap()
    );
    let missing = robust(&[
        "backdoor",
        "--model",
        "no/model.onnx",
        "--data",
        "datasets/mnist-demo",
        "--out",
        out,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no/model.onnx"),
        "{}",
        stderr(&missing)
    );
}

/// The same seeded trigger search on wgpu and on the CPU gives the same masks (to float
/// rounding) after two steps per class on 40 samples (four Adam updates through the whole
/// model per class). Skipped without a wgpu adapter unless ROBUST_REQUIRE_WGPU=1.
#[test]
fn wgpu_and_cpu_recover_the_same_triggers() {
    let devices = String::from_utf8_lossy(&robust(&["devices"]).stdout).into_owned();
    if !devices
        .lines()
        .any(|l| l.starts_with("wgpu:") && l.contains("largest buffer"))
    {
        assert_ne!(
            std::env::var("ROBUST_REQUIRE_WGPU").as_deref(),
            Ok("1"),
            "wgpu is required by ROBUST_REQUIRE_WGPU=1 but `robust devices` lists none:\n{devices}"
        );
        eprintln!("skipped: no wgpu adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut masks = Vec::new();
    for device in ["cpu", "wgpu"] {
        let out = dir.path().join(device);
        let mut args = vec!["backdoor"];
        args.extend_from_slice(POISONED);
        args.extend_from_slice(&[
            "--data",
            "datasets/mnist-demo",
            "--samples",
            "40",
            "--steps",
            "2",
            "--seed",
            "3",
            "--quiet",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        let o = robust(&args);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{device}: {}",
            stderr(&o)
        );
        masks.push(read_f32(&out.join("backdoor_masks.npy")).1);
    }
    let worst = masks[0]
        .iter()
        .zip(&masks[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "largest mask difference wgpu vs cpu: {worst}");
}
