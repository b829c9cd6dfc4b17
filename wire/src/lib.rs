//! What the collector (`hwprof`) and the agent it preloads into Python processes
//! (`hwprof-agent`) share, so that both compile the same definition: the interpreter
//! [`Layout`] sent to the agent and the per-version tables ([`layouts`]), the socket
//! messages, the capture records of `python-<pid>.bin` and the capture [`ring`] they go
//! through. Plain `repr(C)` structs of fixed-size integers, little-endian (x86-64),
//! declared with [`plain!`]: their byte views ([`Plain`]) are checked at compile time.
//! std only, no dependencies (the agent is preloaded into every process of the target).
//!
//! # Socket protocol (`HWPROF_AGENT_SOCK`, `SOCK_SEQPACKET`)
//!
//! 1. agent → collector: [`Hello`] (`magic` = [`HELLO_MAGIC`], the agent's pid).
//! 2. collector → agent: [`Config`]: whether to capture Python frames, the `sig_data`
//!    cookie, the address of `_PyRuntime`, the [`Layout`] of that interpreter, the
//!    sampling `perf_event_attr`, and (`SCM_RIGHTS`) the memfd of the capture ring
//!    (`ring.rs`) that the collector created for this process. The agent waits at most
//!    2 s for it; without it, no Python capture.
//! 3. agent → collector: [`EventsMsg`] listing the CPU of each perf event fd, with the
//!    fds attached (`SCM_RIGHTS`), at most [`MAX_FDS_PER_MSG`] per message.
//! 4. at exit (the connecting process only): agent → [`Bye`]; collector → one byte of
//!    ack once it has resolved that process's pending code objects. The agent waits at
//!    most 1 s.
//!
//! # `python-<pid>.bin` (the agent's captures, copied out of its ring by the collector;
//! or written by the remote sampler)
//!
//! A [`FileHeader`] (magic `HWPYCAP1`, version, writer pid, method: 1 agent, 2 remote),
//! then records. Each record starts with a [`RecordHeader`] `{len: u32, kind: u32}`,
//! `len` counting the whole record; a reader stops at the first incomplete record.
//! Kind [`REC_CAPTURE`]: a [`Capture`] followed by `nframes` [`CapFrame`], leaf first.
//! The agent's handler puts each record whole into the capture ring (`ring.rs`: a
//! reservation by compare-and-swap, so records of concurrent threads and of forked
//! children, which share the mapping, never interleave); the collector's link thread
//! appends the committed records to the file, so a killed process loses only a record
//! it was still writing.

#[macro_use]
mod plain;
mod cycle;
pub mod frames;
pub mod layouts;
pub mod ring;
pub mod threads;

pub use plain::{Plain, slice_as_bytes};

/// "Absent in this version" in a [`Layout`].
pub const NONE: u64 = u64::MAX;

