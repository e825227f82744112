//! Reading the real-MNIST fixtures in every format, checked against the `.npy` references
//! written by `datasets/make_small.py` and `models/make_demo.py`, plus the conversions
//! (channels, resize, crop, scaling) and batching.

mod common;

use std::str::FromStr;

use common::{fixture, over_255, read_labels, read_u8, write_npy};
use robust_data::{DataFormat, DataSpec, Dataset, Layout, ResizeMode};
use serde::de::IntoDeserializer;
use serde::Deserialize;

const GRAY28: [usize; 3] = [1, 28, 28];
const UNIT: [f32; 2] = [0.0, 1.0];

fn digits() -> Vec<String> {
    (0..10).map(|i| i.to_string()).collect()
}

fn open(spec: &DataSpec, shape: [usize; 3]) -> Dataset {
    Dataset::open(spec, shape, UNIT, None).unwrap()
}

#[test]
fn image_folder_pixels_and_labels_equal_the_reference() {
    let data = open(&DataSpec::new(fixture("mnist-folder")), GRAY28);
    let info = data.info();
    assert_eq!(info.format, DataFormat::ImageFolder);
    assert_eq!(info.size, 30);
    assert_eq!(info.num_classes, 10);
    assert_eq!(info.class_names, digits());
    // The reference is in CSV order (class, then MNIST index); the ImageFolder order
    // (sorted class folders, then sorted file names) is the same.
    let (shape, expected) = read_u8(&fixture("mnist-folder-expected.npy"));
    assert_eq!(shape, vec![30, 28, 28]);
    let batch = data.batch(0, 30).unwrap();
    assert_eq!(batch.pixels, over_255(&expected));
    assert_eq!(
        batch.labels,
        read_labels(&fixture("mnist-folder-expected-labels.npy"))
    );
    assert_eq!(batch.indices, (0..30).collect::<Vec<_>>());
}

#[test]
fn csv_pixels_and_labels_equal_the_reference_and_the_folder_order() {
    let spec = DataSpec::new(fixture("mnist-folder.csv"));
    let data = open(&spec, GRAY28);
    assert_eq!(data.info().format, DataFormat::Csv);
    assert_eq!(data.len(), 30);
    // No classes file beside the CSV: names are "0".."9" from the largest label.
    assert_eq!(data.info().class_names, digits());
    let (_, expected) = read_u8(&fixture("mnist-folder-expected.npy"));
    let batch = data.batch(0, 30).unwrap();
    assert_eq!(batch.pixels, over_255(&expected));
    let labels = read_labels(&fixture("mnist-folder-expected-labels.npy"));
    assert_eq!(batch.labels, labels);

    let folder = open(&DataSpec::new(fixture("mnist-folder")), GRAY28);
    assert_eq!(folder.batch(0, 30).unwrap(), batch);
}

