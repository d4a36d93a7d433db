//! Keys and values of every past position, per layer and kv head.
//!
//! Keys and values each have their own element type ([`KvTypes`]): `f32`, `f16` (default),
//! or llama.cpp's block types `q8_0` (34 bytes per 32 elements) and `q4_0` (18 bytes),
//! blocks cut along the head dimension, so a head's row is whole blocks and attention reads
//! it in place ([`Rows`]).
//!
//! Layout: (layer, kv head, position, head_dim). One kv head's rows of every position are
//! contiguous, so the attention task of a (token, kv head) streams one run of memory instead
//! of one short piece per position.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::marker::PhantomData;
use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ModelError;
use crate::quants::{q4_0, q8_0, quantize_row_q4_0_ref, quantize_row_q8_0_ref};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum KvType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    /// Every type, by its command-line name.
    pub const ALL: [KvType; 4] = [KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q4_0];

    pub fn from_name(name: &str) -> Option<KvType> {
        KvType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type `--kv-bits` names: 16 -> f16, 8 -> q8_0, 4 -> q4_0.
    pub fn from_bits(bits: u32) -> Option<KvType> {
        match bits {
            16 => Some(KvType::F16),
            8 => Some(KvType::Q8_0),
            4 => Some(KvType::Q4_0),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Elements per block: a head's row must be a multiple of it.
    pub const fn block_elems(self) -> usize {
        match self {
            KvType::F32 | KvType::F16 => 1,
            KvType::Q8_0 => q8_0::BLOCK_ELEMS,
            KvType::Q4_0 => q4_0::BLOCK_ELEMS,
        }
    }

    /// Bytes of one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
            KvType::Q8_0 => q8_0::BLOCK_BYTES,
            KvType::Q4_0 => q4_0::BLOCK_BYTES,
        }
    }

    /// Bytes of `n` elements (a multiple of [`KvType::block_elems`]), or `None` on overflow.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }
}

impl core::fmt::Display for KvType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The element types of the keys and of the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvTypes {
    pub k: KvType,
    pub v: KvType,
}

impl From<KvType> for KvTypes {
    /// Keys and values of the same type.
    fn from(t: KvType) -> KvTypes {
        KvTypes { k: t, v: t }
    }
}

impl core::fmt::Display for KvTypes {
    /// `f16` when both are the same, else `k q8_0 / v q4_0`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.k == self.v {
            write!(f, "{}", self.k)
        } else {
            write!(f, "k {} / v {}", self.k, self.v)
        }
    }
}

impl KvTypes {
    /// Bytes of keys and values one position takes in all layers, or `None` on overflow.
    pub fn bytes_per_token(self, n_layer: usize, kv_dim: usize) -> Option<usize> {
        self.k
            .row_bytes(kv_dim)?
            .checked_add(self.v.row_bytes(kv_dim)?)?
            .checked_mul(n_layer)
    }

    /// Why a head of `head_dim` elements cannot be stored in these types, if it cannot:
    /// block types need whole blocks per head.
    pub fn check_head_dim(self, head_dim: usize) -> Result<(), ModelError> {
        for (which, t) in [("key", self.k), ("value", self.v)] {
            if !head_dim.is_multiple_of(t.block_elems()) || head_dim == 0 {
                return Err(ModelError::KvTypeUnsupported(format!(
                    "a {t} {which} cache stores blocks of {} elements along the head; this model's head size is {head_dim}",
                    t.block_elems()
                )));
            }
        }
        Ok(())
    }
}

/// One element type's storage: (layer, kv head, position, head_dim).
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Q8_0 or Q4_0 blocks (`Store::ty` says which).
    Blocks(KvType, Vec<u8>),
}

impl Store {
    fn new(ty: KvType, n_elems: usize) -> Store {
        match ty {
            KvType::F32 => Store::F32(vec![0.0; n_elems]),
            KvType::F16 => Store::F16(vec![f16::ZERO; n_elems]),
            // `row_bytes` of the whole cache cannot overflow: `bytes_needed` was checked.
            KvType::Q8_0 | KvType::Q4_0 => {
                Store::Blocks(ty, vec![0; ty.row_bytes(n_elems).unwrap_or(0)])
            }
        }
    }