plain! {
    /// Struct offsets of one CPython version (x86-64), everything the frame walker needs.
    /// 3.8-3.12 come from generated tables, 3.13+ from `_Py_DebugOffsets`.
    #[derive(PartialEq, Eq)]
    pub struct Layout {
        /// Major version (3).
        pub major: u64,
        /// Minor version.
        pub minor: u64,
        /// `_PyRuntime.interpreters.head`.
        pub runtime_interpreters_head: u64,
        /// `_PyRuntime.gilstate.tstate_current`, the GIL holder's thread state (3.8-3.11;
        /// 3.12+ keep it in a thread-local).
        pub runtime_tstate_current: u64,
        /// `PyInterpreterState.tstate_head` / `threads.head`.
        pub interp_threads_head: u64,
        /// `PyInterpreterState.next`.
        pub interp_next: u64,
        /// `PyThreadState.next`.
        pub tstate_next: u64,
        /// `PyThreadState.thread_id` (a `pthread_t`).
        pub tstate_thread_id: u64,
        /// `PyThreadState.native_thread_id` (3.11+).
        pub tstate_native_thread_id: u64,
        /// `PyThreadState.frame` (<3.11), `.cframe` (3.11, 3.12), `.current_frame` (3.13+).
        pub tstate_frame: u64,
        /// `_PyCFrame.current_frame` (3.11, 3.12); NONE when `tstate_frame` is the frame.
        pub cframe_current_frame: u64,
        /// `_PyCFrame.previous` (3.11, 3.12): the caller's C frame, whose `current_frame`
        /// is the stack while a new C frame is published but not yet set.
        pub cframe_previous: u64,
        /// `f_back` / `previous`.
        pub frame_previous: u64,
        /// `f_code` / `f_executable`.
        pub frame_code: u64,
        /// `prev_instr` / `instr_ptr` (3.11+).
        pub frame_instr: u64,
        /// `is_entry` (3.11 only).
        pub frame_is_entry: u64,
        /// `owner` (3.11+).
        pub frame_owner: u64,
        /// The `owner` value of a frame owned by the C stack (`FRAME_OWNED_BY_CSTACK`, 3:
        /// the shim frame of 3.12+); NONE when the version has none.
        pub owner_cstack: u64,
        /// `f_localsplus` / `localsplus`.
        pub frame_localsplus: u64,
        /// `f_lasti` (<3.11, an `int`).
        pub frame_lasti: u64,
        /// Bytes per unit of `f_lasti`: 1 (3.8, 3.9 count bytes), 2 (3.10 counts
        /// `_Py_CODEUNIT`s); NONE without `f_lasti`.
        pub lasti_unit: u64,
        /// `co_qualname` (3.11+).
        pub code_qualname: u64,
        /// `co_lnotab` (<3.10) / `co_linetable`.
        pub code_linetable: u64,
        /// `co_varnames` / `co_localsplusnames`.
        pub code_varnames: u64,
        /// `co_code_adaptive` (3.11+).
        pub code_code_adaptive: u64,
        /// `co_argcount` (int).
        pub code_argcount: u64,
        /// `co_firstlineno` (int).
        pub code_firstlineno: u64,
        /// `co_name`.
        pub code_name: u64,
        /// `co_filename`.
        pub code_filename: u64,
        /// `ob_type`.
        pub object_type: u64,
        /// `tp_name` (a C string pointer).
        pub type_name: u64,
        /// `PyTupleObject.ob_size`.
        pub tuple_size: u64,
        /// `PyTupleObject.ob_item`.
        pub tuple_items: u64,
        /// `PyBytesObject.ob_size`.
        pub bytes_size: u64,
        /// `PyBytesObject.ob_sval`.
        pub bytes_data: u64,
        /// `PyASCIIObject.length`.
        pub unicode_length: u64,
        /// `PyASCIIObject.state` (bitfield: kind bits 2-4, compact bit 5, ascii bit 6).
        pub unicode_state: u64,
        /// `sizeof(PyASCIIObject)`: where compact ASCII data starts.
        pub unicode_ascii_size: u64,
        /// `sizeof(PyCompactUnicodeObject)`: where other compact data starts.
        pub unicode_compact_size: u64,
    }
}

/// What differs between CPython versions beyond offsets, read from the table's fields so
/// that callers test behaviour, never version numbers.
impl Layout {
    /// Frames are `PyFrameObject`s (3.8-3.10, with `f_lasti`), each run by its own C call
    /// of the eval loop: every frame is an entry frame ([`FR_ENTRY`]).
    #[inline]
    pub const fn frames_are_heap_objects(&self) -> bool {
        self.frame_lasti != NONE
    }

    /// No `co_qualname` (3.8-3.10): a method's class is named from the type of its first
    /// argument when that argument is `self` ([`CapFrame::self_type`], [`CODE_SELF_FIRST`]).
    #[inline]
    pub const fn class_from_first_arg(&self) -> bool {
        self.code_qualname == NONE
    }

    /// The thread state attached to the running thread is CPython's thread-local
    /// `_Py_tss_tstate` (3.12+), no longer `_PyRuntime.gilstate.tstate_current`.
    #[inline]
    pub const fn current_tstate_is_thread_local(&self) -> bool {
        self.runtime_tstate_current == NONE
    }
}

/// `Hello.magic`.
pub const HELLO_MAGIC: u64 = u64::from_le_bytes(*b"HWPAHELO");
/// `Config.magic`.
pub const CONFIG_MAGIC: u64 = u64::from_le_bytes(*b"HWPACONF");
/// `EventsMsg.magic`.
pub const EVENTS_MAGIC: u64 = u64::from_le_bytes(*b"HWPAEVTS");
/// `Bye.magic`.
pub const BYE_MAGIC: u64 = u64::from_le_bytes(*b"HWPABYE.");
/// Most fds sent in one message.
pub const MAX_FDS_PER_MSG: usize = 64;