#[test]
fn idx_plain_and_gzipped_equal_the_reference() {
    let (shape, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    assert_eq!(shape, vec![50, 28, 28]);
    let labels = read_labels(&fixture("mnist-idx/expected-labels.npy"));
    for path in [
        "mnist-idx/images-idx3-ubyte",
        "mnist-idx/images-idx3-ubyte.gz",
        "mnist-idx", // a folder: the plain file is found, its labels beside it
    ] {
        let data = open(&DataSpec::new(fixture(path)), GRAY28);
        assert_eq!(data.info().format, DataFormat::Idx, "{path}");
        assert_eq!(data.len(), 50, "{path}");
        assert_eq!(data.info().num_classes, 10, "{path}");
        let batch = data.batch(0, 50).unwrap();
        assert_eq!(batch.pixels, over_255(&expected), "{path}");
        assert_eq!(batch.labels, labels, "{path}");
        // A batch from the middle reads the right range.
        let mid = data.batch(17, 5).unwrap();
        assert_eq!(
            mid.pixels,
            over_255(&expected[17 * 784..22 * 784]),
            "{path}"
        );
        assert_eq!(mid.labels, labels[17..22], "{path}");
    }
    // Gzipped images with explicitly plain labels.
    let mut spec = DataSpec::new(fixture("mnist-idx/images-idx3-ubyte.gz"));
    spec.labels = Some(fixture("mnist-idx/labels-idx1-ubyte"));
    spec.format = Some(DataFormat::Idx);
    assert_eq!(open(&spec, GRAY28).batch(0, 50).unwrap().labels, labels);
}

#[test]
fn npy_demo_equals_its_arrays_with_classes_from_classes_txt() {
    let (shape, images) = read_u8(&fixture("mnist-demo/images.npy"));
    assert_eq!(shape, vec![1000, 28, 28]);
    let labels = read_labels(&fixture("mnist-demo/labels.npy"));
    for path in ["mnist-demo", "mnist-demo/images.npy"] {
        let data = open(&DataSpec::new(fixture(path)), GRAY28);
        let info = data.info();
        assert_eq!(info.format, DataFormat::Npy);
        assert_eq!(info.size, 1000);
        assert_eq!(info.class_names, digits());
        assert_eq!(info.source, fixture(path).display().to_string());
        assert_eq!(data.labels(), labels.as_slice());
        let batch = data.batch(990, 10).unwrap();
        assert_eq!(batch.pixels, over_255(&images[990 * 784..]));
        assert_eq!(batch.labels, labels[990..]);
    }
}

#[test]
fn gray_becomes_rgb_by_replication() {
    let data = open(&DataSpec::new(fixture("mnist-idx")), [3, 28, 28]);
    let batch = data.batch(0, 4).unwrap();
    assert_eq!(batch.pixels.len(), 4 * 3 * 784);
    let (_, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    for (s, sample) in batch.pixels.chunks(3 * 784).enumerate() {
        let gray = over_255(&expected[s * 784..(s + 1) * 784]);
        for ch in sample.chunks(784) {
            assert_eq!(ch, gray.as_slice());
        }
    }
}

#[test]
fn rgb_becomes_gray_by_pil_luma() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("a");
    std::fs::create_dir(&class).unwrap();
    let colours = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 255],
        [10, 20, 30],
    ];
    let img = image::RgbImage::from_fn(5, 1, |x, _| image::Rgb(colours[x as usize]));
    img.save(class.join("x.png")).unwrap();
    let data = open(&DataSpec::new(dir.path()), [1, 1, 5]);
    let batch = data.batch(0, 1).unwrap();
    // PIL: Image.new("RGB", (1, 1), c).convert("L") gives 76, 150, 29, 255 and 18.
    assert_eq!(batch.pixels, over_255(&[76, 150, 29, 255, 18]));
    // And RGB stays RGB, planar.
    let rgb = open(&DataSpec::new(dir.path()), [3, 1, 5])
        .batch(0, 1)
        .unwrap();
    let r: Vec<u8> = colours.iter().map(|c| c[0]).collect();
    let g: Vec<u8> = colours.iter().map(|c| c[1]).collect();
    let b: Vec<u8> = colours.iter().map(|c| c[2]).collect();
    assert_eq!(rgb.pixels, over_255(&[r, g, b].concat()));
}

