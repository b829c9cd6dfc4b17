//! perf.data writer: the standard file that `perf report -i` and `perf script -i` read.
//!
//! Layout (perf's `tools/perf/Documentation/perf.data-file-format.txt`):
//!
//! ```text
//! 0       perf_file_header (104 bytes): magic "PERFILE2", header size, attr size,
//!         attrs section, data section, event_types (empty), feature bitmap (256 bits)
//! 104     attrs region, ATTR_REGION bytes reserved: perf_file_attr[nr] (the
//!         perf_event_attr followed by the {offset,size} of its id array), then the
//!         id arrays. Rewritten in place when events are added during collection.
//! 104+ATTR_REGION   data: kernel records exactly as the ring buffers gave them, plus
//!         PERF_RECORD_FINISHED_ROUND after each drain pass, so readers can sort by
//!         time in bounded memory.
//! end     feature sections (written by `finish`): an array of {offset,size} for each
//!         bit set, then TRACING_DATA when tracepoints were opened (their tracefs
//!         formats, `tracing_data.rs`), HOSTNAME, OSRELEASE, VERSION, ARCH, NRCPUS, CMDLINE, EVENT_DESC,
//!         and GROUP_DESC when events form counter groups (u32 nr_groups, then per
//!         group: name as a perf string, u32 leader attr index, u32 nr_members counting
//!         the leader; members are the attrs right after their leader), and
//!         SAMPLE_TIME (u64 first, u64 last sample time) when samples were written.
//! ```
//!
//! The header (with the current data size) is rewritten after every drain pass, so a
//! file whose writer was killed is still a valid perf.data up to its last pass; a
//! reader that finds the file shorter than the header says reads to the last
//! complete record (see `raw::perf_file`).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use linux_perf_data::Feature;
use perf_event_open_sys::bindings::PERF_RECORD_SAMPLE;

/// Bytes reserved after the header for attrs and their ids.
pub const ATTR_REGION: u64 = 256 * 1024;
const HEADER_SIZE: u64 = 104;
/// `PERF_RECORD_FINISHED_ROUND`.
const FINISHED_ROUND: u32 = 68;

/// One event as perf.data describes it.
#[derive(Clone, Debug)]
pub struct FileAttr {
    /// The raw `perf_event_attr` bytes (its `size` field matches their length).
    pub attr: Vec<u8>,
    /// Event name, for EVENT_DESC.
    pub name: String,
    /// Kernel ids of every fd opened with this attr.
    pub ids: Vec<u64>,
}

/// Facts for the feature sections.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub osrelease: String,
    /// Machine architecture.
    pub arch: String,
    /// CPUs online.
    pub nr_cpus_online: u32,
    /// CPUs available.
    pub nr_cpus_avail: u32,
    /// The command line of the collection.
    pub cmdline: Vec<String>,
}

impl HostInfo {
    /// This machine.
    pub fn current(cmdline: Vec<String>) -> Self {
        let uts = nix::sys::utsname::uname().ok();
        let s = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let n = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let online = crate::util::online_cpus().len() as u32;
        HostInfo {
            hostname: crate::util::hostname(),
            osrelease: s(|u| u.release()),
            arch: s(|u| u.machine()),
            nr_cpus_online: online.max(1),
            nr_cpus_avail: n.max(online),
            cmdline,
        }
    }
}

/// Streams records into a perf.data file.
pub struct PerfDataWriter {
    file: BufWriter<File>,
    attrs: Vec<FileAttr>,
    data_len: u64,
    records: u64,
    groups: Vec<(String, u32, u32)>,
    tracing_data: Vec<u8>,
    /// Where a sample's time is in its body, when every attr puts it at the same offset.
    time_offset: Option<usize>,
    /// First and last sample time written.
    sample_times: Option<(u64, u64)>,
}

