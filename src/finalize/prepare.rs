//! Symbolizers made ready while perf.data is still being read. What a module's
//! symbolization costs before any address is known (its debug file's sections
//! decompressed, addr2line's unit ranges, the unit headers of the declaration index)
//! and the parse of a kallsyms copy are a fixed cost, a quarter of a small recording's
//! finalize: the reader starts them on another worker as soon as a sample first lands
//! in a module (or in the kernel), so that the symbolize stage is mostly lookups. The
//! ranks of an MPI job map the same files: each is prepared once for all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::symbols::{KernelSymbols, ModuleSymbolizer};
use crate::profile::FrameInfo;

/// A module file: the ELF file found for it and the path it was mapped at.
pub type ModuleKey = (Option<PathBuf>, String);

/// One module's symbolizer: made by whichever comes first, the task started by the
/// reader or the symbolize stage (which then waits for it, never makes it twice).
type Slot = Arc<Mutex<Option<ModuleSymbolizer>>>;

/// Identity of a kallsyms copy: device, inode, size, mtime (the collector hard-links
/// one host's copies).
type FileId = (u64, u64, u64, i64);

/// The symbolizers and kernel symbols of a finalize run, shared by its raw directories.
#[derive(Default)]
pub struct Prepared {
    modules: Mutex<HashMap<ModuleKey, Slot>>,
    kernel_files: Mutex<HashMap<FileId, Arc<OnceLock<Arc<KernelSymbols>>>>>,
    /// By content: copies made on different hosts are parsed once too.
    kernel_contents: Mutex<HashMap<(u64, usize), Arc<KernelSymbols>>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// Where a module's symbols come from: the binary and its separate debug file.
pub struct ModuleFiles {
    /// The binary found for the mapping.
    pub elf: Option<PathBuf>,
    /// Its debug file, when there is one.
    pub debug: Option<PathBuf>,
    /// The binary's bytes when hwprof carries it (its agent; `elf` is then `None`).
    pub embedded: Option<&'static [u8]>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it (a bug) leaves plain data: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Prepared {
    /// Whether `key` has a symbolizer made or being made.
    pub fn has_module(&self, key: &ModuleKey) -> bool {
        lock(&self.modules).contains_key(key)
    }

    /// Start making `key`'s symbolizer on another worker of the current thread pool
    /// (nothing when it was started before).
    pub fn start_module(self: &Arc<Self>, key: ModuleKey, files: ModuleFiles) {
        let slot = {
            let mut modules = lock(&self.modules);
            if modules.contains_key(&key) {
                return;
            }
            let slot = Slot::default();
            modules.insert(key, slot.clone());
            slot
        };
        rayon::spawn(move || {
            let mut s = lock(&slot);
            if s.is_none() {
                *s = Some(ModuleSymbolizer::of(&files));
            }
        });
    }

    /// The frames of `svmas` in the module `key` (its symbolizer made now when no
    /// task did).
    pub fn symbolize(
        &self,
        key: &ModuleKey,
        files: impl FnOnce() -> ModuleFiles,
        module: &str,
        svmas: &[u64],
    ) -> Vec<Vec<FrameInfo>> {
        let slot = lock(&self.modules).entry(key.clone()).or_default().clone();
        let mut s = lock(&slot);
        let symbolizer = s.get_or_insert_with(|| ModuleSymbolizer::of(&files()));
        symbolizer.symbolize(module, svmas)
    }

    /// Wait until no symbolizer or kallsyms parse is being made. Called from a thread
    /// outside the pool before a batch is symbolized there: a worker that blocked on a
    /// symbolizer being made (libc's, ~0.1 s in one piece) would leave the batches read
    /// ahead without that worker, so the other cores idled.
    pub fn wait_until_made(&self) {
        let slots: Vec<Slot> = lock(&self.modules).values().cloned().collect();
        for slot in slots {
            drop(lock(&slot));
        }
        let kernels: Vec<_> = lock(&self.kernel_files).values().cloned().collect();
        for cell in kernels {
            cell.wait();
        }
    }

    /// Start parsing `raw_dir`'s kallsyms copy on another worker.
    pub fn start_kernel(self: &Arc<Self>, raw_dir: &Path) {
        let (this, dir) = (self.clone(), raw_dir.to_path_buf());
        rayon::spawn(move || {
            this.kernel(&dir);
        });
    }

    /// The kernel symbols of `raw_dir`'s kallsyms copy (empty without one). Each
    /// distinct copy is parsed once, not once per rank (at 1,024 ranks that parse was
    /// most of finalize's time and memory); a copy hard-linked to one seen before is
    /// not even read again.
    pub fn kernel(&self, raw_dir: &Path) -> Arc<KernelSymbols> {
        use std::os::unix::fs::MetadataExt;
        let path = raw_dir.join("kallsyms");
        let id = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino(), m.size(), m.mtime()));
        let Some(id) = id else {
            return self.kernel_by_content(&path);
        };
        let cell = lock(&self.kernel_files).entry(id).or_default().clone();
        cell.get_or_init(|| self.kernel_by_content(&path)).clone()
    }

    fn kernel_by_content(&self, path: &Path) -> Arc<KernelSymbols> {
        use std::hash::{Hash, Hasher};
        let Ok(bytes) =
            crate::raw::bounded::read_limited(path, crate::raw::bounded::Kind::Kallsyms)
        else {
            return Default::default();
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let key = (h.finish(), bytes.len());
        if let Some(k) = lock(&self.kernel_contents).get(&key) {
            return k.clone();
        }
        let k = Arc::new(KernelSymbols::parse(&bytes));
        lock(&self.kernel_contents).entry(key).or_insert(k).clone()
    }
}
