//! Objectives that attacks climb.

use burn::tensor::{activation, Tensor};

/// The loss an attack maximises (untargeted) or whose target-class form it minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Cross-entropy on the logits.
    #[default]
    #[serde(alias = "ce")]
    CrossEntropy,
    /// The margin (Carlini–Wagner / DLR-style numerator): max_{j≠y} z_j − z_y (DeepFool's
    /// `logits` loss; `logits` is accepted as another name).
    #[serde(alias = "logits")]
    Margin,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "ce" | "cross-entropy" | "crossentropy" => Ok(Self::CrossEntropy),
            "margin" | "cw" | "dlr" | "logits" => Ok(Self::Margin),
            other => Err(format!(
                "unknown loss '{other}' (expected cross-entropy or margin)"
            )),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CrossEntropy => "cross-entropy",
            Self::Margin => "margin",
        })
    }
}

impl Loss {
    /// Per-sample objective `[N]` to maximise. `onehot` `[N, K]` marks the true class
    /// (untargeted) or the target class (targeted; the objective is then negated so that
    /// climbing it moves toward the target).
    pub fn objective(self, logits: Tensor<2>, onehot: Tensor<2>, targeted: bool) -> Tensor<1> {
        let [n, _] = logits.dims();
        let sign = if targeted { -1.0 } else { 1.0 };
        let per_sample = match self {
            Self::CrossEntropy => {
                // CE = -log softmax(z)_y
                (activation::log_softmax(logits, 1) * onehot)
                    .sum_dim(1)
                    .neg()
            }
            Self::Margin => {
                let z_y = (logits.clone() * onehot.clone()).sum_dim(1);
                let others = (logits - onehot.mul_scalar(1e9)).max_dim(1);
                others - z_y
            }
        };
        per_sample.reshape([n]).mul_scalar(sign)
    }
}
