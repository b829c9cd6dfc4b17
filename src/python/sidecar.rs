//! The Python sidecar files of a raw directory.
//!
//! - `python-<pid>.bin`: captures, written by the agent (or the remote sampler); binary
//!   layout in [`super::wire`] (file header, then `{len, kind}` records; a capture is a
//!   `Capture` and `nframes` × `CapFrame`, leaf first). Read with [`read_captures`], which
//!   stops at the first incomplete or malformed record and says how many bytes it skipped.
//! - `python-codes.jsonl`: written by the collector, one JSON object per line, appended
//!   and flushed as code objects are resolved:
//!   - `{"type":"process","pid":P,"version":"3.11.7","method":"agent"|"remote"}`
//!   - `{"type":"refused","pid":P,"reason":"..."}` (unsupported or free-threaded)
//!   - `{"type":"code","pid":P,"addr":A,"token":T,"name":..,"qualname":..,"file":..,
//!     "firstlineno":N,"minor":M,"linetable":"<hex>","self_first":bool}`
//!   - `{"type":"selftype","pid":P,"addr":A,"name":"Class"}` (tp_name of a captured
//!     first-local type, < 3.11)
//!   - `{"type":"events","pid":P,"ids":[..]}` (perf event ids of the agent's events:
//!     finalize keeps those samples and drops the collector's own for that process)
//!   - `{"type":"stats","pid":P,"torn":N,"captures":N}` (remote sampler counts)
//!   - `{"type":"lost","pid":P,"captures":N}` (captures dropped: the ring was full)
//!
//!   A line that does not parse (a torn last line) is skipped.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::code::{CodeInfo, decode_unicode};
use super::wire::{
    CODE_SELF_FIRST, CapFrame, Capture, CodeRecord, FILE_MAGIC, FR_ENTRY, FileHeader, Plain,
    REC_CAPTURE, REC_CODE, RecordHeader,
};

/// One capture read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureRec {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// CLOCK_MONOTONIC ns.
    pub time_ns: u64,
    /// `CAP_*` bits.
    pub flags: u32,
    /// Frames, leaf first.
    pub frames: Vec<CapFrame>,
}

/// A capture file's contents.
#[derive(Clone, Debug, Default)]
pub struct CaptureFile {
    /// Method from the header (`wire::METHOD_*`).
    pub method: u32,
    /// Python minor version from the header.
    pub minor: u32,
    /// Captures, in file order.
    pub captures: Vec<CaptureRec>,
    /// Code objects the agent named (identity records), in file order: (pid, address,
    /// what it said).
    pub codes: Vec<(u32, u64, CodeInfo)>,
    /// Bytes after the last complete record (a torn tail).
    pub skipped: usize,
}

/// Parses the bytes of a capture file.
pub fn parse_captures(b: &[u8]) -> Option<CaptureFile> {
    let h = FileHeader::read_from(b)?;
    if h.magic != FILE_MAGIC {
        return None;
    }
    // Files of format 1 (before the decoder marked 3.8-3.10 frames as entry frames)
    // get the mark here, so deferred finalize of an older recording still splits
    // their stacks at each eval-loop call.
    let mark_entries = h.version < 2 && (8..=10).contains(&h.minor);
    let mut out = CaptureFile {
        method: h.method,
        minor: h.minor,
        ..Default::default()
    };
    let mut i = size_of::<FileHeader>();
    let hl = size_of::<RecordHeader>();
    while i < b.len() {
        let Some(r) = RecordHeader::read_from(&b[i..]) else {
            break;
        };
        let len = r.len as usize;
        if len < hl || i + len > b.len() {
            break;
        }
        let body = &b[i + hl..i + len];
        if r.kind == REC_CAPTURE
            && let Some(c) = Capture::read_from(body)
        {
            let fs = &body[size_of::<Capture>()..];
            let n = (c.nframes as usize).min(fs.len() / size_of::<CapFrame>());
            let frames = (0..n)
                .filter_map(|k| CapFrame::read_from(&fs[k * size_of::<CapFrame>()..]))
                .map(|mut f| {
                    if mark_entries {
                        f.flags |= FR_ENTRY;
                    }
                    f
                })
                .collect();
            out.captures.push(CaptureRec {
                pid: c.pid,
                tid: c.tid,
                time_ns: c.time_ns,
                flags: c.flags,
                frames,
            });
        }
        if r.kind == REC_CODE
            && let Some(c) = parse_code(body)
        {
            out.codes.push(c);
        }
        i += len;
    }
    out.skipped = b.len() - i.min(b.len());
    Some(out)
}

