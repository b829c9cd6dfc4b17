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
        // Only regular files are read or copied: a mapped path may be a FIFO by now.
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file());
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
                archive_copy(results_dir, &e.build_id, &file_name, path)?;
            }
            if dest.exists() {
                e.archived = Some(rel.to_string_lossy().into_owned());
            }
        }
        entries.push(e);
    }
    crate::util::write_private_file(
        &raw_dir.join("modules.json"),
        serde_json::to_string_pretty(&entries)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )
}

/// Copy `src` to `results_dir/symbols/<build_id>/<file_name>`, every level created by
/// fd (see `private_dir`). A copy that fails is skipped (finalize looks elsewhere); a
/// directory that cannot be created is an error.
fn archive_copy(
    results_dir: &Path,
    build_id: &str,
    file_name: &std::ffi::OsStr,
    src: &Path,
) -> std::io::Result<()> {
    let Some(name) = file_name.to_str() else {
        return Ok(());
    };
    let dir = crate::private_dir::PrivateDir::open(results_dir)?
        .subdir("symbols", true)?
        .subdir(build_id, true)?;
    let Ok(mut from) = std::fs::File::open(src) else {
        return Ok(());
    };
    // Another rank may be copying the same file: only our own half copy is removed.
    if let Ok(mut to) = dir.create_file(name)
        && std::io::copy(&mut from, &mut to).is_err()
    {
        let _ = dir.remove(name);
    }
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
