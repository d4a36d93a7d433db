//! The GGUF v2/v3 parser.
//!
//! Layout (little-endian): magic, u32 version, u64 tensor_count, u64 kv_count, the
//! key/value pairs, the tensor infos, zero padding to the alignment, the data section.
//! Every count read from the header is checked against the bytes that remain before
//! anything is allocated for it, so a forged count fails fast instead of exhausting memory.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::value::{Array, Metadata, Value, ValueType, MAX_ARRAY_DEPTH};
use super::{
    alignment_from, architecture_from, tensor_size, tensor_type, Gguf, GgufError, Result,
    TensorInfo, ALIGNMENT_KEY, ARCHITECTURE_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS,
};

/// Smallest possible key/value pair: empty key (u64 length), u32 type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name, u32 n_dims, one u64 dim, u32 type, u64 offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

pub(super) fn parse(bytes: &[u8]) -> Result<Gguf> {
    let mut cur = Cursor { bytes, pos: 0 };

    let magic: [u8; 4] = cur.array().reading(|| "magic".into())?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32().reading(|| "version".into())?;
    check_version(version)?;
    let tensor_count = cur.u64().reading(|| "tensor_count".into())?;
    let kv_count = cur.u64().reading(|| "kv_count".into())?;
    // Both checked now so that a forged tensor_count fails before the metadata is parsed.
    check_count(&cur, "kv_count", kv_count, MIN_KV_BYTES)?;
    check_count(&cur, "tensor_count", tensor_count, MIN_TENSOR_INFO_BYTES)?;

    let metadata = read_metadata(&mut cur, kv_count)?;
    let alignment = match metadata.get(ALIGNMENT_KEY) {
        Some(v) => alignment_from(v)?,
        None => DEFAULT_ALIGNMENT,
    };
    let architecture = match metadata.get(ARCHITECTURE_KEY) {
        Some(v) => architecture_from(v)?,
        None => "",
    };

    check_count(&cur, "tensor_count", tensor_count, MIN_TENSOR_INFO_BYTES)?;
    let tensors = read_tensor_infos(&mut cur, tensor_count, architecture)?;

    // No overflow: a slice is at most isize::MAX bytes and the alignment at most 2^31.
    let data_offset = (cur.pos as u64).next_multiple_of(alignment);
    let file_len = bytes.len() as u64;
    check_layout(&tensors, data_offset, alignment, file_len)?;

    Ok(Gguf {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_len,
    })
}

fn check_version(version: u32) -> Result<()> {
    match version {
        2 | 3 => Ok(()),
        // A big-endian file read as little-endian shows its version in the high bytes.
        v if v & 0xFFFF == 0 && v != 0 => Err(GgufError::BigEndian {
            version: v.swap_bytes(),
        }),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

/// Rejects a count whose entries could not fit in the rest of the file even at their
/// smallest, which also bounds any `Vec::with_capacity(count)` by the input size.
fn check_count(cur: &Cursor, field: &'static str, count: u64, min_entry_bytes: u64) -> Result<()> {
    let available = cur.remaining();
    match count.checked_mul(min_entry_bytes) {
        Some(need) if need <= available => Ok(()),
        _ => Err(GgufError::CountTooLarge {
            field,
            count,
            min_entry_bytes,
            offset: cur.pos as u64,
            available,
        }),
    }
}

fn read_metadata(cur: &mut Cursor, kv_count: u64) -> Result<Metadata> {
    let mut metadata = Metadata::new();
    for i in 0..kv_count {
        let key = cur
            .string()
            .reading(|| format!("key of metadata entry {i}"))?;
        let type_offset = cur.pos;
        let type_id = cur.u32().reading(|| format!("value type of '{key}'"))?;
        let ty = value_type(key, type_offset, type_id)?;
        let value = read_value(cur, ty, key)?;
        metadata.insert(key, value)?;
    }
    Ok(metadata)
}

fn value_type(key: &str, offset: usize, id: u32) -> Result<ValueType> {
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        offset: offset as u64,
        id,
    })
}

fn read_value(cur: &mut Cursor, ty: ValueType, key: &str) -> Result<Value> {
    let what = || format!("value of '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8().reading(what)?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array().reading(what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array().reading(what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array().reading(what)?)),
        ValueType::U32 => Value::U32(cur.u32().reading(what)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array().reading(what)?)),
        ValueType::U64 => Value::U64(cur.u64().reading(what)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array().reading(what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array().reading(what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array().reading(what)?)),
        ValueType::Bool => {
            let offset = cur.pos;
            Value::Bool(bool_from(key, offset, cur.u8().reading(what)?)?)
        }
        ValueType::String => Value::String(cur.string().reading(what)?.into()),
        ValueType::Array => Value::Array(read_array(cur, key, 1)?),
    })
}