impl PerfDataWriter {
    /// Create `path` (mode 0600) with the given attrs.
    pub fn create(path: &Path, attrs: Vec<FileAttr>) -> std::io::Result<Self> {
        let file = crate::util::create_private_file(path)?;
        let time_offset = sample_time_offset(&attrs);
        let mut w = PerfDataWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            attrs,
            data_len: 0,
            records: 0,
            groups: Vec::new(),
            tracing_data: Vec::new(),
            time_offset,
            sample_times: None,
        };
        w.write_attrs()?;
        w.file.seek(SeekFrom::Start(HEADER_SIZE + ATTR_REGION))?;
        w.write_header(&[0u64; 4])?;
        Ok(w)
    }

    /// Counter groups for the GROUP_DESC feature: (name, leader attr index, number of
    /// events counting the leader).
    pub fn set_groups(&mut self, groups: Vec<(String, u32, u32)>) {
        self.groups = groups;
    }

    /// The TRACING_DATA feature section (`tracing_data.rs`): the format files of the
    /// tracepoints opened, which perf needs to read their samples.
    pub fn set_tracing_data(&mut self, section: Vec<u8>) {
        self.tracing_data = section;
    }

    /// The attrs as written.
    pub fn attrs(&self) -> &[FileAttr] {
        &self.attrs
    }

    /// Add ids to attr `index` (events opened later, e.g. by an agent).
    pub fn add_ids(&mut self, index: usize, ids: &[u64]) -> std::io::Result<()> {
        if let Some(a) = self.attrs.get_mut(index) {
            a.ids.extend_from_slice(ids);
        }
        self.write_attrs()
    }

    fn attr_size(&self) -> u64 {
        self.attrs.first().map(|a| a.attr.len() as u64).unwrap_or(0) + 16
    }

    fn write_attrs(&mut self) -> std::io::Result<()> {
        let attr_size = self.attr_size();
        let mut buf = Vec::new();
        let mut ids_off = HEADER_SIZE + attr_size * self.attrs.len() as u64;
        let mut ids = Vec::new();
        for a in &self.attrs {
            buf.extend_from_slice(&a.attr);
            buf.extend_from_slice(&ids_off.to_le_bytes());
            buf.extend_from_slice(&(a.ids.len() as u64 * 8).to_le_bytes());
            ids_off += a.ids.len() as u64 * 8;
            for id in &a.ids {
                ids.extend_from_slice(&id.to_le_bytes());
            }
        }
        buf.extend_from_slice(&ids);
        if buf.len() as u64 > ATTR_REGION {
            return Err(std::io::Error::other(
                "too many events for the perf.data attr region",
            ));
        }
        self.file.get_ref().write_all_at(&buf, HEADER_SIZE)
    }

    fn header_bytes(&self, features: &[u64; 4]) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_SIZE as usize);
        h.extend_from_slice(b"PERFILE2");
        h.extend_from_slice(&HEADER_SIZE.to_le_bytes());
        h.extend_from_slice(&self.attr_size().to_le_bytes());
        h.extend_from_slice(&HEADER_SIZE.to_le_bytes());
        h.extend_from_slice(&(self.attr_size() * self.attrs.len() as u64).to_le_bytes());
        h.extend_from_slice(&(HEADER_SIZE + ATTR_REGION).to_le_bytes());
        h.extend_from_slice(&self.data_len.to_le_bytes());
        h.extend_from_slice(&[0u8; 16]);
        for f in features {
            h.extend_from_slice(&f.to_le_bytes());
        }
        h
    }

    fn write_header(&mut self, features: &[u64; 4]) -> std::io::Result<()> {
        let h = self.header_bytes(features);
        self.file.get_ref().write_all_at(&h, 0)
    }

    /// Append one record: the kernel's 8-byte header then its body.
    pub fn write_record(&mut self, ty: u32, misc: u16, body: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = 8 + body.iter().map(|b| b.len()).sum::<usize>();
        let size = u16::try_from(len).map_err(|_| std::io::Error::other("record too large"))?;
        self.file.write_all(&ty.to_le_bytes())?;
        self.file.write_all(&misc.to_le_bytes())?;
        self.file.write_all(&size.to_le_bytes())?;
        for b in body {
            self.file.write_all(b)?;
        }
        self.data_len += len as u64;
        self.records += 1;
        if ty == PERF_RECORD_SAMPLE
            && let Some(t) = self.time_offset.and_then(|off| u64_in(body, off))
        {
            self.sample_times = Some(
                self.sample_times
                    .map_or((t, t), |(a, b)| (a.min(t), b.max(t))),
            );
        }
        Ok(())
    }

    /// The first and last sample time written (the events' clock, ns); none when no
    /// sample was, or the attrs place the time differently.
    pub fn sample_times(&self) -> Option<(u64, u64)> {
        self.sample_times
    }

    /// End of a drain pass: a FINISHED_ROUND record, flush, and a header that covers
    /// everything written so far.
    pub fn finish_round(&mut self) -> std::io::Result<()> {
        self.write_record(FINISHED_ROUND, 0, &[])?;
        self.file.flush()?;
        self.write_header(&[0u64; 4])
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Write the feature sections and the final header.
    pub fn finish(mut self, host: &HostInfo) -> std::io::Result<()> {
        self.file.flush()?;
        let mut sections: Vec<(Feature, Vec<u8>)> = vec![
            (Feature::HOSTNAME, perf_string(&host.hostname)),
            (Feature::OSRELEASE, perf_string(&host.osrelease)),
            (
                Feature::VERSION,
                perf_string(&format!("hwprof {}", env!("CARGO_PKG_VERSION"))),
            ),
            (Feature::ARCH, perf_string(&host.arch)),
            (Feature::NRCPUS, {
                let mut v = host.nr_cpus_avail.to_le_bytes().to_vec();
                v.extend_from_slice(&host.nr_cpus_online.to_le_bytes());
                v
            }),
            (Feature::CMDLINE, {
                let mut v = (host.cmdline.len() as u32).to_le_bytes().to_vec();
                for a in &host.cmdline {
                    v.extend_from_slice(&perf_string(a));
                }
                v
            }),
            (Feature::EVENT_DESC, self.event_desc()),
        ];
        if !self.groups.is_empty() {
            let mut v = (self.groups.len() as u32).to_le_bytes().to_vec();
            for (name, leader, nr) in &self.groups {
                v.extend_from_slice(&perf_string(name));
                v.extend_from_slice(&leader.to_le_bytes());
                v.extend_from_slice(&nr.to_le_bytes());
            }
            sections.push((Feature::GROUP_DESC, v));
        }
        if !self.tracing_data.is_empty() {
            sections.push((
                Feature::TRACING_DATA,
                std::mem::take(&mut self.tracing_data),
            ));
        }
        if let Some((first, last)) = self.sample_times {
            let mut v = first.to_le_bytes().to_vec();
            v.extend_from_slice(&last.to_le_bytes());
            sections.push((Feature::SAMPLE_TIME, v));
        }
        sections.sort_by_key(|s| s.0.0);
        let mut features = [0u64; 4];
        for (Feature(bit), _) in &sections {
            let bit = *bit as usize;
            features[bit / 64] |= 1 << (bit % 64);
        }
        let start = HEADER_SIZE + ATTR_REGION + self.data_len;
        let mut off = start + 16 * sections.len() as u64;
        let mut index = Vec::new();
        for (_, body) in &sections {
            index.extend_from_slice(&off.to_le_bytes());
            index.extend_from_slice(&(body.len() as u64).to_le_bytes());
            off += body.len() as u64;
        }
        let f = self.file.get_mut();
        f.seek(SeekFrom::Start(start))?;
        f.write_all(&index)?;
        for (_, body) in &sections {
            f.write_all(body)?;
        }
        // No fsync, as perf record: it held the profiled command's exit by 10-15 ms for
        // a 25 MB file here, and finalize reads a cut file up to its last whole record.
        self.write_header(&features)
    }

    fn event_desc(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(self.attrs.len() as u32).to_le_bytes());
        let attr_len = self.attrs.first().map(|a| a.attr.len()).unwrap_or(0) as u32;
        v.extend_from_slice(&attr_len.to_le_bytes());
        for a in &self.attrs {
            v.extend_from_slice(&a.attr);
            v.extend_from_slice(&(a.ids.len() as u32).to_le_bytes());
            v.extend_from_slice(&perf_string(&a.name));
            for id in &a.ids {
                v.extend_from_slice(&id.to_le_bytes());
            }
        }
        v
    }
}

