//! Training-set screens checked against independent computations: closed forms,
//! brute force over all pairs, and planted anomalies with a known answer.

use robust_monitor::scan::describe_table;
use robust_monitor::{
    describe, find_duplicates, label_disagreements, spectral_signatures, spectral_signatures_with,
    DuplicateOptions, FeatureTable, ImageGeometry, Layout, MonitorError, SpectralCut,
};

/// SplitMix64 uniforms in [0, 1).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

// ---------------------------------------------------------------------------------------
// describe()
// ---------------------------------------------------------------------------------------

#[test]
fn describe_matches_closed_forms() {
    // Column 0: 1..=n shuffled; column 1: the same with every third value NaN;
    // column 2: all NaN; column 3: one value.
    let n = 101usize;
    let mut rng = Rng(7);
    let mut perm: Vec<usize> = (1..=n).collect();
    for i in (1..n).rev() {
        let j = (rng.uniform() * (i + 1) as f64) as usize;
        perm.swap(i, j);
    }
    let mut v = Vec::new();
    for (i, &p) in perm.iter().enumerate() {
        v.push(p as f64);
        v.push(if p % 3 == 0 { f64::NAN } else { p as f64 });
        v.push(f64::NAN);
        v.push(if i == 0 { 42.0 } else { f64::NAN });
    }
    let t = FeatureTable::new(n, 4, v)
        .unwrap()
        .with_names(vec!["a".into(), "b".into(), "c".into(), "d".into()])
        .unwrap();
    let s = describe(&t);
    let nf = n as f64;
    let c0 = &s[0];
    assert_eq!(c0.name.as_deref(), Some("a"));
    assert_eq!(c0.count, n);
    assert!((c0.mean.unwrap() - (nf + 1.0) / 2.0).abs() < 1e-12);
    // Sample std of 1..=n: sqrt(n(n+1)/12).
    assert!((c0.std.unwrap() - (nf * (nf + 1.0) / 12.0).sqrt()).abs() < 1e-12);
    assert_eq!((c0.min, c0.max), (Some(1.0), Some(nf)));
    // Linear-interpolation quantile of 1..=n: 1 + q(n − 1).
    assert_eq!(c0.p25, Some(1.0 + 0.25 * (nf - 1.0)));
    assert_eq!(c0.p50, Some(1.0 + 0.5 * (nf - 1.0)));
    assert_eq!(c0.p75, Some(1.0 + 0.75 * (nf - 1.0)));

    // NaN skipped: the non-multiples of 3 in 1..=101.
    let kept: Vec<f64> = (1..=n).filter(|p| p % 3 != 0).map(|p| p as f64).collect();
    let mean = kept.iter().sum::<f64>() / kept.len() as f64;
    assert_eq!(s[1].count, kept.len());
    assert!((s[1].mean.unwrap() - mean).abs() < 1e-12);

    assert_eq!(s[2].count, 0);
    assert_eq!((s[2].mean, s[2].std, s[2].p50), (None, None, None));
    assert_eq!(s[3].count, 1);
    assert_eq!(
        (s[3].mean, s[3].std, s[3].p75),
        (Some(42.0), None, Some(42.0))
    );

    // pandas.DataFrame({"x": [1, 2, 3]}).describe(): mean 2, std 1, 25% 1.5, 75% 2.5.
    let small = describe(&FeatureTable::new(3, 1, vec![3.0, 1.0, 2.0]).unwrap());
    assert_eq!(
        (small[0].mean, small[0].std, small[0].p25, small[0].p75),
        (Some(2.0), Some(1.0), Some(1.5), Some(2.5))
    );
    let text = describe_table(&s);
    assert_eq!(text.lines().count(), 5);
    let json = serde_json::to_value(&s[0]).unwrap();
    assert!(json.get("25%").is_some() && json.get("std").is_some());
}

// ---------------------------------------------------------------------------------------
// Duplicates
// ---------------------------------------------------------------------------------------

const SIDE: usize = 16;

