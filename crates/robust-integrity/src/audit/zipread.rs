//! A minimal, read-only zip reader for the containers `robust audit` opens (PyTorch
//! checkpoints, `.npz`, `.keras`): the central directory (zip64 included) and members
//! stored or deflated, each read up to a size cap. Nothing is extracted to disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One member of a zip archive.
#[derive(Debug, Clone)]
pub struct Member {
    /// The name as stored (`/`-separated).
    pub name: String,
    /// Compression method (0 stored, 8 deflate).
    pub method: u16,
    /// Compressed size in bytes.
    pub compressed_size: u64,
    /// Uncompressed size in bytes (as declared).
    pub size: u64,
    /// Offset of the member's local header.
    header_offset: u64,
}

/// Whether `head` opens like a zip archive.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read_at(file: &mut File, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek to byte {offset}: {e}"))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf)
        .map_err(|e| format!("cannot read {len} bytes at byte {offset}: {e}"))?;
    Ok(buf)
}

/// The members listed in the archive's central directory. Errors are one-line reasons.
pub fn members(path: &Path) -> Result<Vec<Member>, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read metadata: {e}"))?
        .len();
    let tail_len = len.min(65_557) as usize;
    let tail = read_at(&mut file, len - tail_len as u64, tail_len)?;
    let eocd = (0..tail_len.saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or("no end-of-central-directory record (truncated or not a zip archive)")?;
    let mut count = u64::from(u16le(&tail, eocd + 10).ok_or("short EOCD")?);
    let mut cd_size = u64::from(u32le(&tail, eocd + 12).ok_or("short EOCD")?);
    let mut cd_offset = u64::from(u32le(&tail, eocd + 16).ok_or("short EOCD")?);
    // zip64: a locator right before the EOCD points at the zip64 EOCD record.
    if eocd >= 20 && tail[eocd - 20..].starts_with(b"PK\x06\x07") {
        let z64_at = u64le(&tail, eocd - 20 + 8).ok_or("short zip64 locator")?;
        let rec = read_at(&mut file, z64_at, 56)?;
        if !rec.starts_with(b"PK\x06\x06") {
            return Err("bad zip64 end-of-central-directory record".into());
        }
        count = u64le(&rec, 32).ok_or("short zip64 EOCD")?;
        cd_size = u64le(&rec, 40).ok_or("short zip64 EOCD")?;
        cd_offset = u64le(&rec, 48).ok_or("short zip64 EOCD")?;
    }
    if cd_offset.saturating_add(cd_size) > len || cd_size > 256 << 20 {
        return Err(format!(
            "central directory ({cd_size} bytes at {cd_offset}) lies outside the {len}-byte file"
        ));
    }
    let cd = read_at(&mut file, cd_offset, cd_size as usize)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while out.len() as u64 != count {
        if !cd.get(at..).is_some_and(|r| r.starts_with(b"PK\x01\x02")) {
            return Err(format!(
                "central directory entry {} is damaged",
                out.len() + 1
            ));
        }
        let method = u16le(&cd, at + 10).ok_or("short entry")?;
        let mut compressed_size = u64::from(u32le(&cd, at + 20).ok_or("short entry")?);
        let mut size = u64::from(u32le(&cd, at + 24).ok_or("short entry")?);
        let name_len = usize::from(u16le(&cd, at + 28).ok_or("short entry")?);
        let extra_len = usize::from(u16le(&cd, at + 30).ok_or("short entry")?);
        let comment_len = usize::from(u16le(&cd, at + 32).ok_or("short entry")?);
        let mut header_offset = u64::from(u32le(&cd, at + 42).ok_or("short entry")?);
        let name = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or("short entry name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = cd
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or("short entry extra field")?;
        // The zip64 extra field holds the 64-bit values of the fields set to 0xFFFFFFFF.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let id = u16le(extra, e).unwrap_or(0);
            let n = usize::from(u16le(extra, e + 2).unwrap_or(0));
            if id == 1 {
                let mut k = e + 4;
                for field in [&mut size, &mut compressed_size, &mut header_offset] {
                    if *field == u64::from(u32::MAX) {
                        *field = u64le(extra, k).ok_or("short zip64 extra field")?;
                        k += 8;
                    }
                }
            }
            e += 4 + n;
        }
        out.push(Member {
            name,
            method,
            compressed_size,
            size,
            header_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// Reads a member's uncompressed bytes, at most `cap` of them; the flag tells whether the
/// member was longer than that.
pub fn read_member(path: &Path, m: &Member, cap: usize) -> Result<(Vec<u8>, bool), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let header = read_at(&mut file, m.header_offset, 30)?;
    if !header.starts_with(b"PK\x03\x04") {
        return Err(format!("the local header of {} is damaged", m.name));
    }
    let name_len = u64::from(u16le(&header, 26).unwrap_or(0));
    let extra_len = u64::from(u16le(&header, 28).unwrap_or(0));
    let data_at = m.header_offset + 30 + name_len + extra_len;
    file.seek(SeekFrom::Start(data_at))
        .map_err(|e| format!("cannot seek to {}: {e}", m.name))?;
    let raw = file.take(m.compressed_size);
    let mut out = Vec::new();
    let limit = cap as u64 + 1;
    let read = match m.method {
        0 => raw.take(limit).read_to_end(&mut out),
        8 => flate2::read::DeflateDecoder::new(raw)
            .take(limit)
            .read_to_end(&mut out),
        other => {
            return Err(format!(
                "{} uses compression method {other}, which robust does not read",
                m.name
            ))
        }
    };
    read.map_err(|e| format!("cannot read {}: {e}", m.name))?;
    let truncated = out.len() > cap;
    out.truncate(cap);
    Ok((out, truncated))
}
