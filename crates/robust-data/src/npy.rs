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

    /// Calls `f` with each element of `bytes` of an integer dtype, exactly (as `i128`).
    fn for_each_int(self, bytes: &[u8], mut f: impl FnMut(i128)) {
        macro_rules! each {
            ($t:ty, $n:literal) => {
                for b in bytes.chunks_exact($n) {
                    let a: [u8; $n] = b.try_into().expect("an exact chunk");
                    let v = if self.big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    };
                    f(i128::from(v));
                }
            };
        }
        match (self.kind, self.size) {
            (ElemKind::Uint, 1) => bytes.iter().for_each(|&v| f(i128::from(v))),
            (ElemKind::Int, 1) => bytes.iter().for_each(|&v| f(i128::from(v as i8))),
            (ElemKind::Uint, 2) => each!(u16, 2),
            (ElemKind::Uint, 4) => each!(u32, 4),
            (ElemKind::Uint, 8) => each!(u64, 8),
            (ElemKind::Int, 2) => each!(i16, 2),
            (ElemKind::Int, 4) => each!(i32, 4),
            (ElemKind::Int, 8) => each!(i64, 8),
            // Floats are read through `for_each`.
            _ => self.for_each(bytes, |v| f(v as i128)),
        }
    }
}

/// A stored label as a class index, or the value and why it is none (`"-1, which is
/// negative"`).
fn int_label(v: i128) -> std::result::Result<usize, String> {
    if v < 0 {
        return Err(format!(
            "{v}, which is negative; labels are class indices 0, 1, ..."
        ));
    }
    usize::try_from(v).map_err(|_| format!("{v}, which is too large for a class index"))
}

/// [`int_label`] for a float: it must also be a whole number, and exact in `f64`.
fn float_label(v: f64) -> std::result::Result<usize, String> {
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(format!("{v}, which is not an integer class index"));
    }
    if v < 0.0 {
        return Err(format!(
            "{v}, which is negative; labels are class indices 0, 1, ..."
        ));
    }
    // Above 2^53 a float no longer tells neighbouring integers apart.
    if v >= 9_007_199_254_740_992.0 {
        return Err(format!("{v}, which is too large for a class index"));
    }
    Ok(v as usize)
}

/// npyz reports a header it cannot parse with a multi-line parser diagram (the header
/// echoed, a caret under the column, then what was expected). Errors are one line, so keep
/// the words and drop the diagram: `could not parse Python expression: syntax error at
/// 1:83: expected EOI`.
pub fn npy_error_line(e: &std::io::Error) -> String {
    let is_diagram = |line: &str| {
        line.split_once('|')
            .is_some_and(|(gutter, _)| gutter.trim().chars().all(|c| c.is_ascii_digit()))
    };
    let text = e.to_string();
    let words: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_diagram(l))
        .map(|l| l.trim_start_matches("= "))
        .collect();
    words
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(": --> ", " at ")
}

/// The longest `.npy` header accepted (numpy writes a few hundred bytes).
const MAX_HEADER_LEN: u64 = 1 << 20;

/// Checks the start of a `.npy` file before the npy reader sees it: the header length must
/// fit in the file (the reader reserves that many bytes), and the product of the declared
/// shape must neither overflow nor exceed the bytes that follow the header (every element
/// takes at least one byte). Files that do not start with the npy magic are left to the
/// reader, which reports them; so are headers this simple scan does not understand.
fn precheck(path: &Path, file: &mut fs::File, file_len: u64) -> Result<()> {
    let mut prefix = [0u8; 12];
    let mut got = 0;
    while got < prefix.len() {
        match file.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io("read", path, e)),
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| DataError::io("read", path, e))?;
    if got < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (start, len) = if prefix[6] == 1 {
        (10u64, u64::from(u16::from_le_bytes([prefix[8], prefix[9]])))
    } else if got == 12 {
        (
            12u64,
            u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ])),
        )
    } else {
        return Ok(());
    };
    if len > MAX_HEADER_LEN || start + len > file_len {
        return Err(DataError::format(
            path,
            format!(
                "not a valid .npy file: its header claims {len} bytes, the file holds {}",
                file_len.saturating_sub(start)
            ),
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_exact(&mut header))
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|e| DataError::io("read", path, e))?;
    let header = String::from_utf8_lossy(&header);
    let Some(pos) = header.find("'shape'") else {
        return Ok(());
    };
    let rest = &header[pos..];
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
        return Ok(());
    };
    if close < open {
        return Ok(());
    }
    let dims: Vec<&str> = rest[open + 1..close]
        .split(',')
        .map(|d| d.trim().trim_end_matches('L'))
        .filter(|d| !d.is_empty())
        .collect();
    let mut total: u64 = 1;
    for d in &dims {
        let Ok(d) = d.parse::<u64>() else {
            return Ok(());
        };
        total = total.checked_mul(d).ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "shape ({}) is too large: its size overflows",
                    dims.join(", ")
                ),
            )
        })?;
    }
    let data = file_len - start - len;
    if total > data {
        return Err(DataError::format(
            path,
            format!(
                "truncated: shape ({}) declares {total} elements, but only {data} bytes of \
                 data follow the header",
                dims.join(", ")
            ),
        ));
    }
    Ok(())
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
        let mut file = fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::not_found(path, what),
            _ => DataError::io("read", path, e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| DataError::io("read", path, e))?;
        if meta.is_dir() {
            return Err(DataError::format(
                path,
                format!("the {what} must be a .npy file, this is a folder"),
            ));
        }
        let file_len = meta.len();
        precheck(path, &mut file, file_len)?;
        let mut reader = BufReader::new(file);
        let npy = NpyFile::new(&mut reader).map_err(|e| {
            DataError::format(
                path,
                format!("not a valid .npy file ({})", npy_error_line(&e)),
            )
        })?;
        let shape = npy
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| {
                DataError::format(path, format!("shape {:?} is too large", npy.shape()))
            })?;
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

    /// Calls `f(i, label)` with every element as a class index: exact for integer dtypes,
    /// floats must be whole numbers. A value that is no class index is passed as
    /// `Err("<value>, which is ...")`.
    pub fn for_each_label(
        &self,
        mut f: impl FnMut(usize, std::result::Result<usize, String>),
    ) -> Result<()> {
        // `open` checked that the product fits and that the file holds that many elements.
        let n: usize = self.shape.iter().product();
        let bytes = self.read(0, n)?;
        let mut i = 0;
        if self.elem.is_float() {
            self.elem.for_each(&bytes, |v| {
                f(i, float_label(v));
                i += 1;
            });
        } else {
            self.elem.for_each_int(&bytes, |v| {
                f(i, int_label(v));
                i += 1;
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_parse_error_is_one_line() {
        let diagram = "could not parse Python expression: syntax error:  --> 1:83\n  |\n\
                       1 | {'descr': '|u1', 'shape': (2,), }  \u{1}\n  |    ^---\n  |\n  \
                       = expected EOI";
        let e = std::io::Error::other(diagram);
        assert_eq!(
            super::npy_error_line(&e),
            "could not parse Python expression: syntax error at 1:83: expected EOI"
        );
        let plain = std::io::Error::other("unsupported dtype |u1");
        assert_eq!(super::npy_error_line(&plain), "unsupported dtype |u1");
    }
}
