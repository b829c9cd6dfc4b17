//! Counter-group values read with each sample (`PERF_SAMPLE_READ`), turned into
//! per-sample counts.
//!
//! A group's read values are cumulative for one *instance* of the group: the per-CPU
//! event on one thread (with `inherit`, each thread gets its own child events, whose
//! sampled values are that thread's own counts, kernel 6.12+). An instance is keyed by
//! (leader id, tid, cpu): ids in samples and read values are the *primary* event ids
//! (the ones in perf.data's id arrays), the same for every inherited child, and a
//! per-CPU event only counts on its CPU. Each sample gets the difference from the
//! previous sample of its instance; the first sample of an instance (or one whose
//! values went backwards: a reused tid) gets its full values.
//!
//! Multiplexing: the kernel reports `time_enabled` and `time_running` per instance.
//! For per-CPU events on a task, `time_running < time_enabled` also whenever the thread
//! ran on *another* CPU (the instance is enabled but cannot count there), so a single
//! instance's times do not say whether the PMU multiplexed the group. Per thread and
//! group, the instances on all CPUs together ran `Σ running` out of `enabled` (the
//! thread's time, the same clock for all its instances): the thread's group was on the
//! PMU for the fraction `R = Σ running / max enabled`. When `R < 0.95` the thread's
//! counts are scaled by `1/R` and its samples flagged as multiplexed. Groups of
//! software events only are never multiplexed by the kernel and are never scaled (the
//! 5% tolerance absorbs the counts after each CPU's last sample, which no sample
//! reports).

use rustc_hash::FxHashMap;

use crate::events::group::GroupRead;

/// A thread's group on the PMU less than this fraction of its time is multiplexed.
pub const MULTIPLEX_THRESHOLD: f64 = 0.95;

/// One instance of a group: (leader id, tid, cpu).
pub type InstanceKey = (u64, u32, u32);

/// A thread's group: (tid, leader attr index, number of values read). The Python
/// agent's events share the leader's attr but read alone (one value): a family apart.
pub type ThreadGroupKey = (u32, u32, u32);

/// Follows the cumulative group values of every instance.
#[derive(Default)]
pub struct GroupTracker {
    last: FxHashMap<InstanceKey, GroupRead>,
    /// Per thread group: per CPU the latest (time_enabled, time_running), whether all
    /// members are software events, and the samples seen.
    threads: FxHashMap<ThreadGroupKey, ThreadTimes>,
}

#[derive(Default)]
struct ThreadTimes {
    per_cpu: FxHashMap<u32, (u64, u64)>,
    software_only: bool,
    samples: u64,
}

/// How a thread's group is to be scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThreadScale {
    /// Multiply the thread's counts by this (1.0 when not multiplexed).
    pub factor: f64,
    /// True when the PMU multiplexed the group (factor > 1).
    pub multiplexed: bool,
    /// Samples of the thread that read the group.
    pub samples: u64,
}

impl GroupTracker {
    /// A sample of `instance` on thread group `thread` read `read`: returns the counts
    /// since the previous sample of the instance, as (event id, count), leader first.
    /// `software_only`: every member is a software event (never multiplexed).
    pub fn on_sample(
        &mut self,
        instance: InstanceKey,
        thread: ThreadGroupKey,
        software_only: bool,
        read: GroupRead,
    ) -> Vec<(u64, u64)> {
        let deltas = match self.last.get(&instance) {
            Some(prev) if continues(prev, &read) => read
                .values
                .iter()
                .zip(&prev.values)
                .map(|(a, b)| (a.id, a.value - b.value))
                .collect(),
            _ => read.values.iter().map(|v| (v.id, v.value)).collect(),
        };
        let t = self.threads.entry(thread).or_default();
        t.software_only = software_only;
        t.samples += 1;
        if read.time_enabled > 0 || read.time_running > 0 {
            t.per_cpu
                .insert(instance.2, (read.time_enabled, read.time_running));
        }
        self.last.insert(instance, read);
        deltas
    }

    /// The scaling of every thread group seen.
    pub fn scales(&self) -> FxHashMap<ThreadGroupKey, ThreadScale> {
        self.threads
            .iter()
            .map(|(k, t)| {
                let enabled = t.per_cpu.values().map(|x| x.0).max().unwrap_or(0);
                let running: u64 = t.per_cpu.values().map(|x| x.1).sum();
                let ratio = if enabled == 0 {
                    1.0
                } else {
                    (running as f64 / enabled as f64).min(1.0)
                };
                let multiplexed = !t.software_only && running > 0 && ratio < MULTIPLEX_THRESHOLD;
                (
                    *k,
                    ThreadScale {
                        factor: if multiplexed { 1.0 / ratio } else { 1.0 },
                        multiplexed,
                        samples: t.samples,
                    },
                )
            })
            .collect()
    }
}

