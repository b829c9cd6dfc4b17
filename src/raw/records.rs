//! The records of a perf.data data section, in time order, without copying them.
//!
//! linux-perf-data reads the header, attributes and feature sections; the records are
//! read here straight out of the mapped file (linux-perf-data copies each one into a
//! buffer, which was a third of finalize's time on large files). Ordering follows
//! perf's rule for `PERF_RECORD_FINISHED_ROUND`: records of a round are sorted by time,
//! and those not later than the previous round's newest record are handed out; the
//! rest wait for the next round (a drain pass over several rings overlaps in time).

use linux_perf_data::linux_perf_event_reader::{
    Endianness, PerfEventAttr, RawData, RawEventRecord, RecordParseInfo, RecordType, SampleFormat,
};

use perf_event_open_sys::bindings::PERF_RECORD_SAMPLE;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// `PERF_RECORD_FINISHED_ROUND` (a record of perf's own, not in the kernel's header).
const FINISHED_ROUND: u32 = 68;

/// Whether the call chain at the start of `rest` (`u64 nr; u64 ips[nr]`) fits in it.
/// linux-perf-event-reader 0.10 computes `nr * 8` unchecked (a panic with overflow
/// checks on, a wrapped length without), so a sample is checked here first.
fn callchain_fits(rest: &[u8], endian: Endianness) -> bool {
    let Some(nr) = rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return false;
    };
    let nr = match endian {
        Endianness::LittleEndian => u64::from_le_bytes(nr),
        Endianness::BigEndian => u64::from_be_bytes(nr),
    };
    nr.checked_mul(8)
        .is_some_and(|n| n <= (rest.len() - 8) as u64)
}

/// Whether a sample body's call chain (when its format has one) fits in the body: after
/// the fixed fields and the read block (as the kernel lays it out, the way
/// `events::group::sample_read` cuts it out before the crate parses the rest).
pub fn sample_callchain_fits(body: &[u8], info: &RecordParseInfo) -> bool {
    let format = info.sample_format;
    if !format.contains(SampleFormat::CALLCHAIN) {
        return true;
    }
    // The fixed fields before the read block (or the call chain when none).
    let mut off = crate::events::group::read_block_offset(format.bits());
    if format.contains(SampleFormat::READ) {
        match crate::events::group::sample_read(body, format.bits(), info.read_format.bits()) {
            Ok(Some(r)) => off = r.range.end,
            _ => return false,
        }
    }
    body.get(off..)
        .is_some_and(|rest| callchain_fits(rest, info.endian))
}

/// One record waiting to be handed out: where it is in the data section, and what
/// ordering and parsing need of its header.
#[derive(Clone, Copy)]
struct Pending {
    time: u64,
    seq: u64,
    offset: usize,
    len: usize,
    ty: u32,
    misc: u16,
    attr: usize,
}

/// Data sections at least this large are walked and handled on two threads
/// ([`for_each_sorted`]); a smaller one (an MPI rank's, read beside others with `-j`)
/// costs less than a thread's start and hand-overs.
const PIPELINE_MIN_BYTES: usize = 32 << 20;

/// Records handed from the walking thread to the handling one at a time (at most so
/// many, or so many bytes of records), and batches in flight: what is mapped ahead of
/// the handler stays bounded (~16 MiB; released behind it as before).
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 4 << 20;
const BATCHES_IN_FLIGHT: usize = 2;

/// A run of ordered records, and the release point once they are handled.
struct Batch {
    records: Vec<Pending>,
    release: Option<usize>,
}

