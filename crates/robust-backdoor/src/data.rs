//! Clean samples held in memory, the input both screens work from.

use crate::error::{BackdoorError, Result};

/// Clean, labelled samples in pixel space, `[N, C, H, W]` row-major on the host.
#[derive(Clone, Debug)]
pub struct CleanSet {
    /// `[C, H, W]` of one sample.
    pub shape: [usize; 3],
    /// `N · C · H · W` values.
    pub pixels: Vec<f32>,
    /// The label of each sample.
    pub labels: Vec<usize>,
}

impl CleanSet {
    /// Checks that `pixels` holds one `shape`-sized image per label and that every value is
    /// finite.
    pub fn new(shape: [usize; 3], pixels: Vec<f32>, labels: Vec<usize>) -> Result<Self> {
        let per: usize = shape.iter().product();
        if per == 0 || pixels.len() != per * labels.len() {
            return Err(BackdoorError::Input(format!(
                "{} values do not make {} images of shape {shape:?}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
            return Err(BackdoorError::Input(format!(
                "sample {} has a non-finite pixel value",
                i / per
            )));
        }
        Ok(Self {
            shape,
            pixels,
            labels,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample, `C · H · W`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let per = self.sample_len();
        &self.pixels[i * per..(i + 1) * per]
    }

    /// The pixels of the samples `idx`, concatenated.
    pub fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * self.sample_len());
        for &i in idx {
            out.extend_from_slice(self.sample(i));
        }
        out
    }
}