/// A [`REC_CODE`] record's body; None when its lengths or character widths are wrong.
fn parse_code(body: &[u8]) -> Option<(u32, u64, CodeInfo)> {
    let c = CodeRecord::read_from(body)?;
    let mut rest = body.get(size_of::<CodeRecord>()..)?;
    let mut take = |n: u32| -> Option<&[u8]> {
        let (a, b) = rest.split_at_checked(n as usize)?;
        rest = b;
        Some(a)
    };
    let name = decode_unicode(c.kinds[0], take(c.name_len)?)?;
    let qualname = match c.qualname_len {
        0 => name.clone(),
        n => decode_unicode(c.kinds[1], take(n)?)?,
    };
    let filename = decode_unicode(c.kinds[2], take(c.file_len)?)?;
    let linetable = take(c.table_len)?.to_vec();
    Some((
        c.pid,
        c.addr,
        CodeInfo {
            name,
            qualname,
            filename,
            firstlineno: c.firstlineno as i64,
            linetable,
            self_first: c.flags & CODE_SELF_FIRST != 0,
            token: c.token,
        },
    ))
}

/// Reads `python-<pid>.bin`.
pub fn read_captures(path: &Path) -> std::io::Result<Option<CaptureFile>> {
    let bytes = crate::raw::bounded::read_limited(path, crate::raw::bounded::Kind::PythonCaptures)?;
    Ok(parse_captures(&bytes))
}

/// One line of `python-codes.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CodeLine {
    /// A Python process and how it was captured.
    Process {
        /// Process.
        pid: u32,
        /// "3.11.7".
        version: String,
        /// "agent" or "remote".
        method: String,
    },
    /// A process whose interpreter was refused.
    Refused {
        /// Process.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// A resolved code object.
    Code {
        /// Process.
        pid: u32,
        /// Address.
        addr: u64,
        /// Token at read time.
        token: u64,
        /// co_name.
        name: String,
        /// co_qualname (or co_name before 3.11).
        qualname: String,
        /// co_filename.
        file: String,
        /// co_firstlineno.
        firstlineno: i64,
        /// Interpreter minor version (selects the line-table format).
        minor: u32,
        /// Hex of the line table.
        linetable: String,
        /// First parameter named `self`.
        self_first: bool,
    },
    /// A type's name.
    Selftype {
        /// Process.
        pid: u32,
        /// Type object address.
        addr: u64,
        /// tp_name.
        name: String,
    },
    /// Perf event ids of an agent's sampling events (its samples in perf.data).
    Events {
        /// Process.
        pid: u32,
        /// Kernel ids.
        ids: Vec<u64>,
        /// The events deliver a SIGTRAP capture per sample (the agent of a Python
        /// process); false for an agent sampling a non-Python process of the tree
        /// (a launcher such as pyenv's shim, before it execs Python).
        #[serde(default = "yes")]
        captures: bool,
    },
    /// Captures an agent dropped because its capture ring was full (the collector fell
    /// behind): those samples have no capture of their own.
    Lost {
        /// Process.
        pid: u32,
        /// Captures dropped.
        captures: u64,
    },
    /// Sampler counts.
    Stats {
        /// Process.
        pid: u32,
        /// Stacks discarded as torn.
        torn: u64,
        /// Captures written.
        captures: u64,
    },
}

/// Appends lines to `python-codes.jsonl` (mode 0600).
pub struct CodeWriter {
    file: std::io::BufWriter<std::fs::File>,
}