    /// Writes the `src.len()` elements starting at element `at` (block-aligned).
    fn write(&mut self, at: usize, src: &[f32]) {
        let n = src.len();
        let slot = match self {
            Store::F32(v) => Slot::F32(&mut v[at..at + n]),
            Store::F16(v) => Slot::F16(&mut v[at..at + n]),
            Store::Blocks(ty, b) => {
                let (ty, from) = (*ty, at / ty.block_elems() * ty.block_bytes());
                Slot::Blocks(
                    ty,
                    &mut b[from..from + n / ty.block_elems() * ty.block_bytes()],
                )
            }
        };
        slot.write(src);
    }

    /// `len` rows of `hd` elements starting at element `at`.
    fn rows(&self, at: usize, len: usize, hd: usize) -> Rows<'_> {
        match self {
            Store::F32(v) => Rows::F32(&v[at..at + len * hd]),
            Store::F16(v) => Rows::F16(&v[at..at + len * hd]),
            Store::Blocks(ty, b) => {
                let per_elem = |n: usize| n / ty.block_elems() * ty.block_bytes();
                let bytes = &b[per_elem(at)..per_elem(at + len * hd)];
                match ty {
                    KvType::Q8_0 => Rows::Q8_0(bytes),
                    _ => Rows::Q4_0(bytes),
                }
            }
        }
    }

    fn raw(&mut self) -> RawStore {
        match self {
            Store::F32(v) => RawStore::F32(v.as_mut_ptr(), v.len()),
            Store::F16(v) => RawStore::F16(v.as_mut_ptr(), v.len()),
            Store::Blocks(ty, b) => RawStore::Blocks(*ty, b.as_mut_ptr(), b.len()),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Store::F32(v) => v.len() * 4,
            Store::F16(v) => v.len() * 2,
            Store::Blocks(_, b) => b.len(),
        }
    }
}

/// The storage of one head's row at one position, in the store's type.
enum Slot<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
    /// Whole Q8_0 or Q4_0 blocks.
    Blocks(KvType, &'a mut [u8]),
}

impl Slot<'_> {
    /// Stores `src` (as many elements as the slot holds), converted to the slot's type.
    fn write(self, src: &[f32]) {
        match self {
            Slot::F32(d) => d.copy_from_slice(src),
            // One slice conversion: F16C eight at a time on x86_64, where a call per
            // element (runtime feature check included) was most of the rope + kv write
            // part of a 2B4T decode token.
            Slot::F16(d) => d.convert_from_f32_slice(src),
            // Lengths match by construction (whole blocks, checked at `new`).
            Slot::Blocks(KvType::Q8_0, d) => {
                let _ = quantize_row_q8_0_ref(src, d);
            }
            Slot::Blocks(_, d) => {
                let _ = quantize_row_q4_0_ref(src, d);
            }
        }
    }
}

/// `src` converted to f32 into `dst` (as long): exact, so any method gives the same bits.
/// F16C where the CPU has it, eight per instruction in one call: `half`'s slice conversion
/// calls a function per eight elements, and attention at depth 1024 spent as long in
/// those calls as in its arithmetic.
fn f16_to_f32_rows(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::CpuFeatures::get().usable("f16c") {
        // SAFETY: the CPU has F16C (and so AVX, which `usable` checked the OS saves).
        return unsafe { f16_to_f32_f16c(src, dst) };
    }
    if cfg!(target_arch = "aarch64") {
        src.convert_to_f32_slice(dst);
    } else {
        for (d, h) in dst.iter_mut().zip(src) {
            *d = crate::quants::f16::f16_to_f32(h.to_bits());
        }
    }
}

/// [`f16_to_f32_rows`] with F16C.
///
/// # Safety
/// The CPU must have F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16_to_f32_f16c(src: &[f16], dst: &mut [f32]) {
    use core::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    assert_eq!(src.len(), dst.len(), "f16 rows");
    let (whole, tail) = src.split_at(src.len() / 8 * 8);
    for (i, h) in whole.chunks_exact(8).enumerate() {
        // SAFETY: eight f16 (16 bytes) read, eight f32 written at 8i < dst.len().
        unsafe {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast::<__m128i>()));
            _mm256_storeu_ps(dst.as_mut_ptr().add(8 * i), v);
        }
    }
    for (d, h) in dst[whole.len()..].iter_mut().zip(tail) {
        *d = h.to_f32();
    }
}

