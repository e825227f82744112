//! Threat models: the L-inf and L2 balls.
//!
//! As in Foolbox, a norm supplies exactly three things to the gradient-descent core: a random
//! starting point inside the ball, the step direction for a gradient (`normalize`), and the
//! projection back onto the ball (`project`). It also measures perturbations for reports.

use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// The norm of an epsilon ball.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// max |δ_i| ≤ ε.
    Linf,
    /// ‖δ‖₂ ≤ ε.
    L2,
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" => Ok(Self::Linf),
            "l2" => Ok(Self::L2),
            other => Err(format!("unknown norm '{other}' (expected linf or l2)")),
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Linf => "linf",
            Self::L2 => "l2",
        })
    }
}

/// Per-sample L2 norms of a batch, shaped `[N, 1, 1, 1]` for broadcasting.
pub(crate) fn l2_norms(t: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = t.dims();
    (t.clone() * t)
        .reshape([n, c * h * w])
        .sum_dim(1)
        .sqrt()
        .reshape([n, 1, 1, 1])
}

impl Norm {
    /// The norm as attack labels write it: `Linf` or `L2` (`PGD-10 Linf`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Linf => "Linf",
            Self::L2 => "L2",
        }
    }

    /// The steepest-ascent direction for a gradient: its sign (L-inf) or the gradient scaled
    /// to unit L2 norm per sample (with 1e-10 added to the norm, as torchattacks does).
    pub fn normalize(self, g: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Linf => g.sign(),
            Self::L2 => {
                let norms = l2_norms(g.clone()).add_scalar(1e-10);
                g / norms
            }
        }
    }

    /// Projects `adv` onto the ε-ball around `x` (it does not clip to the input bounds).
    pub fn project(self, x: &Tensor<4>, adv: Tensor<4>, eps: f32) -> Tensor<4> {
        let delta = adv - x.clone();
        let delta = match self {
            Self::Linf => delta.clamp(-eps, eps),
            Self::L2 => {
                let norms = l2_norms(delta.clone());
                // factor = min(eps / norm, 1), with norm 0 giving 1.
                let factor = norms
                    .clamp_min(1e-12)
                    .recip()
                    .mul_scalar(eps)
                    .clamp_max(1.0);
                delta * factor
            }
        };
        x.clone() + delta
    }

    /// A random point of the ε-ball around the origin, shaped like `dims`: uniform per pixel
    /// for L-inf; for L2 a Gaussian direction scaled to a radius ε·u^(1/d), uniform in the ball.
    /// Each sample draws from its own generator in `rngs` (one per sample), so a sample's
    /// start does not depend on which batch it is in.
    pub fn random_start(
        self,
        dims: [usize; 4],
        eps: f32,
        rngs: &mut [ChaCha8Rng],
        device: &burn::tensor::Device,
    ) -> Tensor<4> {
        let per = dims[1] * dims[2] * dims[3];
        // Sampling -ε..=ε needs 2ε to be a finite f32. A ball wider than half of f32's range
        // is clipped to the input bounds anyway, so a narrower one starts the same attack.
        let eps = eps.min(f32::MAX / 2.0);
        let mut data = Vec::with_capacity(dims[0] * per);
        for rng in rngs.iter_mut().take(dims[0]) {
            match self {
                Self::Linf => {
                    data.extend((0..per).map(|_| rng.random_range(-eps..=eps)));
                }
                Self::L2 => {
                    let dir: Vec<f32> = (0..per).map(|_| gaussian(rng)).collect();
                    let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12_f32);
                    let u: f32 = rng.random_range(0.0..1.0);
                    let radius = eps * u.powf(1.0 / per as f32);
                    data.extend(dir.iter().map(|v| v / norm * radius));
                }
            }
        }
        Tensor::from_data(TensorData::new(data, dims.to_vec()), device)
    }

    /// Per-sample size of perturbations `delta` in this norm, on the host.
    pub fn measure(self, delta: Tensor<4>) -> Vec<f32> {
        let [n, c, h, w] = delta.dims();
        let t = match self {
            Self::Linf => delta.abs().reshape([n, c * h * w]).max_dim(1),
            Self::L2 => l2_norms(delta).reshape([n, 1]),
        };
        robust_models::to_host(t)
    }
}

/// A standard normal sample (Box–Muller), from the seeded generator.
pub(crate) fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::Norm;

    /// A `robust.toml` ε of 3.4e38 made `random_range(-ε..=ε)` panic (2ε overflows f32).
    #[test]
    fn a_huge_epsilon_gives_a_finite_random_start() {
        let device = robust_models::select_device(robust_models::DeviceChoice::Cpu)
            .unwrap()
            .device;
        for norm in [Norm::Linf, Norm::L2] {
            for eps in [3.4e38, f32::MAX] {
                let mut rngs = vec![ChaCha8Rng::seed_from_u64(0)];
                let start = norm.random_start([1, 1, 2, 2], eps, &mut rngs, &device);
                let values = robust_models::to_host(start);
                assert!(
                    values.iter().all(|v| v.is_finite()),
                    "{norm:?} {eps}: {values:?}"
                );
            }
        }
    }
}
