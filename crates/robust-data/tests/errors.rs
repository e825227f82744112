//! Every kind of bad input gives a clear error naming the file concerned.

mod common;

use std::path::Path;

use common::{fixture, write_npy};
use robust_data::{DataError, DataFormat, DataSpec, Dataset, Layout, ResizeMode};

const GRAY28: [usize; 3] = [1, 28, 28];
const UNIT: [f32; 2] = [0.0, 1.0];

fn open_err(spec: &DataSpec, shape: [usize; 3]) -> DataError {
    Dataset::open(spec, shape, UNIT, None).expect_err("the data set should be refused")
}

/// The message names `path` (by its file name) and says each of `words`.
fn assert_names(err: &DataError, path: &Path, words: &[&str]) {
    let msg = err.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "message does not name {name}: {msg}");
    for w in words {
        assert!(msg.contains(w), "message does not say `{w}`: {msg}");
    }
}

fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn missing_path() {
    let path = fixture("no-such-data");
    let err = open_err(&DataSpec::new(&path), GRAY28);
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert_names(&err, &path, &["not found"]);
}

#[test]
fn corrupt_png_is_reported_when_its_batch_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("seven");
    std::fs::create_dir(&class).unwrap();
    image::GrayImage::from_pixel(28, 28, image::Luma([3]))
        .save(class.join("a.png"))
        .unwrap();
    let bad = class.join("b.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n this is not really a PNG file").unwrap();
    // Opening lists files without decoding them.
    let data = Dataset::open(&DataSpec::new(dir.path()), GRAY28, UNIT, None).unwrap();
    assert_eq!(data.len(), 2);
    assert!(data.batch(0, 1).is_ok());
    let err = data.batch(0, 2).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert_names(&err, &bad, &["cannot decode image"]);
    // The iterator yields the same error for the batch holding the file.
    let results: Vec<_> = data.batches(1).collect();
    assert!(results[0].is_ok() && results[1].is_err());
}

#[test]
fn csv_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("classes.txt"), "a\nb\nc\n").unwrap();
    image::GrayImage::new(2, 2).save(d.join("x.png")).unwrap();
    let csv = d.join("data.csv");
    std::fs::write(&csv, "path,label\nx.png,2\nx.png,5\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), [1, 2, 2]);
    assert!(matches!(err, DataError::Label { .. }), "{err:?}");
    assert_names(&err, &csv, &["line 3", "label 5", "3 classes"]);
    // An unknown class name, and a negative index.
    std::fs::write(&csv, "path,label\nx.png,dog\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), [1, 2, 2]);
    assert_names(&err, &csv, &["line 2", "`dog`", "classes.txt"]);
    std::fs::write(&csv, "path,label\nx.png,-1\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), [1, 2, 2]);
    assert_names(&err, &csv, &["line 2", "negative"]);
}

#[test]
fn csv_missing_column_and_missing_image() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, "path,kind\na.png,1\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), GRAY28);
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_names(&err, &csv, &["missing column `label`"]);
    // A row with too few fields.
    std::fs::write(&csv, "path,label\na.png\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), GRAY28);
    assert_names(&err, &csv, &["line: 2", "1 fields"]);
    // A listed image that does not exist.
    std::fs::write(&csv, "path,label\nmissing.png,0\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), GRAY28);
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert_names(&err, Path::new("missing.png"), &["line 2", "data.csv"]);
    // A class name without any classes file.
    image::GrayImage::new(2, 2)
        .save(dir.path().join("x.png"))
        .unwrap();
    std::fs::write(&csv, "path,label\nx.png,cat\n").unwrap();
    let err = open_err(&DataSpec::new(&csv), [1, 2, 2]);
    assert_names(&err, &csv, &["no classes file"]);
}

#[test]
fn npy_image_and_label_counts_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_npy(&d.join("images.npy"), &[1000, 2, 2], &vec![0u8; 4000]);
    write_npy(&d.join("labels.npy"), &[999], &vec![0i64; 999]);
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
    assert_names(&err, &d.join("labels.npy"), &["999 labels", "1000 images"]);
}

#[test]
fn npy_bad_dtype_shape_labels_and_missing_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images.npy");
    // Missing labels.npy: the default path is named.
    write_npy(&images, &[2, 2, 2], &[0u8; 8]);
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert_names(&err, &d.join("labels.npy"), &["labels file"]);
    // Negative label.
    write_npy(&d.join("labels.npy"), &[2], &[0i64, -3]);
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert!(matches!(err, DataError::Label { .. }), "{err:?}");
    assert_names(&err, &d.join("labels.npy"), &["sample 1", "-3"]);
    // Label beyond classes.txt.
    write_npy(&d.join("labels.npy"), &[2], &[0i64, 4]);
    std::fs::write(d.join("classes.txt"), "x\ny\n").unwrap();
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert_names(
        &err,
        &d.join("labels.npy"),
        &["sample 1", "label 4", "2 classes"],
    );
    std::fs::remove_file(d.join("classes.txt")).unwrap();
    // Five channels.
    write_npy(&images, &[2, 5, 2, 2], &[0u8; 40]);
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert_names(&err, &images, &["[2, 5, 2, 2]"]);
    write_npy(&images, &[2, 2, 2, 5], &[0u8; 40]);
    let mut spec = DataSpec::new(d);
    spec.layout = Some(Layout::Nhwc);
    assert_names(&open_err(&spec, [1, 2, 2]), &images, &["5 channels"]);
    // 1-D images, and a string dtype.
    write_npy(&images, &[2], &[0u8; 2]);
    assert_names(&open_err(&DataSpec::new(d), [1, 2, 2]), &images, &["shape"]);
    write_npy(&images, &[2, 2, 2], &[false; 8]);
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["unsupported dtype"],
    );
    // Not an npy file at all, and a truncated one.
    std::fs::write(&images, b"hello").unwrap();
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["not a valid .npy"],
    );
    write_npy(&images, &[2, 2, 2], &[0u8; 8]);
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 3]).unwrap();
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["truncated"],
    );
}

