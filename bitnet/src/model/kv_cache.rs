//! Keys and values of every past position, per layer.

use alloc::vec;
use alloc::vec::Vec;
use half::f16;
use half::slice::HalfFloatSliceExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

impl KvType {
    pub fn from_name(name: &str) -> Option<KvType> {
        match name {
            "f32" => Some(KvType::F32),
            "f16" => Some(KvType::F16),
            _ => None,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Store {
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Store::F16(v) => {
                for (d, &s) in v[at..at + src.len()].iter_mut().zip(src) {
                    *d = f16::from_f32(s);
                }
            }
        }
    }

    fn read(&self, at: usize, dst: &mut [f32]) {
        match self {
            Store::F32(v) => {
                let n = dst.len();
                dst.copy_from_slice(&v[at..at + n])
            }
            Store::F16(v) => {
                // One slice conversion: F16C on x86 when present, not a call per element.
                let n = dst.len();
                v[at..at + n].convert_to_f32_slice(dst);
            }
        }
    }
}

pub struct KvCache {
    pub ty: KvType,
    /// Positions the cache can hold.
    pub ctx: usize,
    kv_dim: usize,
    k: Store, // (layer, ctx, kv_dim)
    v: Store, // (layer, ctx, kv_dim)
}

impl KvCache {
    /// Bytes the cache needs, or `None` on overflow; checked before allocating.
    pub fn bytes_needed(ty: KvType, n_layer: usize, ctx: usize, kv_dim: usize) -> Option<usize> {
        n_layer
            .checked_mul(ctx)?
            .checked_mul(kv_dim)?
            .checked_mul(2 * ty.bytes())
    }

    pub fn new(ty: KvType, n_layer: usize, ctx: usize, kv_dim: usize) -> KvCache {
        let n = n_layer * ctx * kv_dim;
        let store = || match ty {
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
        };
        KvCache {
            ty,
            ctx,
            kv_dim,
            k: store(),
            v: store(),
        }
    }

    fn at(&self, layer: usize, pos: usize) -> usize {
        (layer * self.ctx + pos) * self.kv_dim
    }

    /// Stores the (kv_dim,) key and value of `pos`.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = self.at(layer, pos);
        self.k.write(at, k);
        self.v.write(at, v);
    }

    /// Reads `dst.len()` key elements of `pos` starting at element `off`.
    pub fn read_k(&self, layer: usize, pos: usize, off: usize, dst: &mut [f32]) {
        self.k.read(self.at(layer, pos) + off, dst);
    }

    pub fn read_v(&self, layer: usize, pos: usize, off: usize, dst: &mut [f32]) {
        self.v.read(self.at(layer, pos) + off, dst);
    }
}