#[test]
fn resize_28_to_32_matches_the_image_crate_and_stays_in_range() {
    let data = open(&DataSpec::new(fixture("mnist-idx")), [1, 32, 32]);
    let batch = data.batch(0, 3).unwrap();
    assert_eq!(batch.pixels.len(), 3 * 32 * 32);
    let (_, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    for (s, got) in batch.pixels.chunks(32 * 32).enumerate() {
        assert!(got.iter().all(|v| (0.0..=1.0).contains(v)));
        let src = over_255(&expected[s * 784..(s + 1) * 784]);
        let (lo, hi) = src
            .iter()
            .fold((1f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(got.iter().all(|&v| v >= lo - 1e-6 && v <= hi + 1e-6));
        // The image crate's triangle filter on the same [0, 1] values is an independent
        // implementation of the same resampling.
        let img = image::ImageBuffer::<image::Luma<f32>, _>::from_raw(28, 28, src).unwrap();
        let reference =
            image::imageops::resize(&img, 32, 32, image::imageops::FilterType::Triangle);
        for (a, b) in got.iter().zip(reference.as_raw()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // MNIST digits have empty borders; they stay empty.
        assert_eq!(got[0], 0.0);
        assert_eq!(got[32 * 32 - 1], 0.0);
    }
}

#[test]
fn resize_shrinks_with_antialiasing() {
    // Shrinking 28 → 7 averages 4×4 blocks (support widens with the factor): the mean of
    // the image is preserved closely and the result matches the image crate.
    let data = open(&DataSpec::new(fixture("mnist-idx")), [1, 7, 7]);
    let got = data.batch(0, 1).unwrap().pixels;
    let (_, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    let src = over_255(&expected[..784]);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!((mean(&got) - mean(&src)).abs() < 0.01);
    let img = image::ImageBuffer::<image::Luma<f32>, _>::from_raw(28, 28, src).unwrap();
    let reference = image::imageops::resize(&img, 7, 7, image::imageops::FilterType::Triangle);
    for (a, b) in got.iter().zip(reference.as_raw()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn center_crop_28_to_24_is_the_central_sub_array() {
    let mut spec = DataSpec::new(fixture("mnist-folder"));
    spec.resize = ResizeMode::CenterCrop;
    let data = open(&spec, [1, 24, 24]);
    let batch = data.batch(0, 30).unwrap();
    let (_, expected) = read_u8(&fixture("mnist-folder-expected.npy"));
    for (s, got) in batch.pixels.chunks(24 * 24).enumerate() {
        let img = &expected[s * 784..(s + 1) * 784];
        let want: Vec<u8> = (2..26)
            .flat_map(|y| img[y * 28 + 2..y * 28 + 26].iter().copied())
            .collect();
        assert_eq!(got, over_255(&want).as_slice());
    }
}

#[test]
fn resize_crop_equals_resize_of_the_shorter_side_then_center_crop() {
    // A 40 (W) × 20 (H) RGB gradient; the model takes 10×10.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("c")).unwrap();
    let img = image::RgbImage::from_fn(40, 20, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 12) as u8, ((x + y) * 4) as u8])
    });
    img.save(dir.path().join("c/0.png")).unwrap();
    let mut spec = DataSpec::new(dir.path());
    spec.resize = ResizeMode::ResizeCrop;
    let got = open(&spec, [3, 10, 10]).batch(0, 1).unwrap().pixels;
    // Oracle: resize to 10×20 (the shorter side to 10), then take columns 5..15.
    spec.resize = ResizeMode::Resize;
    let wide = open(&spec, [3, 10, 20]).batch(0, 1).unwrap().pixels;
    let want: Vec<f32> = (0..3 * 10)
        .flat_map(|row| wide[row * 20 + 5..row * 20 + 15].iter().copied())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn integer_pixels_scale_to_the_models_bounds() {
    let data = Dataset::open(
        &DataSpec::new(fixture("mnist-idx")),
        GRAY28,
        [-1.0, 1.0],
        Some(2),
    )
    .unwrap();
    let (_, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    let got = data.batch(0, 2).unwrap().pixels;
    let want: Vec<f32> = expected[..2 * 784]
        .iter()
        .map(|&v| (-1.0f32 + (f32::from(v) / 255.0) * 2.0).clamp(-1.0, 1.0))
        .collect();
    assert_eq!(got, want);
    assert!(got.contains(&-1.0) && got.contains(&1.0));
    // A custom divisor: 0..=255 divided by 510 lands in [0, 0.5].
    let mut spec = DataSpec::new(fixture("mnist-idx"));
    spec.scale = Some(510.0);
    let half = Dataset::open(&spec, GRAY28, UNIT, Some(1)).unwrap();
    let px = half.batch(0, 1).unwrap().pixels;
    let max = px.iter().fold(0f32, |a, &b| a.max(b));
    assert_eq!(max, 0.5);
}

#[test]
fn sixteen_bit_png_uses_65535_as_full_scale() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("c")).unwrap();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0u16, 32768, 65535])
        .unwrap();
    img.save(dir.path().join("c/0.png")).unwrap();
    let got = open(&DataSpec::new(dir.path()), [1, 1, 3])
        .batch(0, 1)
        .unwrap()
        .pixels;
    assert_eq!(got, vec![0.0, 32768.0 / 65535.0, 1.0]);
}

#[test]
fn batches_cover_every_index_once_with_a_short_tail() {
    let data = Dataset::open(
        &DataSpec::new(fixture("mnist-demo")),
        GRAY28,
        UNIT,
        Some(103),
    )
    .unwrap();
    assert_eq!(data.len(), 103);
    let batches: Vec<_> = data.batches(25).map(Result::unwrap).collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
    assert_eq!(sizes, vec![25, 25, 25, 25, 3]);
    let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, (0..103).collect::<Vec<_>>());
    let labels: Vec<usize> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, data.labels());
    let pixels: Vec<f32> = batches.iter().flat_map(|b| b.pixels.clone()).collect();
    assert_eq!(pixels, data.batch(0, 103).unwrap().pixels);
    // A batch size that divides the size exactly has no empty tail; a huge one is one batch.
    let sizes: Vec<usize> =
        Dataset::open(&DataSpec::new(fixture("mnist-folder")), GRAY28, UNIT, None)
            .unwrap()
            .batches(10)
            .map(|b| b.unwrap().len())
            .collect();
    assert_eq!(sizes, vec![10, 10, 10]);
    assert_eq!(data.batches(1000).count(), 1);
}

