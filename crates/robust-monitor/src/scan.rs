//! Screens of a training set for anomalous or poisoned samples.
//!
//! * [`describe`]: per-feature summary statistics, as pandas' `DataFrame.describe()`
//!   (count of non-NaN values, mean, sample standard deviation with `n − 1`, min,
//!   25/50/75 % quantiles with linear interpolation, max).
//! * [`find_duplicates`]: exact duplicates (hash of the pixel values, confirmed by
//!   comparison) and near-duplicates. Near-duplicate candidates come from a perceptual
//!   *average hash*: the grey image is area-averaged down to 8×8, each cell gives one bit
//!   (above the thumbnail's mean or not), and two images are candidates when their 64-bit
//!   hashes differ in at most `max_hamming` bits. Candidates are found by multi-index
//!   hashing — the hash is cut into `max_hamming + 1` bands and, by the pigeonhole
//!   principle, two hashes within that distance agree exactly on at least one band — so
//!   only images sharing a band value are compared. A candidate pair is confirmed when
//!   its *relative L1 distance* `Σ|a − b| / (mass(a) + mass(b))` is at most
//!   `max_distance`, where `mass(x) = Σ (x − lo)` and `lo` is the smallest value of the
//!   whole set (the background level of dark images). The distance lies in [0, 1]
//!   (0 identical, 1 disjoint support); relative to the images' own content, it treats
//!   sparse images such as digits and dense photographs alike, where a mean pixel
//!   difference would call any two thin strokes near-identical. A scaled L1 distance of
//!   the 8×8 thumbnails is a lower bound of `Σ|a − b|` (each thumbnail cell is an average
//!   of pixels), so most candidates are rejected after 64 operations. Groups are formed
//!   around leaders, not by transitive closure (which chains similar digits into groups
//!   of thousands): confirmed pairs are taken by increasing distance (ties by index); a
//!   pair of two ungrouped images starts a group led by the lower index, and an ungrouped
//!   image paired with a leader joins that leader's group. Every member is thus within
//!   `max_distance` of its leader. Cost: `O(n)` hashing plus
//!   the pairs sharing a band; data where very many images share one band value (e.g.
//!   thousands of blank images) degrade towards `O(n²)` thumbnail comparisons within
//!   that bucket.
//! * [`label_disagreements`]: samples whose label differs from a model's confident
//!   prediction (the argmax of the given probabilities, at least `confidence`).
//! * [`spectral_signatures`]: the spectral-signature backdoor screen of Tran, Li & Madry
//!   (NeurIPS 2018), per class: centre the class's feature vectors (e.g. a model's
//!   penultimate layer), find the top right singular vector `v` of the centred matrix
//!   `M` by power iteration on the (unnormalised) covariance `MᵀM` (formed explicitly
//!   for `d ≤ 1024`, applied as `Mᵀ(Mv)` above that), score each sample by its squared projection `((x − μ)·v)²`, and flag the
//!   `⌊1.5 · fraction · n_c⌋` highest-scoring samples (`+ 1e-9` inside the floor, so a
//!   product like 1.5 · 0.1 · 200 that rounds to 29.999… still gives 30) of each class (`fraction` is the
//!   assumed poisoned fraction ε; the paper removes 1.5ε). Instead of a fixed count,
//!   [`spectral_signatures_with`] and [`SpectralCut::Fence`] flag the samples whose
//!   *signed* projection `(x − μ)·v` lies outside Tukey's fences `[Q1 − k·IQR,
//!   Q3 + k·IQR]` of the class's projections (quartiles with linear interpolation;
//!   `k = 3` is Tukey's "far out"): a class whose projections are roughly normal flags
//!   nothing (a normal variable passes the `k = 3` fences with probability 2·10⁻⁶), and the
//!   separated cluster that a backdoor's poisoned samples form along `v` is flagged
//!   whatever its size. The power iteration starts
//!   from a fixed pseudo-random vector (so results are reproducible and the start is not
//!   orthogonal to the answer except with probability zero) and stops when the unit
//!   vector moves by less than 1e-10 (Euclidean norm) or after 10 000 steps.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};
use crate::table::FeatureTable;

