//! The collector's side of the agent: deciding to use it ([`plan_launch`]), the socket
//! the agents connect to ([`AgentLink`]), and the resolver that tails the agents'
//! capture files and reads the code objects they name while the processes live.
//!
//! One thread per [`AgentLink`] serves the socket (protocol in [`super::wire`]): on each
//! hello it finds the process's interpreter (`/proc/PID/maps`, `_PyRuntime`, version) and
//! answers with that version's layout, or with "no Python" (a non-Python exec'd child,
//! which then opens plain sampling events so it is still sampled; or a refused
//! interpreter, noted once). Every ~10 ms it reads new records of `python-*.bin` and
//! resolves code objects not seen before into `python-codes.jsonl`. On an agent's
//! goodbye it resolves that process's last captures, then acks.

use std::collections::{HashMap, HashSet};
use std::io::{IoSliceMut, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{
    AddressFamily, Backlog, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, accept4,
    bind, listen, recvmsg, send, socket,
};

use super::PyError;
use super::PythonCapture;
use super::code::CodeCache;
use super::embedded::AgentFile;
use super::memory::LiveMemory;
use super::process::{self, InterpError, Interpreter};
use super::ring::{RING_DATA_BYTES, RING_HEADER_BYTES, Ring};
use super::sidecar::{CodeLine, CodeWriter, parse_captures};
use super::wire::{
    BYE_MAGIC, CONFIG_MAGIC, Config, EVENTS_MAGIC, FILE_MAGIC, FILE_VERSION, FR_SHIM, FileHeader,
    HELLO_MAGIC, Layout, METHOD_AGENT, NONE, Plain,
};
use crate::util::proc::Unreadable;

/// How a launched Python program's frames are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchMethod {
    /// The preloaded agent captures at each sample's instant.
    Agent,
    /// CPython 3.12+ perf trampolines; perf maps copied into the raw dir.
    Perfmap,
    /// The remote sampler reads the frame chains from outside ([`super::RemoteSampler`]).
    Remote,
}

/// What [`plan_launch`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Capture method.
    pub method: LaunchMethod,
    /// The resolved program (argv\[0\] on PATH).
    pub program: PathBuf,
    /// The program itself is Python. When it is not (`sh -c "python ..."`, `env X=1
    /// python ...`, `mpirun python ...`), the agent is still preloaded into the tree and
    /// wakes only in processes that turn out to be Python.
    pub python: bool,
}

fn resolve_program(arg0: &str) -> Option<PathBuf> {
    if arg0.contains('/') {
        return Some(PathBuf::from(arg0));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(arg0))
        .find(|p| p.is_file())
}

/// Whether `path` is a CPython program: a python-named executable, a script whose
/// shebang names python, or an ELF that links libpython.
pub fn looks_like_python(path: &Path) -> bool {
    if process::is_python_name(path) {
        return true;
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if process::is_python_name(&real) {
        return true;
    }
    let Ok(mut f) = crate::raw::bounded::open_file(&real, true) else {
        return false;
    };
    let mut head = [0u8; 256];
    let n = f.read(&mut head).unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"#!") {
        let line = head.split(|&c| c == b'\n').next().unwrap_or(b"");
        return String::from_utf8_lossy(line).contains("python");
    }
    if head.starts_with(b"\x7fELF") {
        use object::Object;
        // SAFETY: a read-only private mapping; `object` bounds-checks what it reads.
        let Ok(data) = (unsafe { memmap2::Mmap::map(&f) }) else {
            return false;
        };
        if let Ok(obj) = object::File::parse(&*data)
            && let Ok(libs) = obj.import_libraries()
        {
            return libs
                .flatten()
                .any(|l| String::from_utf8_lossy(l.name()).starts_with("libpython"));
        }
    }
    false
}

/// Decides whether to use the agent for this command and how. argv\[0\] that resolves
/// to a CPython executable, a script with a python shebang, or an ELF linking libpython
/// is Python; with `--python auto` any other command still gets the agent (when it is
/// installed) for the Python processes it may start. None: `--python off`, or
/// `perfmap`/`remote` asked for a program that is not Python.
pub fn plan_launch(command: &[String], capture: PythonCapture) -> Option<LaunchPlan> {
    let program = resolve_program(command.first()?)?;
    if capture == PythonCapture::Off {
        return None;
    }
    let python = looks_like_python(&program);
    if !python && (capture != PythonCapture::Auto || !agent_available()) {
        return None;
    }
    let method = match capture {
        PythonCapture::Perfmap => LaunchMethod::Perfmap,
        PythonCapture::Remote => LaunchMethod::Remote,
        _ => LaunchMethod::Agent,
    };
    Some(LaunchPlan {
        method,
        program,
        python,
    })
}

/// Sampling events opened by one agent (fds received with `SCM_RIGHTS`).
#[derive(Debug)]
pub struct AgentEvents {
    /// The agent's process.
    pub pid: u32,
    /// (cpu, event fd), one per CPU.
    pub fds: Vec<(u32, OwnedFd)>,
    /// The process is a Python the agent captures in (its events carry SIGTRAP).
    pub captures: bool,
}

/// Whether an agent can be preloaded: the embedded one, unless `HWPROF_AGENT_LIB` names
/// a library that is not there.
pub fn agent_available() -> bool {
    std::env::var_os("HWPROF_AGENT_LIB").is_none_or(|p| Path::new(&p).is_file())
}

#[derive(Default)]
struct Shared {
    events: Vec<AgentEvents>,
    notices: Vec<String>,
    /// Raw dir, sampling attr and whether the agents are the only samplers, once known.
    target: Option<(PathBuf, Vec<u8>, bool, usize)>,
    /// Event ids noted by the collector, to be written out.
    ids: Vec<(u32, Vec<u64>, bool)>,
    /// Processes with a supported interpreter.
    accepted: u32,
    /// The launched target (see [`AgentLink::set_tree_root`]).
    root: Option<u32>,
    /// Agents' wait-sample sockets (pid, read end) not yet taken by the drain.
    wait_sockets: Vec<(u32, OwnedFd)>,
}