plain! {
    /// Agent → collector, first message.
    pub struct Hello {
        /// [`HELLO_MAGIC`].
        pub magic: u64,
        /// The agent's process id.
        pub pid: u32,
        /// Reserved, 0.
        pub reserved: u32,
    }
}

/// Largest `perf_event_attr` carried in a [`Config`].
pub const MAX_ATTR: usize = 256;

plain! {
    /// Collector → agent.
    pub struct Config {
        /// [`CONFIG_MAGIC`].
        pub magic: u64,
        /// 1: this process is a CPython the collector understands: capture its frames on
        /// SIGTRAP.
        pub python: u32,
        /// Who samples this process: [`SAMPLE_NONE`], [`SAMPLE_IF_PYTHON`] or
        /// [`SAMPLE_ALWAYS`].
        pub sampling: u32,
        /// `sig_data` of the agent's events; the handler ignores other SIGTRAPs.
        pub cookie: u64,
        /// Address of `_PyRuntime` in the agent's process.
        pub runtime: u64,
        /// Address of `PyCode_Type` there (0: unknown). The walk stops at a frame whose code
        /// object has another type: 3.11 and 3.12 set `tstate->cframe` before the new
        /// cframe's `current_frame`, so a signal in between reads a stale stack slot.
        pub code_type: u64,
        /// The interpreter's layout.
        pub layout: Layout,
        /// Bytes of `attr` used (0: take `HWPROF_AGENT_ATTR` from the environment).
        pub attr_len: u32,
        /// 1 when the message carries (SCM_RIGHTS) the memfd of the capture ring (`ring.rs`),
        /// which the collector copies to `python-<pid>.bin`; without it the agent captures
        /// nothing.
        pub has_fd: u32,
        /// Data pages of each sampling event's ring (a power of two; 0: the collector maps
        /// and enables the agent's events). The agent maps each ring with this size and
        /// enables the event itself, so sampling starts before `main` however late the
        /// collector gets to it; the collector maps the same rings (same size) to drain them.
        pub ring_pages: u32,
        /// Reserved, 0.
        pub reserved: u32,
        /// The `perf_event_attr` to sample with (the collector's sampling event).
        pub attr: [u8; MAX_ATTR],
    }
}

/// [`Config::sampling`]: the agent opens no events (the collector's own events sample
/// this process; `--python perfmap`).
pub const SAMPLE_NONE: u32 = 0;
/// [`Config::sampling`]: the agent opens SIGTRAP sampling events when it captures Python
/// frames; other processes are sampled by the collector's inherited events.
pub const SAMPLE_IF_PYTHON: u32 = 1;
/// [`Config::sampling`]: the agent's events are this process's only sampling events (a
/// Python launch, where the collector opens tracking events only): SIGTRAP events when
/// Python, plain ones otherwise.
pub const SAMPLE_ALWAYS: u32 = 2;

plain! {
    /// Agent → collector: the CPUs of the attached fds, in order.
    pub struct EventsMsg {
        /// [`EVENTS_MAGIC`].
        pub magic: u64,
        /// The agent's pid.
        pub pid: u32,
        /// Number of valid entries in `cpus` (= fds attached).
        pub count: u32,
        /// CPU number of each fd.
        pub cpus: [u32; MAX_FDS_PER_MSG],
    }
}

plain! {
    /// Agent → collector at exit.
    pub struct Bye {
        /// [`BYE_MAGIC`].
        pub magic: u64,
        /// The exiting pid.
        pub pid: u32,
        /// Reserved, 0.
        pub reserved: u32,
    }
}

plain! {
    /// Start of `python-<pid>.bin`.
    pub struct FileHeader {
        /// [`FILE_MAGIC`].
        pub magic: [u8; 8],
        /// [`FILE_VERSION`].
        pub version: u32,
        /// Process that created the file.
        pub pid: u32,
        /// [`METHOD_AGENT`] or [`METHOD_REMOTE`].
        pub method: u32,
        /// Python minor version (3.x), 0 when unknown.
        pub minor: u32,
    }
}