/// `read` continues `prev` (same members, nothing went backwards).
fn continues(prev: &GroupRead, read: &GroupRead) -> bool {
    prev.values.len() == read.values.len()
        && prev
            .values
            .iter()
            .zip(&read.values)
            .all(|(a, b)| a.id == b.id && b.value >= a.value)
        && read.time_enabled >= prev.time_enabled
        && read.time_running >= prev.time_running
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::group::GroupValue;

    fn read(te: u64, tr: u64, vals: &[(u64, u64)]) -> GroupRead {
        GroupRead {
            time_enabled: te,
            time_running: tr,
            values: vals
                .iter()
                .map(|&(id, value)| GroupValue { value, id })
                .collect(),
        }
    }

    /// A whole sample with a group read and a call chain: the read values come from
    /// our parser, everything else (including the call chain after the block, which
    /// linux-perf-event-reader 0.10 would misplace) from the library.
    #[test]
    fn sample_with_read_keeps_the_fields_around_the_block() {
        use linux_perf_data::linux_perf_event_reader::{ReadFormat, SampleFormat};
        use perf_event_open_sys::bindings as b;
        let st = (b::PERF_SAMPLE_IDENTIFIER
            | b::PERF_SAMPLE_IP
            | b::PERF_SAMPLE_TID
            | b::PERF_SAMPLE_TIME
            | b::PERF_SAMPLE_CPU
            | b::PERF_SAMPLE_PERIOD
            | b::PERF_SAMPLE_READ
            | b::PERF_SAMPLE_CALLCHAIN) as u64;
        let rf = crate::events::group::GROUP_READ_FORMAT;
        let mut info = crate::raw::records::test_parse_info(
            SampleFormat::from_bits_truncate(st),
            ReadFormat::from_bits_truncate(rf),
        );
        info.id_parse_info.sample_record_id_offset_from_start = Some(0);
        info.sample_record_time_offset_from_start = Some(24);
        let words: Vec<u64> = vec![
            11,            // identifier
            0x401000,      // ip
            (8 << 32) | 7, // pid 7, tid 8
            5_000,         // time
            1,             // cpu 1, res 0
            250_000,       // period
            3,
            900,
            300, // group: nr, enabled, running
            1_000_000,
            11, // leader
            4_000,
            12, // member 1
            17,
            13, // member 2
            3,
            0x401000,
            0x402000,
            0x403000, // callchain
        ];
        let body: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let (s, read) = crate::finalize::process::sample_with_read(&body, 2, info, st, rf).unwrap();
        assert_eq!((s.pid, s.tid, s.cpu), (Some(7), Some(8), Some(1)));
        assert_eq!(
            (s.id, s.timestamp, s.period),
            (Some(11), Some(5_000), Some(250_000))
        );
        let chain: Vec<u64> = (0..3)
            .filter_map(|i| s.callchain.as_ref()?.get(i))
            .collect();
        assert_eq!(chain, [0x401000, 0x402000, 0x403000]);
        assert_eq!(read.values.len(), 3);
        assert_eq!(read.by_id(12), Some(4_000));
        assert!(read.multiplexed());
        // A block that announces more members than the record holds: refused.
        let mut bad = words.clone();
        bad[6] = 9;
        let body: Vec<u8> = bad.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(crate::finalize::process::sample_with_read(&body, 2, info, st, rf).is_none());
    }

    #[test]
    fn deltas_per_instance_first_gets_full_value() {
        let mut t = GroupTracker::default();
        let th = (100, 0, 2);
        // Instance on cpu 0 and on cpu 1 of the same thread: independent counters.
        let d = t.on_sample((7, 100, 0), th, true, read(10, 10, &[(7, 1000), (8, 5)]));
        assert_eq!(d, [(7, 1000), (8, 5)]);
        let d = t.on_sample((9, 100, 1), th, true, read(20, 8, &[(9, 700), (10, 2)]));
        assert_eq!(d, [(9, 700), (10, 2)]);
        let d = t.on_sample((7, 100, 0), th, true, read(30, 20, &[(7, 2500), (8, 45)]));
        assert_eq!(d, [(7, 1500), (8, 40)]);
        // Another thread's instance of the same event id starts from its own zero.
        let d = t.on_sample(
            (7, 101, 0),
            (101, 0, 2),
            true,
            read(5, 5, &[(7, 300), (8, 1)]),
        );
        assert_eq!(d, [(7, 300), (8, 1)]);
        // Values going backwards (a reused tid): a new instance, full values.
        let d = t.on_sample((7, 100, 0), th, true, read(1, 1, &[(7, 50), (8, 0)]));
        assert_eq!(d, [(7, 50), (8, 0)]);
    }

    #[test]
    fn software_groups_are_never_scaled_even_when_a_cpu_instance_ran_less() {
        // A thread that ran 30 ns on cpu 0 and 20 ns on cpu 1: each instance alone
        // looks "multiplexed" (20/50, 30/50) but together they ran all the time.
        let mut t = GroupTracker::default();
        let th = (100, 0, 2);
        t.on_sample((7, 100, 0), th, true, read(40, 30, &[(7, 1), (8, 1)]));
        t.on_sample((9, 100, 1), th, true, read(50, 20, &[(9, 1), (10, 1)]));
        let s = t.scales()[&th];
        assert!(!s.multiplexed);
        assert_eq!(s.factor, 1.0);
        assert_eq!(s.samples, 2);
    }

    #[test]
    fn hardware_group_on_the_pmu_half_the_time_is_scaled_by_two() {
        let mut t = GroupTracker::default();
        let th = (100, 0, 2);
        // 100 ns of thread time; on the PMU 30 ns on cpu 0 and 20 ns on cpu 1.
        t.on_sample((7, 100, 0), th, false, read(80, 30, &[(7, 3000), (8, 60)]));
        t.on_sample(
            (9, 100, 1),
            th,
            false,
            read(100, 20, &[(9, 2000), (10, 40)]),
        );
        let s = t.scales()[&th];
        assert!(s.multiplexed);
        assert!((s.factor - 2.0).abs() < 1e-9, "{s:?}");
        // The same thread with both CPUs on the PMU all the time: not multiplexed.
        let mut t = GroupTracker::default();
        t.on_sample((7, 100, 0), th, false, read(60, 60, &[(7, 1), (8, 1)]));
        t.on_sample((9, 100, 1), th, false, read(100, 40, &[(9, 1), (10, 1)]));
        assert!(!t.scales()[&th].multiplexed);
    }
}
