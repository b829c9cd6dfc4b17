//! Counter groups: a sampling leader whose members are read with every sample.
//!
//! Hotspots with a PMU samples `cycles` and reads `instructions` and `cache-misses`
//! in the same group, so each sample carries the three counts (PERF_SAMPLE_READ with
//! `read_format = GROUP | ID | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING`). The layout of
//! the group read values, both in a sample and from `read(2)` on the leader
//! (`perf_event_open(2)`, "Reading results"):
//!
//! ```text
//! u64 nr;             // number of events in the group, leader first
//! u64 time_enabled;   // ns the group was enabled
//! u64 time_running;   // ns it was on the PMU (less when multiplexed)
//! { u64 value; u64 id; } values[nr];
//! ```
//!
//! When the kernel multiplexes (more events than counters) `time_running <
//! time_enabled`; counts are then scaled by `time_enabled / time_running` and flagged
//! as estimates of the full-time count, as perf does. Nothing is scaled when the group
//! ran the whole time, and a group that never ran gives no value rather than zero.
//! (Per-sample attribution and the per-thread multiplexing ratio of per-CPU inherited
//! events are finalize's: `finalize::group_reads`.)
//!
//! Also here: [`parse_group_syntax`] (perf's `{leader,member,...}` for `-e`),
//! [`GroupRead::parse_format`] (read values for any `read_format`), and
//! [`sample_read`] (the read block inside a `PERF_RECORD_SAMPLE` body).

use perf_event_open_sys::bindings as sys;

use super::EventSpec;

/// The read format every group member uses.
pub const GROUP_READ_FORMAT: u64 = (sys::PERF_FORMAT_GROUP
    | sys::PERF_FORMAT_ID
    | sys::PERF_FORMAT_TOTAL_TIME_ENABLED
    | sys::PERF_FORMAT_TOTAL_TIME_RUNNING) as u64;

/// How the leader samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Every N events.
    Period(u64),
    /// N samples per second (kernel-adjusted period).
    Frequency(u64),
}

/// Options shared by the group's attributes.
#[derive(Clone, Copy, Debug)]
pub struct GroupOptions {
    /// Leader sampling.
    pub sampling: Sampling,
    /// Sample fields besides READ (IP, TID, TIME, CALLCHAIN, ...); READ is added.
    pub sample_type: u64,
    /// Exclude kernel (paranoid ≥ 2 without CAP_PERFMON).
    pub exclude_kernel: bool,
    /// Follow children (`inherit`).
    pub inherit: bool,
    /// Enable when the launched process execs.
    pub enable_on_exec: bool,
    /// Timestamp with CLOCK_MONOTONIC (the one clock of every sidecar).
    pub monotonic_clock: bool,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            sampling: Sampling::Frequency(999),
            sample_type: (sys::PERF_SAMPLE_IP
                | sys::PERF_SAMPLE_TID
                | sys::PERF_SAMPLE_TIME
                | sys::PERF_SAMPLE_CPU
                | sys::PERF_SAMPLE_PERIOD) as u64,
            exclude_kernel: true,
            inherit: false,
            enable_on_exec: false,
            monotonic_clock: true,
        }
    }
}

/// A `perf_event_attr` naming an event (type, config words, precise level), every
/// other field zero except `size`.
pub fn attr_for(spec: &EventSpec) -> sys::perf_event_attr {
    let mut a = sys::perf_event_attr::default();
    a.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
    a.type_ = spec.type_;
    a.config = spec.config;
    a.__bindgen_anon_3.config1 = spec.config1;
    a.__bindgen_anon_4.config2 = spec.config2;
    a
}