/// The cached rows of one kv head at positions `0..len`, row-major (len, head_dim), in the
/// cache's own type: what attention reads in place.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Each row `head_dim / 32` Q8_0 blocks.
    Q8_0(&'a [u8]),
    /// Each row `head_dim / 32` Q4_0 blocks.
    Q4_0(&'a [u8]),
}

impl Rows<'_> {
    /// Rows `j..j + dst.len() / hd` as f32, into `dst`: one conversion call for all of
    /// them where the type allows (f16: per row, the call was as slow as the conversion).
    pub fn dequantize_rows(&self, j: usize, hd: usize, dst: &mut [f32]) {
        match *self {
            Rows::F32(v) => dst.copy_from_slice(&v[j * hd..j * hd + dst.len()]),
            Rows::F16(v) => f16_to_f32_rows(&v[j * hd..j * hd + dst.len()], dst),
            _ => {
                for (i, row) in dst.chunks_exact_mut(hd).enumerate() {
                    self.dequantize(j + i, row);
                }
            }
        }
    }

    /// Row `j` (head_dim elements) as f32, into `dst`.
    pub fn dequantize(&self, j: usize, dst: &mut [f32]) {
        let hd = dst.len();
        match *self {
            Rows::F32(v) => dst.copy_from_slice(&v[j * hd..(j + 1) * hd]),
            // One slice conversion: F16C on x86 when present, not a call per element;
            // elsewhere `half` has no fast path of its own.
            Rows::F16(v) => {
                let v = &v[j * hd..(j + 1) * hd];
                if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
                    v.convert_to_f32_slice(dst);
                } else {
                    for (d, h) in dst.iter_mut().zip(v) {
                        *d = crate::quants::f16::f16_to_f32(h.to_bits());
                    }
                }
            }
            Rows::Q8_0(b) => {
                let rb = hd / q8_0::BLOCK_ELEMS * q8_0::BLOCK_BYTES;
                // Lengths match by construction.
                let _ = crate::quants::dequantize_row_q8_0(&b[j * rb..(j + 1) * rb], dst);
            }
            Rows::Q4_0(b) => {
                let rb = hd / q4_0::BLOCK_ELEMS * q4_0::BLOCK_BYTES;
                let _ = crate::quants::dequantize_row_q4_0(&b[j * rb..(j + 1) * rb], dst);
            }
        }
    }
}

pub struct KvCache {
    pub types: KvTypes,
    /// Positions the cache can hold.
    pub ctx: usize,
    n_kv_head: usize,
    head_dim: usize,
    k: Store,
    v: Store,
}

impl KvCache {
    /// Bytes the cache needs, or `None` on overflow; checked before allocating.
    pub fn bytes_needed(
        types: impl Into<KvTypes>,
        n_layer: usize,
        ctx: usize,
        kv_dim: usize,
    ) -> Option<usize> {
        types
            .into()
            .bytes_per_token(n_layer, kv_dim)?
            .checked_mul(ctx)
    }

    /// A zeroed cache; `bytes_needed` must have been checked (it is the caller's size cap),
    /// and the head size must suit the types.
    pub fn new(
        types: impl Into<KvTypes>,
        n_layer: usize,
        ctx: usize,
        n_kv_head: usize,
        head_dim: usize,
    ) -> Result<KvCache, ModelError> {
        let types = types.into();
        types.check_head_dim(head_dim)?;
        let n = n_layer * n_kv_head * ctx * head_dim;
        Ok(KvCache {
            types,
            ctx,
            n_kv_head,
            head_dim,
            k: Store::new(types.k, n),
            v: Store::new(types.v, n),
        })
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        self.k.bytes() + self.v.bytes()
    }

    /// Element index of (layer, kv head, pos).
    fn at(&self, layer: usize, kvh: usize, pos: usize) -> usize {
        ((layer * self.n_kv_head + kvh) * self.ctx + pos) * self.head_dim
    }