/// Walks the record headers of `data` in file order and hands out the records in time
/// order, `ready(records, release)`: each round's records that are ready, then the
/// offset before which no record will be touched again (none after the last ones).
/// The walk stops when `ready` breaks.
fn walk_sorted(
    data: &[u8],
    infos: &[RecordParseInfo],
    by_id: &HashMap<u64, usize>,
    mut ready: impl FnMut(std::vec::Drain<'_, Pending>, Option<usize>) -> ControlFlow<()>,
) {
    let Some(&first) = infos.first() else {
        return;
    };
    let mut queue: Vec<Pending> = Vec::new();
    let mut round: Vec<Pending> = Vec::new();
    let mut prev_round_max = 0u64;
    let mut seq = 0u64;
    let mut off = 0usize;
    while off + 8 <= data.len() {
        let ty = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
        let misc = u16::from_le_bytes([data[off + 4], data[off + 5]]);
        let size = u16::from_le_bytes([data[off + 6], data[off + 7]]) as usize;
        if size < 8 || off + size > data.len() {
            break;
        }
        let body = &data[off + 8..off + size];
        if ty == FINISHED_ROUND {
            let round_max = round.iter().map(|p| p.time).max().unwrap_or(0);
            queue.append(&mut round);
            // The queue is sorted and a round is a few sorted runs (one per CPU's
            // buffer): the stable sort merges runs where the unstable one sorted all
            // again. Keys are distinct (seq), so the order is the same.
            queue.sort_by_key(|p| (p.time, p.seq));
            let n = queue.partition_point(|p| p.time <= prev_round_max);
            prev_round_max = prev_round_max.max(round_max);
            let release = queue[n..].iter().map(|p| p.offset).min().unwrap_or(off);
            if ready(queue.drain(..n), Some(release)).is_break() {
                return;
            }
        } else if ty < 64 {
            let attr = if infos.len() == 1 {
                0
            } else {
                RawEventRecord::new(RecordType(ty), misc, RawData::Single(body), first)
                    .id()
                    .and_then(|id| by_id.get(&id).copied())
                    .unwrap_or(0)
            };
            let time =
                RawEventRecord::new(RecordType(ty), misc, RawData::Single(body), infos[attr])
                    .timestamp()
                    .unwrap_or(0);
            round.push(Pending {
                time,
                seq,
                offset: off + 8,
                len: size - 8,
                ty,
                misc,
                attr,
            });
            seq += 1;
        }
        off += size;
    }
    queue.append(&mut round);
    queue.sort_unstable_by_key(|p| (p.time, p.seq));
    let _ = ready(queue.drain(..), None);
}

/// Iterates the data section `data` (the whole data section, record headers included)
/// of a perf.data whose events are `attrs` (with their ids), calling
/// `f(attr_index, record)` in time order.
/// After each round, `release(offset)` says that no record before `offset` of `data`
/// will be touched again.
///
/// A large section is read on two threads, in the same order as on one: a walker
/// walks the headers (it takes the page faults of mapping the file), orders each round
/// and hands the ordered records over in batches; the calling thread handles them with
/// `f` and hands each batch back, and the walker then releases what is behind it
/// (`release` runs on the walker's thread: unmapping pages is a third of what reading
/// costs the kernel, and the handler has more to do).
pub fn for_each_sorted<'a>(
    data: &'a [u8],
    attrs: &[(PerfEventAttr, Vec<u64>)],
    f: impl FnMut(usize, RawEventRecord<'a>),
    release: impl Fn(usize) + Sync,
) {
    let infos: Vec<RecordParseInfo> = attrs
        .iter()
        .map(|(a, _)| RecordParseInfo::new(a, Endianness::LittleEndian))
        .collect();
    let mut by_id = HashMap::new();
    for (i, (_, ids)) in attrs.iter().enumerate() {
        for id in ids {
            by_id.insert(*id, i);
        }
    }
    let pipelined = data.len() >= PIPELINE_MIN_BYTES;
    sorted_records(data, &infos, &by_id, f, release, pipelined);
}

/// [`for_each_sorted`] with the parse info and attr index of each event id, on one
/// thread or two.
fn sorted_records<'a>(
    data: &'a [u8],
    infos: &[RecordParseInfo],
    by_id: &HashMap<u64, usize>,
    mut f: impl FnMut(usize, RawEventRecord<'a>),
    release: impl Fn(usize) + Sync,
    pipelined: bool,
) {
    let mut emit = |p: &Pending| {
        let bytes = &data[p.offset..p.offset + p.len];
        // A sample whose call chain would run past its record is malformed: skipped
        // (linux-perf-event-reader would overflow computing its length).
        if p.ty == PERF_RECORD_SAMPLE && !sample_callchain_fits(bytes, &infos[p.attr]) {
            return;
        }
        let body = RawData::Single(bytes);
        f(
            p.attr,
            RawEventRecord::new(RecordType(p.ty), p.misc, body, infos[p.attr]),
        );
    };
    if !pipelined {
        walk_sorted(data, infos, by_id, |records, at| {
            records.for_each(|p| emit(&p));
            if let Some(at) = at {
                release(at);
            }
            ControlFlow::Continue(())
        });
        return;
    }
    let (to_handler, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    // Handled batches go back to the walker: their release points, and their vectors
    // for reuse (no allocation per batch).
    let (to_walker, handled) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let release = &release;
        scope.spawn(move || {
            // A round's release point goes with the next batch sent: every record
            // handed out by then is in that batch or an earlier one.
            let mut release_at = None;
            let mut spare: Vec<Vec<Pending>> = Vec::new();
            let mut batch = Vec::with_capacity(BATCH_RECORDS);
            let mut batch_bytes = 0;
            walk_sorted(data, infos, by_id, |records, at| {
                for p in records {
                    batch.push(p);
                    batch_bytes += p.len;
                    if batch.len() < BATCH_RECORDS && batch_bytes < BATCH_BYTES {
                        continue;
                    }
                    batch_bytes = 0;
                    for back in handled.try_iter() {
                        if let Some(at) = back.release {
                            release(at);
                        }
                        spare.push(back.records);
                    }
                    let next = spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(BATCH_RECORDS));
                    let records = std::mem::replace(&mut batch, next);
                    let sent = Batch {
                        records,
                        release: release_at.take(),
                    };
                    // An error: the handler is gone (it panicked); stop walking.
                    if to_handler.send(sent).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                release_at = at.or(release_at);
                ControlFlow::Continue(())
            });
            let last = Batch {
                records: batch,
                release: None,
            };
            let _ = to_handler.send(last);
        });
        for mut batch in batches {
            batch.records.iter().for_each(&mut emit);
            batch.records.clear();
            let _ = to_walker.send(batch);
        }
    });
}

