//! The IDX format of the MNIST distribution (LeCun et al.): a big-endian header
//! `00 00 <type> <ndim>`, `ndim` big-endian `u32` sizes, then the data.
//!
//! Only unsigned-byte data (type `0x08`) is read: images have 3 dimensions
//! (`0x00000803`: count, rows, columns), labels 1 (`0x00000801`). A plain file is read in
//! place, a range per batch; a gzipped one (detected by its content, not its name) is
//! decompressed into memory when opened, since gzip cannot seek.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// Which IDX file: images (3 dimensions) or labels (1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdxKind {
    Images,
    Labels,
}

impl IdxKind {
    fn ndim(self) -> usize {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            IdxKind::Images => "images",
            IdxKind::Labels => "labels",
        }
    }
}

#[derive(Clone, Debug)]
enum Storage {
    File { offset: u64 },
    Memory(Vec<u8>),
}

/// An open IDX file.
#[derive(Clone, Debug)]
pub(crate) struct IdxFile {
    pub path: PathBuf,
    /// The sizes from the header; `dims[0]` is the number of items.
    pub dims: Vec<usize>,
    storage: Storage,
}

fn type_name(t: u8) -> &'static str {
    match t {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "16-bit integer",
        0x0C => "32-bit integer",
        0x0D => "32-bit float",
        0x0E => "64-bit float",
        _ => "unknown",
    }
}

impl IdxFile {
    /// Opens and validates an IDX file: magic number, data type, number of dimensions, and
    /// a length that matches the header exactly.
    pub fn open(path: &Path, kind: IdxKind, what: &str) -> Result<Self> {
        let mut file = fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::not_found(path, what),
            _ => DataError::io("read", path, e),
        })?;
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io("read", path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| DataError::io("read", path, e))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let mut bytes = Vec::new();
            GzDecoder::new(file).read_to_end(&mut bytes).map_err(|e| {
                DataError::format(path, format!("corrupt or truncated gzip data ({e})"))
            })?;
            let (dims, header_len) = parse_header(path, &bytes, kind)?;
            check_len(path, &dims, header_len, bytes.len() as u64)?;
            bytes.drain(..header_len);
            return Ok(IdxFile {
                path: path.to_path_buf(),
                dims,
                storage: Storage::Memory(bytes),
            });
        }
        let file_len = file
            .metadata()
            .map_err(|e| DataError::io("read", path, e))?
            .len();
        let mut head = vec![0u8; 4 + 4 * 255];
        let got = read_up_to(&mut file, &mut head).map_err(|e| DataError::io("read", path, e))?;
        head.truncate(got);
        let (dims, header_len) = parse_header(path, &head, kind)?;
        check_len(path, &dims, header_len, file_len)?;
        Ok(IdxFile {
            path: path.to_path_buf(),
            dims,
            storage: Storage::File {
                offset: header_len as u64,
            },
        })
    }

    /// Bytes per item (`rows * columns` for images, 1 for labels).
    pub fn item_len(&self) -> usize {
        self.dims[1..].iter().product()
    }

    /// Keeps only the first `n` items in memory (a no-op for a file read in place).
    pub fn truncate(&mut self, n: usize) {
        let len = n * self.item_len();
        if let Storage::Memory(bytes) = &mut self.storage {
            bytes.truncate(len);
            bytes.shrink_to_fit();
        }
    }

    /// The data bytes of items `[start, start + n)`.
    pub fn read(&self, start: usize, n: usize) -> Result<Vec<u8>> {
        let item = self.item_len();
        match &self.storage {
            Storage::Memory(bytes) => Ok(bytes[start * item..(start + n) * item].to_vec()),
            Storage::File { offset } => {
                let path = &self.path;
                let mut file = fs::File::open(path).map_err(|e| DataError::io("read", path, e))?;
                file.seek(SeekFrom::Start(offset + (start * item) as u64))
                    .map_err(|e| DataError::io("read", path, e))?;
                let mut out = vec![0u8; n * item];
                file.read_exact(&mut out).map_err(|e| {
                    DataError::format(
                        path,
                        format!(
                            "cannot read items {start}..{} ({e}); was the file truncated since \
                             it was opened?",
                            start + n
                        ),
                    )
                })?;
                Ok(out)
            }
        }
    }
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn parse_header(path: &Path, bytes: &[u8], kind: IdxKind) -> Result<(Vec<usize>, usize)> {
    let expected_magic = 0x0800 | kind.ndim() as u32;
    if bytes.len() < 4 {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {} bytes is too short for an IDX header (an IDX {} file starts \
                 with the magic number 0x{expected_magic:08X})",
                bytes.len(),
                kind.name()
            ),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            format!(
                "not an IDX file: wrong magic number 0x{magic:08X} (an IDX {} file starts with \
                 0x{expected_magic:08X})",
                kind.name()
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX data type 0x{:02X} ({}) is not supported; only unsigned bytes (0x08, \
                 magic number 0x{expected_magic:08X}) are",
                bytes[2],
                type_name(bytes[2])
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim != kind.ndim() {
        return Err(DataError::format(
            path,
            format!(
                "wrong magic number 0x{magic:08X}: it declares {ndim} dimensions, an IDX {} \
                 file has {} (0x{expected_magic:08X})",
                kind.name(),
                kind.ndim()
            ),
        ));
    }
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(DataError::format(
            path,
            format!(
                "truncated: the IDX header needs {header_len} bytes, the file holds {}",
                bytes.len()
            ),
        ));
    }
    let dims = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    Ok((dims, header_len))
}

fn check_len(path: &Path, dims: &[usize], header_len: usize, len: u64) -> Result<()> {
    let dims_text: Vec<String> = dims.iter().map(usize::to_string).collect();
    // Three 32-bit sizes can overflow 64 bits: such a header is refused, not wrapped around.
    let data = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "the header declares {}, too large: its size overflows",
                    dims_text.join(" × ")
                ),
            )
        })?;
    let expected = header_len as u64 + data;
    if len < expected {
        return Err(DataError::format(
            path,
            format!(
                "truncated: the header declares {} ({} bytes of data) but only {} bytes \
                 follow it",
                dims_text.join(" × "),
                data,
                len - header_len as u64
            ),
        ));
    }
    if len > expected {
        return Err(DataError::format(
            path,
            format!(
                "{} extra bytes after the data the header declares ({})",
                len - expected,
                dims_text.join(" × ")
            ),
        ));
    }
    Ok(())
}