#[test]
fn float_npy_outside_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images.npy");
    write_npy(
        &images,
        &[3, 2, 2],
        &[
            0.5f32, 0.0, 1.0, 0.25, 0.1, 0.2, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0,
        ],
    );
    write_npy(&d.join("labels.npy"), &[3], &[0u8, 1, 2]);
    let data = Dataset::open(&DataSpec::new(d), [1, 2, 2], UNIT, None).unwrap();
    assert!(data.batch(0, 1).is_ok());
    let err = data.batch(0, 3).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_names(&err, &images, &["sample 1", "1.5", "bounds [0, 1]"]);
    // Inside wider bounds the same data is fine and kept as is.
    let wide = Dataset::open(&DataSpec::new(d), [1, 2, 2], [-2.0, 2.0], None).unwrap();
    assert_eq!(wide.batch(1, 1).unwrap().pixels, vec![0.1, 0.2, 1.5, 0.0]);
    // NaN is refused too.
    write_npy(&images, &[3, 2, 2], &[f64::NAN; 12]);
    let data = Dataset::open(&DataSpec::new(d), [1, 2, 2], UNIT, None).unwrap();
    assert_names(
        &data.batch(0, 1).unwrap_err(),
        &images,
        &["sample 0", "NaN"],
    );
}

#[test]
fn integer_pixels_above_the_scale() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images.npy");
    write_npy(&images, &[1, 2, 2], &[0u16, 255, 256, 1000]);
    write_npy(&d.join("labels.npy"), &[1], &[0u8]);
    let data = Dataset::open(&DataSpec::new(d), [1, 2, 2], UNIT, None).unwrap();
    let err = data.batch(0, 1).unwrap_err();
    assert_names(&err, &images, &["sample 0", "256", "`scale`"]);
    let mut spec = DataSpec::new(d);
    spec.scale = Some(1000.0);
    let data = Dataset::open(&spec, [1, 2, 2], UNIT, None).unwrap();
    assert_eq!(
        data.batch(0, 1).unwrap().pixels,
        vec![0.0, 0.255, 0.256, 1.0]
    );
}

#[test]
fn idx_wrong_magic_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images-idx3-ubyte");
    write_idx(&images, 0x0000_0801, &[2], &[0, 0]); // a labels header
    write_idx(&d.join("labels-idx1-ubyte"), 0x0000_0801, &[2], &[0, 1]);
    let err = open_err(&DataSpec::new(&images), [1, 2, 2]);
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_names(&err, &images, &["magic number 0x00000801", "0x00000803"]);
    std::fs::write(&images, b"GIF89a not idx").unwrap();
    let err = open_err(&DataSpec::new(&images), [1, 2, 2]);
    assert_names(&err, &images, &["not an IDX file", "magic number"]);
    write_idx(&images, 0x0000_0D03, &[1, 1, 1], &[0, 0, 0, 0]);
    let err = open_err(&DataSpec::new(&images), [1, 1, 1]);
    assert_names(&err, &images, &["0x0D", "32-bit float", "not supported"]);
    // A wrong magic number in the labels file.
    write_idx(&images, 0x0000_0803, &[2, 1, 1], &[0, 0]);
    let labels = d.join("labels-idx1-ubyte");
    write_idx(&labels, 0x0000_0803, &[2, 1, 1], &[0, 0]);
    let err = open_err(&DataSpec::new(&images), [1, 1, 1]);
    assert_names(&err, &labels, &["0x00000803", "0x00000801"]);
}

