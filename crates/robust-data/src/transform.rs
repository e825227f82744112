//! From a decoded sample to a model input: value check, channels, size, scaling.
//!
//! Every source produces a [`Raw`] sample: planar `C × H × W` values in the file's own units
//! (0..=255 for 8-bit images, the stored value for `.npy`), tagged as integer or float data.
//! [`Target::apply`] then, in this order:
//!
//! 1. checks the values: integers must lie in `0..=scale`, floats must be finite and inside
//!    the model's bounds (so every output lies in the bounds without silent clipping);
//! 2. converts channels: gray → RGB by replication; RGB → gray by ITU-R 601-2 luma
//!    (`0.299 R + 0.587 G + 0.114 B`), for integer data rounded exactly as PIL's
//!    `convert("L")` does, so a model trained through torchvision sees the same values;
//! 3. reaches the model's `H × W` per [`ResizeMode`], resampling in `f32` with a separable
//!    triangle filter whose support widens with the shrink factor (the image crate's and
//!    PIL's antialiased bilinear; results are not rounded to integers);
//! 4. scales: integer `v` → `lo + (v / scale) · (hi − lo)`, computed in `f32` in that order
//!    (so `v / 255` is exact for bounds `[0, 1]`); floats are kept.
//!
//! Triangle weights are non-negative and sum to one, so resampling never leaves the range of
//! its inputs; a final clamp to `[lo, hi]` only absorbs `f32` rounding.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::spec::ResizeMode;

/// The value type of a raw sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    /// Integers in `0..=scale`.
    Int {
        /// The divisor mapping values to `[0, 1]`.
        scale: f32,
    },
    /// Floats already in the model's bounds.
    Float,
}

/// One decoded sample, planar `c × h × w`, in the file's units.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
    pub kind: Kind,
}

/// The model's input: shape, bounds and how to reach its size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub lo: f32,
    pub hi: f32,
    pub resize: ResizeMode,
}

impl Target {
    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Turns `raw` into model input written to `out` (`sample_len` values). `path` and `what`
    /// ("sample 17", or empty for an image file) go into error messages. Returns what had to
    /// change to fit the model (channels, size): an empty list when the sample already fit.
    pub fn apply(&self, raw: Raw, out: &mut [f32], path: &Path, what: &str) -> Result<Vec<String>> {
        debug_assert_eq!(out.len(), self.sample_len());
        debug_assert_eq!(raw.data.len(), raw.c * raw.h * raw.w);
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        self.check_values(&raw, path, &prefix)?;
        let mut changes = Vec::new();
        match (raw.c, self.c) {
            (1, 3) => changes.push("gray → RGB (the channel replicated)".to_string()),
            (3, 1) => changes.push("RGB → gray (ITU-R 601-2 luma, as PIL's convert(\"L\"))".into()),
            _ => {}
        }
        if (raw.h, raw.w) != (self.h, self.w) {
            changes.push(format!(
                "{}×{} → {}×{} ({})",
                raw.h, raw.w, self.h, self.w, self.resize
            ));
        }
        let raw = self.convert_channels(raw, path, &prefix)?;
        let raw = self.fit_size(raw, path, &prefix)?;
        let (lo, hi) = (self.lo, self.hi);
        match raw.kind {
            Kind::Int { scale } => {
                for (o, &v) in out.iter_mut().zip(&raw.data) {
                    *o = (lo + (v / scale) * (hi - lo)).clamp(lo, hi);
                }
            }
            Kind::Float => {
                for (o, &v) in out.iter_mut().zip(&raw.data) {
                    *o = v.clamp(lo, hi);
                }
            }
        }
        Ok(changes)
    }