// ---------------------------------------------------------------------------------------
// describe()
// ---------------------------------------------------------------------------------------

/// Summary statistics of one feature (pandas `describe()`); statistics are `None` where
/// pandas gives NaN (no values, or a standard deviation of fewer than two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSummary {
    /// Column index.
    pub index: usize,
    /// Column name, where the table has names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number of non-NaN values.
    pub count: usize,
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor `count − 1`).
    pub std: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// 25 % quantile (linear interpolation).
    #[serde(rename = "25%")]
    pub p25: Option<f64>,
    /// Median.
    #[serde(rename = "50%")]
    pub p50: Option<f64>,
    /// 75 % quantile.
    #[serde(rename = "75%")]
    pub p75: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// Summary statistics of every feature of a table (NaN values are skipped, as pandas does).
pub fn describe(features: &FeatureTable) -> Vec<FeatureSummary> {
    (0..features.n_features())
        .map(|j| {
            let mut col: Vec<f64> = features
                .column(j)
                .into_iter()
                .filter(|v| !v.is_nan())
                .collect();
            col.sort_by(f64::total_cmp);
            let n = col.len();
            let mut s = FeatureSummary {
                index: j,
                name: features.name(j).map(str::to_string),
                count: n,
                mean: None,
                std: None,
                min: None,
                p25: None,
                p50: None,
                p75: None,
                max: None,
            };
            if n > 0 {
                let mean = col.iter().sum::<f64>() / n as f64;
                s.mean = Some(mean);
                if n > 1 {
                    let ss: f64 = col.iter().map(|v| (v - mean) * (v - mean)).sum();
                    s.std = Some((ss / (n - 1) as f64).sqrt());
                }
                s.min = col.first().copied();
                s.max = col.last().copied();
                s.p25 = Some(quantile_sorted(&col, 0.25));
                s.p50 = Some(quantile_sorted(&col, 0.5));
                s.p75 = Some(quantile_sorted(&col, 0.75));
            }
            s
        })
        .collect()
}

/// Quantile of sorted, non-empty data with linear interpolation (NumPy's default).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if lo == hi {
        sorted[lo]
    } else {
        sorted[lo] + (sorted[hi] - sorted[lo]) * frac
    }
}

/// A plain-text table of [`describe`]'s output.
pub fn describe_table(summaries: &[FeatureSummary]) -> String {
    let f = |v: Option<f64>| v.map_or("NaN".to_string(), |v| format!("{v:.6}"));
    let width = summaries
        .iter()
        .map(|s| {
            s.name
                .as_ref()
                .map_or(s.index.to_string().len(), String::len)
        })
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}\n",
        "feature", "count", "mean", "std", "min", "25%", "50%", "75%", "max"
    );
    for s in summaries {
        let label = s.name.clone().unwrap_or_else(|| s.index.to_string());
        out.push_str(&format!(
            "{label:<width$}  {:>8}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}\n",
            s.count,
            f(s.mean),
            f(s.std),
            f(s.min),
            f(s.p25),
            f(s.p50),
            f(s.p75),
            f(s.max)
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Duplicates
// ---------------------------------------------------------------------------------------

/// Memory layout of one image's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Channels, then rows, then columns (PyTorch / burn tensors).
    Chw,
    /// Rows, then columns, then channels (decoded image files).
    Hwc,
}

/// Geometry of the images passed to [`find_duplicates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageGeometry {
    /// Channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Value order.
    pub layout: Layout,
}

impl ImageGeometry {
    /// Values per image.
    pub fn len(&self) -> usize {
        // Saturating: an absurd geometry then matches no image and is reported as such.
        self.channels
            .saturating_mul(self.height)
            .saturating_mul(self.width)
    }

    /// Whether an image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Settings of [`find_duplicates`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DuplicateOptions {
    /// Most differing average-hash bits for a near-duplicate candidate (0..=63).
    /// Default 4.
    pub max_hamming: u32,
    /// Largest relative L1 distance of a near-duplicate pair, in [0, 1] (see the
    /// [module documentation](self)). Default 0.05.
    pub max_distance: f64,
}

impl Default for DuplicateOptions {
    fn default() -> Self {
        DuplicateOptions {
            max_hamming: 4,
            max_distance: 0.05,
        }
    }
}

/// Result of [`find_duplicates`]; every group is sorted, groups are sorted by first index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DuplicateReport {
    /// Groups of images with identical values.
    pub exact: Vec<Vec<usize>>,
    /// Groups of near-duplicate images (each member within `max_distance` of the group's
    /// leader; see the [module documentation](self)), each sorted; a group lists every
    /// member, exact copies of members included.
    pub near: Vec<Vec<usize>>,
}

