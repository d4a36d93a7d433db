//! GGUF v2/v3 container: a strict parser, a deterministic writer and (with `std`) an mmap
//! file opener.
//!
//! The parser copies the header (metadata and tensor infos) into owned structures and
//! validates the whole layout up front, so everything downstream can slice tensor data
//! without further checks. It never panics and never allocates more than a small multiple
//! of the input size, whatever the header claims.

mod error;
#[cfg(feature = "std")]
mod file;
mod reader;
mod value;
mod writer;

use alloc::string::String;
use alloc::vec::Vec;

pub use error::{GgufError, Result};
#[cfg(feature = "std")]
pub use file::GgufFile;
pub use value::{Array, Metadata, Value, ValueType, MAX_ARRAY_DEPTH};
#[cfg(feature = "std")]
pub use writer::GgufStream;
pub use writer::GgufWriter;

use crate::quants::GgmlType;

pub const MAGIC: [u8; 4] = *b"GGUF";
/// The version [`GgufWriter`] writes; the parser also reads version 2 (same layout).
pub const VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const ALIGNMENT_KEY: &str = "general.alignment";
pub const ARCHITECTURE_KEY: &str = "general.architecture";
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;

/// A parsed GGUF header. Owns its data; tensor bytes are sliced from the buffer it was
/// parsed from (see [`Gguf::tensor_data`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    pub version: u32,
    pub metadata: Metadata,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Start of the tensor data section; tensor offsets are relative to it.
    pub data_offset: u64,
    /// Length of the buffer this was parsed from.
    pub file_len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ne0 (fastest varying) first, as in the file.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Relative to [`Gguf::data_offset`], as in the file.
    pub offset: u64,
    pub n_elems: u64,
    pub n_bytes: u64,
}

impl Gguf {
    /// Parses and validates a GGUF v2/v3 file held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Gguf> {
        reader::parse(bytes)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Like [`Gguf::tensor`], but a missing tensor is an error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            tensor: name.into(),
        })
    }

    /// The bytes of `t` inside `bytes`.
    ///
    /// # Panics
    /// If `bytes` is not the buffer this header was parsed from (its length differs) or `t`
    /// belongs to another file. Parsing checked every tensor against the file length.
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        assert_eq!(
            bytes.len() as u64,
            self.file_len,
            "tensor_data: buffer is not the one this GGUF header was parsed from"
        );
        let start = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| usize::try_from(s).ok())
            .expect("tensor_data: tensor does not belong to this file");
        let len = usize::try_from(t.n_bytes).expect("tensor_data: tensor size exceeds usize");
        &bytes[start..start + len]
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.metadata.get_str(ARCHITECTURE_KEY)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.metadata.get_u32(key)
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.metadata.get_u64(key)
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.metadata.get_f32(key)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.metadata.get_bool(key)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.metadata.get_str(key)
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        self.metadata.get_str_array(key)
    }

    pub fn get_i32_array(&self, key: &str) -> Result<&[i32]> {
        self.metadata.get_i32_array(key)
    }

    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        self.metadata.get_f32_array(key)
    }
}

/// Validates a tensor shape for `ty` and returns `(n_elems, n_bytes)`. Shared by the
/// parser and the writer so that whatever the writer accepts, the parser reads back.
fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64)> {
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            tensor: name.into(),
            n_dims: dims.len() as u64,
        });
    }
    if dims.contains(&0) {
        return Err(GgufError::ZeroDim {
            tensor: name.into(),
            dims: dims.into(),
        });
    }
    let n_elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| GgufError::DimsOverflow {
            tensor: name.into(),
            dims: dims.into(),
        })?;
    if n_elems % ty.block_elems() != 0 {
        return Err(GgufError::NotBlockMultiple {
            tensor: name.into(),
            ty,
            n_elems,
        });
    }
    let n_bytes = ty
        .tensor_bytes(n_elems)
        .ok_or_else(|| GgufError::SizeOverflow {
            tensor: name.into(),
            ty,
            n_elems,
        })?;
    Ok((n_elems, n_bytes))
}

/// Checks a `general.alignment` value: a u32 that is a nonzero power of two.
fn alignment_from(value: &Value) -> Result<u64> {
    match *value {
        Value::U32(a) if a.is_power_of_two() => Ok(a.into()),
        ref other => Err(GgufError::BadAlignment {
            found: other.describe(),
        }),
    }
}

/// Checks a `general.architecture` value: a string.
fn architecture_from(value: &Value) -> Result<&str> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(GgufError::WrongType {
            key: ARCHITECTURE_KEY.into(),
            expected: "string",
            found: other.describe(),
        }),
    }
}

/// Maps a type id under `architecture`, with an error naming the tensor.
fn tensor_type(name: &str, id: u32, architecture: &str) -> Result<GgmlType> {
    GgmlType::from_id(id, architecture).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.into(),
        id,
        architecture: architecture.into(),
    })
}
