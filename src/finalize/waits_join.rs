//! Locks mode: joins each thread's off-CPU intervals (switch-out → switch-in records,
//! exact, for ordinary users too) to the waits the agent recorded (its marker samples:
//! class, object, start and duration in the sample's registers, the stack where the
//! program blocked in the sample's stack copy; `wire/src/lib.rs`, "waits").
//!
//! An interval inside a recorded wait (`start ≤ out`, `in ≤ start + duration`) is that
//! wait's: its class and object, on the marker's stack (as root, on the kernel's
//! switch-out stack, which holds the marker's frames and the kernel's) ("exact"). An interval no recorded wait explains
//! (a wait shorter than the threshold, a page fault, a preemption, a call the agent does
//! not interpose) is still counted ("inferred"): on the stack the kernel gave at
//! switch-out (root's switch-out samples), else on the thread's last wait stack, else on
//! the thread alone; classified at finalize by that stack (`finalize::waits`:
//! `preempted` when the kernel's switch record says so, unless the stack is in MPI;
//! else what the stack blocked in, `other` when it says nothing).
//!
//! Records arrive in time order, and a marker sample follows the intervals of its wait
//! (it is taken after the call returns), so each thread's intervals wait in a queue
//! until a marker claims them or a later marker shows they were before it.
//!
//! Nothing from the raw data is trusted: a duration is bounded, times that do not add
//! up give no claim, and queues are bounded per thread.

use std::collections::VecDeque;

use linux_perf_data::linux_perf_event_reader::Regs;
use rustc_hash::FxHashMap;

use super::process::{NO_NODE, RawProfile, SampleKey};
use crate::profile::WaitClass;
use crate::python::wire::*;

/// Clock slack between the agent's clock reads and the kernel's switch times (same
/// clock, CLOCK_MONOTONIC; the reads are outside the kernel's, so 0 would do).
const SLACK_NS: u64 = 20_000;
/// A longer recorded wait is not believed (a forged or corrupt record).
const MAX_WAIT_NS: u64 = 7 * 24 * 3600 * 1_000_000_000;
/// A call restarted within this long after an interrupted one (same thread, stack,
/// class and object) continues its wait: the signal handler ran in between (after
/// taking the GIL back, up to CPython's 5 ms switch interval).
const RESTART_GAP_NS: u64 = 20_000_000;
/// Intervals kept per thread before the oldest is resolved as unexplained.
const MAX_QUEUED: usize = 4096;

/// One wait for the profile: its sample key (stack, thread), cause, off-CPU ns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawWait {
    /// Where (the stack of the marker or the switch-out sample).
    pub key: SampleKey,
    /// Why, as far as the join knows.
    pub cause: Cause,
    /// Off-CPU nanoseconds.
    pub ns: u64,
    /// The rest of a wait already counted (a call restarted after a signal handler, or
    /// a later off-CPU interval of the same call): its time counts, not as a new wait.
    pub continued: bool,
    /// Root: the stack of the thread that woke this one (its `sched:sched_waking`
    /// sample), when one of the target's threads did.
    pub waker: Option<SampleKey>,
}

/// Why a thread waited: recorded by the agent, or left to its stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The agent recorded the class and the object (`0x…` address, `fd 3`, `pid 42`,
    /// `thread 0x…`); or `other`: an interval nobody recorded, without a stack of its
    /// own.
    Recorded(WaitClass, Option<String>),
    /// Classified by its stack at finalize (`finalize::waits`).
    Stack {
        /// The kernel's switch record said the thread was still runnable.
        preempted: bool,
        /// Root: the first syscall argument at switch-out (a futex word, an fd), for
        /// the stack's classification to name the object.
        arg0: Option<u64>,
    },
}

/// A wait the agent recorded, from a marker sample's registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    class: WaitClass,
    object: Option<String>,
    start: u64,
    end: u64,
    /// The call returned EINTR (`WAIT_INTERRUPTED`).
    interrupted: bool,
    /// When a sleep would have ended (CLOCK_MONOTONIC ns), when the agent knew.
    deadline: Option<u64>,
}

impl Marker {
    /// The record in a sample's user registers (perf numbering: di 5, si 4, dx 3, cx 2,
    /// r8 16), when it is one: the magic in rdi, a known class, a believable duration
    /// that ended before the sample (`time`). A wait on a file descriptor names its
    /// path when the agent left it in the sample's copy of the user `stack`.
    pub fn from_regs(regs: &Regs, time: u64, stack: Option<&[u8]>) -> Option<Marker> {
        if regs.get(5)? != WAIT_MAGIC {
            return None;
        }
        // r9: a path's address (fd waits), else a sleep's deadline (or 0).
        let extra = regs.get(17).unwrap_or(0);
        let fd = (regs.get(4)? >> 8) & 0xff == WAIT_OBJ_FD;
        let path = match (regs.get(7), stack) {
            (Some(sp), Some(stack)) if fd && extra != 0 => path_in_stack(stack, extra, sp),
            _ => None,
        };
        let deadline = (!fd && extra != 0).then_some(extra);
        Marker::decode_with_path(
            regs.get(4)?,
            regs.get(3)?,
            regs.get(2)?,
            regs.get(16)?,
            time,
            path.as_deref(),
        )
        .map(|m| Marker { deadline, ..m })
    }

    #[cfg(test)]
    fn decode(what: u64, object: u64, start: u64, dur: u64, time: u64) -> Option<Marker> {
        Marker::decode_with_path(what, object, start, dur, time, None)
    }

    fn decode_with_path(
        what: u64,
        object: u64,
        start: u64,
        dur: u64,
        time: u64,
        path: Option<&str>,
    ) -> Option<Marker> {
        let class = match what & 0xff {
            WAIT_LOCK => WaitClass::Lock,
            WAIT_CONDITION => WaitClass::Condition,
            WAIT_SLEEP => WaitClass::Sleep,
            WAIT_IO => WaitClass::Io,
            WAIT_JOIN => WaitClass::Join,
            WAIT_MPI => WaitClass::Mpi,
            _ => return None,
        };
        let end = start.checked_add(dur)?;
        if dur > MAX_WAIT_NS || end > time.saturating_add(SLACK_NS) {
            return None;
        }
        let object = match (what >> 8) & 0xff {
            WAIT_OBJ_ADDR => Some(format!("{object:#x}")),
            WAIT_OBJ_FD if (object as i64) >= 0 => Some(match path {
                Some(p) => format!("fd {} → {}", object as i64, fd_kind(p)),
                None => format!("fd {}", object as i64),
            }),
            WAIT_OBJ_PID => Some(format!("pid {}", object as i64)),
            WAIT_OBJ_THREAD => Some(format!("thread {object:#x}")),
            WAIT_OBJ_MPI_FN => usize::try_from(object)
                .ok()
                .and_then(|i| MPI_FUNCTIONS.get(i))
                .map(|f| f.to_string()),
            _ => None,
        };
        Some(Marker {
            class,
            object,
            start,
            end,
            interrupted: what & WAIT_INTERRUPTED != 0,
            deadline: None,
        })
    }
}