/// Smooth random 16×16 grey images (sums of a few random blobs), u8.
fn random_image(rng: &mut Rng) -> Vec<u8> {
    let blobs: Vec<(f64, f64, f64, f64)> = (0..4)
        .map(|_| {
            (
                rng.uniform() * 16.0,
                rng.uniform() * 16.0,
                2.0 + rng.uniform() * 4.0,
                rng.uniform() * 255.0,
            )
        })
        .collect();
    (0..SIDE * SIDE)
        .map(|k| {
            let (y, x) = ((k / SIDE) as f64, (k % SIDE) as f64);
            let v: f64 = blobs
                .iter()
                .map(|(cy, cx, r, a)| a * (-((y - cy).powi(2) + (x - cx).powi(2)) / (r * r)).exp())
                .sum();
            v.min(255.0) as u8
        })
        .collect()
}

/// The near-duplicate relation evaluated directly over all pairs: 8×8 thumbnails as 2×2
/// block means (exact for 16×16 images), average hash, Hamming distance, relative L1
/// distance. Returns (distance, a, b) with a < b, for pairs of non-identical images.
fn brute_force_near_pairs(images: &[Vec<u8>], opts: &DuplicateOptions) -> Vec<(f64, usize, usize)> {
    let thumb = |img: &[u8]| -> Vec<f64> {
        (0..64)
            .map(|c| {
                let (r, q) = (c / 8, c % 8);
                let mut s = 0.0;
                for dy in 0..2 {
                    for dx in 0..2 {
                        s += img[(2 * r + dy) * SIDE + 2 * q + dx] as f64;
                    }
                }
                s / 4.0
            })
            .collect()
    };
    let hash = |t: &[f64]| -> u64 {
        let mean = t.iter().sum::<f64>() / 64.0;
        t.iter()
            .enumerate()
            .fold(0, |h, (i, &v)| if v > mean { h | 1 << i } else { h })
    };
    let hashes: Vec<u64> = images.iter().map(|i| hash(&thumb(i))).collect();
    let lo = images.iter().flatten().min().copied().unwrap() as f64;
    let mass = |img: &[u8]| img.iter().map(|&v| v as f64 - lo).sum::<f64>();
    let mut pairs = Vec::new();
    for a in 0..images.len() {
        for b in a + 1..images.len() {
            if images[a] == images[b] {
                continue;
            }
            let ham = (hashes[a] ^ hashes[b]).count_ones();
            let l1: f64 = images[a]
                .iter()
                .zip(&images[b])
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum();
            let dist = l1 / (mass(&images[a]) + mass(&images[b]));
            if ham <= opts.max_hamming && dist <= opts.max_distance {
                pairs.push((dist, a, b));
            }
        }
    }
    pairs
}

/// Leader grouping of pairs, as documented, over representatives (the first of each set
/// of identical images); groups are then expanded with the identical copies.
fn leader_groups(mut pairs: Vec<(f64, usize, usize)>, images: &[Vec<u8>]) -> Vec<Vec<usize>> {
    let n = images.len();
    let rep: Vec<usize> = (0..n)
        .map(|a| (0..=a).find(|&b| images[a] == images[b]).unwrap())
        .collect();
    // Only pairs between representatives take part.
    pairs.retain(|&(_, a, b)| rep[a] == a && rep[b] == b);
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut group: Vec<Option<usize>> = vec![None; n];
    let mut leaders: Vec<usize> = Vec::new();
    for (_, a, b) in pairs {
        match (group[a], group[b]) {
            (None, None) => {
                group[a] = Some(leaders.len());
                group[b] = Some(leaders.len());
                leaders.push(a);
            }
            (Some(g), None) if leaders[g] == a => group[b] = Some(g),
            (None, Some(g)) if leaders[g] == b => group[a] = Some(g),
            _ => {}
        }
    }
    let mut out = vec![Vec::new(); leaders.len()];
    for i in 0..n {
        if let Some(g) = group[rep[i]] {
            out[g].push(i);
        }
    }
    out.sort();
    out
}