/// The per-process-tree link between the collector and the agents.
pub struct AgentLink {
    env: Vec<(String, String)>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    sock_path: PathBuf,
    /// The private (0700, `mkdtemp`) directory holding the socket.
    private_dir: PathBuf,
    method: LaunchMethod,
    python_program: bool,
    /// Write end of the pipe that wakes the thread's poll.
    wake: OwnedFd,
    /// The preloaded library (our written copy is removed when the link is dropped).
    agent_file: AgentFile,
}

impl AgentLink {
    /// Binds a unix socket for the agents of one collected process tree and starts the
    /// thread that serves it. `sampling_attr` is the `perf_event_attr` (bytes) the
    /// collector samples with; agents open the same event on themselves.
    pub fn bind(
        plan: &LaunchPlan,
        raw_dir: &Path,
        sampling_attr: &[u8],
    ) -> Result<AgentLink, PyError> {
        let link = Self::bind_early(plan, raw_dir.parent().unwrap_or(raw_dir))?;
        // The collector maps and enables the agents' events (ring_pages 0).
        link.set_target(raw_dir, sampling_attr, false, 0)?;
        Ok(link)
    }

    /// Binds the socket before the raw dir and the sampling attr are known (the
    /// environment must reach the target before the fork); [`AgentLink::set_target`]
    /// must follow before the target is released to exec. The socket goes into
    /// `sock_dir` (or the temp dir when that path is too long for a socket).
    pub fn bind_early(plan: &LaunchPlan, sock_dir: &Path) -> Result<AgentLink, PyError> {
        let agent_file = AgentFile::prepare().map_err(PyError::NoAgent)?;
        let lib = agent_file.path().to_path_buf();
        let private_dir = private_socket_dir(sock_dir)
            .map_err(|e| PyError::Socket(sock_dir.join("hwprof-agent-XXXXXX"), e))?;
        let sock_path = private_dir.join("agent.sock");
        let io = |e: nix::Error| PyError::Socket(sock_path.clone(), std::io::Error::from(e));
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(io)?;
        let addr = UnixAddr::new(&sock_path).map_err(io)?;
        bind(listener.as_raw_fd(), &addr).map_err(io)?;
        listen(&listener, Backlog::new(64).map_err(io)?).map_err(io)?;
        let mut env = vec![(
            "HWPROF_AGENT_SOCK".to_string(),
            sock_path.display().to_string(),
        )];
        let preload = match std::env::var("LD_PRELOAD") {
            // ':' (not ' '): the loader splits on both, and a path of ours has neither
            // (`embedded::AgentFile::prepare`).
            Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
            _ => lib.display().to_string(),
        };
        env.push(("LD_PRELOAD".to_string(), preload));
        if plan.method == LaunchMethod::Perfmap {
            env.push(("PYTHONPERFSUPPORT".to_string(), "1".to_string()));
        }
        // The agent stays silent (no connection) in processes without an interpreter:
        // a hello, its events and their rings cost such a process (a launcher's bash, a
        // tool the script runs) 2-6 ms; the collector samples it instead
        // (`collect::fill`), from outside, at no cost to its start.
        env.push(("HWPROF_AGENT_PYTHON_ONLY".to_string(), "1".to_string()));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (wake_rx, wake) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| PyError::Socket(sock_path.clone(), std::io::Error::from(e)))?;
        let mut server = Server {
            listener,
            accept_paused_until: None,
            trusted: HashMap::new(),
            uid: nix::unistd::geteuid().as_raw(),
            max_fds_per_conn: 8 * crate::util::online_cpus().len().max(1),
            last_prune: Instant::now(),
            wake: wake_rx,
            conns: Vec::new(),
            raw_dir: None,
            attr: Vec::new(),
            agents_sample: false,
            ring_pages: 0,
            method: plan.method,
            cookie: cookie(),
            procs: HashMap::new(),
            files: HashMap::new(),
            rings: Vec::new(),
            lost: 0,
            corrupt_bytes: 0,
            root: None,
            refusals: (0, None),
            writer: Out(None),
            shared: shared.clone(),
            started: SystemTime::now(),
            captures: 0,
            refused: HashSet::new(),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hwprof-python".into())
            .spawn(move || server.run(&stop2))
            .map_err(|e| PyError::Io(sock_path.clone(), e))?;
        Ok(AgentLink {
            env,
            shared,
            stop,
            thread: Some(thread),
            sock_path,
            private_dir,
            method: plan.method,
            python_program: plan.python,
            wake,
            agent_file,
        })
    }

    /// The library preloaded into the launch.
    pub fn agent_path(&self) -> &Path {
        self.agent_file.path()
    }

    /// How this launch captures Python frames.
    pub fn method(&self) -> LaunchMethod {
        self.method
    }

    /// Whether the launched program itself is Python (see [`LaunchPlan::python`]).
    pub fn python_program(&self) -> bool {
        self.python_program
    }

    /// Where the agents' files go and what they sample with (see [`AgentLink::bind_early`]).
    /// `agents_sample`: the collector opened tracking events only, so every agent
    /// samples its process, Python or not (see `Config::sampling`).
    pub fn set_target(
        &self,
        raw_dir: &Path,
        sampling_attr: &[u8],
        agents_sample: bool,
        ring_pages: usize,
    ) -> Result<(), PyError> {
        CodeWriter::open(raw_dir)
            .map_err(|e| PyError::Io(raw_dir.join("python-codes.jsonl"), e))?;
        let mut attr = sampling_attr.to_vec();
        if attr.len() < 128 {
            attr.resize(128, 0);
        }
        attr.truncate(super::wire::MAX_ATTR);
        let n = attr.len() as u32;
        attr[4..8].copy_from_slice(&n.to_le_bytes());
        if let Ok(mut s) = self.shared.lock() {
            s.target = Some((raw_dir.to_path_buf(), attr, agents_sample, ring_pages));
        }
        Ok(())
    }

