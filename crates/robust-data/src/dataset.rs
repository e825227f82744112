//! [`Dataset`]: opening a data set in any supported format, and decoding it batch by batch.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::classes::Classes;
use crate::error::{DataError, Result};
use crate::folder::{self, hwc_to_chw};
use crate::idx::{IdxFile, IdxKind};
use crate::npy::NpyArray;
use crate::spec::{DataFormat, DataLimits, DataSpec, Layout};
use crate::transform::{Kind, Raw, Target};

/// What a data set is, for reports and for checking it against a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetInfo {
    /// The data set's path, as given in the [`DataSpec`].
    pub source: String,
    /// Its format (given or detected).
    pub format: DataFormat,
    /// The number of samples (after the `limit` given to [`Dataset::open`]).
    pub size: usize,
    /// The number of classes: of the classes file or class folders if there is one, else
    /// one more than the largest label.
    pub num_classes: usize,
    /// One name per class; `class_names[label]` names `label`.
    pub class_names: Vec<String>,
}

/// Consecutive samples decoded into model inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataBatch {
    /// `N × C × H × W` values, row-major (NCHW), every one inside the model's bounds.
    pub pixels: Vec<f32>,
    /// The class index of each sample.
    pub labels: Vec<usize>,
    /// The position of each sample in the data set.
    pub indices: Vec<usize>,
}

impl DataBatch {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// An opened, validated data set, decoded on demand one batch at a time.
///
/// Opening lists image files (ImageFolder, CSV) or parses array headers (`.npy`, plain
/// IDX) without reading any pixel, so memory stays bounded by one batch whatever the data
/// set's size. Only gzipped IDX files are held in memory (gzip cannot seek). Labels are
/// always read up front (one integer per sample).
#[derive(Debug)]
pub struct Dataset {
    info: DatasetInfo,
    target: Target,
    labels: Vec<usize>,
    source: Source,
    /// What had to change in the samples decoded so far, with how many samples each.
    conversions: Mutex<BTreeMap<String, usize>>,
}

/// One way samples were changed to fit the model (a channel conversion or a new size), and
/// how many of the samples decoded so far it applied to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// What was done, e.g. `RGB → gray (ITU-R 601-2 luma, ...)` or `32×32 → 28×28 (resize)`.
    pub what: String,
    /// The number of samples it was applied to.
    pub samples: usize,
}

#[derive(Debug)]
enum Source {
    Files {
        paths: Vec<PathBuf>,
        scale: Option<f32>,
        /// [`DataLimits::max_image_pixels`].
        max_pixels: u64,
    },
    Npy {
        array: NpyArray,
        layout: NpyLayout,
        kind: Kind,
    },
    Idx {
        images: IdxFile,
        scale: f32,
    },
}

/// How one sample of a `.npy` image array is laid out.
#[derive(Clone, Copy, Debug)]
struct NpyLayout {
    c: usize,
    h: usize,
    w: usize,
    nhwc: bool,
}

/// The labels and class names every format produces.
struct Labelled {
    labels: Vec<usize>,
    class_names: Vec<String>,
    source: Source,
}

