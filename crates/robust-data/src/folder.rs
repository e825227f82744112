//! Image files: ImageFolder trees, `path,label` CSV files, and decoding one PNG/JPEG.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::classes::Classes;
use crate::error::{DataError, Result};
use crate::transform::{Kind, Raw};

/// Image files with their labels, in data set order.
pub(crate) struct Listing {
    pub files: Vec<PathBuf>,
    pub labels: Vec<usize>,
    /// CSV line of each file (1-based, the header is line 1); empty for an ImageFolder.
    pub lines: Vec<u64>,
    pub class_names: Vec<String>,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io("list", dir, e))? {
        let entry = entry.map_err(|e| DataError::io("list", dir, e))?;
        let name = entry.file_name();
        if is_hidden(&name) {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(out)
}

/// Lists an ImageFolder tree: classes are the sorted subfolder names (or looked up in
/// `classes`), files are every PNG/JPEG below a class folder, in torchvision's order.
pub(crate) fn list_image_folder(root: &Path, classes: Option<&Classes>) -> Result<Listing> {
    let mut class_dirs = Vec::new();
    for (name, path) in read_dir_sorted(root)? {
        if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            let name = name.into_string().map_err(|n| {
                DataError::format(root, format!("class folder name {n:?} is not valid UTF-8"))
            })?;
            class_dirs.push((name, path));
        }
    }
    if class_dirs.is_empty() {
        return Err(DataError::format(
            root,
            "holds no class subfolders; an image folder needs one subfolder of images per \
             class (torchvision's ImageFolder layout)",
        ));
    }
    let class_names = match classes {
        Some(c) => c.names.clone(),
        None => class_dirs.iter().map(|(n, _)| n.clone()).collect(),
    };
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (i, (name, dir)) in class_dirs.iter().enumerate() {
        let label = match classes {
            None => i,
            Some(c) => c.index_of(name).ok_or_else(|| {
                DataError::label(
                    dir,
                    format!(
                        "class folder `{name}` is not a class named in {}",
                        c.path.display()
                    ),
                )
            })?,
        };
        let found = class_files(dir)?;
        labels.extend(std::iter::repeat_n(label, found.len()));
        files.extend(found);
    }
    if files.is_empty() {
        return Err(DataError::format(
            root,
            "holds no .png, .jpg or .jpeg images in its class subfolders",
        ));
    }
    Ok(Listing {
        files,
        labels,
        lines: Vec::new(),
        class_names,
    })
}

/// The images below one class folder, recursively, in torchvision's order: folders sorted
/// by path (as `sorted(os.walk(...))` does), files within a folder sorted by name.
fn class_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut stack = vec![class_dir.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(dir) = stack.pop() {
        // Symbolic links are followed (as torchvision does); a cycle is walked once.
        let canon = fs::canonicalize(&dir).map_err(|e| DataError::io("read", &dir, e))?;
        if !seen.insert(canon) {
            continue;
        }
        let mut here = Vec::new();
        for (_, path) in read_dir_sorted(&dir)? {
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                // A broken link with an image extension is kept: reading it fails later
                // with an error that names it.
                Ok(m) if !m.is_file() => {}
                _ if has_image_extension(&path) => here.push(path),
                _ => {}
            }
        }
        dirs.push((dir, here));
    }
    dirs.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    Ok(dirs.into_iter().flat_map(|(_, f)| f).collect())
}

/// Header names accepted for a CSV's image column, in order of preference.
pub const CSV_PATH_COLUMNS: &[&str] = &[
    "path",
    "filename",
    "file",
    "image",
    "image_path",
    "filepath",
];
/// Header names accepted for a CSV's label column, in order of preference.
pub const CSV_LABEL_COLUMNS: &[&str] = &["label", "class", "target", "category"];

/// Reads a `path,label` CSV; relative paths are resolved against the CSV's folder. Without
/// a classes file, every label must be below `max_classes`.
///
/// The image column is the first of [`CSV_PATH_COLUMNS`] the header names (case-insensitive),
/// the label column the first of [`CSV_LABEL_COLUMNS`].
pub(crate) fn read_csv(
    csv_path: &Path,
    classes: Option<&Classes>,
    max_classes: usize,
) -> Result<Listing> {
    let base = csv_path.parent().unwrap_or(Path::new(""));
    let file = fs::File::open(csv_path).map_err(|e| DataError::io("read", csv_path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    // The csv crate's messages already give the record and line.
    let csv_err = |e: csv::Error| DataError::format(csv_path, e.to_string());
    let header = reader.headers().map_err(csv_err)?.clone();
    // The image column may be called by any of the usual names (first match wins, in this
    // order), and so may the label column.
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| header.iter().position(|h| h.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                let got: Vec<&str> = header.iter().collect();
                DataError::format(
                    csv_path,
                    format!(
                        "missing column `{}`: the header is `{}`; it must name an image column \
                         ({}) and a label column ({})",
                        names[0],
                        got.join(","),
                        CSV_PATH_COLUMNS.join(", "),
                        CSV_LABEL_COLUMNS.join(", ")
                    ),
                )
            })
    };
    let (path_col, label_col) = (column(CSV_PATH_COLUMNS)?, column(CSV_LABEL_COLUMNS)?);
    let mut listing = Listing {
        files: Vec::new(),
        labels: Vec::new(),
        lines: Vec::new(),
        class_names: Vec::new(),
    };
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |col: usize, name: &str| {
            record.get(col).ok_or_else(|| {
                DataError::format(csv_path, format!("line {line}: no `{name}` value"))
            })
        };
        let rel = field(path_col, "path")?;
        if rel.is_empty() {
            return Err(DataError::format(
                csv_path,
                format!("line {line}: empty path"),
            ));
        }
        let text = field(label_col, "label")?;
        let label = parse_label(text, classes, max_classes)
            .map_err(|reason| DataError::label(csv_path, format!("line {line}: {reason}")))?;
        listing.files.push(base.join(rel));
        listing.labels.push(label);
        listing.lines.push(line);
    }
    if listing.files.is_empty() {
        return Err(DataError::format(
            csv_path,
            "holds no rows after the header; a data set needs at least one image",
        ));
    }
    Ok(listing)
}