#[test]
fn idx_truncated_and_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images-idx3-ubyte");
    let labels = d.join("labels-idx1-ubyte");
    write_idx(&labels, 0x0000_0801, &[3], &[0, 1, 2]);
    write_idx(&images, 0x0000_0803, &[3, 2, 2], &[0; 11]);
    let err = open_err(&DataSpec::new(&images), [1, 2, 2]);
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_names(&err, &images, &["truncated", "3 × 2 × 2", "11 bytes"]);
    // Truncated inside the header.
    std::fs::write(&images, [0u8, 0, 8, 3, 0, 0]).unwrap();
    assert_names(
        &open_err(&DataSpec::new(&images), [1, 2, 2]),
        &images,
        &["truncated"],
    );
    // The real MNIST file cut short, gzipped and plain.
    let real = std::fs::read(fixture("mnist-idx/images-idx3-ubyte")).unwrap();
    std::fs::write(&images, &real[..real.len() - 100]).unwrap();
    write_idx(&labels, 0x0000_0801, &[50], &[0; 50]);
    assert_names(
        &open_err(&DataSpec::new(&images), GRAY28),
        &images,
        &["truncated"],
    );
    let gz = std::fs::read(fixture("mnist-idx/images-idx3-ubyte.gz")).unwrap();
    let images_gz = d.join("images-idx3-ubyte.gz");
    std::fs::write(&images_gz, &gz[..gz.len() / 2]).unwrap();
    let err = open_err(&DataSpec::new(&images_gz), GRAY28);
    assert_names(&err, &images_gz, &["gzip"]);
    // Extra bytes after the data.
    write_idx(&images, 0x0000_0803, &[3, 2, 2], &[0; 13]);
    write_idx(&labels, 0x0000_0801, &[3], &[0, 1, 2]);
    assert_names(
        &open_err(&DataSpec::new(&images), [1, 2, 2]),
        &images,
        &["1 extra bytes"],
    );
    // 3 images, 2 labels.
    write_idx(&images, 0x0000_0803, &[3, 2, 2], &[0; 12]);
    write_idx(&labels, 0x0000_0801, &[2], &[0, 1]);
    let err = open_err(&DataSpec::new(&images), [1, 2, 2]);
    assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
    assert_names(&err, &labels, &["2 labels", "3 images"]);
    // No labels file at all.
    std::fs::remove_file(&labels).unwrap();
    let err = open_err(&DataSpec::new(&images), [1, 2, 2]);
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert_names(&err, &labels, &["IDX labels file"]);
}

#[test]
fn image_smaller_than_a_center_crop() {
    let mut spec = DataSpec::new(fixture("mnist-folder"));
    spec.resize = ResizeMode::CenterCrop;
    let data = Dataset::open(&spec, [1, 32, 32], UNIT, None).unwrap();
    let err = data.batch(0, 1).unwrap_err();
    assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
    assert_names(&err, Path::new("2023.png"), &["28×28", "32×32", "resize"]);
}

#[test]
fn bad_folders_and_classes_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No class folders.
    let err = open_err(&DataSpec::new(d), GRAY28);
    assert_names(&err, d, &["no class subfolders"]);
    // Class folders without images.
    std::fs::create_dir(d.join("a")).unwrap();
    std::fs::write(d.join("a/readme.txt"), "x").unwrap();
    assert_names(&open_err(&DataSpec::new(d), GRAY28), d, &["no .png"]);
    // A folder that is not in the classes file.
    image::GrayImage::new(2, 2).save(d.join("a/0.png")).unwrap();
    let classes = d.join("names.txt");
    std::fs::write(&classes, "b\nc\n").unwrap();
    let mut spec = DataSpec::new(d);
    spec.classes = Some(classes.clone());
    let err = open_err(&spec, [1, 2, 2]);
    assert!(matches!(err, DataError::Label { .. }), "{err:?}");
    assert_names(&err, &classes, &["`a`"]);
    // Classes files with a duplicate, a blank line, or missing.
    std::fs::write(&classes, "a\nb\na\n").unwrap();
    assert_names(
        &open_err(&spec, [1, 2, 2]),
        &classes,
        &["named twice", "lines 1 and 3"],
    );
    std::fs::write(&classes, "a\n\nb\n").unwrap();
    assert_names(&open_err(&spec, [1, 2, 2]), &classes, &["line 2 is blank"]);
    std::fs::remove_file(&classes).unwrap();
    let err = open_err(&spec, [1, 2, 2]);
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert_names(&err, &classes, &["classes file"]);
    // A CSV format given for a folder.
    let mut spec = DataSpec::new(d);
    spec.format = Some(DataFormat::Csv);
    assert_names(&open_err(&spec, [1, 2, 2]), d, &["must be a file"]);
}

