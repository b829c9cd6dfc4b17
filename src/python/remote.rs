//! The remote sampler for `-p PID` (a process hwprof did not launch, so no agent): a
//! thread that reads each Python thread's frame chain from outside with
//! `process_vm_readv`, without stopping the target. A read races with the running
//! interpreter, so each stack is checked: the top frame (its pointer, then its code
//! object) is read again after the walk, and a stack whose top changed is discarded
//! and counted as torn. Captures go to `python-<pid>.bin` with method
//! "remote", and code objects to `python-codes.jsonl`, as with the agent. These stacks are
//! close to, not at, the instant of each perf sample; the report says which method
//! was used.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::PyError;
use super::code::CodeCache;
use super::memory::{LiveMemory, ProcessMemory};
use super::process::{self, Interpreter};
use super::sidecar::{CodeLine, CodeWriter};
use super::walker;
use super::wire::MAX_FRAMES;
use super::wire::{
    CapFrame, Capture, FILE_MAGIC, FILE_VERSION, FR_SHIM, FileHeader, METHOD_REMOTE, Plain,
    REC_CAPTURE, RecordHeader,
};

/// Most stacks read per second.
pub const MAX_HZ: u64 = 1000;

/// A running remote sampler.
pub struct RemoteSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<String>>>,
    /// Stacks written.
    pub captures: Arc<AtomicU64>,
}

impl RemoteSampler {
    /// Starts sampling the Python threads of `pid` at `hz` (at most [`MAX_HZ`]) into
    /// `raw_dir`. Errors when the process is not a CPython hwprof can read.
    pub fn start(pid: u32, raw_dir: &Path, hz: u64) -> Result<RemoteSampler, PyError> {
        let mem = LiveMemory { pid };
        let maps = process::read_maps(pid)?;
        let interp = process::find_interpreter(pid, &maps, &mem)?;
        let mut codes =
            CodeWriter::open(raw_dir).map_err(|e| PyError::Io(raw_dir.to_path_buf(), e))?;
        codes.put(&CodeLine::Process {
            pid,
            version: interp.version_string(),
            method: "remote".into(),
        });
        codes.flush();
        let path = raw_dir.join(format!("python-{pid}.bin"));
        let stop = Arc::new(AtomicBool::new(false));
        let captures = Arc::new(AtomicU64::new(0));
        let (stop2, caps2) = (stop.clone(), captures.clone());
        let period = Duration::from_nanos(1_000_000_000 / hz.clamp(1, MAX_HZ));
        let thread = std::thread::Builder::new()
            .name("hwprof-pyremote".into())
            .spawn(move || sample_loop(pid, interp, path, codes, period, &stop2, &caps2))
            .map_err(|e| PyError::Io(raw_dir.to_path_buf(), e))?;
        Ok(RemoteSampler {
            stop,
            thread: Some(thread),
            captures,
        })
    }

    /// Stops; returns the notices (method, counts).
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RemoteSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// One consistent stack of a thread, or None when torn (top changed during the walk).
pub fn read_stack(
    m: &dyn ProcessMemory,
    interp: &Interpreter,
    tstate: u64,
) -> Option<(Vec<CapFrame>, u32)> {
    let dec = &interp.decoder;
    let top = walker::top_frame(m, dec, tstate).ok()?;
    let (frames, walked) = walker::walk(m, dec, top, MAX_FRAMES);
    let top2 = walker::top_frame(m, dec, tstate).ok()?;
    if top2 != top {
        return None;
    }
    // The leaf read again must be the same code; its instruction may have moved on (in a
    // hot loop it always has: comparing it too discarded three stacks in four), and
    // the first read's is as near the instant as the second's.
    if top.frame != 0 {
        let (again, _) = walker::walk(m, dec, top, 1);
        let leaf = |f: &[CapFrame]| f.first().map(|c| (c.code, c.token, c.self_type));
        if leaf(&again) != leaf(&frames) {
            return None;
        }
    }
    Some((frames, walked.flags))
}

fn sample_loop(
    pid: u32,
    interp: Interpreter,
    path: PathBuf,
    mut codes: CodeWriter,
    period: Duration,
    stop: &AtomicBool,
    captures: &AtomicU64,
) -> Vec<String> {
    use std::io::Write;
    let mem = LiveMemory { pid };
    // Never through a planted link, never into a file that is not ours.
    let Ok(mut out) = crate::util::append_private_file(&path) else {
        return vec![format!("python: cannot write {}", path.display())];
    };
    let header = FileHeader {
        magic: FILE_MAGIC,
        version: FILE_VERSION,
        pid,
        method: METHOD_REMOTE,
        minor: interp.version.1,
    };
    let _ = out.write_all(header.as_bytes());
    let mut cache = CodeCache::default();
    let mut torn = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if !i32::try_from(pid).is_ok_and(crate::util::proc::exists) {
            break;
        }
        for t in walker::threads(&mem, &interp.layout, interp.runtime) {
            let Some(tid) = t.tid else { continue };
            let time_ns = now_ns();
            let Some((frames, flags)) = read_stack(&mem, &interp, t.tstate) else {
                torn += 1;
                continue;
            };
            let len = size_of::<RecordHeader>()
                + size_of::<Capture>()
                + frames.len() * size_of::<CapFrame>();
            let mut rec = Vec::with_capacity(len);
            rec.extend_from_slice(Plain::as_bytes(&RecordHeader {
                len: len as u32,
                kind: REC_CAPTURE,
            }));
            rec.extend_from_slice(Plain::as_bytes(&Capture {
                pid,
                tid,
                time_ns,
                flags,
                nframes: frames.len() as u32,
            }));
            for f in &frames {
                rec.extend_from_slice(f.as_bytes());
            }
            if out.write_all(&rec).is_ok() {
                captures.fetch_add(1, Ordering::Relaxed);
            }
            for f in frames.iter().filter(|f| f.flags & FR_SHIM == 0) {
                if let Some((ci, true)) = cache.get(&mem, &interp.layout, f.code, f.token) {
                    codes.put(&CodeLine::code(pid, f.code, ci, interp.version.1));
                }
                if f.self_type != 0
                    && let (Some(name), true) = cache.type_name(&mem, &interp.layout, f.self_type)
                {
                    codes.put(&CodeLine::Selftype {
                        pid,
                        addr: f.self_type,
                        name,
                    });
                }
            }
        }
        codes.flush();
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    let n = captures.load(Ordering::Relaxed);
    codes.put(&CodeLine::Stats {
        pid,
        torn,
        captures: n,
    });
    codes.flush();
    vec![format!(
        "python: {} (pid {pid}), remote reads without stopping the target (approximate instant): {n} stacks, {torn} torn stacks discarded",
        interp.version_string()
    )]
}
