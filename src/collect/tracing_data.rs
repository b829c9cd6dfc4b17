//! perf.data's HEADER_TRACING_DATA feature section: the tracefs format files of the
//! tracepoints a collection opened, without which `perf script` / `perf report` refuse
//! the file ("incompatible file format": perf looks each tracepoint attr's format up by
//! its id there, `evlist__prepare_tracepoint_events`).
//!
//! Hand-written because no crate writes it (linux-perf-data only reads perf.data, and
//! skips this section). The layout is perf's `tools/perf/util/trace-event-info.c`
//! (`tracing_data_get`), read back by `trace-event-read.c` (`trace_report`); all numbers
//! are in the host's byte order (x86-64: little-endian), as the endianness byte says:
//!
//! ```text
//! "\x17\x08\x44tracing"  magic (10 bytes)
//! "0.6\0"                version (0.6: saved_cmdlines follow printk formats)
//! u8 0                   big-endian? (no)
//! u8 8                   sizeof(long)
//! u32                    page size
//! "header_page\0"  u64 size, events/header_page
//! "header_event\0" u64 size, events/header_event
//! u32 0                  ftrace formats (none: only events/ftrace needs them)
//! u32 systems            then per system: name NUL, u32 count, per event: u64 size,
//!                        events/<sys>/<name>/format
//! u32 0                  kallsyms (none: perf resolves kernel symbols itself)
//! u32 0                  printk formats (none)
//! u64 0                  saved_cmdlines (none: perf takes comms from COMM records)
//! ```
//!
//! Only the tracepoints opened are written, each format file bounded
//! ([`MAX_FILE_BYTES`]); one whose `ID:` is not its attr's config (the tracepoint was
//! removed and another took its id) is left out, so perf reports that event as unknown
//! rather than with the wrong fields.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::perf_data::FileAttr;

/// `PERF_TYPE_TRACEPOINT`.
const TYPE_TRACEPOINT: u32 = 2;
/// Largest format file read (sched_switch's is 1.5 KiB on Linux 6.18).
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// perf's magic: "\027\010\104" then "tracing".
const MAGIC: &[u8; 10] = b"\x17\x08\x44tracing";
/// Version 0.6: a saved_cmdlines block ends the section.
const VERSION: &[u8; 4] = b"0.6\0";

/// The section for the tracepoint attrs among `attrs` (named `sys:name`), from the
/// format files under `tracefs`; None when there is no tracepoint or tracefs cannot
/// be read (perf then cannot read the file's tracepoint samples, as before).
pub fn for_attrs(attrs: &[FileAttr], tracefs: &Path) -> Option<Vec<u8>> {
    // system → (name, id), in a stable order; each tracepoint once.
    let mut systems: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for a in attrs {
        let ty = u32::from_le_bytes(a.attr.get(0..4)?.try_into().ok()?);
        if ty != TYPE_TRACEPOINT {
            continue;
        }
        let config = u64::from_le_bytes(a.attr.get(8..16)?.try_into().ok()?);
        let Some((sys, name)) = a.name.split_once(':') else {
            continue;
        };
        let events = systems.entry(sys).or_default();
        if !events.iter().any(|&(n, _)| n == name) {
            events.push((name, config));
        }
    }
    if systems.is_empty() {
        return None;
    }
    let events_dir = tracefs.join("events");
    let header_page = read_bounded(&events_dir.join("header_page"))?;
    let header_event = read_bounded(&events_dir.join("header_event"))?;
    let mut formats: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    for (sys, events) in systems {
        let mut files = Vec::new();
        for (name, id) in events {
            let Some(f) = read_bounded(&events_dir.join(sys).join(name).join("format")) else {
                continue;
            };
            if format_id(&f) == Some(id) {
                files.push(f);
            }
        }
        if !files.is_empty() {
            formats.push((sys, files));
        }
    }
    Some(section(page_size(), &header_page, &header_event, &formats))
}

/// The section's bytes (see the module's comment).
fn section(
    page_size: u32,
    header_page: &[u8],
    header_event: &[u8],
    systems: &[(&str, Vec<Vec<u8>>)],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(VERSION);
    v.push(u8::from(cfg!(target_endian = "big")));
    v.push(size_of::<std::ffi::c_long>() as u8);
    v.extend_from_slice(&page_size.to_ne_bytes());
    for (tag, body) in [
        (&b"header_page\0"[..], header_page),
        (&b"header_event\0"[..], header_event),
    ] {
        v.extend_from_slice(tag);
        v.extend_from_slice(&(body.len() as u64).to_ne_bytes());
        v.extend_from_slice(body);
    }
    v.extend_from_slice(&0u32.to_ne_bytes()); // ftrace formats
    v.extend_from_slice(&(systems.len() as u32).to_ne_bytes());
    for (sys, files) in systems {
        v.extend_from_slice(sys.as_bytes());
        v.push(0);
        v.extend_from_slice(&(files.len() as u32).to_ne_bytes());
        for f in files {
            v.extend_from_slice(&(f.len() as u64).to_ne_bytes());
            v.extend_from_slice(f);
        }
    }
    v.extend_from_slice(&0u32.to_ne_bytes()); // kallsyms
    v.extend_from_slice(&0u32.to_ne_bytes()); // printk formats
    v.extend_from_slice(&0u64.to_ne_bytes()); // saved_cmdlines
    v
}