impl CodeWriter {
    /// Opens (appending: the agent link and the remote sampler share it) the file in
    /// `raw_dir`, never through a planted link nor into a file that is not our own
    /// private regular file (`util::append_private_file`).
    pub fn open(raw_dir: &Path) -> std::io::Result<Self> {
        let f = crate::util::append_private_file(&raw_dir.join("python-codes.jsonl"))?;
        Ok(CodeWriter {
            file: std::io::BufWriter::new(f),
        })
    }

    /// Adds a line.
    pub fn put(&mut self, l: &CodeLine) {
        if let Ok(s) = serde_json::to_string(l) {
            let _ = writeln!(self.file, "{s}");
        }
    }

    /// Flushes to the file.
    pub fn flush(&mut self) {
        let _ = self.file.flush();
    }
}

/// Reads `python-codes.jsonl`, skipping unparsable lines.
pub fn read_codes(raw_dir: &Path) -> Vec<CodeLine> {
    let Ok(text) = crate::raw::bounded::read_limited_string(
        &raw_dir.join("python-codes.jsonl"),
        crate::raw::bounded::Kind::PythonCodes,
    ) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl CodeLine {
    /// The line for a code object read at `addr` in process `pid` (interpreter 3.`minor`).
    pub fn code(pid: u32, addr: u64, ci: &super::code::CodeInfo, minor: u32) -> CodeLine {
        CodeLine::Code {
            pid,
            addr,
            token: ci.token,
            name: ci.name.clone(),
            qualname: ci.qualname.clone(),
            file: ci.filename.clone(),
            firstlineno: ci.firstlineno,
            minor,
            linetable: crate::util::hex(&ci.linetable),
            self_first: ci.self_first,
        }
    }
}

/// Hex decoding (None on bad input).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// serde default of [`CodeLine::Events::captures`] (files written before it existed).
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::super::wire::FILE_VERSION;
    use super::*;

    fn bytes_of<T: Plain>(v: &T) -> Vec<u8> {
        v.as_bytes().to_vec()
    }

    /// A capture file of `version` for Python 3.`minor`: three one-frame captures.
    fn file(version: u32, minor: u32) -> Vec<u8> {
        let mut b = bytes_of(&FileHeader {
            magic: FILE_MAGIC,
            version,
            pid: 7,
            method: 1,
            minor,
        });
        for t in 0..3u64 {
            let f = CapFrame {
                code: 0x100 + t,
                token: 5,
                self_type: 0,
                offset: 4,
                flags: 0,
            };
            let len = size_of::<RecordHeader>() + size_of::<Capture>() + size_of::<CapFrame>();
            b.extend(bytes_of(&RecordHeader {
                len: len as u32,
                kind: REC_CAPTURE,
            }));
            b.extend(bytes_of(&Capture {
                pid: 7,
                tid: 8,
                time_ns: 1000 + t,
                flags: 0,
                nframes: 1,
            }));
            b.extend(bytes_of(&f));
        }
        b
    }

    #[test]
    fn captures_round_trip_and_torn_tail() {
        let b = file(FILE_VERSION, 11);
        let full = parse_captures(&b).unwrap_or_default();
        assert_eq!(full.captures.len(), 3);
        assert_eq!(full.captures[2].frames[0].code, 0x102);
        let cut = parse_captures(&b[..b.len() - 5]).unwrap_or_default();
        assert_eq!(cut.captures.len(), 2);
        assert!(cut.skipped > 0);
        // Garbage after the header never panics.
        let mut g = b[..size_of::<FileHeader>()].to_vec();
        g.extend((0..999u32).map(|i| (i * 7919 % 251) as u8));
        let _ = parse_captures(&g);
    }

    #[test]
    fn format_1_files_of_3_8_to_3_10_get_their_entry_marks() {
        let entry = |version, minor| {
            let f = parse_captures(&file(version, minor)).unwrap_or_default();
            f.captures.iter().all(|c| c.frames[0].flags & FR_ENTRY != 0)
        };
        assert!(entry(1, 10));
        assert!(entry(1, 8));
        assert!(!entry(1, 11));
        // Format 2 files carry the decoder's own marks: nothing is added.
        assert!(!entry(FILE_VERSION, 10));
    }
}