/// A CSV label: a class index, or a class name looked up in the classes file.
fn parse_label(
    text: &str,
    classes: Option<&Classes>,
    max_classes: usize,
) -> std::result::Result<usize, String> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let is_index = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if is_index {
        let i = digits.parse::<usize>().ok();
        match classes {
            Some(c) if i.is_none_or(|i| i >= c.names.len()) => {
                return Err(format!(
                    "label {text} is out of range: {} names {} classes (0..={})",
                    c.path.display(),
                    c.names.len(),
                    c.names.len() - 1
                ))
            }
            None if i.is_none_or(|i| i >= max_classes) => {
                return Err(format!(
                    "label {text}, {}",
                    crate::dataset::too_many_classes(max_classes)
                ))
            }
            _ => {}
        }
        if let Some(i) = i {
            return Ok(i);
        }
    }
    if text.is_empty() {
        return Err("empty label".into());
    }
    if text
        .strip_prefix('-')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("label {text} is negative"));
    }
    match classes {
        Some(c) => c.index_of(text).ok_or_else(|| {
            format!(
                "`{text}` is neither a class index nor a class named in {}",
                c.path.display()
            )
        }),
        None => Err(format!(
            "`{text}` is not a class index, and there is no classes file to look class names \
             up in (pass --classes FILE, set `classes` in robust.toml's [data], or put a \
             classes.txt beside the CSV)"
        )),
    }
}

/// Decodes one PNG/JPEG (format guessed from its content) into planar gray or RGB values:
/// 8-bit images in 0..=255 (default divisor 255), 16-bit ones in 0..=65535 (default 65535).
/// Alpha is dropped, palettes are expanded.
///
/// The size in the file's header is checked against `max_pixels` (width × height) before
/// anything is decoded, and the decoder runs under the image crate's [`image::Limits`]
/// (width, height, and allocations of at most 8 bytes per allowed pixel), so a small file
/// that claims a huge image fails at once instead of exhausting the memory.
pub(crate) fn decode_image(path: &Path, scale: Option<f32>, max_pixels: u64) -> Result<Raw> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::not_found(path, "image file"),
            _ => DataError::io("read", path, e),
        })?
        .with_guessed_format()
        .map_err(|e| DataError::io("read", path, e))?;
    let decode_err = |e: image::ImageError| DataError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    // The decoded image (at most 4 channels of 16 bits) and the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits.clone());
    let decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(path, None, max_pixels),
        e => decode_err(e),
    })?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(too_large(path, Some((width, height)), max_pixels));
    }
    limits
        .reserve(image::ImageDecoder::total_bytes(&decoder))
        .map_err(|_| too_large(path, Some((width, height)), max_pixels))?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    let color = img.color();
    let wide = color.bytes_per_pixel() / color.channel_count() > 1;
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (c, interleaved, full): (usize, Vec<f32>, f32) = match (color.has_color(), wide) {
        (false, false) => (1, to_f32(img.into_luma8().into_raw()), 255.0),
        (true, false) => (3, to_f32(img.into_rgb8().into_raw()), 255.0),
        (false, true) => (1, to_f32(img.into_luma16().into_raw()), 65535.0),
        (true, true) => (3, to_f32(img.into_rgb16().into_raw()), 65535.0),
    };
    if h == 0 || w == 0 {
        return Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: "the image has no pixels".into(),
        });
    }
    Ok(Raw {
        c,
        h,
        w,
        data: hwc_to_chw(&interleaved, c, h * w),
        kind: Kind::Int {
            scale: scale.unwrap_or(full),
        },
    })
}

/// An image above [`crate::DataLimits::max_image_pixels`].
fn too_large(path: &Path, size: Option<(u32, u32)>, max: u64) -> DataError {
    let what = match size {
        Some((w, h)) => format!("{w}×{h} = {} pixels", u64::from(w) * u64::from(h)),
        None => "its size".to_string(),
    };
    DataError::Decode {
        path: path.to_path_buf(),
        reason: format!(
            "the header declares {what}, above the limit of {max} pixels per image \
             ([data.limits] max_image_pixels); refusing to decode it"
        ),
    }
}

fn to_f32<T: Copy + Into<f32>>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(Into::into).collect()
}

/// Interleaved `pixels × c` to planar `c × pixels`.
pub(crate) fn hwc_to_chw(data: &[f32], c: usize, pixels: usize) -> Vec<f32> {
    if c == 1 {
        return data.to_vec();
    }
    let mut out = vec![0f32; c * pixels];
    for (p, px) in data.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * pixels + p] = v;
        }
    }
    out
}