/// The spec allows only 0 and 1; anything else means a corrupt file or a buggy writer.
fn bool_from(key: &str, offset: usize, byte: u8) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(GgufError::InvalidBool {
            key: key.into(),
            offset: offset as u64,
            byte,
        }),
    }
}

/// Reads an array header and its elements; `depth` is 1 for a top-level array.
fn read_array(cur: &mut Cursor, key: &str, depth: usize) -> Result<Array> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::ArrayTooDeep {
            key: key.into(),
            max_depth: MAX_ARRAY_DEPTH,
        });
    }
    let type_offset = cur.pos;
    let type_id = cur
        .u32()
        .reading(|| format!("array element type of '{key}'"))?;
    let elem = value_type(key, type_offset, type_id)?;
    let count_offset = cur.pos;
    let count = cur.u64().reading(|| format!("array length of '{key}'"))?;
    let available = cur.remaining();
    if count
        .checked_mul(elem.min_bytes())
        .is_none_or(|need| need > available)
    {
        return Err(GgufError::ArrayTooLarge {
            key: key.into(),
            offset: count_offset as u64,
            count,
            elem,
            available,
        });
    }
    // From here `count` elements of at least min_bytes each are known to fit, so every
    // allocation below is bounded by the input size.
    let n = count as usize;
    let what = || format!("elements of '{key}'");
    Ok(match elem {
        ValueType::U8 => Array::U8(cur.take(count).reading(what)?.to_vec()),
        ValueType::I8 => Array::I8(cur.vec(n, i8::from_le_bytes).reading(what)?),
        ValueType::U16 => Array::U16(cur.vec(n, u16::from_le_bytes).reading(what)?),
        ValueType::I16 => Array::I16(cur.vec(n, i16::from_le_bytes).reading(what)?),
        ValueType::U32 => Array::U32(cur.vec(n, u32::from_le_bytes).reading(what)?),
        ValueType::I32 => Array::I32(cur.vec(n, i32::from_le_bytes).reading(what)?),
        ValueType::U64 => Array::U64(cur.vec(n, u64::from_le_bytes).reading(what)?),
        ValueType::I64 => Array::I64(cur.vec(n, i64::from_le_bytes).reading(what)?),
        ValueType::F32 => Array::F32(cur.vec(n, f32::from_le_bytes).reading(what)?),
        ValueType::F64 => Array::F64(cur.vec(n, f64::from_le_bytes).reading(what)?),
        ValueType::Bool => {
            let start = cur.pos;
            let raw = cur.take(count).reading(what)?;
            let mut out = Vec::with_capacity(n);
            for (i, &b) in raw.iter().enumerate() {
                out.push(bool_from(key, start + i, b)?);
            }
            Array::Bool(out)
        }
        ValueType::String => {
            let mut out = Vec::with_capacity(n);
            for i in 0..count {
                let s = cur.string().reading(|| format!("element {i} of '{key}'"))?;
                out.push(s.to_string());
            }
            Array::String(out)
        }
        ValueType::Array => {
            // Not preallocated: inner arrays preallocate too, and nested claims would
            // multiply before the bytes backing them are consumed.
            let mut out = Vec::new();
            for _ in 0..count {
                out.push(read_array(cur, key, depth + 1)?);
            }
            Array::Array(out)
        }
    })
}

