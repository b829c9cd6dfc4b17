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

/// One record waiting to be handed out.
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

/// Iterates the data section `data` (the whole data section, record headers included)
/// of a perf.data whose events are `attrs` (with their ids), calling
/// `f(attr_index, record)` in time order.
/// After each round, `release(offset)` says that no record before `offset` of `data`
/// will be touched again.
pub fn for_each_sorted<'a>(
    data: &'a [u8],
    attrs: &[(PerfEventAttr, Vec<u64>)],
    mut f: impl FnMut(usize, RawEventRecord<'a>),
    mut release: impl FnMut(usize),
) {
    let infos: Vec<RecordParseInfo> = attrs
        .iter()
        .map(|(a, _)| RecordParseInfo::new(a, Endianness::LittleEndian))
        .collect();
    let Some(&first) = infos.first() else {
        return;
    };
    let mut by_id: std::collections::HashMap<u64, usize> = Default::default();
    for (i, (_, ids)) in attrs.iter().enumerate() {
        for id in ids {
            by_id.insert(*id, i);
        }
    }
    let mut queue: Vec<Pending> = Vec::new();
    let mut round: Vec<Pending> = Vec::new();
    let mut prev_round_max = 0u64;
    let mut seq = 0u64;
    let mut off = 0usize;
    let emit = |p: &Pending, f: &mut dyn FnMut(usize, RawEventRecord<'a>)| {
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
            let ready = queue.partition_point(|p| p.time <= prev_round_max);
            for p in queue.drain(..ready) {
                emit(&p, &mut f);
            }
            prev_round_max = prev_round_max.max(round_max);
            release(queue.iter().map(|p| p.offset).min().unwrap_or(off));
        } else if ty < 64 {
            let attr = if attrs.len() == 1 {
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
    for p in &queue {
        emit(p, &mut f);
    }
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
}