#[test]
fn planted_duplicates_are_found_and_match_brute_force() {
    let mut rng = Rng(11);
    let mut images: Vec<Vec<u8>> = (0..300).map(|_| random_image(&mut rng)).collect();
    // Exact copies: 10 three times, 20 once.
    images.push(images[10].clone()); // 300
    images.push(images[10].clone()); // 301
    images.push(images[20].clone()); // 302
                                     // A backdoor trigger: a copy of 30 with a white 2×2 patch in a corner.
    let mut trig = images[30].clone();
    for (y, x) in [(14, 14), (14, 15), (15, 14), (15, 15)] {
        trig[y * SIDE + x] = 255;
    }
    images.push(trig); // 303
                       // A copy of 40 with small noise (±2).
    let noisy: Vec<u8> = images[40]
        .iter()
        .map(|&v| (v as i32 + (rng.uniform() * 5.0) as i32 - 2).clamp(0, 255) as u8)
        .collect();
    images.push(noisy); // 304
                        // A near copy of an exact copy: joins the group of 10, 300, 301.
    let mut near10 = images[10].clone();
    near10[0] = near10[0].wrapping_add(3);
    images.push(near10); // 305

    let geometry = ImageGeometry {
        channels: 1,
        height: SIDE,
        width: SIDE,
        layout: Layout::Chw,
    };
    let opts = DuplicateOptions::default();
    let report = find_duplicates(&images, geometry, &opts).unwrap();
    assert_eq!(report.exact, vec![vec![10, 300, 301], vec![20, 302]]);
    for planted in [vec![30, 303], vec![40, 304], vec![10, 300, 301, 305]] {
        assert!(
            report.near.contains(&planted),
            "{planted:?} not in {:?}",
            report.near
        );
    }
    // The bucketed search finds exactly what the all-pairs definition finds.
    let brute = leader_groups(brute_force_near_pairs(&images, &opts), &images);
    assert_eq!(report.near, brute);

    // The same images as f32, and as 3-channel HWC/CHW copies, give the same answer.
    let as_f32: Vec<Vec<f32>> = images
        .iter()
        .map(|i| i.iter().map(|&v| v as f32).collect())
        .collect();
    assert_eq!(find_duplicates(&as_f32, geometry, &opts).unwrap(), report);
    let hwc: Vec<Vec<u8>> = images
        .iter()
        .map(|i| i.iter().flat_map(|&v| [v, v, v]).collect())
        .collect();
    let chw: Vec<Vec<u8>> = images.iter().map(|i| i.repeat(3)).collect();
    for (imgs, layout) in [(&hwc, Layout::Hwc), (&chw, Layout::Chw)] {
        let g = ImageGeometry {
            channels: 3,
            layout,
            ..geometry
        };
        assert_eq!(
            find_duplicates(imgs, g, &opts).unwrap(),
            report,
            "{layout:?}"
        );
    }

    // Stricter settings drop the noisy copy but never the exact ones.
    // Other settings: the bucketed search still equals the all-pairs definition.
    for (max_hamming, max_distance) in [(0, 0.01), (2, 0.2), (8, 0.5)] {
        let o = DuplicateOptions {
            max_hamming,
            max_distance,
        };
        let r = find_duplicates(&images, geometry, &o).unwrap();
        assert_eq!(r.exact, report.exact);
        let brute = leader_groups(brute_force_near_pairs(&images, &o), &images);
        assert_eq!(
            r.near, brute,
            "max_hamming {max_hamming}, max_distance {max_distance}"
        );
    }
}

#[test]
fn duplicate_bad_inputs() {
    let g = ImageGeometry {
        channels: 1,
        height: 4,
        width: 4,
        layout: Layout::Chw,
    };
    let opts = DuplicateOptions::default();
    let err = find_duplicates(&[vec![0u8; 16], vec![0u8; 15]], g, &opts).unwrap_err();
    assert!(err.to_string().contains("image 1 has 15 values"), "{err}");
    let zero = ImageGeometry { height: 0, ..g };
    assert!(find_duplicates(&[Vec::<u8>::new()], zero, &opts).is_err());
    let absurd = ImageGeometry {
        channels: usize::MAX,
        height: 3,
        width: 3,
        layout: Layout::Hwc,
    };
    assert!(matches!(
        find_duplicates(&[vec![0u8; 16]], absurd, &opts),
        Err(MonitorError::Shape { .. })
    ));
    for bad in [
        DuplicateOptions {
            max_hamming: 64,
            ..opts
        },
        DuplicateOptions {
            max_distance: -1.0,
            ..opts
        },
        DuplicateOptions {
            max_distance: 1.5,
            ..opts
        },
        DuplicateOptions {
            max_distance: f64::NAN,
            ..opts
        },
    ] {
        assert!(matches!(
            find_duplicates(&[vec![0u8; 16]], g, &bad),
            Err(MonitorError::InvalidParameter { .. })
        ));
    }
    // No images: nothing to report.
    let none: Vec<Vec<u8>> = vec![];
    assert_eq!(
        find_duplicates(&none, g, &opts).unwrap(),
        Default::default()
    );
}

