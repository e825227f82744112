//! Feature tables: `n_samples × n_features` matrices of numbers, read from `.npy` or CSV.
//!
//! * `.npy`: dtypes `f4`, `f8`, `u1`, `i4`, `i8` (either byte order, C or Fortran order).
//!   A 1-D array is one feature; a 2-D array is `[samples, features]`; an N-D array
//!   `[samples, d1, d2, ...]` is flattened per sample in C order (so an image batch
//!   `[N, C, H, W]` becomes one feature per pixel and channel).
//! * CSV: a header row naming the columns, then one row per sample; every cell must parse
//!   as a number (`nan`, `inf` allowed); surrounding whitespace is ignored.
//!
//! Values are held as `f64` (exact for every supported dtype).

use std::fs;
use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, Order, TypeChar};

use crate::error::{MonitorError, Result};

/// A dense `n_samples × n_features` table, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    n_samples: usize,
    n_features: usize,
    values: Vec<f64>,
    names: Option<Vec<String>>,
    source: Option<PathBuf>,
}

impl FeatureTable {
    /// A table from row-major values; `values.len()` must be `n_samples * n_features`.
    pub fn new(n_samples: usize, n_features: usize, values: Vec<f64>) -> Result<Self> {
        if n_samples.checked_mul(n_features) != Some(values.len()) {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} values cannot form a {n_samples} × {n_features} table",
                    values.len()
                ),
            });
        }
        Ok(FeatureTable {
            n_samples,
            n_features,
            values,
            names: None,
            source: None,
        })
    }

    /// A table from rows (e.g. a model's `f32` features); all rows must have one length.
    pub fn from_rows<R, T>(rows: &[R]) -> Result<Self>
    where
        R: AsRef<[T]>,
        T: Copy + Into<f64>,
    {
        let n_features = rows.first().map_or(0, |r| r.as_ref().len());
        let mut values = Vec::with_capacity(rows.len() * n_features);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != n_features {
                return Err(MonitorError::Shape {
                    reason: format!("row {i} has {} values, row 0 has {n_features}", r.len()),
                });
            }
            values.extend(r.iter().map(|&v| v.into()));
        }
        Self::new(rows.len(), n_features, values)
    }

    /// Attaches column names (one per feature).
    pub fn with_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.n_features {
            return Err(MonitorError::Shape {
                reason: format!(
                    "{} column names for {} features",
                    names.len(),
                    self.n_features
                ),
            });
        }
        self.names = Some(names);
        Ok(self)
    }

    /// Reads a `.npy` or `.csv` table, chosen by the file extension (case-insensitive).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => Self::read_npy(path),
            Some("csv") => Self::read_csv(path),
            _ => Err(MonitorError::UnknownTableFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Reads a `.npy` file (see the [module documentation](self) for what is accepted).
    pub fn read_npy(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|e| MonitorError::io("read", path, e))?;
        let bad = |reason: String| MonitorError::Npy {
            path: path.to_path_buf(),
            reason,
        };
        precheck_npy_shape(&bytes).map_err(bad)?;
        let npy = NpyFile::new(&bytes[..]).map_err(|e| {
            bad(format!(
                "not a .npy file ({})",
                robust_data::npy_error_line(&e)
            ))
        })?;
        let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
        let order = npy.order();
        let (type_char, size) = match npy.dtype() {
            DType::Plain(ts) => (ts.type_char(), ts.size_field()),
            other => {
                return Err(bad(format!(
                    "unsupported dtype {}; expected f4, f8, u1, i4 or i8",
                    other.descr()
                )))
            }
        };
        let io_err = |e: std::io::Error| bad(format!("truncated or unreadable data ({e})"));
        let flat: Vec<f64> = match (type_char, size) {
            (TypeChar::Float, 4) => npy
                .into_vec::<f32>()
                .map_err(io_err)?
                .into_iter()
                .map(f64::from)
                .collect(),
            (TypeChar::Float, 8) => npy.into_vec::<f64>().map_err(io_err)?,
            (TypeChar::Uint, 1) => npy
                .into_vec::<u8>()
                .map_err(io_err)?
                .into_iter()
                .map(f64::from)
                .collect(),
            (TypeChar::Int, 4) => npy
                .into_vec::<i32>()
                .map_err(io_err)?
                .into_iter()
                .map(f64::from)
                .collect(),
            (TypeChar::Int, 8) => npy
                .into_vec::<i64>()
                .map_err(io_err)?
                .into_iter()
                .map(|v| v as f64)
                .collect(),
            (c, s) => {
                return Err(bad(format!(
                    "unsupported dtype {}{s}; expected f4, f8, u1, i4 or i8",
                    c.to_str()
                )))
            }
        };
        let total: usize = shape.iter().product();
        if flat.len() != total {
            return Err(bad(format!(
                "shape {shape:?} needs {total} values, the file holds {}",
                flat.len()
            )));
        }
        let flat = if order == Order::Fortran && shape.len() > 1 {
            fortran_to_c(&flat, &shape)
        } else {
            flat
        };
        let (n_samples, n_features) = match shape.len() {
            0 => return Err(bad("a 0-d array (a scalar) is not a table".into())),
            1 => (shape[0], 1),
            _ => (shape[0], shape[1..].iter().product()),
        };
        let mut t = Self::new(n_samples, n_features, flat)?;
        t.source = Some(path.to_path_buf());
        Ok(t)
    }

    /// Reads a CSV file with a header row and numeric columns.
    pub fn read_csv(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |line: Option<u64>, reason: String| MonitorError::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let file = fs::File::open(path).map_err(|e| MonitorError::io("read", path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(file);
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| bad(Some(1), e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
            return Err(bad(Some(1), "empty header row".into()));
        }
        let n_features = names.len();
        let mut values = Vec::new();
        let mut n_samples = 0usize;
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line());
                bad(line, e.to_string())
            })?;
            let line = record.position().map(|p| p.line());
            if record.len() == 1 && record.get(0) == Some("") {
                continue; // blank line
            }
            if record.len() != n_features {
                return Err(bad(
                    line,
                    format!("{} fields, the header has {n_features}", record.len()),
                ));
            }
            for (j, cell) in record.iter().enumerate() {
                let v: f64 = cell.parse().map_err(|_| {
                    bad(
                        line,
                        format!("column {:?}: {cell:?} is not a number", names[j]),
                    )
                })?;
                values.push(v);
            }
            n_samples += 1;
        }
        let mut t = Self::new(n_samples, n_features, values)?.with_names(names)?;
        t.source = Some(path.to_path_buf());
        Ok(t)
    }

    /// Number of rows.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Row `i` (panics if `i >= n_samples`, like slice indexing).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n_features..(i + 1) * self.n_features]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Column `j` as a vector (panics if `j >= n_features`).
    pub fn column(&self, j: usize) -> Vec<f64> {
        assert!(j < self.n_features, "column {j} of {}", self.n_features);
        self.values
            .iter()
            .skip(j)
            .step_by(self.n_features)
            .copied()
            .collect()
    }

    /// Column names, for a table read from CSV or given names.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Name of column `j`, if the table has names.
    pub fn name(&self, j: usize) -> Option<&str> {
        self.names
            .as_ref()
            .and_then(|n| n.get(j))
            .map(String::as_str)
    }

    /// The file the table was read from.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The file name for messages, or `fallback` for a table built in memory.
    pub(crate) fn label(&self, fallback: &str) -> String {
        match &self.source {
            Some(p) => format!("{fallback} {}", p.display()),
            None => fallback.to_string(),
        }
    }
}

