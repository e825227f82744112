//! The median-absolute-deviation (MAD) anomaly index of Neural Cleanse.
//!
//! For values `x_1..x_K` with median `m`, `MAD = median_i |x_i − m|` and the anomaly index
//! of `x_i` is `|x_i − m| / (1.4826 · MAD)`. The constant makes `1.4826 · MAD` a consistent
//! estimator of the standard deviation of normally distributed values, so an index above 2
//! marks a value more than two (robust) standard deviations from the median: under
//! normality, a less than 5% chance. Neural Cleanse flags a class whose minimal trigger norm
//! is such an outlier *below* the median (Wang et al., IEEE S&P 2019, section IV.C).

use serde::Serialize;

/// The consistency constant that turns a MAD into a standard deviation under normality.
pub const CONSISTENCY: f64 = 1.4826;

/// The MAD statistics of a set of values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyStats {
    /// The median of the values.
    pub median: f64,
    /// The median absolute deviation from the median (before the consistency constant).
    pub mad: f64,
    /// Anomaly index of each value, in the order given: `|x − median| / (1.4826 · MAD)`.
    /// With a MAD of zero, a value equal to the median has index 0 and any other +∞.
    pub index: Vec<f64>,
}

/// The median of `values` (the mean of the two middle values for an even count); `None`
/// for no values or a NaN among them.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The anomaly index of every value; `None` for no values or a NaN among them.
///
/// ```
/// let s = robust_backdoor::anomaly_index(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
/// assert_eq!((s.median, s.mad), (3.0, 1.0));
/// assert!((s.index[4] - 97.0 / 1.4826).abs() < 1e-12);
/// ```
pub fn anomaly_index(values: &[f64]) -> Option<AnomalyStats> {
    let m = median(values)?;
    let dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&dev)?;
    let scale = CONSISTENCY * mad;
    let index = dev
        .iter()
        .map(|&d| {
            if d == 0.0 {
                0.0
            } else if scale == 0.0 {
                f64::INFINITY
            } else {
                d / scale
            }
        })
        .collect();
    Some(AnomalyStats {
        median: m,
        mad,
        index,
    })
}

/// The classes Neural Cleanse flags: a norm at or below the median whose anomaly index
/// exceeds `threshold` (2 in the paper). Returned in class order.
pub fn low_outliers(norms: &[f64], stats: &AnomalyStats, threshold: f64) -> Vec<usize> {
    norms
        .iter()
        .zip(&stats.index)
        .enumerate()
        .filter(|(_, (&x, &a))| x <= stats.median && a > threshold)
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    /// Closed form: for `x_i = m + s·d_i` the median is `m + s·median(d)`, the MAD is
    /// `s·median|d − median(d)|` and the index is `|d_i − median(d)| / (1.4826 · that)`.
    /// Here `median(d) = 0.5` and the deviations `|d − 0.5|` are
    /// 3.5 1.5 1 .5 0 .5 .5 1.5 5.5, whose median is 1: MAD = s.
    #[test]
    fn index_matches_the_closed_form() {
        let (m, s) = (50.0, 4.0);
        let d = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0, 2.0, 6.0];
        let x: Vec<f64> = d.iter().map(|v| m + s * v).collect();
        let st = anomaly_index(&x).unwrap();
        assert_eq!(st.median, m + 0.5 * s);
        assert_eq!(st.mad, s);
        for (i, a) in st.index.iter().enumerate() {
            let want = (d[i] - 0.5f64).abs() / CONSISTENCY;
            assert!((a - want).abs() < 1e-12, "{i}: {a} vs {want}");
        }
        // Scale and shift invariance of the index.
        let y: Vec<f64> = x.iter().map(|v| 7.0 - 3.0 * v).collect();
        let sy = anomaly_index(&y).unwrap();
        for (a, b) in st.index.iter().zip(&sy.index) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// Ten norms: eight around 100, one at 20 and one at 250 (worked by hand below).
    #[test]
    fn one_small_norm_is_flagged_and_a_large_one_is_not() {
        let norms = [
            96.0, 104.0, 20.0, 98.0, 102.0, 99.0, 101.0, 97.0, 103.0, 250.0,
        ];
        // sorted: 20 96 97 98 99 101 102 103 104 250 -> median (99+101)/2 = 100
        // |x-100|: 4 4 80 2 2 1 1 3 3 150 -> sorted 1 1 2 2 3 3 4 4 80 150 -> MAD 3
        let st = anomaly_index(&norms).unwrap();
        assert_eq!(st.median, 100.0);
        assert_eq!(st.mad, 3.0);
        assert!((st.index[2] - 80.0 / (1.4826 * 3.0)).abs() < 1e-12);
        assert!((st.index[9] - 150.0 / (1.4826 * 3.0)).abs() < 1e-12);
        // 250 is an outlier too, but above the median: not a backdoor.
        assert_eq!(low_outliers(&norms, &st, 2.0), vec![2]);
        // Index of 96: 4 / 4.4478 = 0.899 < 2.
        assert!(st.index[0] < 2.0);
    }

    #[test]
    fn zero_mad_gives_zero_or_infinite_indices() {
        let st = anomaly_index(&[5.0, 5.0, 5.0, 1.0]).unwrap();
        assert_eq!(st.mad, 0.0);
        assert_eq!(st.index, vec![0.0, 0.0, 0.0, f64::INFINITY]);
        assert_eq!(low_outliers(&[5.0, 5.0, 5.0, 1.0], &st, 2.0), vec![3]);
    }
}
