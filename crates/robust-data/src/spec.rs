//! What the user asks for: the data set's location and how to turn it into model inputs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// Where a data set lives and how to read it; the `[data]` part of a run's configuration.
///
/// Only `path` is required; every other field has a default (see each field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The data: a folder (an ImageFolder tree, a folder holding `images.npy` and
    /// `labels.npy`, or a folder holding IDX files), a `.csv` file, a `.npy` file, or an IDX
    /// images file (`*-idx3-ubyte`, optionally gzipped).
    pub path: PathBuf,
    /// The format; detected from `path` when `None` (see [`DataFormat`]).
    #[serde(default)]
    pub format: Option<DataFormat>,
    /// The labels file for `.npy` and IDX data. Default: `labels.npy` beside the images for
    /// `.npy`; for IDX, the images file's name with `images` → `labels` and `idx3` → `idx1`
    /// (plain or gzipped).
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// A text file of class names, one per line (line `i` names class `i`). Default: the
    /// folder names for ImageFolder; otherwise `classes.txt` beside the data if present,
    /// else `"0"`..`"K-1"` with `K` one more than the largest label.
    #[serde(default)]
    pub classes: Option<PathBuf>,
    /// How images reach the model's height and width.
    #[serde(default)]
    pub resize: ResizeMode,
    /// The axis order of a 4-D `.npy` image array; guessed when `None` (`.npy` only).
    #[serde(default)]
    pub layout: Option<Layout>,
    /// The divisor that maps integer pixels to `[0, 1]` before scaling to the model's bounds.
    /// Default: 255 (65535 for 16-bit PNGs). Float data ignores it: it is taken as already
    /// in the model's bounds, and checked.
    #[serde(default)]
    pub scale: Option<f32>,
    /// `.npy` images without a labels file: when `labels` is not given and no `labels.npy`
    /// lies beside the images, read them with every label 0 instead of failing. For uses
    /// that need no labels (drift tests); evaluation leaves it off.
    #[serde(default)]
    pub unlabelled: bool,
    /// Limits on sizes read from the data files (`[data.limits]` in `robust.toml`), checked
    /// before any memory is reserved for them. See [`DataLimits`] for the defaults.
    #[serde(default)]
    pub limits: DataLimits,
}

/// Limits on sizes read from data files, checked before memory is reserved for them, so a
/// broken or hostile file (a label of 2⁶², a 22000×22000 PNG of a few hundred kilobytes)
/// fails at once with a one-line error that names the file, the value and the limit,
/// instead of exhausting the memory.
///
/// In `robust.toml` the limits are raised under `[data.limits]`:
///
/// ```toml
/// [data.limits]
/// max_classes = 1_000_000        # default 100_000
/// max_image_pixels = 268_435_456 # default 67_108_864 (8192 × 8192)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataLimits {
    /// The number of classes a data set without a classes file may have. Such a data set
    /// has one class per label up to the largest (named `"0"`, `"1"`, ...), so every label
    /// must be below this limit. Default [`DataLimits::DEFAULT_MAX_CLASSES`]. A classes file
    /// sets the number of classes itself, and labels are checked against it instead.
    pub max_classes: usize,
    /// The largest width × height of one image, in pixels: a PNG or JPEG file (checked from
    /// its header, before it is decoded, and enforced as the decoder's allocation limit),
    /// one sample of an `.npy` or IDX array, and the model's input size. Default
    /// [`DataLimits::DEFAULT_MAX_IMAGE_PIXELS`].
    pub max_image_pixels: u64,
}

impl DataLimits {
    /// The default [`DataLimits::max_classes`]: 100,000 (ImageNet-21k has about 21,000).
    pub const DEFAULT_MAX_CLASSES: usize = 100_000;
    /// The default [`DataLimits::max_image_pixels`]: 8192 × 8192 = 67,108,864 (PIL warns
    /// from about 89 million).
    pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 8192 * 8192;
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_classes: Self::DEFAULT_MAX_CLASSES,
            max_image_pixels: Self::DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl DataSpec {
    /// A spec reading `path` with every option at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataSpec {
            path: path.into(),
            format: None,
            labels: None,
            classes: None,
            resize: ResizeMode::default(),
            layout: None,
            scale: None,
            unlabelled: false,
            limits: DataLimits::default(),
        }
    }
}

/// The on-disk layout of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A folder with one subfolder per class holding PNG/JPEG files (torchvision's
    /// `ImageFolder`). Detected for a folder that holds neither `images.npy` nor IDX files.
    ImageFolder,
    /// A CSV file with a `path,label` header. Detected by the `.csv` extension.
    Csv,
    /// NumPy arrays: images and labels. Detected by the `.npy` extension, or a folder holding
    /// `images.npy`.
    Npy,
    /// The MNIST IDX format, optionally gzipped. Detected by a name ending in `idx3-ubyte`
    /// (or `idx3-ubyte.gz`), or a folder holding such a file.
    Idx,
}

impl DataFormat {
    /// The name used in configuration files and on the command line (`"image-folder"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::ImageFolder => "image-folder",
            DataFormat::Csv => "csv",
            DataFormat::Npy => "npy",
            DataFormat::Idx => "idx",
        }
    }
}

/// How an image of another size reaches the model's `H × W`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize directly to `H × W` (triangle filter, antialiased when shrinking); the aspect
    /// ratio is not kept.
    #[default]
    Resize,
    /// Cut the central `H × W` window; an image smaller than `H × W` is an error.
    CenterCrop,
    /// Resize, keeping the aspect ratio, until the image just covers `H × W`, then cut the
    /// central window (torchvision's `Resize(S)` + `CenterCrop(S)` for a square model input).
    ResizeCrop,
}

impl ResizeMode {
    /// The name used in configuration files and on the command line (`"center-crop"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ResizeMode::Resize => "resize",
            ResizeMode::CenterCrop => "center-crop",
            ResizeMode::ResizeCrop => "resize-crop",
        }
    }
}

/// The axis order of a 4-D image array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[N, C, H, W]` (PyTorch).
    Nchw,
    /// `[N, H, W, C]` (TensorFlow, most image libraries).
    Nhwc,
}

impl Layout {
    /// The name used in configuration files and on the command line (`"nchw"`, `"nhwc"`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

macro_rules! name_traits {
    ($ty:ty, $what:literal, [$($variant:expr),+]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = DataError;

            fn from_str(s: &str) -> Result<Self, DataError> {
                let all = [$($variant),+];
                all.iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        let names: Vec<&str> = all.iter().map(|v| v.name()).collect();
                        DataError::options(format!(
                            "unknown {} `{s}`; expected one of {}",
                            $what,
                            names.join(", ")
                        ))
                    })
            }
        }
    };
}

name_traits!(
    DataFormat,
    "data format",
    [
        DataFormat::ImageFolder,
        DataFormat::Csv,
        DataFormat::Npy,
        DataFormat::Idx
    ]
);
name_traits!(
    ResizeMode,
    "resize mode",
    [
        ResizeMode::Resize,
        ResizeMode::CenterCrop,
        ResizeMode::ResizeCrop
    ]
);
name_traits!(Layout, "layout", [Layout::Nchw, Layout::Nhwc]);