/// Attributes for a group: the leader samples with PERF_SAMPLE_READ, members only
/// count; all read as one group. Open the leader with `group_fd = -1` and `disabled`,
/// then each member with the leader's fd, then enable the leader (or rely on
/// `enable_on_exec`).
pub fn group_attrs(
    leader: &EventSpec,
    members: &[EventSpec],
    opts: &GroupOptions,
) -> Vec<sys::perf_event_attr> {
    let mut out = Vec::with_capacity(members.len() + 1);
    let mut l = attr_for(leader);
    match opts.sampling {
        Sampling::Period(p) => l.__bindgen_anon_1.sample_period = p.max(1),
        Sampling::Frequency(f) => {
            l.__bindgen_anon_1.sample_freq = f.max(1);
            l.set_freq(1);
        }
    }
    l.sample_type = opts.sample_type | sys::PERF_SAMPLE_READ as u64;
    l.set_disabled(1);
    out.push(l);
    for m in members {
        out.push(attr_for(m));
    }
    for a in &mut out {
        a.read_format = GROUP_READ_FORMAT;
        a.set_exclude_kernel(u64::from(opts.exclude_kernel));
        a.set_exclude_hv(1);
        a.set_inherit(u64::from(opts.inherit));
        if opts.monotonic_clock {
            a.set_use_clockid(1);
            a.clockid = libc::CLOCK_MONOTONIC;
        }
    }
    // Only the leader carries enable_on_exec; members follow it.
    out[0].set_enable_on_exec(u64::from(opts.enable_on_exec));
    out
}

/// Errors decoding group read values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupReadError {
    /// The buffer ends before the values it announces.
    #[error("group read values cut short: {have} bytes, {need} needed")]
    Short {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An absurd member count (corrupt data).
    #[error("group read values announce {0} members; at most 64 are possible")]
    TooMany(u64),
}

/// One member's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupValue {
    /// The count as read.
    pub value: u64,
    /// The event id (`PERF_EVENT_IOC_ID`, or PERF_SAMPLE_ID of its samples).
    pub id: u64,
}

/// Decoded group read values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRead {
    /// ns enabled.
    pub time_enabled: u64,
    /// ns running.
    pub time_running: u64,
    /// Leader first.
    pub values: Vec<GroupValue>,
}