#[test]
fn inconsistent_options() {
    let spec = DataSpec::new(fixture("mnist-idx"));
    let bad = |shape: [usize; 3], bounds: [f32; 2]| {
        Dataset::open(&spec, shape, bounds, None).expect_err("refused")
    };
    assert!(matches!(bad([2, 28, 28], UNIT), DataError::Options { .. }));
    assert!(matches!(bad([1, 0, 28], UNIT), DataError::Options { .. }));
    assert!(matches!(bad(GRAY28, [1.0, 0.0]), DataError::Options { .. }));
    assert!(matches!(
        bad(GRAY28, [0.0, f32::NAN]),
        DataError::Options { .. }
    ));
    let mut s = spec.clone();
    s.scale = Some(0.0);
    assert!(matches!(open_err(&s, GRAY28), DataError::Options { .. }));
    let mut s = spec.clone();
    s.layout = Some(Layout::Nchw);
    let err = open_err(&s, GRAY28);
    assert!(err.to_string().contains("`layout`"), "{err}");
    let mut s = DataSpec::new(fixture("mnist-folder"));
    s.labels = Some(fixture("mnist-idx/labels-idx1-ubyte"));
    assert!(matches!(open_err(&s, GRAY28), DataError::Options { .. }));
    // Requests past the end and a zero batch size.
    let data = Dataset::open(&spec, GRAY28, UNIT, None).unwrap();
    let err = data.batch(45, 10).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::OutOfRange {
                start: 45,
                end: 55,
                len: 50
            }
        ),
        "{err:?}"
    );
    assert!(data.batch(usize::MAX, 2).is_err());
    let mut zero = data.batches(0);
    assert!(matches!(zero.next(), Some(Err(DataError::Options { .. }))));
    assert!(zero.next().is_none());
    // A file of unknown format.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("data.bin");
    std::fs::write(&odd, b"just some bytes").unwrap();
    assert_names(
        &open_err(&DataSpec::new(&odd), GRAY28),
        &odd,
        &["set `format`"],
    );
}

#[test]
fn npy_without_labels_needs_the_unlabelled_option() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.npy");
    std::fs::copy(fixture("mnist-demo/images.npy"), &images).unwrap();
    let mut spec = DataSpec::new(&images);
    let err = open_err(&spec, [1, 28, 28]);
    assert_names(&err, &dir.path().join("labels.npy"), &["labels"]);

    spec.unlabelled = true;
    let ds = Dataset::open(&spec, [1, 28, 28], [0.0, 1.0], None).unwrap();
    assert_eq!(ds.len(), 1000);
    assert!(ds.labels().iter().all(|&l| l == 0));
    // The pixels are the same as with the real labels file.
    let labelled = Dataset::open(
        &DataSpec::new(fixture("mnist-demo/images.npy")),
        [1, 28, 28],
        [0.0, 1.0],
        Some(5),
    )
    .unwrap();
    assert_eq!(
        ds.batch(0, 5).unwrap().pixels,
        labelled.batch(0, 5).unwrap().pixels
    );
}

/// The bytes of a PNG file whose header declares `width × height` 8-bit gray pixels, with
/// one tiny IDAT chunk: enough for a decoder to read the size, far too little for the
/// pixels (a decompression bomb's header).
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit gray, deflate, no filter method, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn a_png_bomb_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("seven");
    std::fs::create_dir(&class).unwrap();
    let bomb = class.join("bomb.png");
    std::fs::write(&bomb, png_header_only(22_000, 22_000)).unwrap();
    let data = Dataset::open(&DataSpec::new(dir.path()), GRAY28, UNIT, None).unwrap();
    let started = std::time::Instant::now();
    let err = data.batch(0, 1).unwrap_err();
    assert!(
        started.elapsed().as_secs_f64() < 1.0,
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert_names(
        &err,
        &bomb,
        &["22000×22000", "67108864", "max_image_pixels"],
    );
    // The limit is configurable: a lower one refuses a small image too.
    let small = class.join("small.png");
    std::fs::remove_file(&bomb).unwrap();
    image::GrayImage::new(40, 40).save(&small).unwrap();
    let mut spec = DataSpec::new(dir.path());
    spec.limits.max_image_pixels = 1000;
    let data = Dataset::open(&spec, [1, 28, 28], UNIT, None).unwrap();
    assert_names(&data.batch(0, 1).unwrap_err(), &small, &["40×40", "1000"]);
    spec.limits.max_image_pixels = 1600;
    assert!(Dataset::open(&spec, [1, 28, 28], UNIT, None)
        .unwrap()
        .batch(0, 1)
        .is_ok());
}