// ---------------------------------------------------------------------------------------
// Label disagreements
// ---------------------------------------------------------------------------------------

#[test]
fn confident_disagreements_are_flagged() {
    let probs = vec![
        vec![0.9f32, 0.1, 0.0], // predicts 0 confidently, labelled 1: flagged
        vec![0.2, 0.8, 0.0],    // agrees
        vec![0.45, 0.1, 0.45],  // predicts 0 (first max), not confident
        vec![0.05, 0.0, 0.95],  // predicts 2 confidently, labelled 0: flagged
        vec![0.0, 0.2, 0.8],    // exactly at the confidence: flagged
    ];
    let labels = [1, 1, 1, 0, 1];
    let r = label_disagreements(&probs, &labels, 0.8).unwrap();
    let idx: Vec<usize> = r.iter().map(|d| d.index).collect();
    assert_eq!(idx, [0, 3, 4]);
    assert_eq!((r[1].label, r[1].predicted, r[1].confidence), (0, 2, 0.95));
    assert_eq!(label_disagreements(&probs, &labels, 0.0).unwrap().len(), 4);
    assert!(label_disagreements(&probs, &labels, 1.0)
        .unwrap()
        .is_empty());

    let err = label_disagreements(&probs, &labels[..4], 0.8).unwrap_err();
    assert!(
        err.to_string().contains("5 probability rows but 4 labels"),
        "{err}"
    );
    let err = label_disagreements(&probs, &[1, 1, 1, 0, 3], 0.8).unwrap_err();
    assert!(err.to_string().contains("3 classes"), "{err}");
    let logits = vec![vec![2.5f32, -1.0, 0.3]];
    let err = label_disagreements(&logits, &[0], 0.8).unwrap_err();
    assert!(err.to_string().contains("not logits"), "{err}");
    let ragged = vec![vec![0.5f32, 0.5], vec![1.0]];
    assert!(label_disagreements(&ragged, &[0, 0], 0.8).is_err());
    let nan = vec![vec![f32::NAN, 0.5]];
    assert!(label_disagreements(&nan, &[0], 0.8).is_err());
    assert!(label_disagreements(&probs, &labels, 1.5).is_err());
}

// ---------------------------------------------------------------------------------------
// Spectral signatures
// ---------------------------------------------------------------------------------------

#[test]
fn top_singular_vector_matches_two_by_two_closed_form() {
    let pts: Vec<Vec<f32>> = vec![
        vec![2.0, 1.0],
        vec![-1.0, 0.5],
        vec![0.5, -2.0],
        vec![3.0, 2.5],
        vec![-2.0, -1.5],
        vec![0.0, 0.7],
    ];
    let labels = vec![4usize; pts.len()];
    let r = spectral_signatures(&pts, &labels, 0.2).unwrap();
    // Closed form for the symmetric 2×2 matrix [[a, b], [b, c]] = MᵀM of the centred data.
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p[0] as f64).sum::<f64>() / n;
    let my = pts.iter().map(|p| p[1] as f64).sum::<f64>() / n;
    let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
    for p in &pts {
        let (x, y) = (p[0] as f64 - mx, p[1] as f64 - my);
        a += x * x;
        b += x * y;
        c += y * y;
    }
    let theta = 0.5 * (2.0 * b).atan2(a - c);
    let expected = [theta.cos(), theta.sin()];
    let lambda = (a + c) / 2.0 + (((a - c) / 2.0).powi(2) + b * b).sqrt();
    let cls = &r.classes[0];
    assert_eq!(cls.class, 4);
    assert!(cls.converged);
    let dot = cls.direction[0] * expected[0] + cls.direction[1] * expected[1];
    assert!(
        (dot.abs() - 1.0).abs() < 1e-12,
        "direction {:?} vs {expected:?}",
        cls.direction
    );
    assert!((cls.singular_value - lambda.sqrt()).abs() < 1e-9 * lambda.sqrt());
    // Scores are squared projections; ⌊1.5 · 0.2 · 6⌋ = 1 sample flagged: the top score.
    for (i, p) in pts.iter().enumerate() {
        let proj = (p[0] as f64 - mx) * expected[0] + (p[1] as f64 - my) * expected[1];
        assert!((r.scores[i] - proj * proj).abs() < 1e-9);
    }
    let top = (0..pts.len())
        .max_by(|&i, &j| r.scores[i].total_cmp(&r.scores[j]))
        .unwrap();
    assert_eq!(r.flagged, vec![top]);
    assert_eq!(top, 3);
}