/// Finds exact and near-duplicate images (see the [module documentation](self)).
///
/// `images` may hold `u8` or `f32` (or any `Copy + Into<f64>`) values. Errors: an image
/// whose length is not `geometry.len()`, an empty geometry, or options out of range.
pub fn find_duplicates<R, P>(
    images: &[R],
    geometry: ImageGeometry,
    options: &DuplicateOptions,
) -> Result<DuplicateReport>
where
    R: AsRef<[P]>,
    P: Copy + Into<f64>,
{
    if geometry.is_empty() {
        return Err(MonitorError::param(
            "image geometry",
            format!(
                "{}×{}×{}",
                geometry.channels, geometry.height, geometry.width
            ),
            "every dimension must be at least 1",
        ));
    }
    if options.max_hamming > 63 {
        return Err(MonitorError::param(
            "max-hamming",
            options.max_hamming,
            "must lie in 0..=63",
        ));
    }
    if !(0.0..=1.0).contains(&options.max_distance) {
        return Err(MonitorError::param(
            "max-distance",
            options.max_distance,
            "must lie in [0, 1]",
        ));
    }
    let d = geometry.len();
    for (i, img) in images.iter().enumerate() {
        if img.as_ref().len() != d {
            return Err(MonitorError::Shape {
                reason: format!(
                    "image {i} has {} values, the geometry {}×{}×{} needs {d}",
                    img.as_ref().len(),
                    geometry.channels,
                    geometry.height,
                    geometry.width
                ),
            });
        }
    }
    let value = |i: usize, k: usize| -> f64 { images[i].as_ref()[k].into() + 0.0 };

    // Exact duplicates: hash of the value bits, confirmed by comparison.
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for i in 0..images.len() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for k in 0..d {
            value(i, k).to_bits().hash(&mut h);
        }
        buckets.entry(h.finish()).or_default().push(i);
    }
    let same = |a: usize, b: usize| (0..d).all(|k| value(a, k).to_bits() == value(b, k).to_bits());
    let mut exact: Vec<Vec<usize>> = Vec::new();
    let mut representative = vec![usize::MAX; images.len()];
    for members in buckets.values() {
        let mut remaining: Vec<usize> = members.clone();
        while let Some(&first) = remaining.first() {
            let (group, rest): (Vec<usize>, Vec<usize>) = remaining
                .iter()
                .partition(|&&m| m == first || same(first, m));
            let rep = *group.iter().min().unwrap_or(&first);
            for &m in &group {
                representative[m] = rep;
            }
            if group.len() > 1 {
                let mut g = group;
                g.sort_unstable();
                exact.push(g);
            }
            remaining = rest;
        }
    }
    exact.sort();

    // Near duplicates among representatives.
    let reps: Vec<usize> = (0..images.len())
        .filter(|&i| representative[i] == i)
        .collect();
    let lo = (0..images.len())
        .flat_map(|i| (0..d).map(move |k| (i, k)))
        .map(|(i, k)| value(i, k))
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let mass: Vec<f64> = reps
        .iter()
        .map(|&i| (0..d).map(|k| value(i, k) - lo).sum())
        .collect();
    let thumbs: Vec<[f64; 64]> = reps
        .iter()
        .map(|&i| thumbnail(images[i].as_ref(), geometry))
        .collect();
    // Σ_k |a_k − b_k| ≥ channels · cell_area · Σ_cells |T_a − T_b|.
    let thumb_scale = geometry.channels as f64 * (geometry.height * geometry.width) as f64 / 64.0;
    let hashes: Vec<u64> = thumbs.iter().map(average_hash).collect();
    let bands = band_masks(options.max_hamming + 1);
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (b, &mask) in bands.iter().enumerate() {
        let mut by_band: HashMap<u64, Vec<usize>> = HashMap::new();
        for (r, &h) in hashes.iter().enumerate() {
            by_band.entry(h & mask).or_default().push(r);
        }
        for members in by_band.values() {
            for (x, &ra) in members.iter().enumerate() {
                for &rb in &members[x + 1..] {
                    let (ha, hb) = (hashes[ra], hashes[rb]);
                    // Each pair is examined only in the first band on which it agrees.
                    if bands[..b].iter().any(|&m| ha & m == hb & m) {
                        continue;
                    }
                    if (ha ^ hb).count_ones() > options.max_hamming {
                        continue;
                    }
                    let allowed = options.max_distance * (mass[ra] + mass[rb]);
                    let bound: f64 = thumbs[ra]
                        .iter()
                        .zip(&thumbs[rb])
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f64>()
                        * thumb_scale;
                    if bound * (1.0 - 1e-9) > allowed {
                        continue;
                    }
                    let (ia, ib) = (reps[ra], reps[rb]);
                    let l1: f64 = (0..d).map(|k| (value(ia, k) - value(ib, k)).abs()).sum();
                    if l1 <= allowed {
                        let dist = l1 / (mass[ra] + mass[rb]);
                        pairs.push((dist, ra.min(rb), ra.max(rb)));
                    }
                }
            }
        }
    }
    // Leader grouping (see the module documentation).
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    const NONE: usize = usize::MAX;
    let mut group_of = vec![NONE; reps.len()];
    let mut leader_of_group: Vec<usize> = Vec::new();
    for &(_, a, b) in &pairs {
        match (group_of[a], group_of[b]) {
            (NONE, NONE) => {
                group_of[a] = leader_of_group.len();
                group_of[b] = leader_of_group.len();
                leader_of_group.push(a);
            }
            (g, NONE) if leader_of_group[g] == a => group_of[b] = g,
            (NONE, g) if leader_of_group[g] == b => group_of[a] = g,
            _ => {}
        }
    }
    // Expand each group of representatives to every image it stands for.
    let mut rep_pos = vec![NONE; images.len()];
    for (r, &i) in reps.iter().enumerate() {
        rep_pos[i] = r;
    }
    let mut near: Vec<Vec<usize>> = vec![Vec::new(); leader_of_group.len()];
    for i in 0..images.len() {
        let g = group_of[rep_pos[representative[i]]];
        if g != NONE {
            near[g].push(i);
        }
    }
    near.sort();
    Ok(DuplicateReport { exact, near })
}

