//! Real image data sets for robust's evaluations, read from the formats people keep them in
//! and decoded batch by batch into the exact tensors a model expects.
//!
//! # Formats
//!
//! A [`DataSpec`] names a path and, optionally, its [`DataFormat`]; without one the format
//! is detected from the path:
//!
//! * **ImageFolder** (a folder with one subfolder per class, torchvision's convention):
//!   classes are the subfolder names, sorted; images are the `.png`, `.jpg` and `.jpeg`
//!   files (any case) below each class folder, in torchvision's order (sorted folders, then
//!   sorted file names). Hidden files and folders (`.name`) are skipped, unlike torchvision,
//!   so `.ipynb_checkpoints` and the like never become classes. With a classes file, each
//!   folder's label is its name's line in that file instead.
//! * **CSV**: a header naming a `path` and a `label` column (other columns are ignored);
//!   relative paths are resolved against the CSV's folder; a label is a class index or a
//!   class name from the classes file.
//! * **`.npy`**: an image array `[N, H, W]`, `[N, C, H, W]` or `[N, H, W, C]` (the channel
//!   axis is guessed, or set by [`Layout`]) of any integer or float dtype, with a labels
//!   array `[N]`. A folder holding `images.npy` and `labels.npy` works too.
//! * **IDX** (MNIST's format), plain or gzipped: `*-idx3-ubyte` images with the matching
//!   `*-idx1-ubyte` labels.
//!
//! Class names come from the classes file ([`DataSpec::classes`], one name per line), else
//! the folder names (ImageFolder), else a `classes.txt` beside the data, else `"0"`, `"1"`,
//! ... up to the largest label.
//!
//! # Design: validate early, decode late
//!
//! [`Dataset::open`] does everything that can fail without reading pixels: it lists image
//! files, parses array headers, reads the labels, and checks that counts agree, labels name
//! classes, IDX magic numbers are right and files are as long as their headers say. Pixels
//! are only read by [`Dataset::batch`] (or [`Dataset::batches`]), one batch at a time: image
//! files are decoded then (in parallel), and `.npy` and plain IDX files are read in place
//! with one seek per batch. A data set larger than memory therefore streams through in
//! batch-sized pieces. The one exception is a gzipped IDX file, which is decompressed into
//! memory when opened because gzip cannot seek (the MNIST training images are 47 MB).
//!
//! # From pixels to model inputs
//!
//! Each sample is turned into the model's `[C, H, W]` input inside its bounds `[lo, hi]`:
//!
//! 1. **Check.** Integer pixels must lie in `0..=scale` ([`DataSpec::scale`], default 255,
//!    or 65535 for 16-bit PNGs). Float pixels (`.npy` `f4`/`f8`) are taken as already in the
//!    model's units and must be finite and inside `[lo, hi]`; nothing is clipped silently.
//! 2. **Channels.** Gray → RGB replicates the plane; RGB → gray is the ITU-R 601-2 luma
//!    `0.299 R + 0.587 G + 0.114 B`, rounded for integer data exactly as PIL's
//!    `convert("L")` (and so torchvision's `Grayscale`) does. Alpha is dropped.
//! 3. **Size**, per [`ResizeMode`]: a direct resize, a center crop, or torchvision's
//!    resize-the-shorter-side-then-crop. Resampling uses a separable triangle filter
//!    (bilinear, antialiased when shrinking, as the image crate and PIL do), in `f32`.
//! 4. **Scale.** An integer `v` becomes `lo + (v / scale) · (hi − lo)` in `f32`, which for
//!    bounds `[0, 1]` is exactly `v / 255`, torchvision's `ToTensor`.
//!
//! A [`DataBatch`] holds the `N × C × H × W` values (NCHW), the labels, and each sample's
//! index in the data set.
//!
//! # Limits
//!
//! Every size read from a file is checked before memory is reserved for it, against the
//! [`DataLimits`] of the spec (`[data.limits]` in `robust.toml`): without a classes file a
//! label must be below [`DataLimits::max_classes`] (default 100,000), since the data set then
//! has one class per label up to the largest; an image's width × height, read from the PNG or
//! JPEG header before decoding (and enforced as the decoder's allocation limit), from an
//! `.npy` or IDX header, or the model's input size, must be at most
//! [`DataLimits::max_image_pixels`] (default 8192 × 8192); an `.npy` header's length and
//! the product of its shape must fit in the file. The error names the file, the value and
//! the limit, so a label of 2⁶² or a 22000×22000 PNG of a few hundred kilobytes fails at
//! once instead of exhausting the memory.
//!
//! # Errors
//!
//! Every failure is a [`DataError`] naming the file concerned and the problem, e.g.
//! `labels.npy: holds 999 labels but images.npy holds 1000 images` or `cannot decode image
//! data/cat/3.png: ...`. Nothing in this crate panics on user input.
//!
//! # Example
//!
//! ```
//! use robust_data::{DataSpec, Dataset, ResizeMode};
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist-demo");
//! // A folder holding images.npy (uint8 [1000, 28, 28]) and labels.npy.
//! let mut spec = DataSpec::new(dir);
//! spec.resize = ResizeMode::Resize;
//! // A model taking 1×28×28 inputs in [0, 1]; keep the first 100 samples.
//! let data = Dataset::open(&spec, [1, 28, 28], [0.0, 1.0], Some(100))?;
//! assert_eq!(data.info().num_classes, 10);
//! for batch in data.batches(32) {
//!     let batch = batch?;
//!     assert_eq!(batch.pixels.len(), batch.len() * 28 * 28);
//!     assert!(batch.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
//! }
//! # Ok::<(), robust_data::DataError>(())
//! ```

mod classes;
mod dataset;
mod error;
mod folder;
mod idx;
mod npy;
mod spec;
mod transform;

pub use dataset::{Conversion, DataBatch, Dataset, DatasetInfo};
pub use error::{DataError, Result};
pub use folder::{CSV_LABEL_COLUMNS, CSV_PATH_COLUMNS};
pub use npy::npy_error_line;
pub use spec::{DataFormat, DataLimits, DataSpec, Layout, ResizeMode};