/// The offset of the time in a sample's body, when every attr has `PERF_SAMPLE_TIME`
/// after the same fields (IDENTIFIER, IP, TID come before it, 8 bytes each).
fn sample_time_offset(attrs: &[FileAttr]) -> Option<usize> {
    use perf_event_open_sys::bindings as b;
    let offsets = attrs.iter().map(|a| {
        let sample_type = u64::from_le_bytes(a.attr.get(24..32)?.try_into().ok()?);
        (sample_type & b::PERF_SAMPLE_TIME as u64 != 0).then(|| {
            [
                b::PERF_SAMPLE_IDENTIFIER,
                b::PERF_SAMPLE_IP,
                b::PERF_SAMPLE_TID,
            ]
            .iter()
            .filter(|&&bit| sample_type & bit as u64 != 0)
            .count()
                * 8
        })
    });
    let mut first = None;
    for off in offsets {
        let off = off?;
        if *first.get_or_insert(off) != off {
            return None;
        }
    }
    first
}

/// The u64 at `off` of a record body given in pieces (a ring's wrap splits it).
fn u64_in(body: &[&[u8]], mut off: usize) -> Option<u64> {
    let mut v = [0u8; 8];
    let mut got = 0;
    for part in body {
        if off >= part.len() {
            off -= part.len();
            continue;
        }
        let take = (part.len() - off).min(8 - got);
        v[got..got + take].copy_from_slice(&part[off..off + take]);
        got += take;
        off = 0;
        if got == 8 {
            return Some(u64::from_le_bytes(v));
        }
    }
    None
}

/// perf's header string: u32 length (NUL-terminated, padded to 64), then the bytes.
fn perf_string(s: &str) -> Vec<u8> {
    let len = (s.len() + 1).div_ceil(64) * 64;
    let mut v = (len as u32).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v.resize(4 + len, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_strings_are_padded_and_terminated() {
        let s = perf_string("abc");
        assert_eq!(&s[..4], &64u32.to_le_bytes());
        assert_eq!(&s[4..7], b"abc");
        assert_eq!(s.len(), 68);
        assert_eq!(s[7], 0);
    }

    #[test]
    fn sample_times_are_read_across_a_ring_wrap() {
        let body: Vec<u8> = (0u8..40).collect();
        let want = u64::from_le_bytes(body[24..32].try_into().unwrap());
        for cut in 0..=body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(u64_in(&[a, b], 24), Some(want), "cut at {cut}");
        }
        assert_eq!(u64_in(&[&body[..30]], 24), None);
    }
}
