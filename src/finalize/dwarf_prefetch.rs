//! DWARF opened ahead: when reading perf.data first samples a module, its DWARF file
//! (the separate debug file, else the binary) is opened and decompressed on a thread
//! of its own while the reading goes on, instead of after it. Symbolization then takes
//! the opened file ([`DwarfPrefetch::take`]). On a single large recording, loading
//! libc's DWARF was a fifth of finalize's CPU, all of it after the reading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::dwarf_file::DwarfFile;

/// One file's slot: opened once (by the prefetch thread, or by the symbolizer if it
/// comes first), taken once.
type Slot = Arc<OnceLock<Mutex<Option<DwarfFile>>>>;

/// The DWARF files started ahead, by path. Clones share them.
#[derive(Clone, Default)]
pub struct DwarfPrefetch {
    files: Arc<Mutex<HashMap<PathBuf, Slot>>>,
}

impl std::fmt::Debug for DwarfPrefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DwarfPrefetch")
    }
}

fn open(path: &Path) -> Mutex<Option<DwarfFile>> {
    Mutex::new(DwarfFile::open(path).ok())
}

impl DwarfPrefetch {
    /// Start opening `path` on a thread of its own (once per path).
    pub fn start(&self, path: PathBuf) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        if files.contains_key(&path) {
            return;
        }
        let slot: Slot = Default::default();
        files.insert(path.clone(), slot.clone());
        drop(files);
        // Not started (no thread to spare): the symbolizer opens it when it comes.
        let _ = std::thread::Builder::new()
            .name("hwprof-dwarf".into())
            .spawn(move || {
                slot.get_or_init(|| open(&path));
            });
    }

    /// The file started ahead at `path`, opened (waiting for its thread if it is still
    /// at it); None if it was not started, already taken, or does not open.
    pub fn take(&self, path: &Path) -> Option<DwarfFile> {
        let slot = self.files.lock().ok()?.get(path).cloned()?;
        slot.get_or_init(|| open(path)).lock().ok()?.take()
    }
}