impl GroupRead {
    /// Decode read values laid out per `read_format` (perf_event_open(2), "Reading
    /// results"): with `PERF_FORMAT_GROUP`, `nr, [time_enabled], [time_running],
    /// {value, [id], [lost]}[nr]`; without it, `value, [time_enabled], [time_running],
    /// [id], [lost]` (one value). Absent times read as 0, an absent id as 0. Returns the
    /// values and the bytes consumed.
    pub fn parse_format(
        buf: &[u8],
        read_format: u64,
    ) -> Result<(GroupRead, usize), GroupReadError> {
        let has = |bit: u32| read_format & bit as u64 != 0;
        let mut pos = 0usize;
        let mut next = || -> Result<u64, GroupReadError> {
            let b = buf.get(pos..pos + 8).ok_or(GroupReadError::Short {
                have: buf.len(),
                need: pos + 8,
            })?;
            pos += 8;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_ne_bytes(a))
        };
        let group = has(sys::PERF_FORMAT_GROUP);
        let first = next()?;
        let (nr, single) = if group {
            if first > 64 {
                return Err(GroupReadError::TooMany(first));
            }
            (first as usize, None)
        } else {
            (1, Some(first))
        };
        let time_enabled = if has(sys::PERF_FORMAT_TOTAL_TIME_ENABLED) {
            next()?
        } else {
            0
        };
        let time_running = if has(sys::PERF_FORMAT_TOTAL_TIME_RUNNING) {
            next()?
        } else {
            0
        };
        let mut values = Vec::with_capacity(nr);
        for _ in 0..nr {
            let value = match single {
                Some(v) => v,
                None => next()?,
            };
            let id = if has(sys::PERF_FORMAT_ID) { next()? } else { 0 };
            if has(sys::PERF_FORMAT_LOST) {
                next()?;
            }
            values.push(GroupValue { value, id });
        }
        Ok((
            GroupRead {
                time_enabled,
                time_running,
                values,
            },
            pos,
        ))
    }

    /// Decode from native-endian bytes; returns the values and the bytes consumed.
    pub fn parse(buf: &[u8]) -> Result<(GroupRead, usize), GroupReadError> {
        let word = |i: usize| -> Result<u64, GroupReadError> {
            let b = buf.get(i * 8..i * 8 + 8).ok_or(GroupReadError::Short {
                have: buf.len(),
                need: i * 8 + 8,
            })?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_ne_bytes(a))
        };
        let nr = word(0)?;
        if nr > 64 {
            return Err(GroupReadError::TooMany(nr));
        }
        let nr = nr as usize;
        let need = (3 + 2 * nr) * 8;
        if buf.len() < need {
            return Err(GroupReadError::Short {
                have: buf.len(),
                need,
            });
        }
        let values = (0..nr)
            .map(|i| {
                Ok(GroupValue {
                    value: word(3 + 2 * i)?,
                    id: word(4 + 2 * i)?,
                })
            })
            .collect::<Result<Vec<_>, GroupReadError>>()?;
        Ok((
            GroupRead {
                time_enabled: word(1)?,
                time_running: word(2)?,
                values,
            },
            need,
        ))
    }

    /// True when the group was multiplexed (ran less than it was enabled).
    pub fn multiplexed(&self) -> bool {
        self.time_running < self.time_enabled
    }

    /// Count of member `i` scaled to the whole enabled time; None when the group never
    /// ran (nothing was counted, so nothing can be said).
    pub fn scaled(&self, i: usize) -> Option<f64> {
        let v = self.values.get(i)?;
        if self.time_running == 0 {
            return None;
        }
        if !self.multiplexed() {
            return Some(v.value as f64);
        }
        Some(v.value as f64 * self.time_enabled as f64 / self.time_running as f64)
    }

    /// The value of the member with this id.
    pub fn by_id(&self, id: u64) -> Option<u64> {
        self.values.iter().find(|v| v.id == id).map(|v| v.value)
    }

    /// Differences from an earlier read of the same group (per-sample deltas), with
    /// the same id order; None if the groups differ.
    pub fn delta(&self, earlier: &GroupRead) -> Option<GroupRead> {
        if self.values.len() != earlier.values.len() {
            return None;
        }
        let values = self
            .values
            .iter()
            .zip(&earlier.values)
            .map(|(a, b)| {
                (a.id == b.id).then(|| GroupValue {
                    value: a.value.saturating_sub(b.value),
                    id: a.id,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(GroupRead {
            time_enabled: self.time_enabled.saturating_sub(earlier.time_enabled),
            time_running: self.time_running.saturating_sub(earlier.time_running),
            values,
        })
    }
}

/// perf's brace syntax for a group, `{leader,member,...}` (an optional `:S` or other
/// modifier after the brace is accepted: the leader always samples and the members are
/// always read with each sample). Commas inside `pmu/.../` terms do not split. None
/// when `arg` is not a group; an error message for a malformed one.
pub fn parse_group_syntax(arg: &str) -> Option<Result<Vec<String>, String>> {
    let a = arg.trim();
    let inner = a.strip_prefix('{')?;
    let Some(close) = inner.rfind('}') else {
        return Some(Err(format!(
            "-e '{arg}': a group opened with '{{' needs a closing '}}'"
        )));
    };
    let after = &inner[close + 1..];
    if !(after.is_empty() || after.starts_with(':')) {
        return Some(Err(format!(
            "-e '{arg}': unexpected '{after}' after the group; write {{leader,member,...}}"
        )));
    }
    let body = &inner[..close];
    let mut names = Vec::new();
    let mut cur = String::new();
    let mut slashes = 0usize;
    for c in body.chars() {
        match c {
            '/' => {
                slashes += 1;
                cur.push(c);
            }
            // Inside pmu/terms/ (an odd number of slashes so far) a comma separates terms.
            ',' if slashes.is_multiple_of(2) => names.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    names.push(cur);
    let names: Vec<String> = names.iter().map(|n| n.trim().to_string()).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Some(Err(format!(
            "-e '{arg}': empty event name in the group; write {{leader,member,...}}"
        )));
    }
    if names.len() < 2 {
        return Some(Err(format!(
            "-e '{arg}': a group needs a sampling leader and at least one member read with each sample"
        )));
    }
    Some(Ok(names))
}

/// The read block of one `PERF_RECORD_SAMPLE`: where it sits in the record body and
/// what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleRead {
    /// Byte range of the block within the record body (after the 8-byte header).
    pub range: std::ops::Range<usize>,
    /// The values.
    pub read: GroupRead,
}

/// Byte offset of the `PERF_SAMPLE_READ` block in a sample body with this
/// `sample_type`: it follows IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU and
/// PERIOD (one u64 each when present) and precedes CALLCHAIN (perf_event_open(2),
/// "PERF_RECORD_SAMPLE").
pub fn read_block_offset(sample_type: u64) -> usize {
    [
        sys::PERF_SAMPLE_IDENTIFIER,
        sys::PERF_SAMPLE_IP,
        sys::PERF_SAMPLE_TID,
        sys::PERF_SAMPLE_TIME,
        sys::PERF_SAMPLE_ADDR,
        sys::PERF_SAMPLE_ID,
        sys::PERF_SAMPLE_STREAM_ID,
        sys::PERF_SAMPLE_CPU,
        sys::PERF_SAMPLE_PERIOD,
    ]
    .iter()
    .filter(|&&bit| sample_type & bit as u64 != 0)
    .count()
        * 8
}

/// The read block of a sample body (record header excluded), or None when the
/// sample type has no `PERF_SAMPLE_READ`.
pub fn sample_read(
    body: &[u8],
    sample_type: u64,
    read_format: u64,
) -> Result<Option<SampleRead>, GroupReadError> {
    if sample_type & sys::PERF_SAMPLE_READ as u64 == 0 {
        return Ok(None);
    }
    let start = read_block_offset(sample_type);
    let rest = body.get(start..).ok_or(GroupReadError::Short {
        have: body.len(),
        need: start,
    })?;
    let (read, used) = GroupRead::parse_format(rest, read_format)?;
    Ok(Some(SampleRead {
        range: start..start + used,
        read,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventEnv, resolve_all};

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn parse_and_scale_multiplexed_group() {
        // 3 members, enabled 1000 ns, ran 250 ns: counts are a quarter of the truth.
        let b = bytes(&[3, 1000, 250, 100, 7, 40, 8, 0, 9, 0xdead]);
        let (g, used) = GroupRead::parse(&b).unwrap();
        assert_eq!(used, 72);
        assert!(g.multiplexed());
        assert_eq!(g.scaled(0), Some(400.0));
        assert_eq!(g.scaled(1), Some(160.0));
        assert_eq!(g.by_id(9), Some(0));
        assert_eq!(g.scaled(3), None);
        // Not multiplexed: values untouched.
        let (g, _) = GroupRead::parse(&bytes(&[1, 500, 500, 33, 1])).unwrap();
        assert!(!g.multiplexed());
        assert_eq!(g.scaled(0), Some(33.0));
        // Never ran: no value, not zero.
        let (g, _) = GroupRead::parse(&bytes(&[1, 500, 0, 0, 1])).unwrap();
        assert_eq!(g.scaled(0), None);
    }

    const S_IDENT: u32 = sys::PERF_SAMPLE_IDENTIFIER;
    const S_READ: u32 = sys::PERF_SAMPLE_READ;

    #[test]
    fn sample_read_block_after_the_fixed_fields_multiplexed_group() {
        // IDENTIFIER IP TID TIME CPU PERIOD READ CALLCHAIN, the collector's layout.
        let st = (S_IDENT
            | sys::PERF_SAMPLE_IP
            | sys::PERF_SAMPLE_TID
            | sys::PERF_SAMPLE_TIME
            | sys::PERF_SAMPLE_CPU
            | sys::PERF_SAMPLE_PERIOD
            | S_READ
            | sys::PERF_SAMPLE_CALLCHAIN) as u64;
        let tid = (7u64 << 32) | 7; // pid, tid as two u32s
        let fixed = [11, 0x401000, tid, 123_456, 1, 1_000_000];
        // Group of 3, enabled 1000 ns, running 400 ns: multiplexed.
        let read = [3, 1000, 400, 5000, 11, 800, 12, 9, 13];
        let chain = [2, 0x401000, 0x402000];
        let body = bytes(&[&fixed[..], &read, &chain].concat());
        let r = sample_read(&body, st, GROUP_READ_FORMAT).unwrap().unwrap();
        assert_eq!(r.range, 48..48 + 72);
        assert!(r.read.multiplexed());
        assert_eq!(r.read.by_id(12), Some(800));
        assert_eq!(r.read.scaled(1), Some(2000.0));
        assert_eq!(
            r.read.values.iter().map(|v| v.id).collect::<Vec<_>>(),
            [11, 12, 13]
        );
        // What follows the block is the call chain.
        assert_eq!(&body[r.range.end..r.range.end + 8], &2u64.to_ne_bytes());
    }

    #[test]
    fn sample_read_offsets_follow_every_field_before_read() {
        // IP TID ADDR ID STREAM_ID READ (no IDENTIFIER, no TIME): 5 words before READ.
        let st = (sys::PERF_SAMPLE_IP
            | sys::PERF_SAMPLE_TID
            | sys::PERF_SAMPLE_ADDR
            | sys::PERF_SAMPLE_ID
            | sys::PERF_SAMPLE_STREAM_ID
            | S_READ) as u64;
        assert_eq!(read_block_offset(st), 40);
        // Single value (no GROUP) with enabled time and id.
        let rf = (sys::PERF_FORMAT_TOTAL_TIME_ENABLED | sys::PERF_FORMAT_ID) as u64;
        let body = bytes(&[1, 2, 3, 4, 5, 777, 900, 42, 0xabc]);
        let r = sample_read(&body, st, rf).unwrap().unwrap();
        assert_eq!(r.range, 40..64);
        assert_eq!(r.read.values, [GroupValue { value: 777, id: 42 }]);
        assert_eq!((r.read.time_enabled, r.read.time_running), (900, 0));
        // GROUP with LOST counts (kernel 6.0+): value, id, lost per member.
        let rf = (sys::PERF_FORMAT_GROUP | sys::PERF_FORMAT_ID | sys::PERF_FORMAT_LOST) as u64;
        let st = (sys::PERF_SAMPLE_TID | S_READ) as u64;
        let body = bytes(&[9, 2, 10, 1, 0, 20, 2, 5, 0xfeed]);
        let r = sample_read(&body, st, rf).unwrap().unwrap();
        assert_eq!(r.range, 8..64);
        assert_eq!(r.read.by_id(2), Some(20));
        assert!(!r.read.multiplexed());
        // No READ in the sample type: nothing to decode.
        assert_eq!(
            sample_read(&body, sys::PERF_SAMPLE_TID as u64, rf).unwrap(),
            None
        );
        // Cut short: an error, never a panic.
        assert!(sample_read(&body[..40], st, rf).is_err());
        assert!(sample_read(&body[..4], (S_IDENT | S_READ) as u64, rf).is_err());
    }

    #[test]
    fn group_syntax() {
        assert_eq!(parse_group_syntax("cpu-clock"), None);
        assert_eq!(
            parse_group_syntax("{cpu-clock,page-faults,context-switches}"),
            Some(Ok(vec![
                "cpu-clock".to_string(),
                "page-faults".into(),
                "context-switches".into()
            ]))
        );
        // perf's :S and commas inside pmu terms.
        assert_eq!(
            parse_group_syntax(" {cpu/event=0x3c,umask=0x0/, instructions}:S "),
            Some(Ok(vec![
                "cpu/event=0x3c,umask=0x0/".to_string(),
                "instructions".into()
            ]))
        );
        for bad in ["{cycles", "{cycles}", "{cycles,,instructions}", "{a,b}x"] {
            assert!(
                matches!(parse_group_syntax(bad), Some(Err(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn parse_rejects_truncated_and_corrupt() {
        let b = bytes(&[2, 10, 10, 1, 1]);
        assert_eq!(
            GroupRead::parse(&b).unwrap_err(),
            GroupReadError::Short { have: 40, need: 56 }
        );
        assert!(GroupRead::parse(&[1, 2, 3]).is_err());
        assert_eq!(
            GroupRead::parse(&bytes(&[1 << 40, 0, 0])).unwrap_err(),
            GroupReadError::TooMany(1 << 40)
        );
    }

    #[test]
    fn attrs_leader_samples_members_count() {
        let env = EventEnv::system();
        let l = resolve_all("cpu-clock", &env).unwrap().remove(0);
        let m = resolve_all("page-faults", &env).unwrap().remove(0);
        let a = group_attrs(&l, &[m], &GroupOptions::default());
        assert_eq!(a.len(), 2);
        assert_ne!(a[0].sample_type & sys::PERF_SAMPLE_READ as u64, 0);
        assert_eq!(a[0].freq(), 1);
        assert_eq!(a[0].disabled(), 1);
        assert_eq!(a[1].disabled(), 0);
        // SAFETY: reading a plain u64 out of a union of two u64s.
        assert_eq!(unsafe { a[1].__bindgen_anon_1.sample_period }, 0);
        assert!(a.iter().all(|x| x.read_format == GROUP_READ_FORMAT));
    }

    /// python3 running `script`, which first waits for a byte on stdin (so events can
    /// be opened before it does anything). None, with a note, when python3 is missing.
    fn python_waiting_on_stdin(script: &str) -> Option<std::process::Child> {
        match std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("skipping: python3 not runnable: {e}");
                None
            }
        }
    }

    /// The attrs of a cpu-clock leader with page-faults and context-switches members
    /// (`opts`), and [`python_waiting_on_stdin`] running `script` with its pid, for the
    /// group to be opened on. None when python3 is missing.
    fn clock_group_and_child(
        opts: &GroupOptions,
        script: &str,
    ) -> Option<(Vec<sys::perf_event_attr>, std::process::Child, i32)> {
        let env = EventEnv::system();
        let spec = |n: &str| resolve_all(n, &env).unwrap().remove(0);
        let members = [spec("page-faults"), spec("context-switches")];
        let attrs = group_attrs(&spec("cpu-clock"), &members, opts);
        let child = python_waiting_on_stdin(script)?;
        let pid = child.id() as i32;
        Some((attrs, child, pid))
    }

    /// A perf-event2 builder for exactly `attr`, on `pid`, any CPU.
    fn builder_for(attr: &sys::perf_event_attr, pid: i32) -> perf_event::Builder<'static> {
        let mut b = perf_event::Builder::new(perf_event::events::Software::DUMMY);
        *b.attrs_mut() = *attr;
        b.observe_pid(pid);
        b.any_cpu();
        b
    }

    #[test]
    fn software_group_on_a_child_counts_its_faults_and_switches() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        // The group machinery for real: a cpu-clock leader with page-faults and
        // context-switches members, opened with perf-event2 on a child process that
        // faults in a known number of pages and sleeps a known number of times.
        // Context switches happen in the kernel: counting them needs exclude_kernel off,
        // which perf_event_paranoid 2 allows only to root/CAP_PERFMON.
        let root = nix::unistd::geteuid().is_root();
        let opts = GroupOptions {
            sampling: Sampling::Period(1_000_000),
            exclude_kernel: !root,
            ..Default::default()
        };
        // The child waits for a byte on stdin, touches 2000 fresh pages (python3 writes
        // into a bytearray), then sleeps 20 times.
        let script = "import sys,time\nsys.stdin.read(1)\nb=bytearray(2000*4096)\nfor i in range(0,len(b),4096): b[i]=1\nfor _ in range(20): time.sleep(0.002)\n";
        let Some((attrs, mut child, pid)) = clock_group_and_child(&opts, script) else {
            return;
        };
        let build = |a: &sys::perf_event_attr| builder_for(a, pid);
        // Open on the running child: enable_on_exec does not apply, enable by ioctl.
        let mut leader = match build(&attrs[0]).build() {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                panic!("perf_event_open(cpu-clock group leader) failed: {e}");
            }
        };
        let _m1 = build(&attrs[1]).build_with_group(&mut leader).unwrap();
        let _m2 = build(&attrs[2]).build_with_group(&mut leader).unwrap();
        leader.enable_group().unwrap();
        // Release the child (it waits on stdin so nothing is missed before enabling).
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"g");
        }
        let status = child.wait().unwrap();
        assert!(status.success());
        // read(2) on the leader: the group layout this module decodes.
        let mut buf = vec![0u8; 256];
        let fd = leader.as_raw_fd();
        // SAFETY: fd is the live leader's descriptor; File::from_raw_fd would close it
        // on drop, so wrap it in ManuallyDrop.
        let mut f = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        let n = f.read(&mut buf).unwrap();
        let (g, used) = GroupRead::parse(&buf[..n]).unwrap();
        assert_eq!(used, n);
        assert_eq!(g.values.len(), 3);
        assert!(g.time_enabled > 0 && g.time_running > 0);
        // Software events are never multiplexed.
        assert!(!g.multiplexed());
        let faults = g.scaled(1).unwrap();
        let switches = g.scaled(2).unwrap();
        // At least the 2000 pages touched (Python's own start-up adds more).
        assert!(faults >= 2000.0, "page faults {faults}");
        if root {
            assert!(switches >= 20.0, "context switches {switches}");
        } else {
            assert_eq!(switches, 0.0, "user-only counting sees no switches");
        }
        // The cpu-clock leader counts ns on CPU: positive and below enabled time.
        let cpu_ns = g.scaled(0).unwrap();
        assert!(cpu_ns > 0.0 && cpu_ns <= g.time_enabled as f64 * 1.05);
        // Ids match the members' own ids.
        assert_eq!(g.values[0].id, leader.id());
    }

    /// PERF_SAMPLE_READ for real: each ring-buffer sample of a cpu-clock leader carries
    /// the group's values (leader, page-faults, context-switches), decoded by
    /// [`GroupRead::parse`] after the fixed sample fields.
    #[test]
    fn each_sample_carries_the_group_values() {
        use std::io::Write;
        let opts = GroupOptions {
            sampling: Sampling::Period(2_000_000), // every 2 ms of CPU
            ..Default::default()
        };
        // Busy for ~150 ms of CPU while faulting pages in, after a byte on stdin.
        let script = "import sys,time\nsys.stdin.read(1)\nb=bytearray(3000*4096)\nt=time.process_time()\ni=0\nwhile time.process_time()-t<0.15:\n    b[(i*4096)%len(b)]=1; i+=1\n";
        let Some((attrs, mut child, pid)) = clock_group_and_child(&opts, script) else {
            return;
        };
        let build = |a: &sys::perf_event_attr| builder_for(a, pid);
        let mut leader = build(&attrs[0]).build().unwrap();
        let m1 = build(&attrs[1]).build_with_group(&mut leader).unwrap();
        let m2 = build(&attrs[2]).build_with_group(&mut leader).unwrap();
        let ids = [leader.id(), m1.id(), m2.id()];
        let mut sampler = leader.sampled(1 << 18).unwrap();
        sampler.enable_group().unwrap();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"g");
        }
        let mut reads = Vec::new();
        let mut done = false;
        loop {
            while let Some(r) = sampler.next_record() {
                if r.ty() == sys::PERF_RECORD_SAMPLE {
                    let body = r.to_vec();
                    // IP, TID (pid+tid), TIME, CPU (cpu+res), PERIOD: 5 u64 before READ.
                    let (g, _) = GroupRead::parse(&body[40..]).unwrap();
                    reads.push(g);
                }
            }
            if done {
                break;
            }
            done = child.try_wait().unwrap().is_some();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(reads.len() >= 20, "{} samples", reads.len());
        for g in &reads {
            assert_eq!(g.values.iter().map(|v| v.id).collect::<Vec<_>>(), ids);
            assert!(!g.multiplexed());
        }
        // Counts only grow from sample to sample, and the faults cover the 3000 pages.
        for w in reads.windows(2) {
            let d = w[1].delta(&w[0]).unwrap();
            assert!(d.time_enabled > 0);
        }
        let last = reads.last().unwrap();
        assert!(
            last.values[1].value >= 3000,
            "faults {}",
            last.values[1].value
        );
        // The leader's count (ns of CPU) advances at least one period per sample.
        let first = &reads[0];
        let per = (last.values[0].value - first.values[0].value) as f64 / (reads.len() - 1) as f64;
        assert!(per >= 1_900_000.0, "ns per sample {per}");
    }
}
