//! The records of a perf.data data section, in time order, without copying them.
//!
//! linux-perf-data reads the header, attributes and feature sections; the records are
//! read here straight out of the mapped file (linux-perf-data copies each one into a
//! buffer, which was a third of finalize's time on large files). Ordering follows
//! perf's rule for `PERF_RECORD_FINISHED_ROUND`: records of a round are sorted by time,
//! and those not later than the previous round's newest record are handed out; the
//! rest wait for the next round (a drain pass over several rings overlaps in time).

use linux_perf_data::linux_perf_event_reader::{
    Endianness, PerfEventAttr, RawData, RawEventRecord, RecordParseInfo, RecordType,
};

const FINISHED_ROUND: u32 = 68;

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
        let body = RawData::Single(&data[p.offset..p.offset + p.len]);
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
            queue.sort_unstable_by_key(|p| (p.time, p.seq));
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
