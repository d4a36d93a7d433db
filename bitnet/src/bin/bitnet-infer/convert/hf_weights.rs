//! The tensors of a Hugging Face checkpoint: one `model.safetensors`, or shards named by
//! `model.safetensors.index.json`, each mapped into memory rather than read, so converting
//! a model needs memory for one tensor at a time, not for the model.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::read_json;

pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    location: HashMap<String, usize>,
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// One tensor as stored: its file, for error messages, and its raw little-endian bytes.
/// Dropping it hands its pages back to the page cache (see [`Drop`] below).
pub struct Tensor<'a> {
    pub file: &'a Path,
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
    map: &'a Mmap,
}

impl Drop for Tensor<'_> {
    /// Pages of a file mapping that were read stay in the process's resident set until
    /// unmapped: without this, converting a 4.8 GB checkpoint would end with all of it
    /// resident, although each tensor is needed once.
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let offset = self.data.as_ptr() as usize - self.map.as_ptr() as usize;
            // SAFETY: the range lies inside `map` (`data` was sliced from it). The map is a
            // read-only MAP_SHARED file mapping: MADV_DONTNEED only drops its resident pages,
            // and the next read of any byte (by a tensor still borrowed, whose pages may share
            // the range's first or last page) faults it in again from the file, with the
            // same contents. No byte any reference can observe changes.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    offset,
                    self.data.len(),
                )
            };
        }
    }
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, String> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let j = read_json(&index)?;
            let map = j
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| format!("{}: field 'weight_map' is missing", index.display()))?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    format!(
                        "{}: field 'weight_map.{name}' is not a file name",
                        index.display()
                    )
                })?;
                let path = dir.join(file);
                if !files.contains(&path) {
                    files.push(path);
                }
            }
            files
        } else if single.exists() {
            vec![single]
        } else {
            return Err(format!(
                "{}: no model.safetensors or model.safetensors.index.json",
                dir.display()
            ));
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut location = HashMap::new();
        for path in files {
            let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: the map is read-only and only ever handed out as `&[u8]`. As with every
            // mmap-based reader, another process truncating or rewriting the file while it is
            // mapped is undefined behaviour; checkpoints are not modified while converted.
            let map =
                unsafe { Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
            let st = SafeTensors::deserialize(&map)
                .map_err(|e| format!("{}: not a valid safetensors file: {e}", path.display()))?;
            for name in st.names() {
                location.insert(name.to_string(), shards.len());
            }
            drop(st);
            shards.push(Shard { path, map });
        }
        Ok(Checkpoint { shards, location })
    }

    /// The tensor `name`; a missing one names every file searched.
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, String> {
        let Some(&i) = self.location.get(name) else {
            let files: Vec<String> = self
                .shards
                .iter()
                .map(|s| s.path.display().to_string())
                .collect();
            return Err(format!("{}: tensor '{name}' is missing", files.join(", ")));
        };
        let shard = &self.shards[i];
        // Parsed again per tensor (a header is a few hundred kB at most) so that no parsed
        // view has to outlive its map inside this struct.
        let st = SafeTensors::deserialize(&shard.map)
            .map_err(|e| format!("{}: {e}", shard.path.display()))?;
        let view = st
            .tensor(name)
            .map_err(|e| format!("{}: tensor '{name}': {e}", shard.path.display()))?;
        Ok(Tensor {
            file: &shard.path,
            name: name.to_string(),
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: view.data(),
            map: &shard.map,
        })
    }
}

impl Tensor<'_> {
    /// `file: tensor 'name': message`.
    pub fn error(&self, message: impl std::fmt::Display) -> String {
        format!("{}: tensor '{}': {message}", self.file.display(), self.name)
    }

    pub fn expect_shape(&self, shape: &[usize]) -> Result<(), String> {
        if self.shape != shape {
            return Err(self.error(format_args!("shape {:?}, expected {shape:?}", self.shape)));
        }
        Ok(())
    }

    pub fn is_float(&self) -> bool {
        matches!(self.dtype, Dtype::BF16 | Dtype::F16 | Dtype::F32)
    }

    /// The values as f32 (exactly: every accepted dtype widens without rounding).
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        let mut out = vec![0.0; self.data.len() / (self.dtype.bitsize() / 8).max(1)];
        self.rows_to_f32(0, &mut out)?;
        Ok(out)
    }

    /// Elements `start..start + out.len()` as f32: lets a caller convert a large tensor
    /// a row at a time.
    pub fn rows_to_f32(&self, start: usize, out: &mut [f32]) -> Result<(), String> {
        let size = self.dtype.bitsize() / 8;
        let bytes = self
            .data
            .get(start * size..(start + out.len()) * size)
            .ok_or_else(|| self.error("elements out of range"))?;
        match self.dtype {
            Dtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            Dtype::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            other => {
                return Err(self.error(format_args!("dtype {other:?}, expected BF16, F16 or F32")))
            }
        }
        Ok(())
    }
}