fn planted(
    rng: &mut Rng,
    d: usize,
    clean: usize,
    poisoned: usize,
    shift: f64,
    dir: &[f64],
) -> Vec<Vec<f32>> {
    (0..clean + poisoned)
        .map(|i| {
            (0..d)
                .map(|k| {
                    let s = if i >= clean { shift * dir[k] } else { 0.0 };
                    (rng.normal() + s) as f32
                })
                .collect()
        })
        .collect()
}

fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[test]
fn planted_backdoor_is_flagged_along_its_direction() {
    let mut rng = Rng(3);
    let d = 20;
    let u = unit((1..=d).map(|k| (k as f64).sin() + 0.3).collect());
    // Class 0: 500 clean + 50 poisoned shifted by 6 along u (ε ≈ 0.09). Class 1: clean.
    let mut features = planted(&mut rng, d, 500, 50, 6.0, &u);
    let mut labels = vec![0usize; 550];
    features.extend(planted(&mut rng, d, 300, 0, 0.0, &u));
    labels.extend(vec![1usize; 300]);
    let r = spectral_signatures(&features, &labels, 0.1).unwrap();
    let c0 = &r.classes[0];
    assert!(c0.converged);
    let cos: f64 = c0.direction.iter().zip(&u).map(|(a, b)| a * b).sum();
    assert!(cos.abs() > 0.98, "cos = {cos}");
    // ⌊1.5 · 0.1 · 550⌋ = 82 flagged in class 0, ⌊1.5 · 0.1 · 300⌋ = 45 in class 1.
    assert_eq!((c0.flagged, r.classes[1].flagged), (82, 45));
    assert_eq!(r.flagged.len(), 127);
    for i in 500..550 {
        assert!(
            r.flagged.binary_search(&i).is_ok(),
            "poisoned sample {i} missed"
        );
    }
    // Every flagged sample of class 0 scores at least the threshold, every other below.
    let thr = c0.threshold.unwrap();
    for i in 0..550 {
        let flagged = r.flagged.binary_search(&i).is_ok();
        assert_eq!(flagged, r.scores[i] >= thr, "sample {i}");
    }
}

#[test]
fn fences_flag_the_planted_cluster_and_nothing_in_a_clean_class() {
    let mut rng = Rng(11);
    let d = 20;
    let u = unit((1..=d).map(|k| (k as f64).cos() + 0.2).collect());
    // Class 0: 500 clean + 25 poisoned shifted by 8 along u (ε ≈ 0.05). Class 1: clean.
    let mut features = planted(&mut rng, d, 500, 25, 8.0, &u);
    let mut labels = vec![0usize; 525];
    features.extend(planted(&mut rng, d, 400, 0, 0.0, &u));
    labels.extend(vec![1usize; 400]);
    let r = spectral_signatures_with(&features, &labels, SpectralCut::Fence(3.0)).unwrap();
    assert_eq!(r.cut, SpectralCut::Fence(3.0));
    // Exactly the poisoned samples: a normal variable passes the k = 3 fences with
    // probability 2e-6, and the cluster sits ~8 standard deviations away.
    assert_eq!(r.flagged, (500..525).collect::<Vec<_>>());
    assert_eq!((r.classes[0].flagged, r.classes[1].flagged), (25, 0));
    // The fences are Tukey's, on the signed projections (recomputed here).
    for (c, members) in [(0usize, 0..525), (1, 525..925)] {
        let cls = &r.classes[c];
        let n = members.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|k| members.clone().map(|i| features[i][k] as f64).sum::<f64>() / n)
            .collect();
        let mut proj: Vec<f64> = members
            .clone()
            .map(|i| {
                (0..d)
                    .map(|k| (features[i][k] as f64 - mean[k]) * cls.direction[k])
                    .sum()
            })
            .collect();
        proj.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (proj.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            proj[lo] + (proj[hi] - proj[lo]) * (pos - lo as f64)
        };
        let iqr = q(0.75) - q(0.25);
        let [low, high] = cls.fence.unwrap();
        assert!((low - (q(0.25) - 3.0 * iqr)).abs() < 1e-9, "{low}");
        assert!((high - (q(0.75) + 3.0 * iqr)).abs() < 1e-9, "{high}");
        let outside = proj.iter().filter(|&&p| p < low || p > high).count();
        assert_eq!(outside, cls.flagged);
    }
    // A fraction cut reports no fences; bad multipliers are refused.
    let f = spectral_signatures(&features, &labels, 0.05).unwrap();
    assert!(f.classes.iter().all(|c| c.fence.is_none()));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            spectral_signatures_with(&features, &labels, SpectralCut::Fence(bad)),
            Err(MonitorError::InvalidParameter { .. })
        ));
    }
}