    /// Stores the (kv_dim,) key and value of `pos`, head by head.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for (h, (kh, vh)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
            let at = self.at(layer, h, pos);
            self.k.write(at, kh);
            self.v.write(at, vh);
        }
    }

    /// The cache as the tasks of one decode section share it ([`SharedKv`]).
    pub(crate) fn shared(&mut self) -> SharedKv<'_> {
        SharedKv {
            k: self.k.raw(),
            v: self.v.raw(),
            ctx: self.ctx,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            _cache: PhantomData,
        }
    }

    /// The keys of kv head `kvh` at positions `0..len`.
    pub fn keys(&self, layer: usize, kvh: usize, len: usize) -> Rows<'_> {
        self.k.rows(self.at(layer, kvh, 0), len, self.head_dim)
    }

    /// The values of kv head `kvh` at positions `0..len`.
    pub fn values(&self, layer: usize, kvh: usize, len: usize) -> Rows<'_> {
        self.v.rows(self.at(layer, kvh, 0), len, self.head_dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;

    #[test]
    fn f16_rows_convert_every_value_as_half_does() {
        // All 65536 bit patterns, in a length with a tail after the eight-wide part.
        let src: Vec<f16> = (0..=u16::MAX)
            .map(f16::from_bits)
            .chain([f16::ONE; 5])
            .collect();
        let mut got = vec![0.0f32; src.len()];
        f16_to_f32_rows(&src, &mut got);
        for (h, g) in src.iter().zip(&got) {
            let want = h.to_f32();
            // NaN payloads may differ between the instruction and the software path.
            assert!(
                want.to_bits() == g.to_bits() || want.is_nan() && g.is_nan(),
                "{:#06x}: {want} vs {g}",
                h.to_bits()
            );
        }
    }

    #[test]
    fn rows_at_once_equal_row_by_row() {
        let (hd, len) = (64, 37);
        let mut rng = XorShift::new(5);
        for ty in KvType::ALL {
            let mut kv = KvCache::new(ty, 1, len, 1, hd).unwrap();
            for pos in 0..len {
                let (k, v) = (rng.f32s(hd, 3.0), rng.f32s(hd, 3.0));
                kv.write(0, pos, &k, &v);
            }
            let keys = kv.keys(0, 0, len);
            for (j, n) in [(0, 16), (16, 16), (32, 5), (3, 1)] {
                let mut block = vec![f32::NAN; n * hd];
                keys.dequantize_rows(j, hd, &mut block);
                for (i, got) in block.chunks_exact(hd).enumerate() {
                    let mut want = vec![0.0f32; hd];
                    keys.dequantize(j + i, &mut want);
                    assert_eq!(got, &want[..], "{ty} row {}", j + i);
                }
            }
        }
    }

    #[test]
    fn sizes_per_type() {
        // 2B4T: 30 layers, kv_dim 640 (5 heads of 128).
        let per = |t: KvType| KvTypes::from(t).bytes_per_token(30, 640).unwrap();
        assert_eq!(per(KvType::F32), 30 * 2 * 640 * 4);
        assert_eq!(per(KvType::F16), 30 * 2 * 640 * 2);
        assert_eq!(per(KvType::Q8_0), 30 * 2 * 20 * 34);
        assert_eq!(per(KvType::Q4_0), 30 * 2 * 20 * 18);
        let mixed = KvTypes {
            k: KvType::Q8_0,
            v: KvType::Q4_0,
        };
        assert_eq!(mixed.bytes_per_token(30, 640), Some(30 * 20 * (34 + 18)));
        assert_eq!(mixed.to_string(), "k q8_0 / v q4_0");
        assert_eq!(KvTypes::from(KvType::Q4_0).to_string(), "q4_0");
        assert_eq!(
            KvCache::bytes_needed(KvType::Q8_0, usize::MAX, 2, 640),
            None
        );
        let c = KvCache::new(mixed, 2, 3, 2, 64).unwrap();
        assert_eq!(c.bytes(), 2 * 3 * 128 / 32 * (34 + 18));
        assert_eq!(
            Some(c.bytes()),
            KvCache::bytes_needed(mixed, 2, 3, 128),
            "allocated = announced"
        );
    }

    #[test]
    fn names_and_bits() {
        for t in KvType::ALL {
            assert_eq!(KvType::from_name(t.name()), Some(t));
        }
        assert_eq!(KvType::from_name("q3"), None);
        assert_eq!(KvType::from_bits(16), Some(KvType::F16));
        assert_eq!(KvType::from_bits(8), Some(KvType::Q8_0));
        assert_eq!(KvType::from_bits(4), Some(KvType::Q4_0));
        assert_eq!(KvType::from_bits(32), None);
    }

    #[test]
    fn head_not_whole_blocks_is_refused() {
        let e = KvCache::new(KvType::Q4_0, 1, 4, 2, 100).err().unwrap();
        assert!(e.to_string().contains("head size is 100"), "{e}");
        let split = KvTypes {
            k: KvType::F16,
            v: KvType::Q8_0,
        };
        let e = KvCache::new(split, 1, 4, 2, 48).err().unwrap();
        assert!(e.to_string().contains("q8_0 value cache"), "{e}");
        assert!(KvCache::new(KvType::F16, 1, 4, 2, 100).is_ok());
    }

    #[test]
    fn rows_read_back_what_was_written() {
        // Each type stores and returns its own rounding of the values: f32 exactly, the
        // others as their reference (de)quantizers do.
        let (layers, ctx, heads, hd) = (2, 5, 3, 64);
        let mut rng = crate::quants::test_rng::XorShift::new(0xCAC4E);
        for t in KvType::ALL {
            let mut c = KvCache::new(t, layers, ctx, heads, hd).unwrap();
            let mut rows = Vec::new();
            for layer in 0..layers {
                for pos in 0..ctx {
                    let (k, v) = (rng.f32s(heads * hd, 2.0), rng.f32s(heads * hd, 2.0));
                    c.write(layer, pos, &k, &v);
                    rows.push((layer, pos, k, v));
                }
            }
            for (layer, pos, k, v) in &rows {
                for h in 0..heads {
                    for (src, got) in [
                        (&k[h * hd..(h + 1) * hd], c.keys(*layer, h, ctx)),
                        (&v[h * hd..(h + 1) * hd], c.values(*layer, h, ctx)),
                    ] {
                        let mut want = vec![0.0f32; hd];
                        match t {
                            KvType::F32 => want.copy_from_slice(src),
                            KvType::F16 => {
                                for (w, &s) in want.iter_mut().zip(src) {
                                    *w = f16::from_f32(s).to_f32();
                                }
                            }
                            KvType::Q8_0 | KvType::Q4_0 => {
                                let mut b = vec![0u8; t.row_bytes(hd).unwrap()];
                                let ty = if t == KvType::Q8_0 {
                                    crate::quants::GgmlType::Q8_0
                                } else {
                                    crate::quants::GgmlType::Q4_0
                                };
                                if t == KvType::Q8_0 {
                                    quantize_row_q8_0_ref(src, &mut b).unwrap();
                                } else {
                                    quantize_row_q4_0_ref(src, &mut b).unwrap();
                                }
                                crate::quants::dequantize_row(ty, &b, &mut want).unwrap();
                            }
                        }
                        let mut row = vec![f32::NAN; hd];
                        got.dequantize(*pos, &mut row);
                        assert_eq!(row, want, "{t} layer {layer} pos {pos} head {h}");
                    }
                }
            }
        }
    }
}