/// The `ID: N` line of a format file.
fn format_id(format: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(format)
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .and_then(|id| id.trim().parse().ok())
}

/// A tracefs file (their sizes read as 0: read to the end), at most [`MAX_FILE_BYTES`];
/// None when unreadable, empty or longer.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut v)
        .ok()?;
    (!v.is_empty() && v.len() as u64 <= MAX_FILE_BYTES).then_some(v)
}

fn page_size() -> u32 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracefs tree with sched_switch (id 372) and sched_waking (id 373), and a
    /// tracepoint attr of each plus a software one.
    fn fixture() -> (tempfile::TempDir, Vec<FileAttr>) {
        let d = tempfile::tempdir().unwrap();
        let ev = d.path().join("events");
        std::fs::create_dir_all(ev.join("sched/sched_switch")).unwrap();
        std::fs::create_dir_all(ev.join("sched/sched_waking")).unwrap();
        std::fs::write(ev.join("header_page"), "HP").unwrap();
        std::fs::write(ev.join("header_event"), "HEV").unwrap();
        std::fs::write(
            ev.join("sched/sched_switch/format"),
            "name: sched_switch\nID: 372\nformat:\n",
        )
        .unwrap();
        std::fs::write(
            ev.join("sched/sched_waking/format"),
            "name: sched_waking\nID: 373\n",
        )
        .unwrap();
        let attr = |ty: u32, config: u64, name: &str| {
            let mut a = vec![0u8; 136];
            a[0..4].copy_from_slice(&ty.to_le_bytes());
            a[8..16].copy_from_slice(&config.to_le_bytes());
            FileAttr {
                attr: a,
                name: name.into(),
                ids: vec![1],
            }
        };
        let attrs = vec![
            attr(1, 0, "cpu-clock"),
            attr(2, 372, "sched:sched_switch"),
            attr(2, 373, "sched:sched_waking"),
            attr(2, 372, "sched:sched_switch"), // once only
        ];
        (d, attrs)
    }

    #[test]
    fn the_section_is_laid_out_as_perf_reads_it() {
        let (d, attrs) = fixture();
        let s = for_attrs(&attrs, d.path()).unwrap();
        let mut at = 0;
        let mut take = |n: usize| {
            let b = &s[at..at + n];
            at += n;
            b.to_vec()
        };
        assert_eq!(take(10), b"\x17\x08\x44tracing");
        assert_eq!(take(4), b"0.6\0");
        assert_eq!(take(1), [0]); // little-endian
        assert_eq!(take(1), [8]); // sizeof(long)
        let page = u32::from_le_bytes(take(4).try_into().unwrap());
        assert!(page >= 4096 && page.is_power_of_two());
        assert_eq!(take(12), b"header_page\0");
        assert_eq!(u64::from_le_bytes(take(8).try_into().unwrap()), 2);
        assert_eq!(take(2), b"HP");
        assert_eq!(take(13), b"header_event\0");
        assert_eq!(u64::from_le_bytes(take(8).try_into().unwrap()), 3);
        assert_eq!(take(3), b"HEV");
        assert_eq!(take(4), 0u32.to_le_bytes()); // ftrace formats
        assert_eq!(take(4), 1u32.to_le_bytes()); // systems
        assert_eq!(take(6), b"sched\0");
        assert_eq!(take(4), 2u32.to_le_bytes()); // events
        let switch = b"name: sched_switch\nID: 372\nformat:\n";
        assert_eq!(
            u64::from_le_bytes(take(8).try_into().unwrap()),
            switch.len() as u64
        );
        assert_eq!(take(switch.len()), switch);
        let waking = b"name: sched_waking\nID: 373\n";
        assert_eq!(
            u64::from_le_bytes(take(8).try_into().unwrap()),
            waking.len() as u64
        );
        assert_eq!(take(waking.len()), waking);
        assert_eq!(take(4), 0u32.to_le_bytes()); // kallsyms
        assert_eq!(take(4), 0u32.to_le_bytes()); // printk
        assert_eq!(take(8), 0u64.to_le_bytes()); // saved_cmdlines
        assert_eq!(at, s.len());
    }

    #[test]
    fn no_tracepoint_no_section_and_a_reused_id_is_left_out() {
        let (d, attrs) = fixture();
        assert!(for_attrs(&attrs[..1], d.path()).is_none());
        // sched_switch's format now says another id: only sched_waking is written.
        std::fs::write(
            d.path().join("events/sched/sched_switch/format"),
            "name: sched_switch\nID: 999\n",
        )
        .unwrap();
        let s = for_attrs(&attrs, d.path()).unwrap();
        let text = String::from_utf8_lossy(&s);
        assert!(!text.contains("sched_switch") && text.contains("sched_waking"));
        // No readable tracefs: no section.
        let empty = tempfile::tempdir().unwrap();
        assert!(for_attrs(&attrs, empty.path()).is_none());
    }
}