    fn check_values(&self, raw: &Raw, path: &Path, prefix: &str) -> Result<()> {
        match raw.kind {
            Kind::Int { scale } => {
                if let Some(&v) = raw.data.iter().find(|&&v| !(0.0..=scale).contains(&v)) {
                    return Err(DataError::format(
                        path,
                        format!(
                            "{prefix}pixel value {v} is outside 0..={scale}; integer pixels are \
                             divided by `scale` ({scale}), so set `scale` to the data's maximum"
                        ),
                    ));
                }
            }
            Kind::Float => {
                let (lo, hi) = (self.lo, self.hi);
                if let Some(&v) = raw.data.iter().find(|&&v| !(lo..=hi).contains(&v)) {
                    return Err(DataError::format(
                        path,
                        format!(
                            "{prefix}float pixel value {v} is outside the model's bounds \
                             [{lo}, {hi}]; float data is used as is, so scale it to the bounds \
                             (or store integers and set `scale`)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn convert_channels(&self, raw: Raw, path: &Path, prefix: &str) -> Result<Raw> {
        let plane = raw.h * raw.w;
        let data = match (raw.c, self.c) {
            (a, b) if a == b => return Ok(raw),
            (1, 3) => {
                let mut d = Vec::with_capacity(3 * plane);
                for _ in 0..3 {
                    d.extend_from_slice(&raw.data);
                }
                d
            }
            (3, 1) => {
                let (r, rest) = raw.data.split_at(plane);
                let (g, b) = rest.split_at(plane);
                match raw.kind {
                    // PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. Values are exact
                    // non-negative integers here (checked above and stored exactly in f32).
                    Kind::Int { .. } => r
                        .iter()
                        .zip(g)
                        .zip(b)
                        .map(|((&r, &g), &b)| {
                            let l =
                                (r as u64 * 19595 + g as u64 * 38470 + b as u64 * 7471 + 0x8000)
                                    >> 16;
                            l as f32
                        })
                        .collect(),
                    Kind::Float => r
                        .iter()
                        .zip(g)
                        .zip(b)
                        .map(|((&r, &g), &b)| {
                            (0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b))
                                as f32
                        })
                        .collect(),
                }
            }
            (a, b) => {
                return Err(DataError::mismatch(
                    path,
                    format!("{prefix}cannot convert {a} channels to the model's {b}"),
                ))
            }
        };
        Ok(Raw {
            c: self.c,
            data,
            ..raw
        })
    }

    fn fit_size(&self, raw: Raw, path: &Path, prefix: &str) -> Result<Raw> {
        let (h, w) = (raw.h, raw.w);
        let (th, tw) = (self.h, self.w);
        if (h, w) == (th, tw) {
            return Ok(raw);
        }
        match self.resize {
            ResizeMode::Resize => Ok(resize(&raw, th, tw)),
            ResizeMode::CenterCrop => {
                if h < th || w < tw {
                    return Err(DataError::mismatch(
                        path,
                        format!(
                            "{prefix}image is {h}×{w} (H×W), smaller than the model's \
                             {th}×{tw}, so it cannot be center-cropped; use resize \"resize\" \
                             or \"resize-crop\""
                        ),
                    ));
                }
                Ok(center_crop(&raw, th, tw))
            }
            ResizeMode::ResizeCrop => {
                // Scale so the image just covers th × tw, keeping the aspect ratio; the
                // binding side gets the target exactly, the other is truncated as torchvision
                // does (int(size * long / short)).
                let (nh, nw) = if th * w >= tw * h {
                    (th, ((w * th) / h).max(tw))
                } else {
                    (((h * tw) / w).max(th), tw)
                };
                let resized = if (nh, nw) == (h, w) {
                    raw
                } else {
                    resize(&raw, nh, nw)
                };
                Ok(center_crop(&resized, th, tw))
            }
        }
    }
}

/// torchvision's crop offset: `int(round((size - crop) / 2))`, with Python's
/// round-half-to-even.
fn crop_offset(size: usize, crop: usize) -> usize {
    let d = size - crop;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

fn center_crop(raw: &Raw, th: usize, tw: usize) -> Raw {
    let top = crop_offset(raw.h, th);
    let left = crop_offset(raw.w, tw);
    let mut data = Vec::with_capacity(raw.c * th * tw);
    for ch in 0..raw.c {
        let plane = &raw.data[ch * raw.h * raw.w..(ch + 1) * raw.h * raw.w];
        for y in top..top + th {
            data.extend_from_slice(&plane[y * raw.w + left..y * raw.w + left + tw]);
        }
    }
    Raw {
        c: raw.c,
        h: th,
        w: tw,
        data,
        kind: raw.kind,
    }
}

/// For each output position along one axis: the first input index and the weights.
fn axis_weights(inp: usize, out: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = inp as f64 / out as f64;
    let sratio = ratio.max(1.0);
    let support = sratio; // the triangle filter's support is 1
    (0..out)
        .map(|o| {
            let center = (o as f64 + 0.5) * ratio;
            let left = ((center - support).floor().max(0.0) as usize).min(inp - 1);
            let right = ((center + support).ceil() as usize).clamp(left + 1, inp);
            let mut ws: Vec<f64> = (left..right)
                .map(|i| (1.0 - ((i as f64 + 0.5 - center) / sratio).abs()).max(0.0))
                .collect();
            let sum: f64 = ws.iter().sum();
            if sum > 0.0 {
                ws.iter_mut().for_each(|w| *w /= sum);
            } else {
                // Unreachable for inp, out >= 1; fall back to the nearest pixel.
                ws.iter_mut().for_each(|w| *w = 0.0);
                ws[0] = 1.0;
            }
            (left, ws.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// Separable triangle-filter resampling of every channel to `th × tw`.
fn resize(raw: &Raw, th: usize, tw: usize) -> Raw {
    let (h, w) = (raw.h, raw.w);
    let wx = axis_weights(w, tw);
    let wy = axis_weights(h, th);
    let mut data = Vec::with_capacity(raw.c * th * tw);
    let mut rows = vec![0f32; h * tw];
    for ch in 0..raw.c {
        let plane = &raw.data[ch * h * w..(ch + 1) * h * w];
        // Horizontal pass: h × tw.
        for y in 0..h {
            let src = &plane[y * w..(y + 1) * w];
            for (x, (left, ws)) in wx.iter().enumerate() {
                rows[y * tw + x] = ws.iter().zip(&src[*left..]).map(|(a, b)| a * b).sum();
            }
        }
        // Vertical pass: th × tw.
        for (top, ws) in &wy {
            for x in 0..tw {
                let v: f32 = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wgt)| wgt * rows[(top + k) * tw + x])
                    .sum();
                data.push(v);
            }
        }
    }
    Raw {
        c: raw.c,
        h: th,
        w: tw,
        data,
        kind: raw.kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(c: usize, h: usize, w: usize, data: Vec<f32>) -> Raw {
        Raw {
            c,
            h,
            w,
            data,
            kind: Kind::Int { scale: 255.0 },
        }
    }

    #[test]
    fn crop_offset_rounds_half_to_even_like_python() {
        // int(round(d / 2)) for d = 0..=6: 0, 0, 1, 2, 2, 2, 3
        let got: Vec<usize> = (0..=6).map(|d| crop_offset(10 + d, 10)).collect();
        assert_eq!(got, vec![0, 0, 1, 2, 2, 2, 3]);
    }

    #[test]
    fn axis_weights_are_identity_at_equal_size_and_sum_to_one() {
        for (left, ws) in axis_weights(7, 7).iter() {
            let nz: Vec<(usize, f32)> = ws
                .iter()
                .enumerate()
                .filter(|(_, w)| **w != 0.0)
                .map(|(k, w)| (left + k, *w))
                .collect();
            assert_eq!(nz.len(), 1);
            assert_eq!(nz[0].1, 1.0);
        }
        for (inp, out) in [(28, 32), (32, 28), (100, 7), (3, 50)] {
            for (left, ws) in axis_weights(inp, out) {
                assert!(left + ws.len() <= inp);
                let s: f32 = ws.iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "{inp}->{out}: {s}");
                assert!(ws.iter().all(|w| *w >= 0.0));
            }
        }
    }

    #[test]
    fn resize_crop_covers_the_target_then_crops() {
        let t = Target {
            c: 1,
            h: 4,
            w: 4,
            lo: 0.0,
            hi: 1.0,
            resize: ResizeMode::ResizeCrop,
        };
        // 8 × 16 → shorter side 4 → 4 × 8 → crop 4 × 4.
        let r = raw(1, 8, 16, vec![100.0; 128]);
        let mut out = vec![0.0; 16];
        t.apply(r, &mut out, Path::new("x"), "").unwrap();
        assert!(out.iter().all(|&v| (v - 100.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn luma_of_pure_colours_matches_pil() {
        // PIL's Image.new("RGB", (1, 1), c).convert("L") gives 76, 150, 29 for red, green, blue.
        let t = Target {
            c: 1,
            h: 1,
            w: 3,
            lo: 0.0,
            hi: 255.0,
            resize: ResizeMode::Resize,
        };
        let r = raw(
            3,
            1,
            3,
            vec![255.0, 0.0, 0.0, 0.0, 255.0, 0.0, 0.0, 0.0, 255.0],
        );
        let mut out = vec![0.0; 3];
        t.apply(r, &mut out, Path::new("x"), "").unwrap();
        assert_eq!(out, vec![76.0, 150.0, 29.0]);
    }
}