/// A cache shared by the tasks of one decode section ([`KvCache::shared`], which it borrows
/// mutably): each task writes the key or value rows of its own kv heads at the new position,
/// and reads a head's rows once every write to them is done, which the section orders
/// (`model/decode_attention.rs`). Each call makes references to the one head's rows it
/// touches only, so tasks never hold overlapping references.
pub(crate) struct SharedKv<'a> {
    k: RawStore,
    v: RawStore,
    ctx: usize,
    n_kv_head: usize,
    head_dim: usize,
    _cache: PhantomData<&'a mut KvCache>,
}

// SAFETY: the methods that touch the stores are `unsafe`; their callers keep the tasks'
// accesses disjoint or ordered, as `&mut KvCache` would from one thread.
unsafe impl Sync for SharedKv<'_> {}

impl SharedKv<'_> {
    /// Element index of (layer, kv head, pos), as [`KvCache`] lays them out.
    fn at(&self, layer: usize, kvh: usize, pos: usize) -> usize {
        assert!(kvh < self.n_kv_head && pos < self.ctx, "kv cache index");
        ((layer * self.n_kv_head + kvh) * self.ctx + pos) * self.head_dim
    }

    /// Stores the key of kv head `kvh` at `pos` (`head_dim` elements).
    ///
    /// # Safety
    /// No other task reads or writes that key row during the call.
    pub unsafe fn write_key(&self, layer: usize, kvh: usize, pos: usize, src: &[f32]) {
        // SAFETY: the caller's promise; `slot` checks the bounds.
        unsafe { self.k.slot(self.at(layer, kvh, pos), self.head_dim) }.write(src)
    }

    /// Stores the value of kv head `kvh` at `pos` (`head_dim` elements).
    ///
    /// # Safety
    /// No other task reads or writes that value row during the call.
    pub unsafe fn write_value(&self, layer: usize, kvh: usize, pos: usize, src: &[f32]) {
        // SAFETY: as `write_key`.
        unsafe { self.v.slot(self.at(layer, kvh, pos), self.head_dim) }.write(src)
    }

    /// The keys of kv head `kvh` at positions `0..len`.
    ///
    /// # Safety
    /// No task writes those rows while the result lives, and every write to them happened
    /// before the call.
    pub unsafe fn keys(&self, layer: usize, kvh: usize, len: usize) -> Rows<'_> {
        // SAFETY: the caller's promise; `rows` checks the bounds.
        unsafe { self.k.rows(self.at(layer, kvh, 0), len, self.head_dim) }
    }

    /// The values of kv head `kvh` at positions `0..len`.
    ///
    /// # Safety
    /// As [`SharedKv::keys`].
    pub unsafe fn values(&self, layer: usize, kvh: usize, len: usize) -> Rows<'_> {
        // SAFETY: as `keys`.
        unsafe { self.v.rows(self.at(layer, kvh, 0), len, self.head_dim) }
    }
}