#[test]
fn a_huge_label_without_classes_file_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_npy(&d.join("images.npy"), &[3, 2, 2], &[0u8; 12]);
    let labels = d.join("labels.npy");
    for (big, words) in [
        (
            1i64 << 31,
            &["sample 2", "2147483648", "100000", "too large"][..],
        ),
        (
            1i64 << 62,
            &["sample 2", "4611686018427387904", "too large"][..],
        ),
        (100_000, &["sample 2", "100000", "max_classes"][..]),
    ] {
        write_npy(&labels, &[3], &[0i64, 1, big]);
        let started = std::time::Instant::now();
        let err = open_err(&DataSpec::new(d), [1, 2, 2]);
        assert!(started.elapsed().as_secs_f64() < 1.0);
        assert!(matches!(err, DataError::Label { .. }), "{err:?}");
        assert_names(&err, &labels, words);
        assert!(!err.to_string().contains("non-negative"), "{err}");
    }
    // Unsigned and float labels too, and a raised limit admits the label.
    write_npy(&labels, &[3], &[0u64, 1, u64::MAX]);
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &labels,
        &["18446744073709551615", "too large"],
    );
    write_npy(&labels, &[3], &[0f64, 1.0, 1e300]);
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &labels,
        &["too large"],
    );
    write_npy(&labels, &[3], &[0i64, 1, 150_000]);
    let mut spec = DataSpec::new(d);
    spec.limits.max_classes = 200_000;
    let data = Dataset::open(&spec, [1, 2, 2], UNIT, None).unwrap();
    assert_eq!(data.info().num_classes, 150_001);
    // A classes file sets the number of classes: the limit does not apply.
    std::fs::write(d.join("classes.txt"), "a\nb\n").unwrap();
    assert_names(
        &open_err(&spec, [1, 2, 2]),
        &labels,
        &["label 150000", "2 classes"],
    );
}

#[test]
fn a_huge_csv_label_says_it_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image::GrayImage::new(2, 2).save(d.join("x.png")).unwrap();
    let csv = d.join("data.csv");
    for big in [
        "4611686018427387904",
        "99999999999999999999999999",
        "100000",
    ] {
        std::fs::write(&csv, format!("path,label\nx.png,0\nx.png,{big}\n")).unwrap();
        let err = open_err(&DataSpec::new(&csv), [1, 2, 2]);
        assert!(matches!(err, DataError::Label { .. }), "{err:?}");
        assert_names(&err, &csv, &["line 3", big, "too large", "100000"]);
    }
    std::fs::write(&csv, "path,label\nx.png,-99999999999999999999999\n").unwrap();
    assert_names(
        &open_err(&DataSpec::new(&csv), [1, 2, 2]),
        &csv,
        &["negative"],
    );
}

#[test]
fn npy_headers_are_checked_before_the_reader_allocates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images.npy");
    write_npy(&d.join("labels.npy"), &[1], &[0i64]);
    let npy = |shape: &str| {
        let mut header =
            format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({shape}), }}");
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend([0u8; 16]);
        b
    };
    // A shape whose product overflows u64, and one far beyond the data in the file.
    std::fs::write(&images, npy("1, 4294967296, 4294967296, 4294967296")).unwrap();
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["too large"],
    );
    std::fs::write(&images, npy("1, 1099511627776, 1")).unwrap();
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["truncated"],
    );
    // A version-2 header claiming 4 GiB.
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend(u32::MAX.to_le_bytes());
    b.extend(b"{'descr'");
    std::fs::write(&images, b).unwrap();
    assert_names(
        &open_err(&DataSpec::new(d), [1, 2, 2]),
        &images,
        &["header"],
    );
    // Images larger than the pixel limit, from the header alone.
    std::fs::write(&images, npy("1, 9000, 9000")).unwrap();
    let err = open_err(&DataSpec::new(d), [1, 2, 2]);
    assert_names(&err, &images, &["truncated"]);
    let mut spec = DataSpec::new(d);
    spec.limits.max_image_pixels = 3;
    write_npy(&images, &[1, 2, 2], &[0u8; 4]);
    assert_names(
        &open_err(&spec, [1, 1, 3]),
        &images,
        &["2×2", "limit of 3 pixels"],
    );
}