/// `count` disjoint bit masks covering all 64 bits with sizes differing by at most one.
fn band_masks(count: u32) -> Vec<u64> {
    let count = count.clamp(1, 64) as usize;
    let mut masks = Vec::with_capacity(count);
    let mut start = 0usize;
    for b in 0..count {
        let len = 64 / count + usize::from(b < 64 % count);
        let mask = if len == 64 {
            u64::MAX
        } else {
            ((1u64 << len) - 1) << start
        };
        masks.push(mask);
        start += len;
    }
    masks
}

/// Weights of source pixels `0..src` for each of 8 output cells (exact area overlap).
fn area_weights(src: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = src as f64 / 8.0;
    (0..8)
        .map(|c| {
            let (a, b) = (c as f64 * scale, (c + 1) as f64 * scale);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src);
            (first..last)
                .filter_map(|p| {
                    let w = (b.min(p as f64 + 1.0) - a.max(p as f64)).max(0.0);
                    (w > 0.0).then_some((p, w))
                })
                .collect()
        })
        .collect()
}

/// 8×8 area-averaged grey thumbnail (grey = mean over channels).
fn thumbnail<P: Copy + Into<f64>>(img: &[P], g: ImageGeometry) -> [f64; 64] {
    let grey = |y: usize, x: usize| -> f64 {
        let sum: f64 = (0..g.channels)
            .map(|c| {
                let k = match g.layout {
                    Layout::Chw => (c * g.height + y) * g.width + x,
                    Layout::Hwc => (y * g.width + x) * g.channels + c,
                };
                let v: f64 = img[k].into();
                if v.is_finite() {
                    v
                } else {
                    0.0
                }
            })
            .sum();
        sum / g.channels as f64
    };
    let wy = area_weights(g.height);
    let wx = area_weights(g.width);
    let cell_area = (g.height as f64 / 8.0) * (g.width as f64 / 8.0);
    let mut out = [0.0; 64];
    for (r, rows) in wy.iter().enumerate() {
        for (c, cols) in wx.iter().enumerate() {
            let mut s = 0.0;
            for &(y, w1) in rows {
                for &(x, w2) in cols {
                    s += w1 * w2 * grey(y, x);
                }
            }
            out[r * 8 + c] = s / cell_area;
        }
    }
    out
}