/// Format version in [`FileHeader`]. 2: frames of 3.8-3.10 carry [`FR_ENTRY`].
pub const FILE_VERSION: u32 = 2;
/// Captured in-process by the agent at the sample's instant.
pub const METHOD_AGENT: u32 = 1;
/// Read from outside by the remote sampler (torn stacks discarded).
pub const METHOD_REMOTE: u32 = 2;
/// `FileHeader.magic`.
pub const FILE_MAGIC: [u8; 8] = *b"HWPYCAP1";

plain! {
    /// Precedes every record.
    pub struct RecordHeader {
        /// Whole record length in bytes, header included.
        pub len: u32,
        /// Record kind.
        pub kind: u32,
    }
}

/// A Python stack capture.
pub const REC_CAPTURE: u32 = 1;
/// A code object's identity, written by the agent the first time a capture meets it: a
/// [`CodeRecord`] followed by the bytes it counts (name, qualname, filename as the raw
/// data of compact `str` objects, `kind` bytes per character; then the line table),
/// zero-padded to a multiple of 8.
pub const REC_CODE: u32 = 2;

/// [`CodeRecord::flags`]: the first parameter is named `self` (only where
/// [`Layout::class_from_first_arg`]).
pub const CODE_SELF_FIRST: u32 = 1;

plain! {
    /// Body of a [`REC_CODE`] record.
    #[derive(Default)]
    pub struct CodeRecord {
        /// Process whose code object this is (forked children share the ring).
        pub pid: u32,
        /// `CODE_*` bits.
        pub flags: u32,
        /// Address of the code object.
        pub addr: u64,
        /// Its token (as in [`CapFrame::token`]).
        pub token: u64,
        /// `co_firstlineno`.
        pub firstlineno: i32,
        /// Character width (1, 2, 4) of name, qualname and filename, one byte each.
        pub kinds: [u8; 4],
        /// Bytes of `co_name` data.
        pub name_len: u32,
        /// Bytes of `co_qualname` data (0 before 3.11: the qualname is the name).
        pub qualname_len: u32,
        /// Bytes of `co_filename` data.
        pub file_len: u32,
        /// Bytes of the line table (`co_lnotab` / `co_linetable`).
        pub table_len: u32,
    }
}

plain! {
    /// Body of a [`REC_CAPTURE`] record, followed by `nframes` [`CapFrame`].
    pub struct Capture {
        /// Process id.
        pub pid: u32,
        /// Thread id (kernel tid).
        pub tid: u32,
        /// CLOCK_MONOTONIC nanoseconds when captured.
        pub time_ns: u64,
        /// `CAP_*` bits.
        pub flags: u32,
        /// Frames that follow.
        pub nframes: u32,
    }
}

/// The signal arrived while SIGTRAP was blocked: captured later than the sample.
pub const CAP_ASYNC: u32 = 1 << 0;
/// Stack deeper than the limit, outer frames cut.
pub const CAP_TRUNCATED: u32 = 1 << 1;
/// The thread has no Python thread state (a native thread).
pub const CAP_NO_TSTATE: u32 = 1 << 2;
/// A memory read failed mid-walk (stack kept up to there).
pub const CAP_READ_FAILED: u32 = 1 << 3;
/// Remote sampler: the stack changed while being read and was discarded.
pub const CAP_TORN: u32 = 1 << 4;

/// The frame is an entry frame: the outermost frame of one C-level call of the eval loop
/// (3.11 `is_entry`; every frame where [`Layout::frames_are_heap_objects`]; never on 3.12+,
/// where [`FR_SHIM`] frames separate the calls instead).
pub const FR_ENTRY: u32 = 1 << 0;
/// The frame is owned by the C stack (3.12+ shim frame): it separates eval-loop calls
/// and is not a Python function.
pub const FR_SHIM: u32 = 1 << 1;
/// `offset` unknown.
pub const FR_NO_OFFSET: u32 = 1 << 2;

plain! {
    /// One captured frame.
    #[derive(Default, PartialEq, Eq)]
    pub struct CapFrame {
        /// Address of the code object.
        pub code: u64,
        /// Validation token: see [`code_token`].
        pub token: u64,
        /// Type of the first local (`self`), <3.11 only (for `Class.method`), else 0.
        pub self_type: u64,
        /// Byte offset of the current instruction in the bytecode.
        pub offset: u32,
        /// `FR_*` bits.
        pub flags: u32,
    }
}