/// A [`Store`]'s buffer as a pointer and its length (elements, or bytes for blocks).
#[derive(Clone, Copy)]
enum RawStore {
    F32(*mut f32, usize),
    F16(*mut f16, usize),
    Blocks(KvType, *mut u8, usize),
}

impl RawStore {
    /// Elements `at..at + n` (block-aligned) as a [`Slot`].
    ///
    /// # Safety
    /// No other reference to those elements lives while the slot does.
    unsafe fn slot<'a>(self, at: usize, n: usize) -> Slot<'a> {
        let check = |end: usize, len: usize| assert!(at <= end && end <= len, "kv cache slot");
        // SAFETY: in bounds (checked), exclusive by the caller's promise.
        unsafe {
            match self {
                RawStore::F32(p, len) => {
                    check(at + n, len);
                    Slot::F32(core::slice::from_raw_parts_mut(p.add(at), n))
                }
                RawStore::F16(p, len) => {
                    check(at + n, len);
                    Slot::F16(core::slice::from_raw_parts_mut(p.add(at), n))
                }
                RawStore::Blocks(ty, p, len) => {
                    let (from, bytes) = (
                        at / ty.block_elems() * ty.block_bytes(),
                        n / ty.block_elems() * ty.block_bytes(),
                    );
                    assert!(from + bytes <= len, "kv cache slot");
                    Slot::Blocks(ty, core::slice::from_raw_parts_mut(p.add(from), bytes))
                }
            }
        }
    }

    /// `len` rows of `hd` elements starting at element `at`.
    ///
    /// # Safety
    /// No mutable reference to those elements lives while the rows do.
    unsafe fn rows<'a>(self, at: usize, len: usize, hd: usize) -> Rows<'a> {
        let n = len * hd;
        // SAFETY: in bounds (checked), not written meanwhile by the caller's promise.
        unsafe {
            match self {
                RawStore::F32(p, total) => {
                    assert!(at + n <= total, "kv cache rows");
                    Rows::F32(core::slice::from_raw_parts(p.add(at), n))
                }
                RawStore::F16(p, total) => {
                    assert!(at + n <= total, "kv cache rows");
                    Rows::F16(core::slice::from_raw_parts(p.add(at), n))
                }
                RawStore::Blocks(ty, p, total) => {
                    let (from, bytes) = (
                        at / ty.block_elems() * ty.block_bytes(),
                        n / ty.block_elems() * ty.block_bytes(),
                    );
                    assert!(from + bytes <= total, "kv cache rows");
                    let b = core::slice::from_raw_parts(p.add(from), bytes);
                    match ty {
                        KvType::Q8_0 => Rows::Q8_0(b),
                        _ => Rows::Q4_0(b),
                    }
                }
            }
        }
    }
}