/// Average hash: bit `i` set when thumbnail cell `i` is above the thumbnail's mean.
fn average_hash(thumb: &[f64; 64]) -> u64 {
    let mean = thumb.iter().sum::<f64>() / 64.0;
    thumb
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, &v)| if v > mean { h | (1 << i) } else { h })
}

// ---------------------------------------------------------------------------------------
// Label disagreements
// ---------------------------------------------------------------------------------------

/// A sample whose label differs from the model's confident prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelDisagreement {
    /// Sample index.
    pub index: usize,
    /// The label in the data set.
    pub label: usize,
    /// The model's prediction (argmax; the first maximum on ties).
    pub predicted: usize,
    /// The model's probability of its prediction.
    pub confidence: f32,
}

/// Samples whose label disagrees with a prediction made with probability at least
/// `confidence`, in index order.
///
/// `probs` holds one probability vector per sample (softmax outputs; values in [0, 1]).
/// Errors: different lengths of `probs` and `labels`, ragged rows, a label ≥ the number
/// of classes, a probability outside [0, 1] or NaN (logits passed by mistake), or
/// `confidence` outside [0, 1].
pub fn label_disagreements<R: AsRef<[f32]>>(
    probs: &[R],
    labels: &[usize],
    confidence: f32,
) -> Result<Vec<LabelDisagreement>> {
    if !(0.0..=1.0).contains(&confidence) {
        return Err(MonitorError::param(
            "confidence",
            confidence,
            "must lie in [0, 1]",
        ));
    }
    if probs.len() != labels.len() {
        return Err(MonitorError::Shape {
            reason: format!(
                "{} probability rows but {} labels",
                probs.len(),
                labels.len()
            ),
        });
    }
    let classes = probs.first().map_or(0, |r| r.as_ref().len());
    let mut out = Vec::new();
    for (i, (row, &label)) in probs.iter().zip(labels).enumerate() {
        let row = row.as_ref();
        if row.len() != classes || classes == 0 {
            return Err(MonitorError::Shape {
                reason: format!(
                    "probability row {i} has {} classes, row 0 has {classes}",
                    row.len()
                ),
            });
        }
        if label >= classes {
            return Err(MonitorError::param(
                "label",
                label,
                format!("sample {i}: the model has {classes} classes"),
            ));
        }
        if let Some(p) = row.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(MonitorError::param(
                "probability",
                p,
                format!("sample {i}: probabilities must lie in [0, 1] (pass softmax outputs, not logits)"),
            ));
        }
        let (predicted, &p) =
            row.iter().enumerate().fold(
                (0, &row[0]),
                |best, (k, p)| if *p > *best.1 { (k, p) } else { best },
            );
        if predicted != label && p >= confidence {
            out.push(LabelDisagreement {
                index: i,
                label,
                predicted,
                confidence: p,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Spectral signatures
// ---------------------------------------------------------------------------------------

/// Largest number of power-iteration steps.
pub const POWER_MAX_ITERATIONS: usize = 10_000;
/// Convergence tolerance of the power iteration (change of the unit vector, L2 norm).
pub const POWER_TOLERANCE: f64 = 1e-10;
/// Largest feature dimension for which the `d × d` matrix `MᵀM` is formed explicitly.
pub const COVARIANCE_MAX_DIM: usize = 1024;

/// How many samples of each class the spectral screen flags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpectralCut {
    /// The `⌊1.5 · ε · n_c⌋` highest scores of every class, for an assumed poisoned
    /// fraction ε in (0, 1] (Tran et al.).
    Fraction(f64),
    /// The samples whose signed projection lies outside `[Q1 − k·IQR, Q3 + k·IQR]` of
    /// their class's projections, for a multiplier `k > 0` (see the
    /// [module documentation](self)); none where the IQR is 0.
    Fence(f64),
}

/// Per-class details of [`spectral_signatures`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSignature {
    /// The class label.
    pub class: usize,
    /// Samples of the class.
    pub count: usize,
    /// Samples flagged.
    pub flagged: usize,
    /// Top singular value of the centred class matrix.
    pub singular_value: f64,
    /// Top right singular vector (unit length; sign chosen so its largest-magnitude
    /// component is positive).
    pub direction: Vec<f64>,
    /// Lowest score among the flagged samples (`None` if none was flagged).
    pub threshold: Option<f64>,
    /// With [`SpectralCut::Fence`]: the fences `[low, high]` on the signed projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<[f64; 2]>,
    /// Power-iteration steps taken.
    pub iterations: usize,
    /// Whether the iteration met [`POWER_TOLERANCE`].
    pub converged: bool,
}

/// Result of [`spectral_signatures`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralReport {
    /// How the flagged samples were chosen.
    pub cut: SpectralCut,
    /// Outlier score of every sample (squared projection on its class's direction).
    pub scores: Vec<f64>,
    /// Flagged sample indices, sorted.
    pub flagged: Vec<usize>,
    /// One entry per class present, by class label.
    pub classes: Vec<ClassSignature>,
}

/// Spectral-signature screen (see the [module documentation](self)).
///
/// `features` is `n × d` (one row per sample), `labels` one class per sample, `fraction`
/// the assumed poisoned fraction ε in (0, 1]. Classes whose centred features are all zero
/// get score 0 everywhere and flag nothing. Errors: mismatched lengths, ragged or empty
/// rows, non-finite features, `fraction` out of range, no samples.
pub fn spectral_signatures<R: AsRef<[f32]>>(
    features: &[R],
    labels: &[usize],
    fraction: f64,
) -> Result<SpectralReport> {
    spectral_signatures_with(features, labels, SpectralCut::Fraction(fraction))
}

/// Spectral-signature screen with a chosen [`SpectralCut`]: a fixed fraction per class
/// (as [`spectral_signatures`]) or Tukey's fences on the projections.
///
/// Errors: as [`spectral_signatures`], and a fence multiplier that is not finite and
/// positive.
pub fn spectral_signatures_with<R: AsRef<[f32]>>(
    features: &[R],
    labels: &[usize],
    cut: SpectralCut,
) -> Result<SpectralReport> {
    match cut {
        SpectralCut::Fraction(fraction) if !(fraction > 0.0 && fraction <= 1.0) => {
            return Err(MonitorError::param(
                "fraction",
                fraction,
                "must lie in (0, 1]",
            ));
        }
        SpectralCut::Fence(k) if !(k.is_finite() && k > 0.0) => {
            return Err(MonitorError::param(
                "fence multiplier",
                k,
                "must be finite and positive",
            ));
        }
        _ => {}
    }
    if features.is_empty() {
        return Err(MonitorError::Empty {
            what: "feature matrix".into(),
        });
    }
    if features.len() != labels.len() {
        return Err(MonitorError::Shape {
            reason: format!(
                "{} feature rows but {} labels",
                features.len(),
                labels.len()
            ),
        });
    }
    let d = features[0].as_ref().len();
    for (i, row) in features.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != d || d == 0 {
            return Err(MonitorError::Shape {
                reason: format!("feature row {i} has {} values, row 0 has {d}", row.len()),
            });
        }
        if let Some(k) = row.iter().position(|v| !v.is_finite()) {
            return Err(MonitorError::param(
                "feature",
                row[k],
                format!("sample {i}, feature {k}: features must be finite"),
            ));
        }
    }
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut scores = vec![0.0f64; features.len()];
    let mut flagged = Vec::new();
    let mut classes = Vec::new();
    for (class, members) in by_class {
        let n = members.len();
        // Centred class matrix, f64.
        let mut mean = vec![0.0f64; d];
        for &i in &members {
            for (m, &v) in mean.iter_mut().zip(features[i].as_ref()) {
                *m += f64::from(v);
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let centred: Vec<Vec<f64>> = members
            .iter()
            .map(|&i| {
                features[i]
                    .as_ref()
                    .iter()
                    .zip(&mean)
                    .map(|(&v, m)| f64::from(v) - m)
                    .collect()
            })
            .collect();
        let top = top_right_singular_vector(&centred, d);
        let projections: Vec<f64> = centred
            .iter()
            .map(|row| row.iter().zip(&top.vector).map(|(a, b)| a * b).sum())
            .collect();
        let mut class_scores: Vec<Scored> = projections
            .iter()
            .zip(&members)
            .map(|(&p, &i)| (p * p, i, p))
            .collect();
        for &(s, i, _) in &class_scores {
            scores[i] = s;
        }
        // Highest score first; ties by lower index.
        class_scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let (chosen, fence): (Vec<Scored>, Option<[f64; 2]>) = match cut {
            _ if top.singular_value == 0.0 => (Vec::new(), None),
            SpectralCut::Fraction(fraction) => {
                let k = ((1.5 * fraction * n as f64 + 1e-9).floor() as usize).min(n);
                (class_scores[..k].to_vec(), None)
            }
            SpectralCut::Fence(k) => {
                let mut sorted = projections.clone();
                sorted.sort_by(f64::total_cmp);
                let (q1, q3) = (
                    quantile_sorted(&sorted, 0.25),
                    quantile_sorted(&sorted, 0.75),
                );
                let iqr = q3 - q1;
                let (low, high) = (q1 - k * iqr, q3 + k * iqr);
                let chosen = if iqr > 0.0 {
                    class_scores
                        .iter()
                        .filter(|&&(_, _, p)| p < low || p > high)
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                };
                (chosen, Some([low, high]))
            }
        };
        flagged.extend(chosen.iter().map(|&(_, i, _)| i));
        classes.push(ClassSignature {
            class,
            count: n,
            flagged: chosen.len(),
            singular_value: top.singular_value,
            direction: top.vector,
            threshold: chosen.last().map(|&(s, _, _)| s),
            fence,
            iterations: top.iterations,
            converged: top.converged,
        });
    }
    flagged.sort_unstable();
    Ok(SpectralReport {
        cut,
        scores,
        flagged,
        classes,
    })
}

/// (score, sample index, signed projection) of one sample.
type Scored = (f64, usize, f64);

struct TopVector {
    vector: Vec<f64>,
    singular_value: f64,
    iterations: usize,
    converged: bool,
}

/// Top right singular vector of `rows` (n × d) by power iteration on `MᵀM`.
fn top_right_singular_vector(rows: &[Vec<f64>], d: usize) -> TopVector {
    // Fixed pseudo-random start (SplitMix64), uniform in [-1, 1).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut v: Vec<f64> = (0..d)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    normalize(&mut v);
    // For d ≤ COVARIANCE_MAX_DIM the d × d matrix MᵀM is formed once (n·d²/2 operations)
    // and each step costs d²; above that each step applies Mᵀ(Mv) directly (2·n·d).
    let covariance: Option<Vec<f64>> = (d <= COVARIANCE_MAX_DIM).then(|| {
        let mut c = vec![0.0; d * d];
        for r in rows {
            for j in 0..d {
                let rj = r[j];
                if rj != 0.0 {
                    let row = &mut c[j * d..(j + 1) * d];
                    for k in j..d {
                        row[k] += rj * r[k];
                    }
                }
            }
        }
        for j in 0..d {
            for k in 0..j {
                c[j * d + k] = c[k * d + j];
            }
        }
        c
    });
    let apply = |v: &[f64]| -> Vec<f64> {
        match &covariance {
            Some(c) => c
                .chunks_exact(d)
                .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
                .collect(),
            None => {
                // MᵀM v = Σ_i (r_i · v) r_i
                let mut out = vec![0.0; d];
                for r in rows {
                    let p: f64 = r.iter().zip(v).map(|(a, b)| a * b).sum();
                    if p != 0.0 {
                        for (o, a) in out.iter_mut().zip(r) {
                            *o += p * a;
                        }
                    }
                }
                out
            }
        }
    };
    let mut iterations = 0;
    let mut converged = false;
    for _ in 0..POWER_MAX_ITERATIONS {
        iterations += 1;
        let mut w = apply(&v);
        if normalize(&mut w) == 0.0 {
            // M v = 0: either M = 0 or v ⟂ row space (probability zero for a random start).
            return TopVector {
                vector: v,
                singular_value: 0.0,
                iterations,
                converged: true,
            };
        }
        let change: f64 = w
            .iter()
            .zip(&v)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        v = w;
        if change < POWER_TOLERANCE {
            converged = true;
            break;
        }
    }
    // Rayleigh quotient vᵀMᵀMv = ‖Mv‖² = σ².
    let sigma_sq: f64 = rows
        .iter()
        .map(|r| {
            let p: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            p * p
        })
        .sum();
    // Canonical sign: the largest-magnitude component positive.
    let pivot = v.iter().cloned().fold(
        0.0f64,
        |best, x| if x.abs() > best.abs() { x } else { best },
    );
    if pivot < 0.0 {
        for x in &mut v {
            *x = -*x;
        }
    }
    TopVector {
        vector: v,
        singular_value: sigma_sq.sqrt(),
        iterations,
        converged,
    }
}

fn normalize(v: &mut [f64]) -> f64 {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        for x in v.iter_mut() {
            *x /= n;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_all_bits_disjointly() {
        for count in 1..=64 {
            let m = band_masks(count);
            assert_eq!(m.len(), count as usize);
            assert_eq!(m.iter().fold(0u64, |a, b| a | b), u64::MAX);
            assert_eq!(m.iter().map(|b| b.count_ones()).sum::<u32>(), 64);
        }
    }

    #[test]
    fn area_weights_sum_to_cell_size() {
        for src in [1, 5, 8, 28, 32, 100] {
            let w = area_weights(src);
            for cell in &w {
                let s: f64 = cell.iter().map(|x| x.1).sum();
                assert!((s - src as f64 / 8.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [25, 50, 75]) = [1.75, 2.5, 3.25]
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.25), 1.75);
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.75), 3.25);
    }
}
