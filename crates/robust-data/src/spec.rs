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