#[test]
fn limit_keeps_the_first_samples() {
    let labels = read_labels(&fixture("mnist-folder-expected-labels.npy"));
    for path in ["mnist-folder", "mnist-folder.csv"] {
        let data = Dataset::open(&DataSpec::new(fixture(path)), GRAY28, UNIT, Some(7)).unwrap();
        assert_eq!(data.len(), 7);
        assert_eq!(data.info().size, 7);
        assert_eq!(data.labels(), &labels[..7]);
        // The class list still describes the whole data set.
        assert_eq!(data.info().num_classes, 10);
        assert!(data.batch(0, 8).is_err());
    }
    let all = Dataset::open(
        &DataSpec::new(fixture("mnist-idx")),
        GRAY28,
        UNIT,
        Some(500),
    )
    .unwrap();
    assert_eq!(all.len(), 50);
    let none = Dataset::open(&DataSpec::new(fixture("mnist-idx")), GRAY28, UNIT, Some(0)).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.batches(8).count(), 0);
    let gz = Dataset::open(
        &DataSpec::new(fixture("mnist-idx/images-idx3-ubyte.gz")),
        GRAY28,
        UNIT,
        Some(3),
    )
    .unwrap();
    let (_, expected) = read_u8(&fixture("mnist-idx/expected-images.npy"));
    assert_eq!(
        gz.batch(0, 3).unwrap().pixels,
        over_255(&expected[..3 * 784])
    );
}

#[test]
fn npy_layouts_and_float_data() {
    // One 2×3 RGB image stored NHWC and NCHW, as uint8 and as float32 in [0, 1].
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let planar: Vec<u8> = (0..18).map(|i| i * 10).collect(); // C × H × W
    let mut nhwc = vec![0u8; 18];
    for c in 0..3 {
        for p in 0..6 {
            nhwc[p * 3 + c] = planar[c * 6 + p];
        }
    }
    write_npy(&d.join("labels.npy"), &[1], &[2i32]);
    write_npy(&d.join("nhwc.npy"), &[1, 2, 3, 3], &nhwc);
    write_npy(&d.join("nchw.npy"), &[1, 3, 2, 3], &planar);
    let floats: Vec<f32> = planar.iter().map(|&v| f32::from(v) / 255.0).collect();
    write_npy(&d.join("f.npy"), &[1, 3, 2, 3], &floats);
    let want = over_255(&planar);
    for (file, layout) in [
        ("nhwc.npy", None),
        ("nchw.npy", None),
        ("nhwc.npy", Some(Layout::Nhwc)),
        ("nchw.npy", Some(Layout::Nchw)),
        ("f.npy", None),
    ] {
        let mut spec = DataSpec::new(d.join(file));
        spec.layout = layout;
        let data = open(&spec, [3, 2, 3]);
        let batch = data.batch(0, 1).unwrap();
        assert_eq!(batch.pixels, want, "{file} {layout:?}");
        assert_eq!(batch.labels, vec![2]);
        assert_eq!(data.info().class_names, vec!["0", "1", "2"]);
    }
}