    /// Records the perf event ids of an agent's events (the collector reads them with
    /// `PERF_EVENT_IOC_ID`), so finalize can tell the agent's samples from the
    /// collector's own (see [`super::PythonStacks::agent_ids`]).
    pub fn note_event_ids(&self, pid: u32, ids: &[u64], captures: bool) {
        if let Ok(mut s) = self.shared.lock() {
            s.ids.push((pid, ids.to_vec(), captures));
        }
    }

    /// The environment the target must get.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// "agent" or "perfmap" once a supported interpreter reported, else "off", for
    /// the manifest.
    pub fn method_name(&self) -> &'static str {
        let accepted = self.shared.lock().map(|s| s.accepted).unwrap_or(0);
        if accepted == 0 {
            "off"
        } else if self.env.iter().any(|(k, _)| k == "PYTHONPERFSUPPORT") {
            "perfmap"
        } else {
            "agent"
        }
    }

    /// Non-blocking: the agents' wait-sample sockets (pid, read end) handed over since
    /// the last call (`wire::WaitSocketMsg`), for the drain to read.
    pub fn take_wait_sockets(&mut self) -> Vec<(u32, OwnedFd)> {
        self.shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.wait_sockets))
            .unwrap_or_default()
    }

    /// Non-blocking: sampling events opened by agents since the last call.
    pub fn poll_new_events(&mut self) -> Vec<AgentEvents> {
        self.shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.events))
            .unwrap_or_default()
    }

    /// [`AgentLink::finish`], also returning [`AgentLink::method_name`] as it stood at
    /// the end.
    pub fn finish_keep_method(mut self) -> (&'static str, Vec<String>) {
        self.stop_thread();
        let method = self.method_name();
        (method, self.finish())
    }

    /// Stops the thread after a last resolution pass; returns the notices.
    pub fn finish(mut self) -> Vec<String> {
        self.stop_thread();
        self.remove_socket();
        self.shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.notices))
            .unwrap_or_default()
    }
}

impl AgentLink {
    /// Stops the link's thread after its last resolution pass; the wake pipe ends its
    /// poll at once, so the collector does not wait out a poll timeout.
    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake, &[1u8]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        self.stop_thread();
        self.remove_socket();
    }
}

impl AgentLink {
    fn remove_socket(&self) {
        let _ = std::fs::remove_file(&self.sock_path);
        let _ = std::fs::remove_dir(&self.private_dir);
    }

    /// The launched target: only processes of its tree (and of the same user as the
    /// collector) may talk to the socket. Must be called before the target is released.
    pub fn set_tree_root(&self, pid: u32) {
        if let Ok(mut s) = self.shared.lock() {
            s.root = Some(pid);
        }
    }
}

/// A new directory only we can enter, with a name nobody can guess or take first
/// (`mkdtemp`: `mkdir` with a random name, 0700, failing on an existing path), in
/// `parent`, or in /tmp when that path would be too long for a socket address.
/// Where a launch's socket directory goes: `$XDG_RUNTIME_DIR` (when it is an absolute
/// directory), else `/dev/shm`, else the temp dir. A memory file system first, as for
/// the agent library (`embedded.rs`): removing the directory from ext4 `/tmp` took
/// 0.2-11 ms (journal) on the exit path of every launch.
pub fn socket_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .into_iter()
        .chain([PathBuf::from("/dev/shm")])
        // Ours to write (root's XDG_RUNTIME_DIR reaches a `setpriv`ed user's hwprof).
        .find(|d| {
            nix::unistd::access(
                d,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok()
        })
        .unwrap_or_else(std::env::temp_dir)
}

/// A new private directory in `parent`, else in the temp dir, else in /tmp (a parent
/// whose path is too long for a socket address is skipped).
fn private_socket_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let template = |dir: &Path| dir.join("hwprof-agent-XXXXXX");
    let mut last = std::io::Error::other("no directory for the agent socket");
    for base in [
        parent.to_path_buf(),
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
    ] {
        if !base.is_dir() || template(&base).as_os_str().len() + 12 >= 100 {
            continue;
        }
        match nix::unistd::mkdtemp(&template(&base)) {
            Ok(d) => return Ok(d),
            Err(e) => last = std::io::Error::from(e),
        }
    }
    Err(last)
}

fn cookie() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ ((std::process::id() as u64) << 40)) | 1
}

/// What the resolver knows about one process.
pub(crate) struct ProcState {
    pub(crate) interp: Option<Interpreter>,
    pub(crate) cache: CodeCache,
}

pub(crate) struct FileTail {
    offset: u64,
    header: Option<FileHeader>,
    pending: Vec<u8>,
}

/// A Python process's capture ring (shared memory, see `wire/src/ring.rs`) and the capture file
/// its records are copied to.
struct CaptureRing {
    pid: u32,
    ring: Ring,
    /// Keeps the ring mapped.
    _map: memmap2::MmapMut,
    file: std::fs::File,
    buf: Vec<u8>,
    /// Bytes skipped because the ring's memory was overwritten.
    corrupt_bytes: u64,
}