/// The NUL-terminated path at address `ptr` of the thread's stack, from the sample's
/// copy of it (which starts at `sp`); None when it is not inside the copy.
fn path_in_stack(stack: &[u8], ptr: u64, sp: u64) -> Option<String> {
    let off = usize::try_from(ptr.checked_sub(sp)?).ok()?;
    let rest = stack.get(off..)?;
    let rest = &rest[..rest.len().min(WAIT_PATH_BYTES)];
    let end = rest.iter().position(|&b| b == 0)?;
    if end == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&rest[..end]);
    Some(
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

/// What `/proc/PID/fd/N` says, as a wait's object shows it: a file's path as is;
/// `socket:[123]` → `socket`, `pipe:[123]` → `pipe`, `anon_inode:[eventpoll]` →
/// `eventpoll` (the inode numbers would split one kind of object into many rows).
fn fd_kind(link: &str) -> &str {
    if link.starts_with("socket:[") {
        "socket"
    } else if link.starts_with("pipe:[") {
        "pipe"
    } else if let Some(rest) = link.strip_prefix("anon_inode:") {
        rest.trim_start_matches('[').trim_end_matches(']')
    } else {
        link
    }
}

#[derive(Clone, Copy, Debug)]
struct Interval {
    out: u64,
    inn: u64,
    /// Off-CPU ns (`inn - out`, or the sum of the intervals merged into this one).
    ns: u64,
    /// Switch-outs merged into this interval (1 for one).
    pieces: u64,
    preempted: bool,
    /// Thread index (for a key when nothing else gives one).
    thread: u32,
    /// Root: the switch-out sample's key and first syscall argument.
    at_out: Option<(SampleKey, Option<u64>)>,
    /// Root: who woke the thread (the waker's `sched_waking` sample).
    waker: Option<SampleKey>,
}

/// A thread's last wait that returned EINTR, for its restart to continue it.
struct Interrupted {
    key: SampleKey,
    class: WaitClass,
    object: Option<String>,
    end: u64,
    deadline: Option<u64>,
    /// The wait has been counted. A call that a signal interrupted before it was
    /// switched out claims no time, so it counts nothing; its restart is then the
    /// piece that counts the wait (the agent marks every interrupted call, however
    /// short, so that its restart is known).
    counted: bool,
    /// Root: the switch-out stack of its last piece. A restart too short for a marker
    /// (under the threshold) leaves an interval that no marker claims, on that same
    /// stack: the rest of the same wait, not a new one.
    last_piece: Option<SampleKey>,
}

impl Interrupted {
    /// Where and when its last piece was switched out, and its deadline, for
    /// [`resumes`].
    fn last_piece_at(&self) -> Option<LastPiece> {
        self.last_piece.map(|key| LastPiece {
            key,
            end: self.end,
            deadline: self.deadline,
        })
    }
}

/// The last piece of an interrupted wait: its switch-out key, its end, its deadline.
#[derive(Clone, Copy)]
struct LastPiece {
    key: SampleKey,
    end: u64,
    deadline: Option<u64>,
}

/// Per-thread state of the join.
#[derive(Default)]
pub struct WaitJoin {
    /// Switch-out seen, switch-in not yet: (time, preempted, thread index).
    out: FxHashMap<u32, (u64, bool, u32)>,
    /// Complete intervals not yet claimed.
    queued: FxHashMap<u32, VecDeque<Interval>>,
    /// The thread's last marker key (the nearest stack for unexplained time).
    last_key: FxHashMap<u32, SampleKey>,
    /// The thread's last wait when it was interrupted (EINTR): its key, class, object
    /// and end, for its restart to continue it.
    interrupted: FxHashMap<u32, Interrupted>,
    /// Root: the waker of each thread now off CPU (the last `sched_waking` of it).
    woken_by: FxHashMap<u32, SampleKey>,
    /// Per thread: its off-CPU time so far, for an MPI wait's on-CPU part.
    off_cpu: FxHashMap<u32, OffCpuLog>,
    /// Per thread: its last marker's (start, end), to know the same record again.
    last_marker: FxHashMap<u32, (u64, u64)>,
}

/// Whether `iv`, claimed by no marker, continues the interrupted wait whose last piece
/// is `at`: on that native stack, after it, and within the call's reach. The Python
/// stack index of each switch-out sample is its own, even at the same line (as for
/// [`WaitJoin::marker`]'s same call): a Python sleep's restart after its deadline,
/// switched out for a few µs and too short for a marker, was counted as a sixth sleep
/// of five under load (tests/cli/locks_user.rs).
///
/// The call's reach: a sleep's restart ends by its deadline (+ RESTART_GAP_NS for the
/// wake-up), unless it was preempted (a restart after the deadline returns at once, but
/// a preempted one is off CPU for as long as the CPU is taken); a call without a
/// deadline restarts within RESTART_GAP_NS, as for a marker. Without the reach, the
/// next sleep at the same line, whose marker was lost, was a continuation: two of
/// five sleeps were one wait of 373 ms (a fresh-clone run, CPython 3.9 as root).
fn resumes(at: Option<LastPiece>, iv: &Interval) -> bool {
    let native = |k: SampleKey| (k.leaf, k.thread, k.event);
    at.is_some_and(|p| {
        let within_reach = match p.deadline {
            Some(d) => iv.preempted || iv.inn <= d.saturating_add(RESTART_GAP_NS),
            None => iv.out <= p.end.saturating_add(RESTART_GAP_NS),
        };
        iv.at_out.is_some_and(|(a, _)| native(a) == native(p.key))
            && iv.out.saturating_add(SLACK_NS) >= p.end
            && within_reach
    })
}

/// Merges neighbouring intervals of a full queue switched out on the same stack (an
/// ordinary user's have none) into intervals spanning at most `span` ns (out to in),
/// the smallest power of two from 1 µs that brings it to three quarters full: a
/// marker's start then falls inside one merged interval at most, and the wait's claim
/// is off by that span at most, however long the queue has been full. By time, not by
/// count: a rank preempted while it computes is off CPU for whole time slices, one
/// polling in a barrier for microseconds at a time (32 intervals of the one were
/// 80 ms, of the other 0.4 ms). Whether a merged interval was preempted is its longer
/// part's (a polling call yields, and blocks now and then in a `poll` of its own).
fn compact(q: &mut VecDeque<Interval>) {
    let whole = match (q.front(), q.back()) {
        (Some(a), Some(b)) => b.inn.saturating_sub(a.out),
        _ => return,
    };
    let mut span = 1_000u64;
    loop {
        let mut merged: VecDeque<Interval> = VecDeque::with_capacity(q.len());
        for b in q.drain(..) {
            match merged.back_mut() {
                Some(a)
                    if a.thread == b.thread
                        && a.at_out == b.at_out
                        && b.inn.saturating_sub(a.out) <= span =>
                {
                    *a = Interval {
                        inn: b.inn,
                        ns: a.ns.saturating_add(b.ns),
                        pieces: a.pieces.saturating_add(b.pieces),
                        preempted: if a.ns >= b.ns {
                            a.preempted
                        } else {
                            b.preempted
                        },
                        waker: b.waker.or(a.waker),
                        ..*a
                    };
                }
                _ => merged.push_back(b),
            }
        }
        *q = merged;
        if q.len() <= MAX_QUEUED * 3 / 4 || span > whole {
            return;
        }
        span = span.saturating_mul(2);
    }
}

/// A thread's off-CPU time: per interval, its switch-in time and the thread's total
/// off-CPU ns after it. An MPI rank that yields while it polls is switched out
/// thousands of times in one barrier (90,000 times in 1.2 s, four ranks on two cores),
/// so the log is long. When full, its older half is thinned (every other entry goes):
/// a call's end, just before its marker, is read from the exact newer half; its start
/// may be read from an earlier entry, which makes its off-CPU time longer and its
/// on-CPU part shorter by the off-CPU time between two kept entries at most (under-,
/// never double-counted). Dropping the oldest entries instead left a barrier whose
/// start they held with no on-CPU part at all (450 of 600 ms).
#[derive(Default)]
struct OffCpuLog {
    total: u64,
    log: VecDeque<(u64, u64)>,
}

/// Entries an [`OffCpuLog`] keeps (16 bytes each: 1 MiB for a thread that switches
/// that often).
const MAX_OFF_CPU_LOG: usize = 65_536;

impl OffCpuLog {
    fn add(&mut self, inn: u64, ns: u64) {
        self.total = self.total.saturating_add(ns);
        self.log.push_back((inn, self.total));
        if self.log.len() > MAX_OFF_CPU_LOG {
            let older = self.log.len() / 2;
            let mut i = 0;
            self.log.retain(|_| {
                let keep = i >= older || i % 2 == 0;
                i += 1;
                keep
            });
        }
    }

    /// The thread's off-CPU ns up to `t` (intervals that ended by then), as the log
    /// knows it: at most the true figure.
    fn at(&self, t: u64) -> u64 {
        match self.log.partition_point(|&(inn, _)| inn <= t) {
            0 => 0,
            n => self.log[n - 1].1,
        }
    }
}

impl WaitJoin {
    /// The thread's interrupted wait's last piece, if any.
    fn resumable(&self, tid: u32) -> Option<LastPiece> {
        self.interrupted
            .get(&tid)
            .and_then(Interrupted::last_piece_at)
    }

    /// A switch-out record of `tid` at `time`.
    pub fn switch_out(&mut self, tid: u32, thread: u32, time: u64, preempted: bool) {
        self.out.insert(tid, (time, preempted, thread));
    }

    /// Root: a `sched_waking` sample: the thread with key `waker` woke `wakee`. Kept for
    /// the wakee's interval when it is off CPU (a wakeup of a running thread ends no
    /// wait).
    pub fn woken(&mut self, wakee: u32, waker: SampleKey) {
        if self.out.contains_key(&wakee) {
            self.woken_by.insert(wakee, waker);
        }
    }

    /// A switch-in record: closes the thread's interval.
    pub fn switch_in(
        &mut self,
        tid: u32,
        time: u64,
        at_out: Option<(SampleKey, Option<u64>)>,
        out: &mut RawProfile,
    ) {
        let waker = self.woken_by.remove(&tid);
        let Some((t_out, preempted, thread)) = self.out.remove(&tid) else {
            return;
        };
        if time < t_out {
            return;
        }
        self.off_cpu.entry(tid).or_default().add(time, time - t_out);
        let (last, resumable) = (self.last_key.get(&tid).copied(), self.resumable(tid));
        let q = self.queued.entry(tid).or_default();
        q.push_back(Interval {
            out: t_out,
            inn: time,
            ns: time - t_out,
            pieces: 1,
            preempted,
            thread,
            at_out,
            waker,
        });
        if q.len() > MAX_QUEUED {
            // A long call that yields the CPU thousands of times (an MPI library
            // polling with sched_yield) before its marker arrives, or compute preempted
            // as often before it: neighbours are merged, so that the marker still
            // claims what is inside it and no more (a merged interval straddles its
            // start by one interval's span at most). What cannot be merged (root: each
            // switch-out on its own stack) is resolved, oldest first, as unexplained.
            compact(q);
            while q.len() > MAX_QUEUED * 3 / 4 {
                let Some(iv) = q.pop_front() else { break };
                unexplained(iv, last, resumes(resumable, &iv), out);
            }
        }
    }

    /// A marker sample of `tid` with its key: claims the thread's intervals inside the
    /// wait; returns the off-CPU ns claimed (the sample's metric) and how many of the
    /// claimed intervals had no switch-out sample of their own (the sample's count).
    pub fn marker(
        &mut self,
        tid: u32,
        key: SampleKey,
        m: Marker,
        out: &mut RawProfile,
    ) -> (u64, u64) {
        // The same record twice (a call's start and end are its own): a second sample
        // of one marker call, as when the breakpoint fires again on the instruction it
        // stopped at once the thread returns to it. Counted once.
        if self.last_marker.insert(tid, (m.start, m.end)) == Some((m.start, m.end)) {
            return (0, 0);
        }
        let last = self.last_key.insert(tid, key);
        // The interrupted wait as it was before this marker (for the intervals before it).
        let resumed = self.resumable(tid);
        // The restart of an interrupted call: the same wait, counted once.
        // Other waits may come between (the GIL, taken back to run a Python handler).
        // The same call: the same native stack (the Python stack index of each capture
        // is its own, even at the same line).
        // The marker's own frame may differ between the pieces of one call (the short
        // or the full stack copy, `agent/src/waits.rs`): the call site is the leaf's
        // caller.
        let trie = &out.trie;
        let site = |leaf: u32| trie.get(leaf as usize).map(|&(parent, _)| parent);
        let same_call = |k: &SampleKey| {
            k.thread == key.thread
                && (k.leaf == key.leaf || site(k.leaf).is_some_and(|s| site(key.leaf) == Some(s)))
        };
        // A sleep is restarted for the same deadline (a new one has its own), however
        // late the restart: the handler may wait long for the GIL and a CPU on a loaded
        // machine. The deadline names the call, whatever stack the pieces unwound to:
        // - an absolute one (clock_nanosleep TIMER_ABSTIME, CPython 3.11+) is the same
        //   number in every piece, and is restarted even after it passed (the call then
        //   returns at once, but a preempted one lasts long enough to be recorded);
        // - a relative one (nanosleep, select: CPython 3.8-3.10) is recomputed by the
        //   caller before the restart, which began before the deadline: both differ
        //   by the time between the caller's clock read and ours (CPython drops the
        //   GIL there, and waits for the thread that asked for it to take it), up to
        //   RESTART_GAP_NS. A new sleep's deadline is later by its whole length: one
        //   shorter than that, right after a sleep interrupted and not restarted,
        //   would be taken for its restart.
        // Without deadlines, the same call restarted within RESTART_GAP_NS.
        let restart = |k: &SampleKey, end: u64, d: &Option<u64>| match (d, m.deadline) {
            (Some(a), Some(b)) => {
                k.thread == key.thread
                    && (*a == b
                        || (a.abs_diff(b) <= RESTART_GAP_NS
                            && m.start <= a.saturating_add(RESTART_GAP_NS)))
            }
            _ => same_call(k) && m.start <= end.saturating_add(RESTART_GAP_NS),
        };
        let mut continued = self.interrupted.get(&tid).is_some_and(|i| {
            i.counted
                && restart(&i.key, i.end, &i.deadline)
                && i.class == m.class
                && i.object == m.object
                && m.start >= i.end.saturating_sub(SLACK_NS)
        });
        if !m.interrupted
            && self
                .interrupted
                .get(&tid)
                .is_some_and(|i| same_call(&i.key))
        {
            self.interrupted.remove(&tid);
        }
        let mut claimed = 0u64;
        let mut unsampled = 0u64;
        let mut waker = None;
        // Root: the call's intervals by switch-out stack, in order (usually one stack):
        // one wait per stack, so that its max_ns is the whole wait, not a piece.
        let mut pieces: Vec<(SampleKey, u64, Option<SampleKey>)> = Vec::new();
        if let Some(q) = self.queued.get_mut(&tid) {
            // Everything that ended by the wait's end: inside it, the wait's; before
            // (or straddling its start), nothing will claim it any more.
            while let Some(&iv) = q.front() {
                if iv.inn > m.end.saturating_add(SLACK_NS) {
                    break;
                }
                q.pop_front();
                if iv.out.saturating_add(SLACK_NS) < m.start {
                    let continues = resumes(resumed, &iv);
                    unexplained(iv, last, continues, out);
                    continue;
                }
                let ns = iv.ns;
                out.wait_ns_exact = out.wait_ns_exact.saturating_add(ns);
                match iv.at_out {
                    // Root: the kernel's switch-out stack (kernel, libc and program
                    // frames, Python merged) with the wait's class and object.
                    Some((k, _)) => {
                        out.samples.entry(k).or_insert((0, 0)).1 += ns;
                        match pieces.iter_mut().find(|(pk, ..)| *pk == k) {
                            Some(p) => {
                                p.1 = p.1.saturating_add(ns);
                                p.2 = iv.waker.or(p.2);
                            }
                            None => pieces.push((k, ns, iv.waker)),
                        }
                    }
                    None => {
                        claimed = claimed.saturating_add(ns);
                        unsampled += iv.pieces;
                        waker = iv.waker.or(waker);
                    }
                }
            }
        }
        // MPI: the call's whole time is the wait, polling on CPU included: the time in
        // it that no off-CPU interval of the thread covers (intervals claimed above or
        // by waits inside it, such as a poll the library made) is added on the
        // marker's stack.
        if m.class == WaitClass::Mpi {
            let off = self.off_cpu.get(&tid).map_or(0, |l| {
                l.at(m.end.saturating_add(SLACK_NS))
                    .saturating_sub(l.at(m.start.saturating_sub(SLACK_NS)))
            });
            let on_cpu = (m.end - m.start).saturating_sub(off);
            claimed = claimed.saturating_add(on_cpu);
            out.wait_ns_exact = out.wait_ns_exact.saturating_add(on_cpu);
            out.wait_ns_on_cpu = out.wait_ns_on_cpu.saturating_add(on_cpu);
        }
        if m.interrupted {
            let counted = continued || !pieces.is_empty() || claimed > 0;
            self.interrupted.insert(
                tid,
                Interrupted {
                    key,
                    class: m.class,
                    object: m.object.clone(),
                    end: m.end,
                    deadline: m.deadline,
                    counted,
                    last_piece: pieces.last().map(|&(k, ..)| k),
                },
            );
        }
        for (k, ns, waker) in pieces {
            out.waits.push(RawWait {
                key: k,
                cause: Cause::Recorded(m.class, m.object.clone()),
                ns,
                continued,
                waker,
            });
            // Later pieces of this call are the same wait.
            continued = true;
        }
        if claimed > 0 {
            out.waits.push(RawWait {
                key,
                cause: Cause::Recorded(m.class, m.object),
                ns: claimed,
                continued,
                waker,
            });
        }
        (claimed, unsampled)
    }

    /// End of the data: what no marker claimed is unexplained.
    pub fn finish(&mut self, out: &mut RawProfile) {
        let mut tids: Vec<u32> = self.queued.keys().copied().collect();
        tids.sort_unstable();
        for tid in tids {
            let last = self.last_key.get(&tid).copied();
            for iv in self.queued.remove(&tid).unwrap_or_default() {
                let continues = resumes(self.resumable(tid), &iv);
                unexplained(iv, last, continues, out);
            }
        }
    }
}

/// The woken thread of a `sched:sched_waking` sample's raw data, None when the wakeup
/// ran in interrupt context (a timer, an I/O completion: the thread the sample names
/// was only interrupted, it woke nobody) or the data is short. Layout of the
/// tracepoint (`events/sched/sched_waking/format`, stable since Linux 4.x):
/// `common_flags` at 2 (TRACE_FLAG_HARDIRQ 0x08, SOFTIRQ 0x10, NMI 0x40), `pid` at 24.
pub fn wakee_of(raw: &[u8]) -> Option<u32> {
    const IN_INTERRUPT: u8 = 0x08 | 0x10 | 0x40;
    let flags = *raw.get(2)?;
    if flags & IN_INTERRUPT != 0 {
        return None;
    }
    let pid = i32::from_le_bytes(raw.get(24..28)?.try_into().ok()?);
    u32::try_from(pid).ok().filter(|&p| p != 0)
}

/// Counts an interval no recorded wait explains.
/// `resumes`: the interval continues the thread's interrupted wait (its time counts, not
/// as a new wait).
fn unexplained(iv: Interval, last: Option<SampleKey>, resumes: bool, out: &mut RawProfile) {
    let ns = iv.ns;
    let key = iv.at_out.map(|(k, _)| k).or(last).unwrap_or(SampleKey {
        leaf: NO_NODE,
        python: NO_NODE,
        thread: iv.thread,
        event: 0,
    });
    out.samples.entry(key).or_insert((0, 0)).1 += ns;
    out.wait_ns_inferred = out.wait_ns_inferred.saturating_add(ns);
    // Classified by its stack at finalize (preempted, or what the stack blocked in).
    // Without a switch-out stack (an ordinary user's switch records carry none) it goes
    // to the nearest capture, the thread's last marker: that says where the thread
    // was, not why it waited (a short GIL wait after an interrupted sleep is no sleep),
    // so its class is `other`.
    let cause = if iv.at_out.is_none() && !iv.preempted {
        Cause::Recorded(WaitClass::Other, None)
    } else {
        Cause::Stack {
            preempted: iv.preempted,
            arg0: iv.at_out.and_then(|(_, a)| a),
        }
    };
    out.waits.push(RawWait {
        key,
        cause,
        ns,
        continued: resumes,
        waker: iv.waker,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(leaf: u32) -> SampleKey {
        SampleKey {
            leaf,
            python: NO_NODE,
            thread: 0,
            event: 0,
        }
    }

    /// The marker of a wait of `class` (`WAIT_SLEEP`, ...) from `start` to `end`, which a
    /// signal interrupted or not (then it may be restarted).
    fn restartable(class: u64, start: u64, end: u64, interrupted: bool) -> Marker {
        let what = class | if interrupted { WAIT_INTERRUPTED } else { 0 };
        Marker::decode(what, 0, start, end - start, end + 10).unwrap()
    }

    /// Each (start, end, marker, leaf) piece on thread 7: off CPU from 1 µs after
    /// `start` to 1 µs before `end`, then `marker` on stack `leaf`.
    fn run_pieces(j: &mut WaitJoin, out: &mut RawProfile, pieces: &[(u64, u64, Marker, u32)]) {
        for (start, end, marker, leaf) in pieces {
            off_cpu(j, out, start + 1_000, end - 1_000);
            j.marker(7, key(*leaf), marker.clone(), out);
        }
    }

    /// A (start, end, marker, leaf) piece for [`run_pieces`]: a wait of `class` that a
    /// signal interrupted or not, on stack `leaf`.
    fn restart_piece(
        class: u64,
        (start, end): (u64, u64),
        interrupted: bool,
        leaf: u32,
    ) -> (u64, u64, Marker, u32) {
        (
            start,
            end,
            restartable(class, start, end, interrupted),
            leaf,
        )
    }

    /// Thread 7 off CPU (not preempted) from `from` to `to`, woken by nobody known.
    fn off_cpu(j: &mut WaitJoin, out: &mut RawProfile, from: u64, to: u64) {
        j.switch_out(7, 0, from, false);
        j.switch_in(7, to, None, out);
    }

    /// Thread 7 off CPU from `from` to `to`, then `marker` on stack 5: what the join
    /// returned for the marker (ns claimed, intervals claimed).
    fn off_then_marker(
        j: &mut WaitJoin,
        out: &mut RawProfile,
        (from, to): (u64, u64),
        marker: Marker,
    ) -> (u64, u64) {
        off_cpu(j, out, from, to);
        j.marker(7, key(5), marker, out)
    }

    /// [`run_pieces`] through a new join into `out`: per wait, whether it continues the
    /// one before.
    fn continued_after(mut out: RawProfile, pieces: &[(u64, u64, Marker, u32)]) -> Vec<bool> {
        run_pieces(&mut WaitJoin::default(), &mut out, pieces);
        continued(&out)
    }

    /// Per wait: whether it continues the one before.
    fn continued(out: &RawProfile) -> Vec<bool> {
        out.waits.iter().map(|w| w.continued).collect()
    }

    /// The deadline of the sleeps of [`sleep_piece`].
    const DEADLINE: u64 = 200_000_000;

    /// A piece of a sleep until [`DEADLINE`]: its marker from `start` to `end`,
    /// interrupted or not.
    fn sleep_piece(start: u64, end: u64, interrupted: bool) -> Marker {
        Marker {
            deadline: Some(DEADLINE),
            ..restartable(WAIT_SLEEP, start, end, interrupted)
        }
    }

    fn marker(class: u64, start: u64, end: u64) -> Marker {
        Marker::decode(
            class | (WAIT_OBJ_ADDR << 8),
            0x1000,
            start,
            end - start,
            end + 10,
        )
        .expect("valid")
    }

    #[test]
    fn intervals_inside_a_wait_are_its_own_and_the_rest_is_inferred() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // Preempted before the wait; two intervals inside it; one after.
        j.switch_out(7, 0, 100, true);
        j.switch_in(7, 200, None, &mut out);
        off_cpu(&mut j, &mut out, 1_000_000, 2_000_000);
        off_cpu(&mut j, &mut out, 2_100_000, 3_000_000);
        let got = j.marker(7, key(5), marker(WAIT_LOCK, 900_000, 3_000_100), &mut out);
        assert_eq!(got, (1_900_000, 2));
        off_cpu(&mut j, &mut out, 4_000_000, 4_000_500);
        j.finish(&mut out);
        assert_eq!(out.wait_ns_exact, 1_900_000);
        assert_eq!(out.wait_ns_inferred, 600);
        let preempted = Cause::Stack {
            preempted: true,
            arg0: None,
        };
        let lock = Cause::Recorded(WaitClass::Lock, Some("0x1000".into()));
        let classes: Vec<_> = out
            .waits
            .iter()
            .map(|w| (w.cause.clone(), w.ns, w.key.leaf))
            .collect();
        assert_eq!(
            classes,
            vec![
                (preempted, 100, NO_NODE),
                (lock, 1_900_000, 5),
                // On the last marker's stack, but not for its reason.
                (Cause::Recorded(WaitClass::Other, None), 500, 5),
            ]
        );
    }

    #[test]
    fn an_fd_wait_names_its_path_from_the_stack_copy() {
        let mut stack = vec![0u8; 512];
        stack[100..110].copy_from_slice(b"/tmp/a.dat");
        let sp = 0x7ffd_0000_0000u64;
        assert_eq!(
            path_in_stack(&stack, sp + 100, sp).as_deref(),
            Some("/tmp/a.dat")
        );
        // Outside the copy, below sp, unterminated, empty: nothing.
        assert_eq!(path_in_stack(&stack, sp + 600, sp), None);
        assert_eq!(path_in_stack(&stack, sp - 8, sp), None);
        assert_eq!(path_in_stack(&[b'x'; 64], sp, sp), None);
        assert_eq!(path_in_stack(&stack, sp, sp), None);
        let what = WAIT_IO | (WAIT_OBJ_FD << 8);
        let m = |p| {
            Marker::decode_with_path(what, 3, 0, 1, 10, p)
                .unwrap()
                .object
        };
        assert_eq!(m(Some("/tmp/a.dat")).as_deref(), Some("fd 3 → /tmp/a.dat"));
        assert_eq!(m(Some("pipe:[4242]")).as_deref(), Some("fd 3 → pipe"));
        assert_eq!(m(Some("socket:[77]")).as_deref(), Some("fd 3 → socket"));
        assert_eq!(
            m(Some("anon_inode:[eventpoll]")).as_deref(),
            Some("fd 3 → eventpoll")
        );
        assert_eq!(m(None).as_deref(), Some("fd 3"));
    }

    #[test]
    fn a_wait_restarted_after_a_signal_counts_once() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        let sleep =
            |start, end, interrupted| restart_piece(WAIT_SLEEP, (start, end), interrupted, 5);
        // A sleep interrupted twice (restarted 20 µs later each time), then a new one.
        let pieces = [
            sleep(1_000_000, 2_000_000, true),
            sleep(2_020_000, 3_000_000, true),
            sleep(3_020_000, 4_000_000, false),
            sleep(4_010_000, 5_000_000, false),
        ];
        run_pieces(&mut j, &mut out, &pieces);
        // Not after a gap, nor on another stack.
        off_cpu(&mut j, &mut out, 5_001_000, 5_999_000);
        j.marker(7, key(5), sleep(5_000_000, 6_000_000, true).2, &mut out);
        off_cpu(&mut j, &mut out, 6_021_000, 6_999_000);
        j.marker(7, key(6), sleep(6_020_000, 7_000_000, false).2, &mut out);
        assert_eq!(continued(&out), [false, true, true, false, false, false]);
    }

    #[test]
    fn a_sleep_restarted_late_for_its_deadline_counts_once() {
        let deadline = 200_000_000;
        let sleep = |start: u64, end: u64, interrupted: bool, deadline: u64, leaf: u32| {
            let m = restartable(WAIT_SLEEP, start, end, interrupted);
            let deadline = Some(deadline);
            (start, end, Marker { deadline, ..m }, leaf)
        };
        // Interrupted at 30 ms, restarted 45 ms later (the handler waited for the GIL):
        // the same sleep, also when the restart's marker unwound to another stack (the
        // short stack copy, say). Then a new sleep with its own deadline right after it.
        let pieces = [
            sleep(0, 30_000_000, true, deadline, 5),
            sleep(75_000_000, deadline, false, deadline, 6),
            sleep(deadline + 10_000, 2 * deadline, false, 2 * deadline, 5),
        ];
        let out = RawProfile::default();
        assert_eq!(continued_after(out, &pieces), [false, true, false]);
    }

    #[test]
    fn a_marker_seen_twice_counts_once() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        let first = sleep_piece(0, 100_000_000, true);
        assert!(off_then_marker(&mut j, &mut out, (1_000, 99_000_000), first.clone()).0 > 0);
        assert_eq!(j.marker(7, key(5), first, &mut out), (0, 0));
        let last = sleep_piece(100_050_000, DEADLINE, false);
        off_then_marker(&mut j, &mut out, (101_000_000, DEADLINE - 1_000), last);
        assert_eq!(continued(&out), [false, true]);
    }

    #[test]
    fn a_sleep_interrupted_before_it_was_switched_out_counts_at_its_restart() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // The signal came 20 µs into the call, before any switch-out: the agent marks
        // the interrupted call anyway; it claims nothing, and counts nothing.
        assert_eq!(
            j.marker(7, key(5), sleep_piece(0, 20_000, true), &mut out),
            (0, 0)
        );
        // Its restart is the wait (counted), and a later interrupted piece continues it.
        let restart = sleep_piece(30_000, 30_001_000, true);
        off_then_marker(&mut j, &mut out, (40_000, 30_000_000), restart);
        off_then_marker(
            &mut j,
            &mut out,
            (30_050_000, DEADLINE - 1_000),
            sleep_piece(30_040_000, DEADLINE, false),
        );
        assert_eq!(continued(&out), [false, true]);
    }

    /// Root: a join that has seen a sleep until [`DEADLINE`], off CPU on `at` (its
    /// switch-out stack) from 1 µs, interrupted at 100 ms (its marker's stack: 5).
    fn root_sleep_interrupted_at_100_ms(
        at: Option<(SampleKey, Option<u64>)>,
    ) -> (WaitJoin, RawProfile) {
        let (mut j, mut out) = (WaitJoin::default(), RawProfile::default());
        j.switch_out(7, 0, 1_000, false);
        j.switch_in(7, 99_000_000, at, &mut out);
        j.marker(7, key(5), sleep_piece(0, 100_000_000, true), &mut out);
        (j, out)
    }

    #[test]
    fn root_a_restart_too_short_for_a_marker_is_the_same_wait() {
        // Root: each interval has its switch-out stack (9: in the sleep call). The
        // sleep is interrupted at 100 ms; its restart is interrupted again after 30
        // µs (under the threshold: no marker); the next restart runs to the deadline.
        let at_sleep = Some((key(9), None));
        let (mut j, mut out) = root_sleep_interrupted_at_100_ms(at_sleep);
        j.switch_out(7, 0, 100_050_000, false);
        j.switch_in(7, 100_070_000, at_sleep, &mut out);
        // Another stack off CPU in between (the GIL, say) is not the sleep's.
        j.switch_out(7, 0, 100_200_000, false);
        j.switch_in(7, 100_250_000, Some((key(4), None)), &mut out);
        j.switch_out(7, 0, 101_000_000, false);
        j.switch_in(7, DEADLINE - 1_000, at_sleep, &mut out);
        j.marker(
            7,
            key(5),
            sleep_piece(100_900_000, DEADLINE, false),
            &mut out,
        );
        let waits: Vec<_> = out
            .waits
            .iter()
            .map(|w| (w.key.leaf, w.continued))
            .collect();
        assert_eq!(waits, [(9, false), (9, true), (4, false), (9, true)]);
    }

    #[test]
    fn root_a_python_restart_without_a_marker_is_the_same_wait() {
        // As above, with Python: each switch-out sample has a Python capture of its own
        // (index 1, then 2) at the same native stack (9). The last restart, after the
        // deadline, is off CPU for 30 µs and leaves no marker.
        let at_sleep = |python| Some((SampleKey { python, ..key(9) }, None));
        let (mut j, mut out) = root_sleep_interrupted_at_100_ms(at_sleep(1));
        j.switch_out(7, 0, 100_050_000, false);
        j.switch_in(7, 100_080_000, at_sleep(2), &mut out);
        j.finish(&mut out);
        let waits: Vec<_> = out
            .waits
            .iter()
            .map(|w| (w.key.leaf, w.key.python, w.continued))
            .collect();
        assert_eq!(waits, [(9, 1, false), (9, 2, true)]);
    }

    #[test]
    fn root_the_next_sleep_without_its_marker_is_a_new_wait() {
        // Interrupted at 100 ms; its restart, preempted after the deadline (the handler
        // waited 30 ms for the GIL), leaves no marker: the same wait. The next sleep at
        // the same line (deadline 400 ms) lost its marker: its 199 ms off CPU, voluntary,
        // are a wait of their own, not the first sleep's rest.
        let at_sleep = Some((key(9), None));
        let (mut j, mut out) = root_sleep_interrupted_at_100_ms(at_sleep);
        j.switch_out(7, 0, DEADLINE + 30_000_000, true);
        j.switch_in(7, DEADLINE + 32_000_000, at_sleep, &mut out);
        j.switch_out(7, 0, DEADLINE + 33_000_000, false);
        j.switch_in(7, 2 * DEADLINE - 1_000, at_sleep, &mut out);
        j.finish(&mut out);
        let waits: Vec<_> = out.waits.iter().map(|w| (w.ns, w.continued)).collect();
        assert_eq!(
            waits,
            [
                (98_999_000, false),
                (2_000_000, true),
                (DEADLINE - 33_001_000, false)
            ]
        );
    }

    #[test]
    fn a_sleep_restarted_after_its_deadline_counts_once() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        let sleep = |start: u64, end: u64, interrupted: bool, deadline: u64| {
            let m = restartable(WAIT_SLEEP, start, end, interrupted);
            let deadline = Some(deadline);
            (start, end, Marker { deadline, ..m }, 5)
        };
        let d = 200_000_000;
        let pieces = [
            // Absolute (3.11+): interrupted 1 ms before its deadline, its handler got
            // the GIL 4 ms after it, and the restart (which returns at once) was
            // preempted for 2 ms: the same call.
            sleep(0, d - 1_000_000, true, d),
            sleep(d + 4_000_000, d + 6_000_000, false, d),
            // Relative (3.8-3.10): the caller computed 300 µs left, then waited 5 ms
            // to hand the GIL over before the restart, whose deadline is 5 ms later:
            // the same call.
            sleep(2 * d, 3 * d - 300_000, true, 3 * d),
            sleep(
                3 * d + 4_700_000,
                3 * d + 5_000_000,
                false,
                3 * d + 5_000_000,
            ),
            // A new 30 ms sleep 1 ms after a relative one returned without a restart:
            // its deadline is 31 ms later.
            sleep(4 * d, 5 * d - 10_000, true, 5 * d),
            sleep(
                5 * d + 1_000_000,
                5 * d + 31_000_000,
                false,
                5 * d + 31_000_000,
            ),
        ];
        run_pieces(&mut j, &mut out, &pieces);
        assert_eq!(continued(&out), [false, true, false, true, false, false]);
    }

    #[test]
    fn a_restart_whose_marker_frame_differs_is_the_same_call() {
        use super::super::process::Loc;
        // Call site 0; leaves 1 and 2: the full and the short marker's frames under it;
        // leaf 3 another call site's marker.
        let at = |svma| Loc::Module { module: 0, svma };
        let trie = vec![
            (NO_NODE, at(0x10)),
            (0, at(0x20)),
            (0, at(0x30)),
            (NO_NODE, at(0x40)),
        ];
        let pieces = [
            restart_piece(WAIT_IO, (1_000_000, 2_000_000), true, 1),
            restart_piece(WAIT_IO, (2_020_000, 3_000_000), true, 2),
            restart_piece(WAIT_IO, (3_020_000, 4_000_000), false, 3),
        ];
        let out = RawProfile {
            trie,
            ..RawProfile::default()
        };
        assert_eq!(continued_after(out, &pieces), [false, true, false]);
    }

    #[test]
    fn a_call_yielding_more_often_than_the_queue_holds_is_one_wait() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // An MPI barrier polling with sched_yield: 3 * MAX_QUEUED off-CPU intervals of
        // 20 µs, 50 µs apart, then its marker.
        let n = 3 * MAX_QUEUED as u64;
        for i in 0..n {
            let t = 1_000_000 + i * 50_000;
            off_cpu(&mut j, &mut out, t, t + 20_000);
        }
        let end = 1_000_000 + n * 50_000;
        let m = Marker::decode(WAIT_MPI, 0, 1_000_000, end - 1_000_000, end + 10).unwrap();
        let (ns, unsampled) = j.marker(7, key(5), m, &mut out);
        j.finish(&mut out);
        assert_eq!(unsampled, n, "every switch-out claimed by the call");
        assert!(ns >= n * 20_000, "{ns} ns claimed");
        assert!(
            out.waits
                .iter()
                .all(|w| matches!(w.cause, Cause::Recorded(..))),
            "no interval left unexplained: {:?}",
            out.waits.len()
        );
    }

    /// An ordinary user's MPI rank on an oversubscribed node: preempted 300 times for
    /// whole time slices while it computes (3 ms off CPU every 6 ms; no wait, no
    /// marker), then 9,000 times for 20 µs in MPI_Barrier, which also blocks in a poll
    /// of its own every 90th time; then the barrier's marker. The queue overflows
    /// twice over. Before, a blocked interval stopped the merging at the queue's front,
    /// which went out as one "preempted" wait on the last marker's stack, the compute's
    /// and most of the barrier's time in it (an MPI_Recv line held 578 ms of a 600 ms
    /// barrier); merged by count, 32 of the compute's intervals made one of 190 ms that
    /// straddled the barrier's start. Now the barrier is its whole time and the
    /// compute's preemptions are theirs, within one merged interval's span.
    #[test]
    fn a_barrier_after_compute_preempted_past_the_queue_is_its_whole_time() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        let t0 = 1_000_000u64;
        let (slices, slice) = (300u64, 6_000_000u64);
        for i in 0..slices {
            let t = t0 + i * slice;
            j.switch_out(7, 0, t + 3_000_000, true);
            j.switch_in(7, t + 6_000_000, None, &mut out);
        }
        // The call starts 1 ms after the last slice (not within the clock slack).
        let start = t0 + slices * slice + 1_000_000;
        let (inside, every) = (9_000u64, 50_000u64);
        for i in 0..inside {
            let t = start + i * every;
            j.switch_out(7, 0, t + 10_000, i % 90 != 0);
            j.switch_in(7, t + 30_000, None, &mut out);
        }
        let end = start + inside * every;
        let barrier = Marker::decode(
            WAIT_MPI | (WAIT_OBJ_MPI_FN << 8),
            0,
            start,
            end - start,
            end + 100,
        )
        .expect("valid");
        let (ns, _) = j.marker(7, key(5), barrier, &mut out);
        j.finish(&mut out);
        // The queue held 2.25 s at most, in 3,072 intervals: spans of 1 ms at most.
        let span = 1_100_000;
        assert!(
            ns.abs_diff(end - start) <= span,
            "the barrier's {} ns claimed {ns}",
            end - start
        );
        let inferred: u64 = out
            .waits
            .iter()
            .filter(|w| {
                matches!(
                    w.cause,
                    Cause::Stack {
                        preempted: true,
                        ..
                    }
                )
            })
            .map(|w| w.ns)
            .sum();
        assert!(
            inferred.abs_diff(slices * 3_000_000) <= span,
            "the compute's preemptions: {inferred} ns, designed {}",
            slices * 3_000_000
        );
        let total: u64 = out.waits.iter().map(|w| w.ns).sum();
        assert_eq!(total, ns + inferred, "each interval counted once");
    }

    #[test]
    fn corrupt_records_claim_nothing_and_never_panic() {
        // Unknown class, overflowing or absurd durations, an end after the sample.
        assert!(Marker::decode(99, 0, 0, 1, 10).is_none());
        assert!(Marker::decode(WAIT_LOCK, 0, u64::MAX, 2, u64::MAX).is_none());
        assert!(Marker::decode(WAIT_LOCK, 0, 0, MAX_WAIT_NS + 1, u64::MAX).is_none());
        assert!(Marker::decode(WAIT_SLEEP, 0, 1_000, 1_000_000, 1_000).is_none());
        // A switch-in without its switch-out, or before it, is ignored.
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        j.switch_in(1, 10, None, &mut out);
        j.switch_out(1, 0, 50, false);
        j.switch_in(1, 10, None, &mut out);
        j.finish(&mut out);
        assert!(out.waits.is_empty());
    }

    #[test]
    fn a_thread_never_marked_keeps_its_switch_out_stack() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        j.switch_out(3, 2, 10, false);
        j.switch_in(3, 1_010, Some((key(9), Some(3))), &mut out);
        j.finish(&mut out);
        assert_eq!(out.waits[0].key, key(9));
        let by_stack = Cause::Stack {
            preempted: false,
            arg0: Some(3),
        };
        assert_eq!(out.waits[0].cause, by_stack);
        assert_eq!(out.samples[&key(9)], (0, 1_000));
    }

    #[test]
    fn root_one_call_woken_twice_is_one_wait_with_its_waker() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // Two off-CPU intervals of one call (switch-out stack 9); thread 8 (key 4)
        // wakes it the second time; a wakeup of a running thread is no one's.
        j.switch_out(7, 1, 1_000_000, false);
        j.switch_in(7, 2_000_000, Some((key(9), None)), &mut out);
        j.woken(7, key(3));
        j.switch_out(7, 1, 2_100_000, false);
        j.woken(7, key(4));
        j.switch_in(7, 3_000_000, Some((key(9), None)), &mut out);
        j.marker(7, key(5), marker(WAIT_LOCK, 900_000, 3_000_100), &mut out);
        j.finish(&mut out);
        assert_eq!(out.waits.len(), 1, "{:?}", out.waits);
        assert_eq!(out.waits[0].ns, 1_900_000);
        assert_eq!(out.waits[0].waker, Some(key(4)));
        assert!(!out.waits[0].continued);
    }

    #[test]
    fn an_mpi_wait_counts_its_polling_on_cpu() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // 10 ms in MPI_Barrier: 1 ms in a poll the library made (its own marker), 3 ms
        // yielded (off CPU), the other 6 ms polling on CPU.
        off_cpu(&mut j, &mut out, 1_000_000, 2_000_000);
        j.marker(7, key(4), marker(WAIT_IO, 990_000, 2_000_100), &mut out);
        off_cpu(&mut j, &mut out, 5_000_000, 8_000_000);
        let barrier = Marker::decode(
            WAIT_MPI | (WAIT_OBJ_MPI_FN << 8),
            0,
            500_000,
            10_000_000,
            10_600_000,
        )
        .expect("valid");
        let (ns, _) = j.marker(7, key(5), barrier, &mut out);
        assert_eq!(ns, 9_000_000);
        let w = out.waits.last().expect("a wait");
        let barrier = Some("MPI_Barrier".to_string());
        assert_eq!(w.cause, Cause::Recorded(WaitClass::Mpi, barrier));
        assert_eq!(out.wait_ns_on_cpu, 6_000_000);
        // An index past the table names nothing.
        let odd = Marker::decode(WAIT_MPI | (WAIT_OBJ_MPI_FN << 8), 999, 0, 10, 20).unwrap();
        assert_eq!(odd.object, None);
    }

    #[test]
    fn an_mpi_wait_yielding_thousands_of_times_is_counted_once() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        // 1 s in MPI_Barrier, switched out 10,000 times for 50 µs each (0.5 s off CPU).
        let start = 1_000_000_000u64;
        for i in 0..10_000u64 {
            let out_t = start + 10_000 + i * 99_000;
            j.switch_out(7, 0, out_t, true);
            j.switch_in(7, out_t + 50_000, Some((key(9), None)), &mut out);
        }
        let barrier = Marker::decode(
            WAIT_MPI | (WAIT_OBJ_MPI_FN << 8),
            0,
            start,
            1_000_000_000,
            start + 1_000_000_100,
        )
        .expect("valid");
        j.marker(7, key(5), barrier, &mut out);
        j.finish(&mut out);
        let total: u64 = out.waits.iter().map(|w| w.ns).sum();
        assert_eq!(total, 1_000_000_000, "the call's time, once");
        assert_eq!(out.wait_ns_on_cpu, 500_000_000);
    }

    /// More switch-outs in one call than the off-CPU log holds (80,000 against 65,536):
    /// the call's start is still read from the log (thinned, not cut), so its polling
    /// on CPU counts; before, the call got its off-CPU time only.
    #[test]
    fn an_mpi_wait_yielding_more_often_than_the_log_holds_counts_its_polling() {
        let mut j = WaitJoin::default();
        let mut out = RawProfile::default();
        let (start, n, every) = (1_000_000_000u64, 80_000u64, 10_000u64);
        for i in 0..n {
            let t = start + 2_000 + i * every;
            j.switch_out(7, 0, t, true);
            j.switch_in(7, t + 4_000, None, &mut out);
        }
        let dur = n * every;
        let barrier = Marker::decode(
            WAIT_MPI | (WAIT_OBJ_MPI_FN << 8),
            0,
            start,
            dur,
            start + dur + 100,
        )
        .expect("valid");
        let (ns, _) = j.marker(7, key(5), barrier, &mut out);
        j.finish(&mut out);
        let total: u64 = out.waits.iter().map(|w| w.ns).sum();
        assert_eq!(ns, total, "nothing left unexplained");
        // Off CPU 4 µs of every 10: the on-CPU part is 60%, less a thinned gap or two.
        assert!(
            total.abs_diff(dur) <= 100_000 && total <= dur,
            "{total} ns of the call's {dur}"
        );
        assert!(
            out.wait_ns_on_cpu >= dur * 6 / 10 - 100_000,
            "{}",
            out.wait_ns_on_cpu
        );
    }

    #[test]
    fn the_wakee_is_read_from_the_tracepoint_and_interrupts_wake_no_one() {
        let mut raw = vec![0u8; 36];
        raw[24..28].copy_from_slice(&1234i32.to_le_bytes());
        assert_eq!(wakee_of(&raw), Some(1234));
        raw[2] = 0x08; // hardirq
        assert_eq!(wakee_of(&raw), None);
        assert_eq!(wakee_of(&raw[..20]), None);
        raw[2] = 0;
        raw[24..28].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(wakee_of(&raw), None);
    }
}