/// A little-endian parse info without ids or times in the records, for tests that
/// build records by hand (set `id_parse_info` and the time offsets where they have them).
#[cfg(test)]
pub(crate) fn test_parse_info(
    sample_format: SampleFormat,
    read_format: linux_perf_data::linux_perf_event_reader::ReadFormat,
) -> RecordParseInfo {
    use linux_perf_data::linux_perf_event_reader::{BranchSampleFormat, RecordIdParseInfo};
    RecordParseInfo {
        endian: Endianness::LittleEndian,
        sample_format,
        branch_sample_format: BranchSampleFormat::empty(),
        read_format,
        common_data_offset_from_end: None,
        sample_regs_user: 0,
        user_regs_count: 0,
        sample_regs_intr: 0,
        intr_regs_count: 0,
        id_parse_info: RecordIdParseInfo {
            nonsample_record_id_offset_from_end: None,
            sample_record_id_offset_from_start: None,
        },
        nonsample_record_time_offset_from_end: None,
        sample_record_time_offset_from_start: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_perf_data::linux_perf_event_reader::{EventRecord, ReadFormat};

    fn info(sample_format: SampleFormat, read_format: ReadFormat) -> RecordParseInfo {
        test_parse_info(sample_format, read_format)
    }

    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// fuzz/corpus/perf_data/callchain-length-overflow: `nr * 8` overflowed in
    /// linux-perf-event-reader (a panic with overflow checks on).
    #[test]
    fn a_callchain_longer_than_its_record_is_refused_before_the_crate_parses_it() {
        let i = info(
            SampleFormat::IP | SampleFormat::TID | SampleFormat::CALLCHAIN,
            ReadFormat::empty(),
        );
        let good = words(&[0x401000, 7 << 32 | 7, 2, 0x401000, 0x402000]);
        assert!(sample_callchain_fits(&good, &i));
        let parsed = RawEventRecord::new(RecordType(9), 0, RawData::Single(&good), i).parse();
        assert!(matches!(parsed, Ok(EventRecord::Sample(_))));
        for nr in [3, 1 << 61, (1 << 61) + 1, u64::MAX] {
            let bad = words(&[0x401000, 7 << 32 | 7, nr, 0x401000, 0x402000]);
            assert!(!sample_callchain_fits(&bad, &i), "nr {nr:#x}");
        }
        // Cut before nr.
        assert!(!sample_callchain_fits(&good[..12], &i));
        // A group read block first (3 members with ids): nr is after it.
        let i = info(
            SampleFormat::IP | SampleFormat::READ | SampleFormat::CALLCHAIN,
            ReadFormat::GROUP | ReadFormat::ID,
        );
        let good = words(&[0x401000, 3, 10, 1, 20, 2, 30, 3, 1, 0x401000]);
        assert!(sample_callchain_fits(&good, &i));
        let bad = words(&[0x401000, 3, 10, 1, 20, 2, 30, 3, 1 << 61, 0x401000]);
        assert!(!sample_callchain_fits(&bad, &i));
        // Formats without a call chain are not looked at.
        let i = info(SampleFormat::IP, ReadFormat::empty());
        assert!(sample_callchain_fits(&[], &i));
    }

    /// A data section of `rounds` rounds: each of samples (TID, TIME) from two
    /// "CPUs" whose times overlap the previous round's, a non-sample record (time 0)
    /// now and then, and perf's FINISHED_ROUND after each.
    fn section(rounds: u64) -> Vec<u8> {
        let mut data = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for r in 0..rounds {
            for cpu in 0..2u64 {
                let n = next() % 40;
                let mut t = r * 1000 + next() % 1500;
                for i in 0..n {
                    t += next() % 30;
                    data.extend(words(&[(24u64 << 48) | PERF_RECORD_SAMPLE as u64]));
                    data.extend(words(&[cpu << 32 | i, t]));
                }
                if next() % 4 == 0 {
                    // PERF_RECORD_FORK: no time in this parse info (0: first of all).
                    data.extend(words(&[(24u64 << 48) | 7, 1, 2]));
                }
            }
            data.extend(words(&[(8u64 << 48) | FINISHED_ROUND as u64]));
        }
        data
    }

    /// What reading `data` does, in the order it happened: `Ok(offset)` for a record
    /// handed out, `Err(offset)` for a release.
    fn read(data: &[u8], pipelined: bool) -> Vec<Result<usize, usize>> {
        let mut i = info(SampleFormat::TID | SampleFormat::TIME, ReadFormat::empty());
        i.sample_record_time_offset_from_start = Some(8);
        let log = std::sync::Mutex::new(Vec::new());
        let push = |e| log.lock().unwrap().push(e);
        sorted_records(
            data,
            &[i],
            &HashMap::new(),
            |_, r| {
                let offset = r.data.as_slice().as_ptr() as usize - data.as_ptr() as usize;
                push(Ok(offset));
            },
            |at| push(Err(at)),
            pipelined,
        );
        log.into_inner().unwrap()
    }

    #[test]
    fn two_threads_hand_out_the_records_of_one_in_the_same_order_and_release_only_behind() {
        let data = section(400);
        let one = read(&data, false);
        let two = read(&data, true);
        let handed = |log: &[Result<usize, usize>]| -> Vec<usize> {
            log.iter().filter_map(|e| e.ok()).collect()
        };
        assert_eq!(handed(&one), handed(&two));
        // Every record once, in time order as perf orders it (a round's records
        // wait for the next round when later than the previous round's newest).
        let mut all = handed(&one);
        assert!(all.len() > 3 * BATCH_RECORDS, "{} records", all.len());
        let time = |o: usize| u64::from_le_bytes(data[o + 8..o + 16].try_into().unwrap());
        let sample = |o: usize| data[o - 8] == PERF_RECORD_SAMPLE as u8;
        let times: Vec<u64> = all
            .iter()
            .filter(|&&o| sample(o))
            .map(|&o| time(o))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "out of time order");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), handed(&one).len());
        // Nothing is handed out behind a release, on one thread or two.
        for log in [&one, &two] {
            let mut released = 0;
            for e in log.iter() {
                match *e {
                    Err(at) => released = released.max(at),
                    Ok(o) => assert!(o >= released, "record at {o} after a release at {released}"),
                }
            }
            assert!(released > data.len() / 2, "released only to {released}");
        }
        assert!(two.iter().any(|e| e.is_err()));
    }
}
