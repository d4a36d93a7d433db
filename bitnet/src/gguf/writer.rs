//! A deterministic GGUF v3 writer.
//!
//! Output depends only on the calls made: metadata in insertion order, tensors in insertion
//! order, each tensor's data aligned and followed by zero padding (as gguf-py and ggml do).
//! It applies the parser's checks as entries are added, so anything it writes reads back.

use alloc::borrow::Cow;
use alloc::collections::BTreeSet;
#[cfg(feature = "std")]
use alloc::format;
use alloc::string::String;
#[cfg(feature = "std")]
use alloc::vec;
use alloc::vec::Vec;

use super::value::{Array, Metadata, Value, MAX_ARRAY_DEPTH};
use super::{
    alignment_from, architecture_from, tensor_size, tensor_type, GgufError, Result, ALIGNMENT_KEY,
    ARCHITECTURE_KEY, DEFAULT_ALIGNMENT, MAGIC, VERSION,
};
use crate::quants::GgmlType;

/// Builds a GGUF file in memory. Tensor data may be borrowed or owned (`Cow`), so a caller
/// holding encoded tensors does not need to copy them twice.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    n_bytes: u64,
    /// `None` for a tensor declared by [`GgufWriter::declare_tensor`], whose data is
    /// streamed later.
    data: Option<Cow<'a, [u8]>>,
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a metadata entry. `general.alignment` must be a nonzero power-of-two u32
    /// and `general.architecture` a string, as the parser requires.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        let key = key.into();
        let value = value.into();
        if key == ALIGNMENT_KEY {
            alignment_from(&value)?;
        }
        if key == ARCHITECTURE_KEY {
            architecture_from(&value)?;
        }
        if let Value::Array(a) = &value {
            if a.depth() > MAX_ARRAY_DEPTH {
                return Err(GgufError::ArrayTooDeep {
                    key,
                    max_depth: MAX_ARRAY_DEPTH,
                });
            }
        }
        self.metadata.insert(key, value)
    }

    /// Appends a tensor whose `data` is already encoded as `ty`; its length must be exactly
    /// `ty.tensor_bytes(product of dims)`. `dims` is ne0 (fastest varying) first.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let name = name.into();
        let data = data.into();
        let (n_elems, n_bytes) = tensor_size(&name, dims, ty)?;
        if data.len() as u64 != n_bytes {
            return Err(GgufError::DataSizeMismatch {
                tensor: name,
                ty,
                n_elems,
                expected: n_bytes,
                got: data.len() as u64,
            });
        }
        self.push(name, dims, ty, n_bytes, Some(data))
    }

    /// Declares a tensor whose data is supplied later through [`GgufWriter::stream`]: the
    /// header only needs its shape and type, so a converter never holds the whole model.
    pub fn declare_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<()> {
        let name = name.into();
        let (_, n_bytes) = tensor_size(&name, dims, ty)?;
        self.push(name, dims, ty, n_bytes, None)
    }

    fn push(
        &mut self,
        name: String,
        dims: &[u64],
        ty: GgmlType,
        n_bytes: u64,
        data: Option<Cow<'a, [u8]>>,
    ) -> Result<()> {
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.into(),
            ty,
            n_bytes,
            data,
        });
        Ok(())
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Serializes the file. Fails if a tensor type is not valid under the file's
    /// architecture (I2_S outside the bitnet architectures), which the parser would reject,
    /// or if a tensor was only declared.
    pub fn finish(&self) -> Result<Vec<u8>> {
        let (mut out, alignment) = self.header()?;
        let data_len: u64 = self
            .tensors
            .iter()
            .map(|t| t.n_bytes.next_multiple_of(alignment))
            .sum();
        out.reserve(data_len as usize);
        for t in &self.tensors {
            let data = t
                .data
                .as_deref()
                .ok_or_else(|| GgufError::DataSizeMismatch {
                    tensor: t.name.clone(),
                    ty: t.ty,
                    n_elems: t.dims.iter().product(),
                    expected: t.n_bytes,
                    got: 0,
                })?;
            out.extend_from_slice(data);
            pad(&mut out, alignment);
        }
        Ok(out)
    }

    /// Everything before the first tensor's data, padded to the alignment, and the
    /// alignment. Offsets follow from the declared sizes alone.
    fn header(&self) -> Result<(Vec<u8>, u64)> {
        let alignment = match self.metadata.get(ALIGNMENT_KEY) {
            Some(v) => alignment_from(v)?,
            None => DEFAULT_ALIGNMENT,
        };
        let architecture = match self.metadata.get(ARCHITECTURE_KEY) {
            Some(v) => architecture_from(v)?,
            None => "",
        };
        for t in &self.tensors {
            tensor_type(&t.name, t.ty.id(), architecture)?;
        }

        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut data_len = 0u64;
        for t in &self.tensors {
            offsets.push(data_len);
            data_len = (data_len + t.n_bytes).next_multiple_of(alignment);
        }

        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, VERSION);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in self.metadata.iter() {
            put_str(&mut out, key);
            put_u32(&mut out, value.value_type().id());
            put_value(&mut out, value);
        }
        for (t, &offset) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ty.id());
            put_u64(&mut out, offset);
        }
        pad(&mut out, alignment);
        Ok((out, alignment))
    }

    /// Writes the header to `out` and returns a [`GgufStream`] that takes each tensor's
    /// data in declaration order: the bytes equal [`GgufWriter::finish`]'s, but only one
    /// tensor need be in memory at a time. Tensors added with data are written as they
    /// come up.
    #[cfg(feature = "std")]
    pub fn stream<W: std::io::Write>(self, mut out: W) -> std::io::Result<GgufStream<'a, W>> {
        let (header, alignment) = self.header().map_err(std::io::Error::other)?;
        out.write_all(&header)?;
        let mut s = GgufStream {
            out,
            tensors: self.tensors,
            next: 0,
            alignment,
        };
        s.write_ready()?;
        Ok(s)
    }
}

