//! Typed GGUF errors. Every message names the key or tensor, the offending value and what
//! was expected, so a user can tell from one line what is wrong with a file.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::value::ValueType;
use crate::quants::{GgmlType, I2_S_ARCHITECTURES};

pub type Result<T, E = GgufError> = core::result::Result<T, E>;

#[derive(Debug)]
#[non_exhaustive]
pub enum GgufError {
    /// The file ends before a field could be read.
    Truncated {
        offset: u64,
        what: String,
        needed: u64,
        available: u64,
    },
    BadMagic {
        found: [u8; 4],
    },
    BigEndian {
        /// The version as a big-endian reader would see it.
        version: u32,
    },
    UnsupportedVersion {
        version: u32,
    },
    /// A header count that the rest of the file could not possibly hold.
    CountTooLarge {
        field: &'static str,
        count: u64,
        min_entry_bytes: u64,
        offset: u64,
        available: u64,
    },
    StringPastEnd {
        what: String,
        offset: u64,
        len: u64,
        available: u64,
    },
    InvalidUtf8 {
        what: String,
        offset: u64,
    },
    InvalidBool {
        key: String,
        offset: u64,
        byte: u8,
    },
    UnknownValueType {
        key: String,
        offset: u64,
        id: u32,
    },
    ArrayTooLarge {
        key: String,
        offset: u64,
        count: u64,
        elem: ValueType,
        available: u64,
    },
    ArrayTooDeep {
        key: String,
        max_depth: usize,
    },
    DuplicateKey {
        key: String,
    },
    /// `general.alignment` is not a nonzero power-of-two u32; `found` describes the value.
    BadAlignment {
        found: String,
    },
    MissingKey {
        key: String,
    },
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    OutOfRange {
        key: String,
        expected: &'static str,
        value: String,
    },
    MissingTensor {
        tensor: String,
    },
    BadDimCount {
        tensor: String,
        n_dims: u64,
    },
    ZeroDim {
        tensor: String,
        dims: Vec<u64>,
    },
    DimsOverflow {
        tensor: String,
        dims: Vec<u64>,
    },
    UnknownTensorType {
        tensor: String,
        id: u32,
        architecture: String,
    },
    NotBlockMultiple {
        tensor: String,
        ty: GgmlType,
        n_elems: u64,
    },
    /// The element count is fine but its byte size overflows u64.
    SizeOverflow {
        tensor: String,
        ty: GgmlType,
        n_elems: u64,
    },
    MisalignedOffset {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    /// Absolute byte range `[start, end)`; u128 so an overflowing header cannot wrap it.
    DataOutOfBounds {
        tensor: String,
        start: u128,
        end: u128,
        file_len: u64,
    },
    OverlappingTensors {
        first: String,
        first_range: (u64, u64),
        second: String,
        second_range: (u64, u64),
    },
    DuplicateTensor {
        tensor: String,
    },
    /// Writer: the encoded bytes do not match the size the shape and type imply.
    DataSizeMismatch {
        tensor: String,
        ty: GgmlType,
        n_elems: u64,
        expected: u64,
        got: u64,
    },
    #[cfg(feature = "std")]
    Io {
        path: std::path::PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// Any parse error of a file opened by path; the message starts with the path.
    #[cfg(feature = "std")]
    InFile {
        path: std::path::PathBuf,
        source: alloc::boxed::Box<GgufError>,
    },
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match self {
            Truncated {
                offset,
                what,
                needed,
                available,
            } => write!(
                f,
                "truncated at byte {offset} while reading {what} \
                 (needs {needed} bytes, {available} left)"
            ),
            BadMagic { found } => write!(
                f,
                "bad magic {found:02x?} (\"{}\"): not a GGUF file (expected \"GGUF\")",
                found.escape_ascii()
            ),
            BigEndian { version } => write!(
                f,
                "big-endian GGUF (version {version}) is not supported: only little-endian files \
                 can be read"
            ),
            UnsupportedVersion { version: 1 } => f.write_str(
                "GGUF version 1 is not supported (32-bit counts): expected version 2 or 3; \
                 re-convert the model",
            ),
            UnsupportedVersion { version } => {
                write!(
                    f,
                    "unsupported GGUF version {version}: expected version 2 or 3"
                )
            }
            CountTooLarge {
                field,
                count,
                min_entry_bytes,
                offset,
                available,
            } => write!(
                f,
                "{field} {count} is impossible: each entry needs at least {min_entry_bytes} bytes \
                 but only {available} bytes follow byte {offset}"
            ),
            StringPastEnd {
                what,
                offset,
                len,
                available,
            } => write!(
                f,
                "{what}: string length {len} at byte {offset} extends past the end of the file \
                 ({available} bytes left)"
            ),
            InvalidUtf8 { what, offset } => {
                write!(f, "{what}: string at byte {offset} is not valid UTF-8")
            }
            InvalidBool { key, offset, byte } => write!(
                f,
                "metadata key '{key}': bool at byte {offset} is {byte}, expected 0 or 1"
            ),
            UnknownValueType { key, offset, id } => write!(
                f,
                "metadata key '{key}': unknown value type {id} at byte {offset} (expected 0..=12)"
            ),
            ArrayTooLarge {
                key,
                offset,
                count,
                elem,
                available,
            } => write!(
                f,
                "metadata key '{key}': array of {count} {elem} elements at byte {offset} cannot \
                 fit in the {available} bytes left (each needs at least {} bytes)",
                elem.min_bytes()
            ),
            ArrayTooDeep { key, max_depth } => write!(
                f,
                "metadata key '{key}': arrays nested deeper than {max_depth} levels"
            ),
            DuplicateKey { key } => write!(f, "duplicate metadata key '{key}'"),
            BadAlignment { found } => write!(
                f,
                "metadata key 'general.alignment': expected a nonzero power-of-two u32, \
                 found {found}"
            ),
            MissingKey { key } => write!(f, "metadata key '{key}' is missing"),
            WrongType {
                key,
                expected,
                found,
            } => {
                write!(
                    f,
                    "metadata key '{key}': expected {expected}, found {found}"
                )
            }
            OutOfRange {
                key,
                expected,
                value,
            } => {
                write!(
                    f,
                    "metadata key '{key}': value {value} does not fit in {expected}"
                )
            }
            MissingTensor { tensor } => write!(f, "tensor '{tensor}' is missing"),
            BadDimCount { tensor, n_dims } => write!(
                f,
                "tensor '{tensor}': {n_dims} dimensions, expected 1 to {}",
                super::MAX_DIMS
            ),
            ZeroDim { tensor, dims } => {
                write!(f, "tensor '{tensor}': dimensions {dims:?} contain a zero")
            }
            DimsOverflow { tensor, dims } => write!(
                f,
                "tensor '{tensor}': element count of dimensions {dims:?} overflows u64"
            ),
            UnknownTensorType {
                tensor,
                id: 36,
                architecture,
            } => write!(
                f,
                "tensor '{tensor}': type id 36 under architecture '{architecture}': id 36 is I2_S \
                 only for {} (upstream ggml reuses ids 36..42 for other types)",
                I2S_ARCHS
            ),
            UnknownTensorType {
                tensor,
                id,
                architecture,
            } => write!(
                f,
                "tensor '{tensor}': unknown type id {id} (architecture '{architecture}'); \
                 supported: F32=0 F16=1 Q8_0=8 Q6_K=14 BF16=30 TQ1_0=34 TQ2_0=35 I2_S=36"
            ),
            NotBlockMultiple {
                tensor,
                ty,
                n_elems,
            } => write!(
                f,
                "tensor '{tensor}': {n_elems} elements is not a multiple of the {ty} block size {}",
                ty.block_elems()
            ),
            SizeOverflow {
                tensor,
                ty,
                n_elems,
            } => write!(
                f,
                "tensor '{tensor}': byte size of {n_elems} {ty} elements overflows u64"
            ),
            MisalignedOffset {
                tensor,
                offset,
                alignment,
            } => write!(
                f,
                "tensor '{tensor}': data offset {offset} is not a multiple of the alignment \
                 {alignment}"
            ),
            DataOutOfBounds {
                tensor,
                start,
                end,
                file_len,
            } => write!(
                f,
                "tensor '{tensor}': data [{start}..{end}) extends past the end of the file \
                 ({file_len} bytes)"
            ),
            OverlappingTensors {
                first,
                first_range,
                second,
                second_range,
            } => write!(
                f,
                "tensor '{second}': data [{}..{}) overlaps tensor '{first}' [{}..{})",
                second_range.0, second_range.1, first_range.0, first_range.1
            ),
            DuplicateTensor { tensor } => write!(f, "duplicate tensor name '{tensor}'"),
            DataSizeMismatch {
                tensor,
                ty,
                n_elems,
                expected,
                got,
            } => write!(
                f,
                "tensor '{tensor}': {got} data bytes, expected {expected} for {n_elems} {ty} \
                 elements"
            ),
            #[cfg(feature = "std")]
            Io {
                path,
                action,
                source,
            } => {
                write!(f, "{}: {action}: {source}", path.display())
            }
            #[cfg(feature = "std")]
            InFile { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

/// `I2_S_ARCHITECTURES` joined with '/', for messages.
struct I2sArchs;
const I2S_ARCHS: I2sArchs = I2sArchs;

impl fmt::Display for I2sArchs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arch) in I2_S_ARCHITECTURES.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(arch)?;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for GgufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GgufError::Io { source, .. } => Some(source),
            GgufError::InFile { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
