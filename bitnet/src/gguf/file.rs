//! Opening a GGUF file by path: mmap it read-only, parse the header, keep the map so tensor
//! data is served straight from the page cache.

use alloc::boxed::Box;
use alloc::sync::Arc;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Gguf, GgufError, Result, TensorInfo};

/// A parsed GGUF file together with its memory map.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    /// Shared so that weights left in the file can outlive borrows of this struct.
    map: Arc<Mmap>,
    gguf: Gguf,
}

impl GgufFile {
    /// Maps and parses `path`. Every error message starts with the path.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io_error = |action, source| GgufError::Io {
            path: path.into(),
            action,
            source,
        };

        let file = File::open(path).map_err(|e| io_error("cannot open", e))?;
        let meta = file.metadata().map_err(|e| io_error("cannot stat", e))?;
        // Linux lets a directory be opened; say so plainly instead of failing in mmap.
        if meta.is_dir() {
            return Err(io_error("cannot open", io::ErrorKind::IsADirectory.into()));
        }
        // SAFETY: the map is read-only and only ever handed out as `&[u8]`. As with every
        // mmap-based loader, another process truncating or rewriting the file while it is
        // mapped is undefined behaviour; model files are not modified while being served.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error("cannot mmap", e))?;
        let gguf = Gguf::parse(&map).map_err(|e| GgufError::InFile {
            path: path.into(),
            source: Box::new(e),
        })?;
        Ok(GgufFile {
            path: path.into(),
            map: Arc::new(map),
            gguf,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapping as a shared byte source (same type as `model::Source`), for data that
    /// stays in the file, such as the embedding.
    pub fn source(&self) -> Arc<dyn AsRef<[u8]> + Send + Sync> {
        self.map.clone()
    }

    /// The bytes of `t`, a tensor of this file.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        self.gguf.tensor_data(&self.map, t)
    }

    /// A tensor and its bytes by name; a missing tensor is an error naming the file and it.
    pub fn tensor(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let t = self
            .gguf
            .require_tensor(name)
            .map_err(|e| self.in_file(e))?;
        Ok((t, self.tensor_data(t)))
    }

    /// Prefixes `error` with this file's path, for errors found after opening (a missing
    /// tensor or metadata key).
    pub fn in_file(&self, error: GgufError) -> GgufError {
        GgufError::InFile {
            path: self.path.clone(),
            source: Box::new(error),
        }
    }
}
