//! `modules.json`: every file the target mapped, with its build id, size and mtime, so
//! finalize can find the same file later (or notice it changed). With `--archive`, the
//! files themselves are copied to `DIR/symbols/<build-id>/<file name>`.
//!
//! ```json
//! [{"path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "build_id": "a1b2...",
//!   "size": 1922136, "mtime": 1700000000, "archived": "symbols/a1b2.../libc.so.6"}]
//! ```

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One mapped file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModuleEntry {
    /// Path as the target mapped it.
    pub path: String,
    /// GNU build id, hex; "" when the file has none.
    #[serde(default)]
    pub build_id: String,
    /// Size in bytes at collection.
    #[serde(default)]
    pub size: u64,
    /// Modification time (Unix seconds) at collection.
    #[serde(default)]
    pub mtime: i64,
    /// Path of the archived copy, relative to the results directory.
    #[serde(default)]
    pub archived: Option<String>,
}

/// Write `raw_dir/modules.json`; archive the files under `results_dir/symbols/`.
pub fn write_modules(
    raw_dir: &Path,
    mapped: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    archive: bool,
    results_dir: &Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut entries = Vec::new();
    for (name, build_id) in mapped {
        let path = Path::new(std::ffi::OsStr::from_bytes(name));
        let meta = std::fs::metadata(path).ok();
        let build_id = match build_id {
            Some(b) => Some(b.clone()),
            None if meta.is_some() => crate::util::elf_build_id(path),
            None => None,
        };
        let mut e = ModuleEntry {
            path: path.to_string_lossy().into_owned(),
            build_id: build_id
                .as_deref()
                .map(crate::util::hex)
                .unwrap_or_default(),
            size: meta.as_ref().map(|m| m.len()).unwrap_or(0),
            mtime: meta.as_ref().map(|m| m.mtime()).unwrap_or(0),
            archived: None,
        };
        if archive && meta.is_some() && !e.build_id.is_empty() {
            let file_name = path
                .file_name()
                .map(|f| f.to_os_string())
                .unwrap_or_default();
            let rel = Path::new("symbols").join(&e.build_id).join(&file_name);
            let dest = results_dir.join(&rel);
            if !dest.exists() {
                if let Some(parent) = dest.parent() {
                    crate::util::create_private_dir(parent)?;
                }
                if std::fs::copy(path, &dest).is_ok() {
                    crate::util::set_private_mode(&dest);
                }
            }
            if dest.exists() {
                e.archived = Some(rel.to_string_lossy().into_owned());
            }
        }
        entries.push(e);
    }
    let p = raw_dir.join("modules.json");
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&entries).map_err(std::io::Error::other)?,
    )?;
    crate::util::set_private_mode(&p);
    Ok(())
}

/// Read `raw_dir/modules.json` (empty when absent or damaged: finalize then relies on
/// the build ids in the mmap records alone).
pub fn read_modules(raw_dir: &Path) -> Vec<ModuleEntry> {
    crate::raw::bounded::read_limited_string(
        &raw_dir.join("modules.json"),
        crate::raw::bounded::Kind::Modules,
    )
    .ok()
    .and_then(|s| serde_json::from_str(&s).ok())
    .unwrap_or_default()
}
