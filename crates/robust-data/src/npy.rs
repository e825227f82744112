//! `.npy` arrays read in place: the header is parsed once, then any range of elements is
//! read with one seek, so a large image array streams batch by batch.

use std::fs;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use npyz::{DType, Endianness, NpyFile, Order, TypeChar};

use crate::error::{DataError, Result};

/// The element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Elem {
    kind: ElemKind,
    size: usize,
    big_endian: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElemKind {
    Uint,
    Int,
    Float,
}

impl Elem {
    pub fn is_float(self) -> bool {
        self.kind == ElemKind::Float
    }

    /// Calls `f` with each element of `bytes`, as `f64` (exact for every integer below 2^53
    /// and for both float sizes).
    pub fn for_each(self, bytes: &[u8], mut f: impl FnMut(f64)) {
        macro_rules! each {
            ($t:ty, $n:literal) => {
                for b in bytes.chunks_exact($n) {
                    let a: [u8; $n] = b.try_into().expect("an exact chunk");
                    let v = if self.big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    };
                    f(v as f64);
                }
            };
        }
        match (self.kind, self.size) {
            (ElemKind::Uint, 1) => bytes.iter().for_each(|&v| f(f64::from(v))),
            (ElemKind::Int, 1) => bytes.iter().for_each(|&v| f(f64::from(v as i8))),
            (ElemKind::Uint, 2) => each!(u16, 2),
            (ElemKind::Uint, 4) => each!(u32, 4),
            (ElemKind::Uint, 8) => each!(u64, 8),
            (ElemKind::Int, 2) => each!(i16, 2),
            (ElemKind::Int, 4) => each!(i32, 4),
            (ElemKind::Int, 8) => each!(i64, 8),
            (ElemKind::Float, 4) => each!(f32, 4),
            (ElemKind::Float, 8) => each!(f64, 8),
            _ => unreachable!("Elem is only built for the sizes above"),
        }
    }
}

/// An open `.npy` file: its header, and where its data starts.
#[derive(Clone, Debug)]
pub(crate) struct NpyArray {
    pub path: PathBuf,
    pub shape: Vec<usize>,
    pub elem: Elem,
    offset: u64,
}

impl NpyArray {
    /// Parses the header and checks that the file holds all the data the shape needs.
    /// Accepted dtypes: unsigned and signed integers of 1, 2, 4, 8 bytes, `f4`, `f8`, either
    /// byte order; C order (or any order for arrays with at most one non-trivial axis).
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let file = fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::not_found(path, what),
            _ => DataError::io("read", path, e),
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| DataError::io("read", path, e))?
            .len();
        let mut reader = BufReader::new(file);
        let npy = NpyFile::new(&mut reader)
            .map_err(|e| DataError::format(path, format!("not a valid .npy file ({e})")))?;
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let dtype = npy.dtype();
        let order = npy.order();
        drop(npy);
        let offset = reader
            .stream_position()
            .map_err(|e| DataError::io("read", path, e))?;
        let unsupported = |d: &str| {
            DataError::format(
                path,
                format!(
                    "unsupported dtype {d}; expected an integer (u1, u2, u4, u8, i1, i2, i4, \
                     i8) or float (f4, f8) array"
                ),
            )
        };
        let ts = match &dtype {
            DType::Plain(ts) => ts.clone(),
            other => return Err(unsupported(&other.descr())),
        };
        let kind = match ts.type_char() {
            TypeChar::Uint => ElemKind::Uint,
            TypeChar::Int => ElemKind::Int,
            TypeChar::Float => ElemKind::Float,
            _ => return Err(unsupported(&ts.to_string())),
        };
        let size = ts.size_field() as usize;
        let ok_size = match kind {
            ElemKind::Float => matches!(size, 4 | 8),
            _ => matches!(size, 1 | 2 | 4 | 8),
        };
        if !ok_size {
            return Err(unsupported(&ts.to_string()));
        }
        if order == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
            return Err(DataError::format(
                path,
                "the array is stored in Fortran order, which is not supported; save it with \
                 np.save(path, np.ascontiguousarray(a))",
            ));
        }
        let elem = Elem {
            kind,
            size,
            big_endian: ts.endianness() == Endianness::Big,
        };
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| DataError::format(path, format!("shape {shape:?} is too large")))?;
        let have = file_len.saturating_sub(offset);
        if have < count as u64 {
            return Err(DataError::format(
                path,
                format!(
                    "truncated: shape {shape:?} of {ts} needs {count} bytes of data, the file \
                     holds {have}"
                ),
            ));
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            shape,
            elem,
            offset,
        })
    }

    /// The raw bytes of elements `[start, start + count)`.
    pub fn read(&self, start: usize, count: usize) -> Result<Vec<u8>> {
        let path = &self.path;
        let mut file = fs::File::open(path).map_err(|e| DataError::io("read", path, e))?;
        file.seek(SeekFrom::Start(
            self.offset + (start * self.elem.size) as u64,
        ))
        .map_err(|e| DataError::io("read", path, e))?;
        let mut bytes = vec![0u8; count * self.elem.size];
        file.read_exact(&mut bytes).map_err(|e| {
            DataError::format(path, format!("cannot read elements {start}.. ({e}); was the file truncated since it was opened?"))
        })?;
        Ok(bytes)
    }

    /// Every element as `f64`.
    pub fn read_all(&self) -> Result<Vec<f64>> {
        let n: usize = self.shape.iter().product();
        let bytes = self.read(0, n)?;
        let mut out = Vec::with_capacity(n);
        self.elem.for_each(&bytes, |v| out.push(v));
        Ok(out)
    }
}