/// Most frames captured per stack.
pub const MAX_FRAMES: usize = 1024;

/// The token of a code object from its name and filename pointers, its first line and
/// the name string's cached hash (`PyASCIIObject.hash`, at `unicode_length + 8`): a freed
/// code object's address reused by another gives another token, also when its name and
/// filename strings were reallocated at the same addresses.
pub fn code_token(name_ptr: u64, filename_ptr: u64, firstlineno: i32, name_hash: u64) -> u64 {
    name_ptr
        ^ filename_ptr.rotate_left(32)
        ^ (firstlineno as u32 as u64).rotate_left(47)
        ^ name_hash.rotate_left(13)
}

/// Where a `str`'s cached hash lies, from the offset of its length (`PyASCIIObject`:
/// length, then hash, 3.8-3.13).
pub fn unicode_hash_offset(unicode_length: u64) -> u64 {
    unicode_length.wrapping_add(8)
}

// ------------------------------------------------------------------ waits (locks mode)
//
// In locks mode (`HWPROF_AGENT_WAITS` = threshold in ns) the agent interposes blocking
// calls (agent/src/waits.rs). A call that blocked at least the threshold calls the
// agent's `hwprof_wait_marker(magic, what, object, start_ns, duration_ns, path)`, on whose
// first instruction the agent has an execute breakpoint that samples with the mode's
// attr (user registers and user stack). The wait's record is the arguments of that
// call, in the sample's user registers (x86-64 SysV: rdi, rsi, rdx, rcx, r8 = perf
// register numbers 5, 4, 3, 2, 16), so the record and its stack are one sample: nothing
// to join, nothing to lose separately. For a wait on a file descriptor, `path` (r9,
// perf register 17) points at the fd's path, NUL-terminated, in the marker caller's
// frame, so inside the sample's stack copy (at `r9 - sp` in it); 0 when unknown.

/// Most bytes of a wait's fd path (with its NUL) the agent writes and finalize reads.
pub const WAIT_PATH_BYTES: usize = 192;

/// `rdi` of a wait marker sample.
pub const WAIT_MAGIC: u64 = u64::from_le_bytes(*b"HWPWAIT1");
/// `what` (rsi) low byte: the class, as `profile::WaitClass` orders them.
pub const WAIT_LOCK: u64 = 0;
/// Condition variable, barrier, semaphore.
pub const WAIT_CONDITION: u64 = 1;
/// nanosleep, clock_nanosleep, usleep, sleep.
pub const WAIT_SLEEP: u64 = 2;
/// read, recv, accept, connect, poll, select, epoll_wait.
pub const WAIT_IO: u64 = 3;
/// pthread_join, waitpid.
pub const WAIT_JOIN: u64 = 4;
/// `what` bit 16: the call returned EINTR (a signal handler ran); its caller will
/// likely call again for the rest of the time (CPython's `time.sleep`, PEP 475), and
/// that next wait is the same wait, counted once (`finalize::waits_join`).
pub const WAIT_INTERRUPTED: u64 = 1 << 16;
/// `what` bits 8-15: what `object` (rdx) is.
pub const WAIT_OBJ_NONE: u64 = 0;
/// The address of the sync object.
pub const WAIT_OBJ_ADDR: u64 = 1;
/// A file descriptor number.
pub const WAIT_OBJ_FD: u64 = 2;
/// A process id (waitpid; -1: any child).
pub const WAIT_OBJ_PID: u64 = 3;
/// A `pthread_t` (pthread_join).
pub const WAIT_OBJ_THREAD: u64 = 4;
/// Blocked or polling in an MPI call (agent/src/mpi_waits.rs): its whole duration.
pub const WAIT_MPI: u64 = 6;
/// An index into [`MPI_FUNCTIONS`]: the MPI function the program called.
pub const WAIT_OBJ_MPI_FN: u64 = 5;
/// The MPI functions the agent times, by index (the order of agent/src/mpi_waits.rs).
pub const MPI_FUNCTIONS: [&str; 17] = [
    "MPI_Barrier",
    "MPI_Bcast",
    "MPI_Reduce",
    "MPI_Allreduce",
    "MPI_Gather",
    "MPI_Allgather",
    "MPI_Scatter",
    "MPI_Alltoall",
    "MPI_Recv",
    "MPI_Send",
    "MPI_Ssend",
    "MPI_Sendrecv",
    "MPI_Wait",
    "MPI_Waitall",
    "MPI_Waitany",
    "MPI_Waitsome",
    "MPI_Probe",
];