/// The data half of a streamed GGUF file: see [`GgufWriter::stream`].
#[cfg(feature = "std")]
pub struct GgufStream<'a, W: std::io::Write> {
    out: W,
    tensors: Vec<PendingTensor<'a>>,
    next: usize,
    alignment: u64,
}

#[cfg(feature = "std")]
impl<W: std::io::Write> GgufStream<'_, W> {
    /// The name of the next tensor whose data is expected, if any.
    pub fn next_tensor(&self) -> Option<&str> {
        self.tensors.get(self.next).map(|t| t.name.as_str())
    }

    /// Writes the data of the next declared tensor, which must be `name`, with its padding.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let Some(t) = self.tensors.get(self.next) else {
            return Err(invalid(format!("tensor '{name}': every tensor is written")));
        };
        if t.name != name {
            return Err(invalid(format!(
                "tensor '{name}' written where '{}' is next",
                t.name
            )));
        }
        if data.len() as u64 != t.n_bytes {
            return Err(invalid(format!(
                "tensor '{name}': {} data bytes, expected {}",
                data.len(),
                t.n_bytes
            )));
        }
        self.put(data)?;
        self.next += 1;
        self.write_ready()
    }

    /// Checks every tensor was written and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(name) = self.next_tensor() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tensor '{name}': data never written"),
            ));
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.write_all(data)?;
        let padding = (data.len() as u64).next_multiple_of(self.alignment) - data.len() as u64;
        self.out.write_all(&vec![0u8; padding as usize])
    }

    /// Tensors added with their data need no call: write them when their turn comes.
    fn write_ready(&mut self) -> std::io::Result<()> {
        while let Some(data) = self.tensors.get_mut(self.next).and_then(|t| t.data.take()) {
            self.put(&data)?;
            self.next += 1;
        }
        Ok(())
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment);
    out.resize(len as usize, 0);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Fixed-size little-endian values, back to back.