impl Dataset {
    /// Opens and validates a data set for a model taking `shape = [C, H, W]` inputs with
    /// pixel values in `bounds = [lo, hi]`; `limit` keeps only the first samples.
    ///
    /// Checked here, before any batch is read: every file exists; the format's structure
    /// (IDX magic numbers and lengths, `.npy` dtype, shape and length, the CSV header);
    /// the number of images equals the number of labels; every label names a class. Image
    /// files are listed here but decoded only by [`Dataset::batch`], so a corrupt image is
    /// reported when its batch is read.
    pub fn open(
        spec: &DataSpec,
        shape: [usize; 3],
        bounds: [f32; 2],
        limit: Option<usize>,
    ) -> Result<Dataset> {
        let target = check_options(spec, shape, bounds)?;
        let path = spec.path.as_path();
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => return Err(DataError::not_found(path, "data set")),
            Err(e) => return Err(DataError::io("read", path, e)),
        }
        let format = match spec.format {
            Some(f) => f,
            None => detect_format(path)?,
        };
        if spec.layout.is_some() && format != DataFormat::Npy {
            return Err(DataError::options(format!(
                "`layout` applies to .npy images only, not to {format} data"
            )));
        }
        if spec.labels.is_some() && matches!(format, DataFormat::ImageFolder | DataFormat::Csv) {
            return Err(DataError::options(format!(
                "`labels` applies to npy and idx data; {format} data carries its own labels"
            )));
        }
        let classes = spec.classes.as_deref().map(Classes::read).transpose()?;
        let mut data = match format {
            DataFormat::ImageFolder => open_image_folder(spec, classes.as_ref())?,
            DataFormat::Csv => open_csv(spec, classes, limit)?,
            DataFormat::Npy => open_npy(spec, classes)?,
            DataFormat::Idx => open_idx(spec, classes)?,
        };
        let total = data.labels.len();
        let size = limit.map_or(total, |l| l.min(total));
        data.labels.truncate(size);
        match &mut data.source {
            Source::Files { paths, .. } => paths.truncate(size),
            Source::Idx { images, .. } => images.truncate(size),
            Source::Npy { .. } => {}
        }
        Ok(Dataset {
            info: DatasetInfo {
                source: spec.path.display().to_string(),
                format,
                size,
                num_classes: data.class_names.len(),
                class_names: data.class_names,
            },
            target,
            labels: data.labels,
            source: data.source,
            conversions: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every conversion applied to the samples decoded so far (by [`Dataset::batch`]), in a
    /// stable order: after a full pass, what the model was given instead of the files' own
    /// channels and sizes. Empty when every sample already fit the model.
    pub fn conversions(&self) -> Vec<Conversion> {
        self.conversions
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(what, &samples)| Conversion {
                        what: what.clone(),
                        samples,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record(&self, changes: Vec<String>) {
        if changes.is_empty() {
            return;
        }
        if let Ok(mut m) = self.conversions.lock() {
            for c in changes {
                *m.entry(c).or_insert(0) += 1;
            }
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.info.size
    }

    /// Whether the data set holds no samples (only possible with a `limit` of 0).
    pub fn is_empty(&self) -> bool {
        self.info.size == 0
    }

    /// What the data set is.
    pub fn info(&self) -> &DatasetInfo {
        &self.info
    }

    /// The label of every sample, in order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Decodes samples `[start, start + n)` into model inputs (see the crate documentation
    /// for the conversion). Image files are decoded in parallel. Fails on a request past
    /// the end, on an image that cannot be decoded (naming the file), and on pixel values
    /// the options do not allow (naming the file and sample).
    pub fn batch(&self, start: usize, n: usize) -> Result<DataBatch> {
        let len = self.len();
        let end = start
            .checked_add(n)
            .filter(|&e| e <= len)
            .ok_or(DataError::OutOfRange {
                start,
                end: start.saturating_add(n),
                len,
            })?;
        let target = &self.target;
        let per = target.sample_len();
        let mut pixels = vec![0f32; n * per];
        match &self.source {
            Source::Files {
                paths,
                scale,
                max_pixels,
            } => {
                let paths = &paths[start..end];
                par_fill(&mut pixels, per, |k, out| {
                    let raw = folder::decode_image(&paths[k], *scale, *max_pixels)?;
                    self.record(target.apply(raw, out, &paths[k], "")?);
                    Ok(())
                })?;
            }
            Source::Npy {
                array,
                layout,
                kind,
            } => {
                let l = *layout;
                let sample = l.c * l.h * l.w;
                let bytes = array.read(start * sample, n * sample)?;
                let mut values = Vec::with_capacity(n * sample);
                array.elem.for_each(&bytes, |v| values.push(v as f32));
                par_fill(&mut pixels, per, |k, out| {
                    let chunk = &values[k * sample..(k + 1) * sample];
                    let data = if l.nhwc {
                        hwc_to_chw(chunk, l.c, l.h * l.w)
                    } else {
                        chunk.to_vec()
                    };
                    let raw = Raw {
                        c: l.c,
                        h: l.h,
                        w: l.w,
                        data,
                        kind: *kind,
                    };
                    let what = format!("sample {}", start + k);
                    self.record(target.apply(raw, out, &array.path, &what)?);
                    Ok(())
                })?;
            }
            Source::Idx { images, scale } => {
                let (h, w) = (images.dims[1], images.dims[2]);
                let bytes = images.read(start, n)?;
                par_fill(&mut pixels, per, |k, out| {
                    let chunk = &bytes[k * h * w..(k + 1) * h * w];
                    let raw = Raw {
                        c: 1,
                        h,
                        w,
                        data: chunk.iter().map(|&v| f32::from(v)).collect(),
                        kind: Kind::Int { scale: *scale },
                    };
                    let what = format!("sample {}", start + k);
                    self.record(target.apply(raw, out, &images.path, &what)?);
                    Ok(())
                })?;
            }
        }
        Ok(DataBatch {
            pixels,
            labels: self.labels[start..end].to_vec(),
            indices: (start..end).collect(),
        })
    }

    /// Consecutive batches of `batch_size` samples (the last one may be shorter), each
    /// decoded only when the iterator reaches it. A `batch_size` of 0 yields one error.
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = Result<DataBatch>> + '_ {
        Batches {
            data: self,
            next: 0,
            size: batch_size,
            done: false,
        }
    }
}

struct Batches<'a> {
    data: &'a Dataset,
    next: usize,
    size: usize,
    done: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<DataBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.size == 0 {
            self.done = true;
            return Some(Err(DataError::options("the batch size must be at least 1")));
        }
        let len = self.data.len();
        if self.next >= len {
            self.done = true;
            return None;
        }
        let n = self.size.min(len - self.next);
        let start = self.next;
        self.next += n;
        Some(self.data.batch(start, n))
    }
}

/// Fills `out` (samples of `per` values) by calling `f(sample, slice)`, on several threads
/// when there are several samples; returns the error of the first failing sample.
fn par_fill<F>(out: &mut [f32], per: usize, f: F) -> Result<()>
where
    F: Fn(usize, &mut [f32]) -> Result<()> + Sync,
{
    let n = out.len().checked_div(per).unwrap_or(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n);
    if threads <= 1 {
        for (k, o) in out.chunks_mut(per).enumerate() {
            f(k, o)?;
        }
        return Ok(());
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = out
            .chunks_mut(chunk * per)
            .enumerate()
            .map(|(t, part)| {
                s.spawn(move || {
                    for (k, o) in part.chunks_mut(per).enumerate() {
                        f(t * chunk + k, o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

fn check_options(spec: &DataSpec, shape: [usize; 3], bounds: [f32; 2]) -> Result<Target> {
    let [c, h, w] = shape;
    if !matches!(c, 1 | 3) {
        return Err(DataError::options(format!(
            "the model takes {c} channels; only 1 (gray) or 3 (RGB) are supported"
        )));
    }
    if h == 0 || w == 0 {
        return Err(DataError::options(format!(
            "the model's input size {h}×{w} is empty"
        )));
    }
    let max = spec.limits.max_image_pixels;
    if (h as u64).checked_mul(w as u64).is_none_or(|p| p > max) {
        return Err(DataError::options(format!(
            "the model's input size {h}×{w} is above the limit of {max} pixels per image \
             ([data.limits] max_image_pixels)"
        )));
    }
    let [lo, hi] = bounds;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(DataError::options(format!(
            "bounds [{lo}, {hi}] must be finite with lower < upper"
        )));
    }
    if let Some(s) = spec.scale {
        if !(s.is_finite() && s > 0.0) {
            return Err(DataError::options(format!(
                "`scale` {s} must be a positive number"
            )));
        }
    }
    Ok(Target {
        c,
        h,
        w,
        lo,
        hi,
        resize: spec.resize,
    })
}

fn lower_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_idx_images_name(path: &Path) -> bool {
    let name = lower_name(path);
    name.ends_with("idx3-ubyte") || name.ends_with("idx3-ubyte.gz")
}

fn detect_format(path: &Path) -> Result<DataFormat> {
    if path.is_dir() {
        if path.join("images.npy").is_file() {
            return Ok(DataFormat::Npy);
        }
        let entries = fs::read_dir(path).map_err(|e| DataError::io("list", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DataError::io("list", path, e))?;
            if is_idx_images_name(&entry.path()) && entry.path().is_file() {
                return Ok(DataFormat::Idx);
            }
        }
        return Ok(DataFormat::ImageFolder);
    }
    let name = lower_name(path);
    if name.ends_with(".csv") {
        return Ok(DataFormat::Csv);
    }
    if name.ends_with(".npy") {
        return Ok(DataFormat::Npy);
    }
    if is_idx_images_name(path) {
        return Ok(DataFormat::Idx);
    }
    // Not recognisable by name: look at the first bytes.
    let mut head = [0u8; 6];
    let got = fs::File::open(path)
        .and_then(|mut f| {
            use std::io::Read;
            let mut got = 0;
            while got < head.len() {
                match f.read(&mut head[got..])? {
                    0 => break,
                    n => got += n,
                }
            }
            Ok(got)
        })
        .map_err(|e| DataError::io("read", path, e))?;
    if got == 6 && &head == b"\x93NUMPY" {
        return Ok(DataFormat::Npy);
    }
    if got >= 4 && head[..4] == [0, 0, 8, 3] {
        return Ok(DataFormat::Idx);
    }
    Err(DataError::format(
        path,
        "cannot tell the data format from the file's name or content; set `format` to one of \
         image-folder, csv, npy, idx",
    ))
}

/// `classes.txt` beside `file`, if there is one.
fn classes_beside(file: &Path) -> Result<Option<Classes>> {
    let candidate = file.parent().unwrap_or(Path::new("")).join("classes.txt");
    if candidate.is_file() {
        Classes::read(&candidate).map(Some)
    } else {
        Ok(None)
    }
}

/// Checks labels read from `path` and returns the class names: the classes file's (every
/// label must name one of its classes), or `"0"..` up to the largest label, which must be
/// below [`DataLimits::max_classes`]. The check comes first, so a hostile label cannot make
/// this allocate one name per class up to it.
fn checked_class_names(
    labels: &[usize],
    classes: Option<&Classes>,
    path: &Path,
    limits: &DataLimits,
) -> Result<Vec<String>> {
    match classes {
        Some(c) => {
            let k = c.names.len();
            if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
                return Err(DataError::label(
                    path,
                    format!(
                        "sample {i} has label {l}, out of range: {} names {k} classes (0..={})",
                        c.path.display(),
                        k - 1
                    ),
                ));
            }
            Ok(c.names.clone())
        }
        None => {
            let max = limits.max_classes;
            if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= max) {
                return Err(DataError::label(
                    path,
                    format!("sample {i} has label {l}, {}", too_many_classes(max)),
                ));
            }
            let k = labels.iter().max().map_or(0, |m| m + 1);
            Ok((0..k).map(|i| i.to_string()).collect())
        }
    }
}

/// Why a label at or above [`DataLimits::max_classes`] is refused (after "label N, ").
pub(crate) fn too_many_classes(max: usize) -> String {
    format!(
        "which is too large: without a classes file every label must be below the limit of \
         {max} classes ([data.limits] max_classes; or give a classes file)"
    )
}

/// Refuses images of `h × w` pixels above [`DataLimits::max_image_pixels`].
fn check_image_pixels(path: &Path, h: usize, w: usize, limits: &DataLimits) -> Result<()> {
    let max = limits.max_image_pixels;
    if (h as u64).checked_mul(w as u64).is_none_or(|p| p > max) {
        return Err(DataError::format(
            path,
            format!(
                "images of {h}×{w} pixels are above the limit of {max} pixels per image \
                 ([data.limits] max_image_pixels)"
            ),
        ));
    }
    Ok(())
}

fn require_dir(path: &Path, format: DataFormat) -> Result<()> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(DataError::format(
            path,
            format!("{format} data must be a folder, this is a file"),
        ))
    }
}

fn require_file(path: &Path, format: DataFormat) -> Result<()> {
    if path.is_dir() {
        Err(DataError::format(
            path,
            format!("{format} data must be a file, this is a folder"),
        ))
    } else {
        Ok(())
    }
}

fn open_image_folder(spec: &DataSpec, classes: Option<&Classes>) -> Result<Labelled> {
    require_dir(&spec.path, DataFormat::ImageFolder)?;
    let listing = folder::list_image_folder(&spec.path, classes)?;
    Ok(Labelled {
        labels: listing.labels,
        class_names: listing.class_names,
        source: Source::Files {
            paths: listing.files,
            scale: spec.scale,
            max_pixels: spec.limits.max_image_pixels,
        },
    })
}

fn open_csv(spec: &DataSpec, classes: Option<Classes>, limit: Option<usize>) -> Result<Labelled> {
    let csv = &spec.path;
    require_file(csv, DataFormat::Csv)?;
    let classes = match classes {
        Some(c) => Some(c),
        None => classes_beside(csv)?,
    };
    let listing = folder::read_csv(csv, classes.as_ref(), spec.limits.max_classes)?;
    let checked = limit.map_or(listing.files.len(), |l| l.min(listing.files.len()));
    for (file, line) in listing.files.iter().zip(&listing.lines).take(checked) {
        let what = || format!("image on line {line} of {}", csv.display());
        match fs::metadata(file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(DataError::format(
                    csv,
                    format!("line {line}: {} is not a file", file.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::not_found(file, what()))
            }
            Err(e) => return Err(DataError::io("read", file, e)),
        }
    }
    Ok(Labelled {
        class_names: checked_class_names(&listing.labels, classes.as_ref(), csv, &spec.limits)?,
        labels: listing.labels,
        source: Source::Files {
            paths: listing.files,
            scale: spec.scale,
            max_pixels: spec.limits.max_image_pixels,
        },
    })
}

fn npy_layout(array: &NpyArray, layout: Option<Layout>, limits: &DataLimits) -> Result<NpyLayout> {
    let path = &array.path;
    let l = match (array.shape.as_slice(), layout) {
        (&[_, h, w], _) => NpyLayout {
            c: 1,
            h,
            w,
            nhwc: false,
        },
        (&[_, c, h, w], Some(Layout::Nchw)) => NpyLayout {
            c,
            h,
            w,
            nhwc: false,
        },
        (&[_, h, w, c], Some(Layout::Nhwc)) => NpyLayout {
            c,
            h,
            w,
            nhwc: true,
        },
        (&[_, a, b, d], None) => {
            if matches!(a, 1 | 3) {
                NpyLayout {
                    c: a,
                    h: b,
                    w: d,
                    nhwc: false,
                }
            } else if matches!(d, 1 | 3) {
                NpyLayout {
                    c: d,
                    h: a,
                    w: b,
                    nhwc: true,
                }
            } else {
                return Err(DataError::format(
                    path,
                    format!(
                        "cannot find the channel axis of shape {:?}: neither axis 1 (NCHW) nor \
                         axis 3 (NHWC) is 1 or 3",
                        array.shape
                    ),
                ));
            }
        }
        (s, _) => {
            return Err(DataError::format(
                path,
                format!(
                    "images must have shape [N, H, W], [N, C, H, W] or [N, H, W, C]; this one \
                     is {s:?}"
                ),
            ))
        }
    };
    if !matches!(l.c, 1 | 3) {
        return Err(DataError::format(
            path,
            format!(
                "images have {} channels (shape {:?}, {}); only 1 (gray) or 3 (RGB) are \
                 supported",
                l.c,
                array.shape,
                if l.nhwc { "NHWC" } else { "NCHW" }
            ),
        ));
    }
    if l.h == 0 || l.w == 0 {
        return Err(DataError::format(
            path,
            format!("images of shape {:?} have no pixels", array.shape),
        ));
    }
    check_image_pixels(path, l.h, l.w, limits)?;
    Ok(l)
}

fn open_npy(spec: &DataSpec, classes: Option<Classes>) -> Result<Labelled> {
    let path = &spec.path;
    let images_path = if path.is_dir() {
        path.join("images.npy")
    } else {
        path.clone()
    };
    let array = NpyArray::open(&images_path, "images file")?;
    let layout = npy_layout(&array, spec.layout, &spec.limits)?;
    let n = array.shape[0];
    if n == 0 {
        return Err(DataError::format(
            &images_path,
            "holds no images (shape [0, ...])",
        ));
    }
    let (labels_path, what) = match &spec.labels {
        Some(p) => (p.clone(), "labels file".to_string()),
        None => (
            images_path
                .parent()
                .unwrap_or(Path::new(""))
                .join("labels.npy"),
            format!(
                "labels file (the default beside {}; set `labels` to use another)",
                images_path.display()
            ),
        ),
    };
    let labels = if spec.labels.is_none() && spec.unlabelled && !labels_path.exists() {
        vec![0; n]
    } else {
        read_npy_labels(&labels_path, &what, n, &images_path)?
    };
    let classes = match classes {
        Some(c) => Some(c),
        None => classes_beside(&images_path)?,
    };
    let class_names = checked_class_names(&labels, classes.as_ref(), &labels_path, &spec.limits)?;
    let kind = if array.elem.is_float() {
        Kind::Float
    } else {
        Kind::Int {
            scale: spec.scale.unwrap_or(255.0),
        }
    };
    Ok(Labelled {
        class_names,
        labels,
        source: Source::Npy {
            array,
            layout,
            kind,
        },
    })
}

/// The IDX images file in a folder: the one `*idx3-ubyte` base name, plain preferred to
/// gzipped.
fn find_idx_images(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io("list", dir, e))? {
        let p = entry.map_err(|e| DataError::io("list", dir, e))?.path();
        if is_idx_images_name(&p) && p.is_file() {
            found.push(p);
        }
    }
    found.sort();
    let base = |p: &Path| {
        let n = p.to_string_lossy().to_string();
        let lower = n.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            n[..n.len() - 3].to_string()
        } else {
            n
        }
    };
    let mut bases: Vec<String> = found.iter().map(|p| base(p)).collect();
    bases.dedup();
    match bases.len() {
        0 => Err(DataError::format(
            dir,
            "holds no IDX images file (a name ending in idx3-ubyte or idx3-ubyte.gz)",
        )),
        1 => {
            let plain = PathBuf::from(&bases[0]);
            Ok(if found.contains(&plain) {
                plain
            } else {
                found.swap_remove(0)
            })
        }
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into())
                .collect();
            Err(DataError::format(
                dir,
                format!(
                    "holds several IDX images files ({}); set `path` to the one to use",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The labels file matching an IDX images file: `images` → `labels`, `idx3` → `idx1` in the
/// name, plain or gzipped (the images file's compression first).
fn default_idx_labels(images: &Path) -> Result<PathBuf> {
    let name = images
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .replace("idx3", "idx1")
        .replace("images", "labels");
    let toggled = match name.strip_suffix(".gz") {
        Some(plain) => plain.to_string(),
        None => format!("{name}.gz"),
    };
    let dir = images.parent().unwrap_or(Path::new(""));
    for candidate in [&name, &toggled] {
        let p = dir.join(candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::not_found(
        &dir.join(&name),
        format!(
            "IDX labels file matching {} (set `labels` to the labels file)",
            images.display()
        ),
    ))
}

fn open_idx(spec: &DataSpec, classes: Option<Classes>) -> Result<Labelled> {
    let path = &spec.path;
    let images_path = if path.is_dir() {
        find_idx_images(path)?
    } else {
        path.clone()
    };
    let images = IdxFile::open(&images_path, IdxKind::Images, "IDX images file")?;
    let n = images.dims[0];
    if n == 0 {
        return Err(DataError::format(&images_path, "holds no images"));
    }
    if images.dims[1] == 0 || images.dims[2] == 0 {
        return Err(DataError::format(
            &images_path,
            format!(
                "images of {}×{} pixels are empty",
                images.dims[1], images.dims[2]
            ),
        ));
    }
    check_image_pixels(&images_path, images.dims[1], images.dims[2], &spec.limits)?;
    let labels_path = match &spec.labels {
        Some(p) => p.clone(),
        None => default_idx_labels(&images_path)?,
    };
    let labels_file = IdxFile::open(&labels_path, IdxKind::Labels, "IDX labels file")?;
    let nl = labels_file.dims[0];
    if nl != n {
        return Err(DataError::mismatch(
            &labels_path,
            format!(
                "holds {nl} labels but {} holds {n} images",
                images_path.display()
            ),
        ));
    }
    let labels: Vec<usize> = labels_file
        .read(0, nl)?
        .into_iter()
        .map(usize::from)
        .collect();
    let classes = match classes {
        Some(c) => Some(c),
        None => classes_beside(&images_path)?,
    };
    let class_names = checked_class_names(&labels, classes.as_ref(), &labels_path, &spec.limits)?;
    Ok(Labelled {
        class_names,
        labels,
        source: Source::Idx {
            images,
            scale: spec.scale.unwrap_or(255.0),
        },
    })
}

/// Reads and checks an `.npy` labels file for `n` images.
fn read_npy_labels(
    labels_path: &Path,
    what: &str,
    n: usize,
    images_path: &Path,
) -> Result<Vec<usize>> {
    let labels_arr = NpyArray::open(labels_path, what)?;
    let nl = labels_arr.shape.first().copied().unwrap_or(1);
    if !matches!(labels_arr.shape.as_slice(), [_] | [_, 1]) {
        return Err(DataError::format(
            labels_path,
            format!(
                "labels must have shape [N] (or [N, 1]); this one is {:?}",
                labels_arr.shape
            ),
        ));
    }
    if nl != n {
        return Err(DataError::mismatch(
            labels_path,
            format!(
                "holds {nl} labels but {} holds {n} images",
                images_path.display()
            ),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    let mut bad = None;
    labels_arr.for_each_label(|i, v| {
        if bad.is_some() {
            return;
        }
        match v {
            Ok(l) => labels.push(l),
            Err(why) => bad = Some(format!("sample {i} has label {why}")),
        }
    })?;
    match bad {
        Some(reason) => Err(DataError::label(labels_path, reason)),
        None => Ok(labels),
    }
}