/// The shape declared in a `.npy` file's header, read without loading the data: lets a
/// caller tell a feature table (`[samples, features]`) from an image array
/// (`[N, H, W]`, `[N, C, H, W]`, ...) before choosing how to read it.
pub fn npy_shape(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let file = fs::File::open(path).map_err(|e| MonitorError::io("read", path, e))?;
    let npy = NpyFile::new(std::io::BufReader::new(file)).map_err(|e| MonitorError::Npy {
        path: path.to_path_buf(),
        reason: format!("not a .npy file ({})", robust_data::npy_error_line(&e)),
    })?;
    Ok(npy.shape().iter().map(|&s| s as usize).collect())
}

/// Checks the `shape` declared in a .npy header before the npy reader sees it: a hostile
/// or corrupt header must not make the reader overflow or allocate for values the file
/// cannot hold (every value takes at least one byte). Headers it cannot parse are left to
/// the reader, which reports them.
fn precheck_npy_shape(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 12 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (start, len): (usize, usize) = if bytes[6] == 1 {
        (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize)
    } else {
        (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        )
    };
    let Some(header) = bytes.get(start..start.saturating_add(len)) else {
        return Err("truncated header".into());
    };
    let header = String::from_utf8_lossy(header);
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
    let mut total: u64 = 1;
    for part in rest[open + 1..close].split(',') {
        let part = part.trim().trim_end_matches('L');
        if part.is_empty() {
            continue;
        }
        let Ok(dim) = part.parse::<u64>() else {
            return Ok(());
        };
        total = total
            .checked_mul(dim)
            .ok_or("the declared shape overflows")?;
    }
    let data_bytes = (bytes.len() - (start + len).min(bytes.len())) as u64;
    if total > data_bytes {
        return Err(format!(
            "the header declares {total} values but only {data_bytes} bytes of data follow \
             (truncated file?)"
        ));
    }
    Ok(())
}

/// Reorders a Fortran-order (column-major) array of `shape` into C order.
fn fortran_to_c(flat: &[f64], shape: &[usize]) -> Vec<f64> {
    let nd = shape.len();
    // Fortran strides: 1, s0, s0*s1, ...
    let mut fstride = vec![1usize; nd];
    for k in 1..nd {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(flat.len());
    let mut idx = vec![0usize; nd];
    for _ in 0..flat.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(flat[off]);
        // Increment the C-order multi-index (last axis fastest).
        for k in (0..nd).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_parse_error_is_one_line() {
        let diagram = "could not parse Python expression: syntax error:  --> 1:83\n  |\n\
                       1 | {'descr': '|u1', 'shape': (2,), }  \u{1}\n  |    ^---\n  |\n  \
                       = expected EOI";
        let e = std::io::Error::other(diagram);
        assert_eq!(
            robust_data::npy_error_line(&e),
            "could not parse Python expression: syntax error at 1:83: expected EOI"
        );
        let plain = std::io::Error::other("unsupported dtype |u1");
        assert_eq!(robust_data::npy_error_line(&plain), "unsupported dtype |u1");
    }

    #[test]
    fn fortran_order_is_transposed() {
        // 2 × 3 matrix [[0,1,2],[3,4,5]] stored column-major.
        let f = [0.0, 3.0, 1.0, 4.0, 2.0, 5.0];
        assert_eq!(fortran_to_c(&f, &[2, 3]), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn shape_checks() {
        assert!(FeatureTable::new(2, 3, vec![0.0; 5]).is_err());
        let err = FeatureTable::from_rows(&[vec![1.0f32, 2.0], vec![3.0]]).unwrap_err();
        assert!(err.to_string().contains("row 1 has 1 values"), "{err}");
        let t = FeatureTable::from_rows(&[[1u8, 2], [3, 4]]).unwrap();
        assert_eq!(t.column(1), [2.0, 4.0]);
        assert!(t.clone().with_names(vec!["a".into()]).is_err());
    }
}