fn put_all<const N: usize>(out: &mut Vec<u8>, values: impl Iterator<Item = [u8; N]>) {
    for v in values {
        out.extend_from_slice(&v);
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

/// Element type, count, elements; inner arrays repeat their own header.
fn put_array(out: &mut Vec<u8>, array: &Array) {
    put_u32(out, array.elem_type().id());
    put_u64(out, array.len() as u64);
    match array {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::U16(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::I16(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::U32(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::I32(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::U64(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::I64(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::F32(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::F64(v) => put_all(out, v.iter().map(|x| x.to_le_bytes())),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{Gguf, Value};
    use crate::quants::{i2_s, q8_0};
    use alloc::string::ToString;
    use alloc::vec;

    fn every_value() -> Vec<(&'static str, Value)> {
        let s = |x: &str| x.to_string();
        vec![
            ("general.architecture", Value::from("bitnet-b1.58")),
            ("u8", Value::U8(200)),
            ("i8", Value::I8(-100)),
            ("u16", Value::U16(60_000)),
            ("i16", Value::I16(-30_000)),
            ("u32", Value::U32(4_000_000_000)),
            ("i32", Value::I32(-2_000_000_000)),
            ("u64", Value::U64(u64::MAX)),
            ("i64", Value::I64(i64::MIN)),
            ("f32", Value::F32(-1.25e-5)),
            ("f64", Value::F64(core::f64::consts::PI)),
            ("bool.t", Value::Bool(true)),
            ("bool.f", Value::Bool(false)),
            ("str", Value::from("héllo ✓")),
            ("str.empty", Value::from("")),
            ("a.u8", vec![0u8, 255].into()),
            ("a.i8", vec![-128i8, 127].into()),
            ("a.u16", vec![1u16, 65535].into()),
            ("a.i16", vec![-32768i16, 7].into()),
            ("a.u32", vec![1u32, u32::MAX].into()),
            ("a.i32", vec![-1i32, 3].into()),
            ("a.u64", vec![u64::MAX].into()),
            ("a.i64", vec![i64::MIN, 0].into()),
            ("a.f32", vec![0.5f32, -0.0, f32::INFINITY].into()),
            ("a.f64", vec![1e300f64].into()),
            ("a.bool", vec![true, false, true].into()),
            ("a.str", vec![s("a"), s(""), s("Ġthe")].into()),
            ("a.empty", Value::Array(Array::U32(vec![]))),
            ("a.empty_nested", Value::Array(Array::Array(vec![]))),
            (
                "a.nested",
                Value::Array(Array::Array(vec![
                    Array::I32(vec![1, 2]),
                    Array::String(vec![s("x")]),
                    Array::Array(vec![Array::F32(vec![1.0]), Array::Bool(vec![])]),
                ])),
            ),
        ]
    }

    fn build(values: &[(&'static str, Value)]) -> GgufWriter<'static> {
        let mut w = GgufWriter::new();
        for (k, v) in values {
            w.add_metadata(*k, v.clone()).unwrap();
        }
        let f32s: Vec<u8> = (0..12u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.add_tensor("a", &[3, 4], GgmlType::F32, f32s).unwrap();
        // One I2_S block of weights, then the per-tensor tail.
        w.add_tensor(
            "b",
            &[128],
            GgmlType::I2_S,
            vec![0x55u8; i2_s::BLOCK_BYTES + i2_s::TAIL_BYTES],
        )
        .unwrap();
        w.add_tensor("c", &[1], GgmlType::F16, &[1u8, 2][..])
            .unwrap();
        w
    }

    #[test]
    fn round_trip_every_value_type_and_tensor() {
        let values = every_value();
        let bytes = build(&values).finish().unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, 32);
        let read: Vec<(&str, &Value)> = g.metadata.iter().collect();
        let want: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(read, want, "metadata differs or order not kept");

        let names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = g.tensor("a").unwrap();
        assert_eq!(
            (a.dims.as_slice(), a.ty, a.n_elems, a.n_bytes),
            (&[3, 4][..], GgmlType::F32, 12, 48)
        );
        assert_eq!(g.tensor_data(&bytes, a)[4..8], 1f32.to_le_bytes());
        let b = g.tensor("b").unwrap();
        assert_eq!(b.ty, GgmlType::I2_S);
        assert_eq!(b.offset, 64, "48 bytes of 'a' padded to 64");
        assert_eq!(g.tensor_data(&bytes, b), [0x55; 64]);
        assert_eq!(g.tensor_data(&bytes, g.tensor("c").unwrap()), [1, 2]);
        assert!(g.data_offset.is_multiple_of(32) && bytes.len().is_multiple_of(32));
    }

    #[cfg(feature = "std")]
    #[test]
    fn streaming_equals_finish() {
        let values = every_value();
        let full = build(&values).finish().unwrap();
        // The same file with "a" and "c" declared and streamed, "b" given up front.
        let mut w = GgufWriter::new();
        for (k, v) in &values {
            w.add_metadata(*k, v.clone()).unwrap();
        }
        let whole = build(&values);
        let data = |name: &str| whole.tensors.iter().find(|t| t.name == name).unwrap();
        w.declare_tensor("a", &[3, 4], GgmlType::F32).unwrap();
        let b = data("b");
        w.add_tensor("b", &b.dims, b.ty, b.data.clone().unwrap())
            .unwrap();
        w.declare_tensor("c", &[1], GgmlType::F16).unwrap();
        let mut s = w.stream(Vec::new()).unwrap();
        assert_eq!(s.next_tensor(), Some("a"));
        let e = s.write_tensor("c", &[1, 2]).unwrap_err().to_string();
        assert_eq!(e, "tensor 'c' written where 'a' is next");
        s.write_tensor("a", data("a").data.as_deref().unwrap())
            .unwrap();
        assert_eq!(s.next_tensor(), Some("c"), "'b' had its data");
        let e = s.write_tensor("c", &[1]).unwrap_err().to_string();
        assert_eq!(e, "tensor 'c': 1 data bytes, expected 2");
        s.write_tensor("c", &[1, 2]).unwrap();
        assert_eq!(s.finish().unwrap(), full);

        let mut w = GgufWriter::new();
        w.declare_tensor("x", &[1], GgmlType::F32).unwrap();
        assert!(w.finish().is_err(), "finish needs every tensor's data");
        let e = w.stream(Vec::new()).unwrap().finish().unwrap_err();
        assert_eq!(e.to_string(), "tensor 'x': data never written");
    }

    #[test]
    fn output_is_deterministic() {
        let values = every_value();
        assert_eq!(
            build(&values).finish().unwrap(),
            build(&values).finish().unwrap()
        );
    }

    #[test]
    fn custom_alignment_is_honoured() {
        let mut w = GgufWriter::new();
        w.add_metadata(ALIGNMENT_KEY, 64u32).unwrap();
        w.add_tensor("x", &[3], GgmlType::F32, vec![0u8; 12])
            .unwrap();
        w.add_tensor("y", &[1], GgmlType::F32, vec![0u8; 4])
            .unwrap();
        let bytes = w.finish().unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.alignment, 64);
        assert_eq!(g.data_offset % 64, 0);
        assert_eq!(g.tensor("y").unwrap().offset, 64);
    }

    #[test]
    fn rejects_what_the_parser_would_reject() {
        let mut w = GgufWriter::new();
        let e = w
            .add_metadata(ALIGNMENT_KEY, 48u32)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("general.alignment") && e.contains("u32 48"),
            "{e}"
        );
        let e = w
            .add_metadata(ALIGNMENT_KEY, 32u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("u64 32"), "{e}");
        let e = w
            .add_metadata(ARCHITECTURE_KEY, 1u32)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("general.architecture") && e.contains("expected string"),
            "{e}"
        );

        let e = w
            .add_tensor("t", &[32], GgmlType::Q8_0, vec![0u8; q8_0::BLOCK_BYTES - 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "tensor 't': 33 data bytes, expected 34 for 32 Q8_0 elements"
        );
        let e = w
            .add_tensor("t", &[16], GgmlType::Q8_0, vec![0u8; 17])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("16 elements is not a multiple of the Q8_0 block size 32"),
            "{e}"
        );
        let e = w
            .add_tensor("t", &[], GgmlType::F32, vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 dimensions"), "{e}");
        w.add_tensor("t", &[1], GgmlType::F32, vec![0u8; 4])
            .unwrap();
        let e = w
            .add_tensor("t", &[1], GgmlType::F32, vec![0u8; 4])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "duplicate tensor name 't'");

        let mut deep = Array::U8(vec![]);
        for _ in 0..MAX_ARRAY_DEPTH {
            deep = Array::Array(vec![deep]);
        }
        let e = w.add_metadata("deep", deep).unwrap_err().to_string();
        assert!(
            e.contains("'deep'") && e.contains("nested deeper than 16"),
            "{e}"
        );
    }

    #[test]
    fn i2_s_needs_a_bitnet_architecture() {
        let mut w = GgufWriter::new();
        w.add_metadata(ARCHITECTURE_KEY, "llama").unwrap();
        w.add_tensor(
            "blk.0.attn_q.weight",
            &[128],
            GgmlType::I2_S,
            vec![0u8; i2_s::BLOCK_BYTES + i2_s::TAIL_BYTES],
        )
        .unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("'blk.0.attn_q.weight'") && e.contains("I2_S") && e.contains("'llama'"));
    }
}