impl CaptureRing {
    /// A new ring for `pid` and its file `python-<pid>.bin` (0600, appended to: a program
    /// exec'd by the same pid adds its own header); returns the memfd for the agent.
    fn create(dir: &Path, pid: u32, minor: u32) -> std::io::Result<(CaptureRing, OwnedFd)> {
        use std::io::Write;
        // SAFETY: memfd_create with a constant name; returns a new fd or -1.
        let fd = unsafe {
            libc::memfd_create(
                c"hwprof-python-ring".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new fd that nothing else owns.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let shm = std::fs::File::from(memfd.try_clone()?);
        shm.set_len((RING_HEADER_BYTES + RING_DATA_BYTES) as u64)?;
        // The agent may write the ring (no F_SEAL_WRITE) but not resize it: a shrunk
        // memfd would fault (SIGBUS) the collector's reads of its mapping.
        // SAFETY: fcntl on our own memfd with an integer argument.
        let sealed = unsafe {
            libc::fcntl(
                shm.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        };
        if sealed != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: our own memfd, mapped shared; the agent maps the same pages.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&shm)? };
        // SAFETY: the mapping is page-aligned, zeroed, of header + data bytes, and lives
        // in `_map` as long as the ring.
        let ring = unsafe { Ring::init(map.as_mut_ptr(), RING_DATA_BYTES as u64) }
            .ok_or_else(|| std::io::Error::other("bad ring size"))?;
        // Never through a planted link, never into a file that is not our own private
        // regular file (appending only to what this collector created for this pid).
        let mut file = crate::util::append_private_file(&dir.join(format!("python-{pid}.bin")))?;
        let header = FileHeader {
            magic: FILE_MAGIC,
            version: FILE_VERSION,
            pid,
            method: METHOD_AGENT,
            minor,
        };
        file.write_all(header.as_bytes())?;
        Ok((
            CaptureRing {
                pid,
                ring,
                _map: map,
                file,
                buf: Vec::new(),
                corrupt_bytes: 0,
            },
            memfd,
        ))
    }

    fn drain(&mut self) {
        use std::io::Write;
        self.buf.clear();
        if self
            .ring
            .drain_counting(&mut self.buf, &mut self.corrupt_bytes)
            > 0
        {
            let _ = self.file.write_all(&self.buf);
        }
    }
}

/// The codes file, once the raw dir is known.
struct Out(Option<CodeWriter>);

impl Out {
    fn put(&mut self, l: &CodeLine) {
        if let Some(w) = self.0.as_mut() {
            w.put(l);
        }
    }
    fn flush(&mut self) {
        if let Some(w) = self.0.as_mut() {
            w.flush();
        }
    }
}

/// One accepted connection, from a process checked by [`Server::peer_allowed`].
struct Conn {
    fd: OwnedFd,
    /// The peer's pid as the kernel gave it (`SO_PEERCRED`, at `connect`).
    peer: u32,
    /// Said hello (its process has a capture ring and a config).
    hello: bool,
    /// Event fds taken from it so far (bounded).
    fds_taken: usize,
}

struct Server {
    listener: OwnedFd,
    /// `accept4` failed for want of fds: the listener is not polled until then (it
    /// stays readable, and polling it would spin).
    accept_paused_until: Option<Instant>,
    /// Whether a pid is of the target's tree and of our user (see
    /// [`Server::pid_allowed`]), as decided at its first sight.
    trusted: HashMap<u32, bool>,
    /// The collector's effective uid: peers must run as it.
    uid: u32,
    /// Most event fds one connection may hand over (its CPUs × a few events).
    max_fds_per_conn: usize,
    /// When state of exited processes was last freed.
    last_prune: Instant,
    /// Read end of [`AgentLink`]'s wake pipe.
    wake: OwnedFd,
    conns: Vec<Conn>,
    raw_dir: Option<PathBuf>,
    attr: Vec<u8>,
    agents_sample: bool,
    /// Data pages of the agents' event rings.
    ring_pages: usize,
    method: LaunchMethod,
    cookie: u64,
    procs: HashMap<u32, ProcState>,
    files: HashMap<PathBuf, FileTail>,
    /// One per Python process (forked children share their parent's).
    rings: Vec<CaptureRing>,
    /// Captures dropped by rings already closed.
    lost: u64,
    /// Bytes dropped by rings already closed because their memory was overwritten.
    corrupt_bytes: u64,
    /// The launched target (root of the tree whose processes may connect).
    root: Option<u32>,
    /// Connections and messages refused, and the first reason.
    refusals: (u64, Option<String>),
    writer: Out,
    shared: Arc<Mutex<Shared>>,
    started: SystemTime,
    captures: u64,
    refused: HashSet<String>,
}

impl Server {
    /// Takes what the collector handed over: the raw dir and attr, event ids.
    fn sync(&mut self) {
        let (target, ids) = match self.shared.lock() {
            Ok(mut s) => (s.target.take(), std::mem::take(&mut s.ids)),
            Err(_) => return,
        };
        if let Some(root) = self.shared.lock().ok().and_then(|s| s.root) {
            self.root = Some(root);
        }
        if let Some((dir, attr, agents_sample, ring_pages)) = target {
            self.ring_pages = ring_pages;
            self.writer = Out(CodeWriter::open(&dir).ok());
            self.raw_dir = Some(dir);
            self.attr = attr;
            self.agents_sample = agents_sample;
        }
        for (pid, ids, captures) in ids {
            self.writer.put(&CodeLine::Events { pid, ids, captures });
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        // Captures are read every 10 ms, and every millisecond for a while after they
        // brought code objects not seen before: those come in bursts (imports, first
        // calls), and a module's body is freed as soon as it has run, often before a
        // 10 ms pass could read it (then its frames stay unresolved).
        const QUIET: Duration = Duration::from_millis(10);
        const BUSY: Duration = Duration::from_millis(1);
        const BUSY_FOR: Duration = Duration::from_millis(200);
        let mut last = Instant::now();
        let mut last_new_code: Option<Instant> = None;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            let interval = match last_new_code {
                Some(t) if t.elapsed() < BUSY_FOR => BUSY,
                _ => QUIET,
            };
            self.sync();
            // Stopping: one last look at the sockets, without waiting.
            self.serve(if stopping {
                0
            } else {
                interval.as_millis() as u16
            });
            if stopping || last.elapsed() >= interval {
                if self.resolve(None) {
                    last_new_code = Some(Instant::now());
                }
                self.copy_perf_maps();
                self.writer.flush();
                self.prune_exited();
                last = Instant::now();
            }
            if stopping {
                break;
            }
        }
        self.summarize();
    }