#[test]
fn csv_class_names_are_looked_up_in_the_classes_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("names.txt"), "zero\none\ntwo\n\n").unwrap();
    let png = |name: &str| {
        image::GrayImage::from_pixel(2, 2, image::Luma([7]))
            .save(d.join(name))
            .unwrap()
    };
    png("a.png");
    png("b.png");
    std::fs::write(
        d.join("data.csv"),
        "label,path,extra\ntwo,a.png,x\n1,b.png,y\n",
    )
    .unwrap();
    let mut spec = DataSpec::new(d.join("data.csv"));
    spec.classes = Some(d.join("names.txt"));
    let data = open(&spec, [1, 2, 2]);
    assert_eq!(data.labels(), &[2, 1]);
    assert_eq!(data.info().class_names, vec!["zero", "one", "two"]);
    // classes.txt beside the CSV is picked up without being named.
    std::fs::copy(d.join("names.txt"), d.join("classes.txt")).unwrap();
    let data = open(&DataSpec::new(d.join("data.csv")), [1, 2, 2]);
    assert_eq!(data.info().num_classes, 3);
}

#[test]
fn image_folder_order_hidden_files_and_classes_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["dog", "cat/inner", "cat", ".hidden", "bird"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let mut value = 0u8;
    let mut put = |rel: &str| {
        value += 10;
        image::GrayImage::from_pixel(1, 1, image::Luma([value]))
            .save_with_format(d.join(rel), image::ImageFormat::Png)
            .unwrap();
        value
    };
    let b = put("cat/b.PNG");
    let a = put("cat/a.png");
    let inner = put("cat/inner/z.jpeg.png");
    let dog = put("dog/1.jpg"); // PNG content with a .jpg name: decoded by content
    put("cat/.hidden.png");
    put(".hidden/x.png");
    std::fs::write(d.join("cat/notes.txt"), "not an image").unwrap();
    // "bird" is empty: still a class, so indices match torchvision's.
    let data = open(&DataSpec::new(d), [1, 1, 1]);
    assert_eq!(data.info().class_names, vec!["bird", "cat", "dog"]);
    assert_eq!(data.labels(), &[1, 1, 1, 2]);
    let px = data.batch(0, 4).unwrap().pixels;
    assert_eq!(px, over_255(&[a, b, inner, dog]));
    // With a classes file, labels follow the file's order.
    std::fs::write(d.join("order.txt"), "dog\ncat\nbird\nfish\n").unwrap();
    let mut spec = DataSpec::new(d);
    spec.classes = Some(d.join("order.txt"));
    let data = open(&spec, [1, 1, 1]);
    assert_eq!(data.labels(), &[1, 1, 1, 0]);
    assert_eq!(data.info().num_classes, 4);
}

#[test]
fn option_names_parse_as_in_config_files() {
    let fmt = |s: &str| {
        DataFormat::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s))
    };
    assert_eq!(fmt("image-folder").unwrap(), DataFormat::ImageFolder);
    assert_eq!(fmt("idx").unwrap(), DataFormat::Idx);
    assert!(fmt("folder").is_err());
    let mode = |s: &str| {
        ResizeMode::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s))
    };
    assert_eq!(mode("center-crop").unwrap(), ResizeMode::CenterCrop);
    assert_eq!(mode("resize-crop").unwrap(), ResizeMode::ResizeCrop);
    assert_eq!(ResizeMode::default(), ResizeMode::Resize);
    for f in [
        DataFormat::ImageFolder,
        DataFormat::Csv,
        DataFormat::Npy,
        DataFormat::Idx,
    ] {
        assert_eq!(DataFormat::from_str(&f.to_string()).unwrap(), f);
    }
    assert_eq!(Layout::from_str("NHWC").unwrap(), Layout::Nhwc);
    let err = ResizeMode::from_str("crop").unwrap_err().to_string();
    assert!(err.contains("crop") && err.contains("center-crop"), "{err}");
}