#[test]
fn high_dimensional_features_use_the_implicit_operator() {
    // d = 1100 > COVARIANCE_MAX_DIM: power iteration applies Mᵀ(Mv) directly.
    let mut rng = Rng(5);
    let d = 1100;
    let mut dir = vec![0.0; d];
    dir[5] = 1.0;
    dir[700] = -1.0;
    let u = unit(dir);
    let features = planted(&mut rng, d, 60, 6, 40.0, &u);
    let labels = vec![0usize; 66];
    let r = spectral_signatures(&features, &labels, 0.1).unwrap();
    let c = &r.classes[0];
    assert!(c.converged);
    // With n ≪ d the sample noise tilts the estimate (cos ≈ 0.94 here), but it is the
    // top direction: no unit vector — the planted one, random ones — stretches more.
    let cos: f64 = c.direction.iter().zip(&u).map(|(a, b)| a * b).sum();
    assert!(cos.abs() > 0.9, "cos = {cos}");
    let mean: Vec<f64> = (0..d)
        .map(|k| features.iter().map(|f| f[k] as f64).sum::<f64>() / 66.0)
        .collect();
    let stretch = |w: &[f64]| -> f64 {
        features
            .iter()
            .map(|f| {
                let p: f64 = f
                    .iter()
                    .zip(&mean)
                    .zip(w)
                    .map(|((x, m), w)| (*x as f64 - m) * w)
                    .sum();
                p * p
            })
            .sum::<f64>()
            .sqrt()
    };
    assert!((stretch(&c.direction) - c.singular_value).abs() < 1e-9 * c.singular_value);
    assert!(c.singular_value >= stretch(&u));
    for _ in 0..5 {
        let w = unit((0..d).map(|_| rng.normal()).collect());
        assert!(c.singular_value >= stretch(&w));
    }
    assert_eq!(r.flagged.len(), 9); // ⌊1.5 · 0.1 · 66⌋
    for i in 60..66 {
        assert!(r.flagged.contains(&i), "poisoned sample {i} missed");
    }
}

#[test]
fn spectral_degenerate_and_bad_inputs() {
    // A class of identical samples has no direction: scores 0, nothing flagged.
    let same = vec![vec![1.0f32, 2.0, 3.0]; 10];
    let r = spectral_signatures(&same, &[0; 10], 0.5).unwrap();
    assert!(r.flagged.is_empty());
    assert!(r.scores.iter().all(|&s| s == 0.0));
    assert_eq!(r.classes[0].singular_value, 0.0);

    let f = vec![vec![0.0f32, 1.0], vec![1.0, 0.0]];
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(
            spectral_signatures(&f, &[0, 0], bad),
            Err(MonitorError::InvalidParameter { .. })
        ));
    }
    let err = spectral_signatures(&f, &[0], 0.1).unwrap_err();
    assert!(
        err.to_string().contains("2 feature rows but 1 labels"),
        "{err}"
    );
    let ragged = vec![vec![0.0f32, 1.0], vec![1.0]];
    assert!(matches!(
        spectral_signatures(&ragged, &[0, 0], 0.1),
        Err(MonitorError::Shape { .. })
    ));
    let nan = vec![vec![0.0f32, f32::NAN]];
    let err = spectral_signatures(&nan, &[0], 0.1).unwrap_err();
    assert!(err.to_string().contains("sample 0, feature 1"), "{err}");
    let empty: Vec<Vec<f32>> = vec![];
    assert!(matches!(
        spectral_signatures(&empty, &[], 0.1),
        Err(MonitorError::Empty { .. })
    ));
    let no_features = vec![Vec::<f32>::new()];
    assert!(spectral_signatures(&no_features, &[0], 0.1).is_err());
}