fn read_tensor_infos(
    cur: &mut Cursor,
    tensor_count: u64,
    architecture: &str,
) -> Result<Vec<TensorInfo>> {
    // Bounded: check_count verified tensor_count * MIN_TENSOR_INFO_BYTES <= remaining.
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = BTreeSet::new();
    for i in 0..tensor_count {
        let name = cur.string().reading(|| format!("name of tensor {i}"))?;
        let n_dims = cur.u32().reading(|| format!("n_dims of tensor '{name}'"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                tensor: name.into(),
                n_dims: n_dims.into(),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(
                cur.u64()
                    .reading(|| format!("dimension {d} of tensor '{name}'"))?,
            );
        }
        let type_id = cur.u32().reading(|| format!("type of tensor '{name}'"))?;
        let offset = cur
            .u64()
            .reading(|| format!("data offset of tensor '{name}'"))?;

        let ty = tensor_type(name, type_id, architecture)?;
        let (n_elems, n_bytes) = tensor_size(name, &dims, ty)?;
        if !names.insert(name) {
            return Err(GgufError::DuplicateTensor {
                tensor: name.into(),
            });
        }
        tensors.push(TensorInfo {
            name: name.into(),
            dims,
            ty,
            offset,
            n_elems,
            n_bytes,
        });
    }
    Ok(tensors)
}

/// Alignment, bounds and overlap of every tensor's data.
fn check_layout(
    tensors: &[TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<()> {
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedOffset {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        // u128: header fields up to u64::MAX each cannot wrap the sum.
        let start = u128::from(data_offset) + u128::from(t.offset);
        let end = start + u128::from(t.n_bytes);
        if end > u128::from(file_len) {
            return Err(GgufError::DataOutOfBounds {
                tensor: t.name.clone(),
                start,
                end,
                file_len,
            });
        }
    }
    // All ranges are within the file now, so offset + n_bytes cannot overflow.
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            let range =
                |t: &TensorInfo| (data_offset + t.offset, data_offset + t.offset + t.n_bytes);
            return Err(GgufError::OverlappingTensors {
                first: a.name.clone(),
                first_range: range(a),
                second: b.name.clone(),
                second_range: range(b),
            });
        }
    }
    Ok(())
}

/// A failed low-level read, before the caller has said what was being read.
#[derive(Debug)]
enum Short {
    Truncated {
        offset: usize,
        needed: u64,
        available: u64,
    },
    StringPastEnd {
        offset: usize,
        len: u64,
        available: u64,
    },
    Utf8 {
        offset: usize,
    },
}

trait Reading<T> {
    /// Attaches what was being read; `what` only runs on error, keeping the hot path free
    /// of formatting.
    fn reading(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Reading<T> for core::result::Result<T, Short> {
    fn reading(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|short| match short {
            Short::Truncated {
                offset,
                needed,
                available,
            } => GgufError::Truncated {
                offset: offset as u64,
                what: what(),
                needed,
                available,
            },
            Short::StringPastEnd {
                offset,
                len,
                available,
            } => GgufError::StringPastEnd {
                what: what(),
                offset: offset as u64,
                len,
                available,
            },
            Short::Utf8 { offset } => GgufError::InvalidUtf8 {
                what: what(),
                offset: offset as u64,
            },
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> core::result::Result<&'a [u8], Short> {
        let available = self.remaining();
        if n > available {
            return Err(Short::Truncated {
                offset: self.pos,
                needed: n,
                available,
            });
        }
        // n <= available, which came from a usize.
        let (head, _) = self.bytes[self.pos..].split_at(n as usize);
        self.pos += head.len();
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> core::result::Result<[u8; N], Short> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u8(&mut self) -> core::result::Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> core::result::Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> core::result::Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> core::result::Result<&'a str, Short> {
        let offset = self.pos;
        let len = self.u64()?;
        let available = self.remaining();
        if len > available {
            return Err(Short::StringPastEnd {
                offset,
                len,
                available,
            });
        }
        core::str::from_utf8(self.take(len)?).map_err(|_| Short::Utf8 { offset })
    }

    /// `n` fixed-size little-endian values; the caller has bounded `n` by the input size.
    fn vec<const N: usize, T>(
        &mut self,
        n: usize,
        decode: fn([u8; N]) -> T,
    ) -> core::result::Result<Vec<T>, Short> {
        let bytes = self.take((n as u64).saturating_mul(N as u64))?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0; N];
                a.copy_from_slice(c);
                decode(a)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;
    use crate::quants::{i2_s, tq2_0, GgmlType};
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.add_metadata(ARCHITECTURE_KEY, "bitnet").unwrap();
        w.add_metadata("flag", true).unwrap();
        w.add_tensor(
            "w",
            &[256, 2],
            GgmlType::TQ2_0,
            vec![7u8; 2 * tq2_0::BLOCK_BYTES],
        )
        .unwrap();
        w.add_tensor("n", &[8], GgmlType::F32, vec![1u8; 32])
            .unwrap();
        w.finish().unwrap()
    }

    /// Byte offset of the first occurrence of `needle`.
    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    #[test]
    fn reads_version_2_like_version_3() {
        let mut bytes = sample();
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        let g = parse(&bytes).unwrap();
        assert_eq!(g.version, 2);
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.architecture().unwrap(), "bitnet");
        assert!(g.get_bool("flag").unwrap());
        assert_eq!(g.tensor_data(&bytes, g.tensor("w").unwrap()), [7u8; 132]);
    }

    #[test]
    fn big_endian_is_named() {
        let mut bytes = sample();
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        let e = parse(&bytes).unwrap_err().to_string();
        assert!(e.contains("big-endian") && e.contains("version 3"), "{e}");
    }

    #[test]
    fn invalid_bool_is_rejected() {
        let mut bytes = sample();
        // The bool byte follows the key "flag" and its u32 type (7).
        let at = find(&bytes, b"flag") + 4 + 4;
        assert_eq!(bytes[at], 1);
        bytes[at] = 2;
        let e = parse(&bytes).unwrap_err().to_string();
        assert_eq!(
            e,
            alloc::format!("metadata key 'flag': bool at byte {at} is 2, expected 0 or 1")
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut bytes = sample();
        let at = find(&bytes, b"flag");
        bytes[at] = 0xFF;
        let e = parse(&bytes).unwrap_err().to_string();
        assert!(
            e.contains("key of metadata entry 1") && e.contains("not valid UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_tensor_names_and_keys_are_rejected() {
        let mut bytes = sample();
        let at = find(&bytes, b"\x01\x00\x00\x00\x00\x00\x00\x00n");
        bytes[at + 8] = b'w';
        let e = parse(&bytes).unwrap_err().to_string();
        assert_eq!(e, "duplicate tensor name 'w'");

        // Two entries `k: u8 = 9` (the writer refuses to produce this).
        let mut raw = Vec::new();
        raw.extend_from_slice(b"GGUF");
        raw.extend_from_slice(&3u32.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(&2u64.to_le_bytes());
        for _ in 0..2 {
            raw.extend_from_slice(&1u64.to_le_bytes());
            raw.push(b'k');
            raw.extend_from_slice(&0u32.to_le_bytes());
            raw.push(9);
        }
        let e = parse(&raw).unwrap_err().to_string();
        assert_eq!(e, "duplicate metadata key 'k'");
    }

    #[test]
    fn overlapping_tensors_are_rejected() {
        let mut bytes = sample();
        // Point tensor "n" (offset 160, after 132 bytes of "w" padded) into "w".
        let g = parse(&bytes).unwrap();
        assert_eq!(g.tensor("n").unwrap().offset, 160);
        let at = find(&bytes, &160u64.to_le_bytes());
        bytes[at..at + 8].copy_from_slice(&96u64.to_le_bytes());
        let e = parse(&bytes).unwrap_err().to_string();
        let d = g.data_offset;
        assert_eq!(
            e,
            alloc::format!(
                "tensor 'n': data [{}..{}) overlaps tensor 'w' [{}..{})",
                d + 96,
                d + 128,
                d,
                d + 132
            )
        );
    }

    #[test]
    fn not_a_block_multiple_is_rejected() {
        let mut bytes = sample();
        // dims of "w" are [256, 2]: make ne0 255.
        let at = find(&bytes, &256u64.to_le_bytes());
        bytes[at..at + 8].copy_from_slice(&255u64.to_le_bytes());
        let e = parse(&bytes).unwrap_err().to_string();
        assert_eq!(
            e,
            "tensor 'w': 510 elements is not a multiple of the TQ2_0 block size 256"
        );
    }

    #[test]
    fn empty_file_without_tensors_is_valid() {
        let bytes = GgufWriter::new().finish().unwrap();
        assert_eq!(bytes.len(), 32, "24-byte header padded to the alignment");
        let g = parse(&bytes).unwrap();
        assert!(g.metadata.is_empty() && g.tensors.is_empty());
        assert_eq!(g.data_offset, 32);
        assert_eq!(parse(&bytes[..24]).unwrap().data_offset, 32);
        assert!(g
            .architecture()
            .unwrap_err()
            .to_string()
            .contains("general.architecture"));
    }

    #[test]
    fn i2_s_is_read_under_bitnet_b158() {
        let mut w = GgufWriter::new();
        w.add_metadata(ARCHITECTURE_KEY, "bitnet-b1.58").unwrap();
        w.add_tensor(
            "q",
            &[128, 2],
            GgmlType::I2_S,
            vec![0u8; 2 * i2_s::BLOCK_BYTES + i2_s::TAIL_BYTES],
        )
        .unwrap();
        let bytes = w.finish().unwrap();
        let g = parse(&bytes).unwrap();
        let q = g.tensor("q").unwrap();
        assert_eq!((q.ty, q.n_elems, q.n_bytes), (GgmlType::I2_S, 256, 96));
        assert!(g.tensor("missing").is_none());
        assert_eq!(
            g.require_tensor("missing").unwrap_err().to_string(),
            "tensor 'missing' is missing"
        );
    }
}
