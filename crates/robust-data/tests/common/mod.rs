//! Helpers shared by the integration tests: fixture paths and independent `.npy` readers
//! and writers (npyz directly, not the crate's own reader).

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

/// `datasets/<rel>` at the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets")
        .join(rel)
}

/// An `.npy` array of bytes: shape and values.
pub fn read_u8(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let npy = npyz::NpyFile::new(File::open(path).unwrap()).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<u8>().unwrap())
}

/// An `.npy` array of int64 labels, as indices.
pub fn read_labels(path: &Path) -> Vec<usize> {
    let npy = npyz::NpyFile::new(File::open(path).unwrap()).unwrap();
    npy.into_vec::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| usize::try_from(v).unwrap())
        .collect()
}

/// `v / 255` as `f32`: torchvision's `ToTensor` of an 8-bit pixel.
pub fn over_255(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&x| f32::from(x) / 255.0).collect()
}

/// Writes an `.npy` array with the element type's default dtype.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    use npyz::WriterBuilder;
    let mut file = std::io::BufWriter::new(File::create(path).unwrap());
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}