// ------------------------------------------------------ a wait's sample, copied by the agent
//
// In a process without Python capture the agent opens no breakpoint: at a marked wait it
// saves its own registers as the marker's breakpoint would have found them (ip at the
// marker's first instruction, sp at its return address, the record in rdi...r9), copies
// its stack from sp (bounded by the thread's stack end) and sends both in one
// [`WaitSampleMsg`] followed by `stack_len` bytes of stack, on a socket of its own: one
// end of a socketpair, whose other end it hands over once ([`WaitSocketMsg`], the fd
// attached). The collector's drain reads that socket at each pass (never woken by it:
// a wake-up would cost the waiting thread more than the copy), checks each message and
// writes it into perf.data as a `PERF_RECORD_SAMPLE` of the mode's attr.

/// `WaitSocketMsg.magic`.
pub const WAIT_SOCKET_MAGIC: u64 = u64::from_le_bytes(*b"HWPWSOCK");

plain! {
    /// Agent → collector, on its connection: the read end of its wait-sample socket
    /// attached (`SCM_RIGHTS`).
    pub struct WaitSocketMsg {
        /// [`WAIT_SOCKET_MAGIC`].
        pub magic: u64,
        /// The agent's pid.
        pub pid: u32,
        /// Zero.
        pub reserved: u32,
    }
}

/// Registers in a [`WaitSampleMsg`]: perf's x86-64 numbering (ax, bx, cx, dx, si, di,
/// bp, sp, ip, flags, cs, ss, ds, es, fs, gs, r8-r15).
pub const WAIT_SAMPLE_REGS: usize = 24;
/// Most stack bytes a [`WaitSampleMsg`] may carry (perf's largest `sample_stack_user`).
pub const WAIT_SAMPLE_MAX_STACK: usize = 65528;
/// `WaitSampleMsg.magic`.
pub const WAIT_SAMPLE_MAGIC: u64 = u64::from_le_bytes(*b"HWPWSMPL");

plain! {
    /// Agent → collector: one marked wait's registers; its stack bytes follow.
    pub struct WaitSampleMsg {
        /// [`WAIT_SAMPLE_MAGIC`].
        pub magic: u64,
        /// The sending process (the connection's peer, or a child forked from it).
        pub pid: u32,
        /// The waiting thread.
        pub tid: u32,
        /// CLOCK_MONOTONIC ns, after the wait (the clock of the collector's events).
        pub time: u64,
        /// The CPU the thread ran on.
        pub cpu: u32,
        /// Stack bytes after this header (at most [`WAIT_SAMPLE_MAX_STACK`]).
        pub stack_len: u32,
        /// Registers, [`WAIT_SAMPLE_REGS`] of them, perf's numbering.
        pub regs: [u64; WAIT_SAMPLE_REGS],
    }
}

/// `perf_event_attr.sample_type` bits (the kernel ABI's values), for the agent, which
/// decides from the mode's attr whether it can copy its wait samples itself, and for the
/// collector, which lays them out: both read the same list of fields.
pub mod sample_type {
    pub const IP: u64 = 1 << 0;
    pub const TID: u64 = 1 << 1;
    pub const TIME: u64 = 1 << 2;
    pub const ADDR: u64 = 1 << 3;
    pub const CALLCHAIN: u64 = 1 << 5;
    pub const ID: u64 = 1 << 6;
    pub const CPU: u64 = 1 << 7;
    pub const PERIOD: u64 = 1 << 8;
    pub const STREAM_ID: u64 = 1 << 9;
    pub const REGS_USER: u64 = 1 << 12;
    pub const STACK_USER: u64 = 1 << 13;
    pub const IDENTIFIER: u64 = 1 << 16;
    /// The fields a [`super::WaitSampleMsg`] can be written as (a user call chain only
    /// when the attr excludes it, so that the kernel's would be empty too).
    pub const WAIT_SAMPLE_FIELDS: u64 = IP
        | TID
        | TIME
        | ADDR
        | CALLCHAIN
        | ID
        | CPU
        | PERIOD
        | STREAM_ID
        | REGS_USER
        | STACK_USER
        | IDENTIFIER;
}