    fn serve(&mut self, timeout_ms: u16) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        if self
            .accept_paused_until
            .is_some_and(|t| Instant::now() >= t)
        {
            self.accept_paused_until = None;
        }
        let listen_for = if self.accept_paused_until.is_some() {
            PollFlags::empty()
        } else {
            PollFlags::POLLIN
        };
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), listen_for),
            PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
        ];
        for c in &self.conns {
            fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(timeout_ms));
        let mut ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready.remove(1) {
            let mut b = [0u8; 16];
            let _ = nix::unistd::read(&self.wake, &mut b);
        }
        if ready[0] && self.accept_paused_until.is_none() {
            self.accept_all();
        }
        let mut dead = Vec::new();
        for i in 0..self.conns.len() {
            if ready.get(i + 1) == Some(&true) && !self.handle(i) {
                dead.push(i);
            }
        }
        for i in dead.into_iter().rev() {
            let closed = self.conns.remove(i);
            let pid = closed.peer;
            // Closed when the process and the forked children sharing its socket (and
            // ring) have all exited: nothing more comes, the ring's memory is returned.
            if closed.hello && !self.conns.iter().any(|c| c.hello && c.peer == pid) {
                for r in self.rings.iter_mut().filter(|r| r.pid == pid) {
                    r.drain();
                }
                let lost: u64 = self
                    .rings
                    .iter()
                    .filter(|r| r.pid == pid)
                    .map(|r| r.ring.lost())
                    .sum();
                self.lost += lost;
                self.corrupt_bytes += self
                    .rings
                    .iter()
                    .filter(|r| r.pid == pid)
                    .map(|r| r.corrupt_bytes)
                    .sum::<u64>();
                if lost > 0 {
                    self.writer.put(&CodeLine::Lost {
                        pid,
                        captures: lost,
                    });
                }
                self.rings.retain(|r| r.pid != pid);
            }
        }
    }

    /// Accepts what is pending; a peer outside the target's tree, or of another user, is
    /// closed at once. Out of fds (EMFILE, ENFILE): the listener rests 100 ms.
    fn accept_all(&mut self) {
        loop {
            match accept4(self.listener.as_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(c) => {
                    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
                    let fd = c;
                    let Ok(cred) = getsockopt(&fd, PeerCredentials) else {
                        continue;
                    };
                    let (pid, uid) = (cred.pid().max(0) as u32, cred.uid());
                    if uid != self.uid {
                        self.refuse(format!("process {pid} runs as uid {uid}, not {}", self.uid));
                        continue;
                    }
                    match self.descends_from_root(pid) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.refuse(format!(
                                "process {pid} is not of the target's process tree"
                            ));
                            continue;
                        }
                        // Gone before it was accepted (a backlog outlives its peers
                        // while the listener rests): nothing to sample.
                        Err(Unreadable::Gone) => continue,
                        // Out of fds to read /proc: the agent goes without (its process
                        // keeps the collector's samples); the listener rests.
                        Err(Unreadable::OutOfFds) => {
                            self.out_of_fds("could not read /proc to check the peer (EMFILE?)");
                            return;
                        }
                    }
                    self.conns.push(Conn {
                        fd,
                        peer: pid,
                        hello: false,
                        fds_taken: 0,
                    });
                }
                Err(nix::Error::EINTR | nix::Error::ECONNABORTED) => {}
                Err(
                    e @ (nix::Error::EMFILE
                    | nix::Error::ENFILE
                    | nix::Error::ENOBUFS
                    | nix::Error::ENOMEM),
                ) => {
                    self.out_of_fds(&format!("accept failed ({e})"));
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Out of fds (or memory) for a new agent: the listener rests 100 ms, and the user
    /// is told once.
    fn out_of_fds(&mut self, what: &str) {
        self.accept_paused_until = Some(Instant::now() + Duration::from_millis(100));
        self.note(format!(
            "python: agents' connections wait: out of open files: {what}; raise the open-files limit (ulimit -n)"
        ));
    }

    /// Whether `pid` is the launched target or one of its descendants (the `/proc`
    /// parent chain; an orphan re-parented to init is not). Not an answer: Err(Gone)
    /// when `pid` itself is gone, Err(OutOfFds) when /proc cannot be read for lack of fds.
    fn descends_from_root(&self, pid: u32) -> Result<bool, Unreadable> {
        let root = self.root.unwrap_or_else(std::process::id);
        let mut p = pid;
        for _ in 0..4096 {
            if p == root {
                return Ok(true);
            }
            match parent_of(p) {
                Ok(Some(pp)) if pp > 1 && pp != p => p = pp,
                Err(Unreadable::Gone) if p == pid => return Err(Unreadable::Gone),
                Err(Unreadable::OutOfFds) => return Err(Unreadable::OutOfFds),
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Whether the collector may read `pid`'s memory for a capture naming it: of the
    /// target's tree and of our user (decided once per pid, forgotten when it exits).
    fn pid_allowed(&mut self, pid: u32) -> bool {
        if let Some(&v) = self.trusted.get(&pid) {
            return v;
        }
        let v = match self.descends_from_root(pid) {
            Ok(tree) => tree && effective_uid_of(pid) == Some(self.uid),
            // Gone (nothing to read) or out of fds: not decided, not remembered.
            Err(_) => return false,
        };
        if !v {
            self.refuse(format!(
                "a capture names process {pid}, outside the target's tree"
            ));
        }
        self.trusted.insert(pid, v);
        v
    }

    fn refuse(&mut self, why: String) {
        self.refusals.0 += 1;
        self.refusals.1.get_or_insert(why);
    }

    fn shared_notice(&mut self, line: String) {
        if let Ok(mut s) = self.shared.lock() {
            s.notices.push(line);
        }
    }

    /// Frees what is kept per process once it has exited (not while a connection of
    /// it is open): memory stays flat over thousands of short-lived children.
    fn prune_exited(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_prune = Instant::now();
        let open: HashSet<u32> = self.conns.iter().map(|c| c.peer).collect();
        let gone = |pid: &u32| !open.contains(pid) && !process_exists(*pid);
        let dead: Vec<u32> = self.procs.keys().copied().filter(gone).collect();
        for pid in dead {
            self.procs.remove(&pid);
        }
        self.trusted.retain(|pid, _| !gone(pid));
        self.procs.shrink_to_fit();
        self.trusted.shrink_to_fit();
    }

    /// One message from connection `i`; false when it closed.
    fn handle(&mut self, i: usize) -> bool {
        let fd = self.conns[i].fd.as_raw_fd();
        let peer = self.conns[i].peer;
        let mut buf = vec![0u8; 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 64]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(cm) = m.cmsgs() {
                        for c in cm {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                // SAFETY: the kernel just installed these fds for us
                                // (SCM_RIGHTS); each is owned by nothing else.
                                fds.extend(
                                    v.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }),
                                );
                            }
                        }
                    }
                    (m.bytes, fds)
                }
                Err(nix::Error::EAGAIN) => return true,
                Err(_) => return false,
            }
        };
        if n == 0 {
            return false;
        }
        let msg = &buf[..n];
        let magic = msg
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        let said_pid = msg
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        // The pid is the kernel's; a message naming another process ends the connection.
        let pid = peer;
        if matches!(
            magic,
            Some(HELLO_MAGIC | EVENTS_MAGIC | BYE_MAGIC | hwprof_wire::WAIT_SOCKET_MAGIC)
        ) && said_pid != Some(pid)
        {
            self.refuse(format!(
                "a message naming process {} on the connection of process {pid}",
                said_pid.unwrap_or(0)
            ));
            return false;
        }
        match magic {
            Some(HELLO_MAGIC) => {
                self.conns[i].hello = true;
                self.sync();
                // A hello after exec: same pid, new program.
                self.procs.remove(&pid);
                let mut cfg = self.config_for(pid);
                let n = self.attr.len().min(cfg.attr.len());
                cfg.attr[..n].copy_from_slice(&self.attr[..n]);
                cfg.attr_len = n as u32;
                cfg.ring_pages = self.ring_pages as u32;
                // The capture ring the agent writes into; we copy it to the capture file.
                let file = match (self.raw_dir.clone(), cfg.python) {
                    (Some(dir), 1) => {
                        // Records of the program before an exec (same pid) come first.
                        self.drain_rings();
                        self.rings.retain(|r| r.pid != pid);
                        match CaptureRing::create(&dir, pid, cfg.layout.minor as u32) {
                            Ok((ring, memfd)) => {
                                self.rings.push(ring);
                                Some(memfd)
                            }
                            Err(e) => {
                                self.note(format!("python: capture ring for {pid}: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                };
                cfg.has_fd = u32::from(file.is_some());
                let bytes = cfg.as_bytes();
                let iov = [std::io::IoSlice::new(bytes)];
                let raw: Vec<std::os::fd::RawFd> = file.iter().map(|f| f.as_raw_fd()).collect();
                let cmsg: Vec<nix::sys::socket::ControlMessage> = if raw.is_empty() {
                    Vec::new()
                } else {
                    vec![nix::sys::socket::ControlMessage::ScmRights(&raw)]
                };
                let _ =
                    nix::sys::socket::sendmsg::<()>(fd, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None);
            }
            Some(EVENTS_MAGIC) => {
                let count = msg
                    .get(12..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
                    .unwrap_or(0);
                let cpus: Vec<u32> = (0..count as usize)
                    .filter_map(|k| msg.get(16 + 4 * k..20 + 4 * k))
                    .filter_map(|b| b.try_into().ok().map(u32::from_le_bytes))
                    .collect();
                // Only perf event fds, and no more than this process's CPUs call for: a
                // peer must not park arbitrary files, or thousands of fds, on us.
                let room = self
                    .max_fds_per_conn
                    .saturating_sub(self.conns[i].fds_taken);
                let offered = fds.len();
                let fds: Vec<(u32, OwnedFd)> = cpus
                    .into_iter()
                    .zip(fds)
                    .filter(|(_, f)| is_perf_event_fd(f))
                    .take(room)
                    .collect();
                self.conns[i].fds_taken += fds.len();
                if fds.len() < offered {
                    self.refuse(format!(
                        "{} of {offered} fds sent by process {pid} (not perf events, or too many)",
                        offered - fds.len()
                    ));
                }
                // This connection's process, as configured at its hello.
                let captures = self.procs.get(&pid).is_some_and(|p| p.interp.is_some());
                if !fds.is_empty()
                    && let Ok(mut s) = self.shared.lock()
                {
                    s.events.push(AgentEvents { pid, fds, captures });
                }
            }
            Some(hwprof_wire::WAIT_SOCKET_MAGIC) => {
                // One socket per process (per exec), counted with its event fds.
                let room = self.conns[i].fds_taken < self.max_fds_per_conn;
                let mut fds = fds.into_iter();
                match (fds.next(), fds.next()) {
                    (Some(f), None) if room && is_seqpacket_socket(&f) => {
                        self.conns[i].fds_taken += 1;
                        if let Ok(mut s) = self.shared.lock() {
                            s.wait_sockets.push((pid, f));
                        }
                    }
                    _ => self.refuse(format!(
                        "process {pid} sent a wait-sample socket that is not one socket"
                    )),
                }
            }
            Some(BYE_MAGIC) => {
                let _ = self.resolve(Some(pid));
                self.copy_perf_maps();
                self.writer.flush();
                let _ = send(fd, &[1u8], MsgFlags::MSG_NOSIGNAL);
            }
            _ => {}
        }
        true
    }

    fn interp(&mut self, pid: u32) -> &mut ProcState {
        let writer = &mut self.writer;
        let refused = &mut self.refused;
        let shared = &self.shared;
        let method = self.method;
        self.procs.entry(pid).or_insert_with(|| {
            let mem = LiveMemory { pid };
            let interp = match process::read_maps(pid)
                .and_then(|m| process::find_interpreter(pid, &m, &mem))
            {
                Ok(i) => {
                    if let Ok(mut s) = shared.lock() {
                        s.accepted += 1;
                    }
                    writer.put(&CodeLine::Process {
                        pid,
                        version: i.version_string(),
                        method: if method == LaunchMethod::Perfmap {
                            "perfmap"
                        } else {
                            "agent"
                        }
                        .into(),
                    });
                    Some(i)
                }
                Err(e @ (InterpError::Unsupported(_) | InterpError::FreeThreaded(_))) => {
                    let reason = e.to_string();
                    writer.put(&CodeLine::Refused {
                        pid,
                        reason: reason.clone(),
                    });
                    if refused.insert(reason.clone())
                        && let Ok(mut s) = shared.lock()
                    {
                        s.notices.push(format!(
                            "python: {reason}; native frames only for process {pid}"
                        ));
                    }
                    None
                }
                Err(_) => None,
            };
            ProcState {
                interp,
                cache: CodeCache::default(),
            }
        })
    }

    fn config_for(&mut self, pid: u32) -> Config {
        let method = self.method;
        let cookie = self.cookie;
        let sampling = match (method, self.agents_sample) {
            (LaunchMethod::Perfmap, _) => super::wire::SAMPLE_NONE,
            (_, true) => super::wire::SAMPLE_ALWAYS,
            (_, false) => super::wire::SAMPLE_IF_PYTHON,
        };
        let st = self.interp(pid);
        let zero = Layout {
            major: 0,
            minor: 0,
            runtime_interpreters_head: NONE,
            runtime_tstate_current: NONE,
            interp_threads_head: NONE,
            interp_next: NONE,
            tstate_next: NONE,
            tstate_thread_id: NONE,
            tstate_native_thread_id: NONE,
            tstate_frame: NONE,
            cframe_current_frame: NONE,
            cframe_previous: NONE,
            frame_previous: NONE,
            frame_code: NONE,
            frame_instr: NONE,
            frame_is_entry: NONE,
            frame_owner: NONE,
            owner_cstack: NONE,
            frame_localsplus: NONE,
            frame_lasti: NONE,
            lasti_unit: NONE,
            code_qualname: NONE,
            code_linetable: NONE,
            code_varnames: NONE,
            code_code_adaptive: NONE,
            code_argcount: NONE,
            code_firstlineno: NONE,
            code_name: NONE,
            code_filename: NONE,
            object_type: NONE,
            type_name: NONE,
            tuple_size: NONE,
            tuple_items: NONE,
            bytes_size: NONE,
            bytes_data: NONE,
            unicode_length: NONE,
            unicode_state: NONE,
            unicode_ascii_size: NONE,
            unicode_compact_size: NONE,
        };
        let (python, runtime, code_type, layout) = match (&st.interp, method) {
            (Some(i), LaunchMethod::Agent) => (1, i.runtime, i.code_type, i.layout),
            _ => (0, 0, 0, zero),
        };
        Config {
            magic: CONFIG_MAGIC,
            python,
            // perfmap: the collector's own inherited events sample; the agent only
            // reports pids (for the perf maps) and waits at exit.
            sampling,
            cookie,
            runtime,
            code_type,
            layout,
            attr_len: 0,
            has_fd: 0,
            ring_pages: 0,
            reserved: 0,
            attr: [0; super::wire::MAX_ATTR],
        }
    }

    /// Copies what the agents put in their rings to their capture files.
    fn drain_rings(&mut self) {
        for r in &mut self.rings {
            r.drain();
        }
    }

    fn note(&mut self, line: String) {
        if self.refused.insert(line.clone())
            && let Ok(mut s) = self.shared.lock()
        {
            s.notices.push(line);
        }
    }

    /// Reads new capture records and resolves their code objects; true when some code
    /// object was not in the cache (read now, or already gone).
    fn resolve(&mut self, only_pid: Option<u32>) -> bool {
        self.drain_rings();
        let Some(dir) = self.raw_dir.clone() else {
            return false;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return false;
        };
        let mut new_code = false;
        let files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python-") && n.ends_with(".bin"))
            })
            .collect();
        for path in files {
            let tail = self.files.entry(path.clone()).or_insert(FileTail {
                offset: 0,
                header: None,
                pending: Vec::new(),
            });
            let cf = read_new(&path, tail);
            // Records of all processes are resolved in file order; `only_pid` (an exiting
            // process) just triggers the pass early.
            let _ = only_pid;
            // Identity records first: the code objects they name need no read (and no
            // busy polling: nothing is at risk of being freed unread).
            for (pid, addr, ci) in cf.codes {
                // Like a capture's, a record's process must be of the target's tree.
                if !self.pid_allowed(pid) {
                    continue;
                }
                self.interp(pid);
                if let Some(st) = self.procs.get_mut(&pid) {
                    st.cache.insert_identity(addr, ci);
                }
            }
            for c in cf.captures {
                self.captures += 1;
                let pid = c.pid;
                // A capture names its process; only one of the target's tree (a forked
                // child shares its parent's ring) is read.
                if !self.pid_allowed(pid) {
                    continue;
                }
                self.interp(pid);
                let Some(st) = self.procs.get_mut(&pid) else {
                    continue;
                };
                let Some((layout, minor)) = st.interp.as_ref().map(|i| (i.layout, i.version.1))
                else {
                    continue;
                };
                let mem = LiveMemory { pid };
                for f in c.frames.iter().filter(|f| f.flags & FR_SHIM == 0) {
                    // Most frames hit the cache: nothing is copied for them.
                    let Some((ci, fresh)) = st.cache.get(&mem, &layout, f.code, f.token) else {
                        new_code = true;
                        continue;
                    };
                    new_code |= fresh;
                    if fresh {
                        self.writer.put(&CodeLine::code(pid, f.code, ci, minor));
                    }
                    if ci.self_first && f.self_type != 0 {
                        let (name, fresh) = st.cache.type_name(&mem, &layout, f.self_type);
                        if fresh && let Some(name) = name {
                            self.writer.put(&CodeLine::Selftype {
                                pid,
                                addr: f.self_type,
                                name,
                            });
                        }
                    }
                }
            }
        }
        new_code
    }

    /// `--python perfmap`: copies `/tmp/perf-<pid>.map` of the agents' processes, when it
    /// was written after this collection started (not a stale map of a reused pid).
    fn copy_perf_maps(&mut self) {
        if self.method != LaunchMethod::Perfmap {
            return;
        }
        let pids: Vec<u32> = self
            .conns
            .iter()
            .filter(|c| c.hello)
            .map(|c| c.peer)
            .collect();
        for pid in pids {
            if let Some(dir) = &self.raw_dir {
                super::perfmap::copy_map(pid, self.uid, dir, self.started);
            }
        }
    }

    fn summarize(&mut self) {
        let versions: Vec<String> = {
            let mut v: Vec<String> = self
                .procs
                .values()
                .filter_map(|p| p.interp.as_ref().map(|i| i.version_string()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if versions.is_empty() {
            if let Some(first) = self.refusals.1.take() {
                let n = self.refusals.0;
                self.shared_notice(format!(
                    "python: agent socket: refused {n} connection(s) or message(s); first: {first}"
                ));
            }
            return;
        }
        if let Some(first) = self.refusals.1.take() {
            let n = self.refusals.0;
            self.shared_notice(format!(
                "python: agent socket: refused {n} connection(s) or message(s); first: {first}"
            ));
        }
        let corrupt = self.corrupt_bytes + self.rings.iter().map(|r| r.corrupt_bytes).sum::<u64>();
        if corrupt > 0 {
            self.shared_notice(format!(
                "python: {corrupt} bytes of captures dropped: a capture ring's memory was overwritten in the target (its records up to the ring's head were skipped)"
            ));
        }
        let unresolved: u64 = self.procs.values().map(|p| p.cache.failed).sum();
        let named: u64 = self.procs.values().map(|p| p.cache.from_agent).sum();
        let read: u64 = self.procs.values().map(|p| p.cache.remote_reads).sum();
        for r in &self.rings {
            if r.ring.lost() > 0 {
                self.writer.put(&CodeLine::Lost {
                    pid: r.pid,
                    captures: r.ring.lost(),
                });
            }
        }
        self.writer.flush();
        let lost = self.lost + self.rings.iter().map(|r| r.ring.lost()).sum::<u64>();
        if lost > 0
            && let Ok(mut s) = self.shared.lock()
        {
            s.notices.push(format!(
                "python: {lost} captures dropped: the capture ring was full (the collector fell behind); those samples have native frames only"
            ));
        }
        let method = match self.method {
            LaunchMethod::Perfmap => "perf trampolines (perfmap)",
            _ => "agent, captured at each sample's instant",
        };
        let line = format!(
            "python: {}, {method}, {} capture{}; code objects: {named} named by the agent, {read} read from outside, {unresolved} reads failed",
            versions.join(", "),
            self.captures,
            if self.captures == 1 { "" } else { "s" },
        );
        if let Ok(mut s) = self.shared.lock() {
            s.notices.push(line);
        }
    }
}

/// New complete captures of a file since the last call.
pub(crate) fn read_new(path: &Path, tail: &mut FileTail) -> super::sidecar::CaptureFile {
    // Only a regular file, not through a link (a FIFO planted there must not block).
    let Ok(mut f) = crate::raw::bounded::open_regular(path) else {
        return Default::default();
    };
    if f.seek(SeekFrom::Start(tail.offset)).is_err() {
        return Default::default();
    }
    let mut buf = Vec::new();
    let _ = f.by_ref().take(64 << 20).read_to_end(&mut buf);
    tail.offset += buf.len() as u64;
    tail.pending.extend_from_slice(&buf);
    let hsize = size_of::<FileHeader>();
    if tail.header.is_none() {
        if tail.pending.len() < hsize {
            return Default::default();
        }
        let Some(cf) = parse_captures(&tail.pending[..hsize]) else {
            tail.pending.clear();
            return Default::default();
        };
        let _ = cf;
        tail.header = FileHeader::read_from(&tail.pending);
        tail.pending.drain(..hsize);
    }
    let Some(h) = tail.header else {
        return Default::default();
    };
    // Re-prefix the header so the shared parser can be used.
    let mut all = h.as_bytes().to_vec();
    all.extend_from_slice(&tail.pending);
    let Some(cf) = parse_captures(&all) else {
        return Default::default();
    };
    let used = all.len() - hsize - cf.skipped;
    tail.pending.drain(..used.min(tail.pending.len()));
    cf
}

/// The parent pid of `pid`.
fn parent_of(pid: u32) -> Result<Option<u32>, Unreadable> {
    let Ok(pid) = i32::try_from(pid) else {
        return Ok(None);
    };
    Ok(crate::util::proc::parent_checked(pid)?.and_then(|p| u32::try_from(p).ok()))
}

/// The effective uid of `pid`.
fn effective_uid_of(pid: u32) -> Option<u32> {
    Some(crate::util::proc::uids(i32::try_from(pid).ok()?)?[1])
}

fn process_exists(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(crate::util::proc::exists)
}

/// Whether `fd` is a perf event (what an agent's EVENTS message must carry).
/// A unix `SOCK_SEQPACKET` socket (an agent's wait-sample socket).
fn is_seqpacket_socket(fd: &OwnedFd) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::SockType as Ty};
    matches!(getsockopt(fd, Ty), Ok(SockType::SeqPacket))
}

fn is_perf_event_fd(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:[perf_event]")
}
