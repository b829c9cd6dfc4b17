//! Starting the target: the Python plan of a launch (the agents' socket bound before the
//! fork, so that its environment reaches the program), the command resolved and its
//! `execve` arguments built, the child forked stopped (so that events cover its first
//! instruction), or the checks of `-p PID`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{CollectError, CollectOptions, Target, io_err, notice, sys};
use crate::events::Mode;
use crate::python::{AgentLink, PythonCapture};

/// The execve arguments of a launch: path, argv, envp.
type Exec = (CString, Vec<CString>, Vec<CString>);

/// A launch prepared up to the fork, or an attach checked.
pub(super) struct Prepared {
    /// A launch whose program is Python must end with Python frames.
    pub(super) python_expected: bool,
    /// In-process capture: the agents' socket, bound.
    pub(super) py_link: Option<AgentLink>,
    /// The launch's execve arguments (None: attach).
    exec: Option<Exec>,
}

/// Plan the Python capture and prepare the launch (or check the attach target).
pub(super) fn prepare(
    opts: &CollectOptions,
    notices: &mut Vec<String>,
) -> Result<Prepared, CollectError> {
    let python_expected = match &opts.target {
        Target::Launch(cmd) => {
            opts.python != PythonCapture::Off
                && crate::python::plan_launch(cmd, opts.python).is_some_and(|p| p.python)
        }
        Target::Attach(_) => false,
    };
    // [python] In-process capture: decide, and bind the agents' socket before the fork so its
    // environment (LD_PRELOAD, HWPROF_AGENT_SOCK) reaches the target.
    let py_link = match &opts.target {
        Target::Launch(cmd) => crate::python::plan_launch(cmd, opts.python)
            .filter(|p| p.method != crate::python::LaunchMethod::Remote)
            .and_then(|plan| {
                match AgentLink::bind_early(&plan, &crate::python::agent_link::socket_base()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        notice(
                            opts.quiet,
                            notices,
                            format!("python: {e}; native frames only"),
                        );
                        None
                    }
                }
            }),
        Target::Attach(_) => None,
    };
    let mut py_env = py_link.as_ref().map(|l| l.env()).unwrap_or_default();
    // Locks mode: the agent records waits in every process of the tree (docs/locks.md).
    if opts.mode == Mode::Locks && py_link.is_some() {
        py_env.push((
            "HWPROF_AGENT_WAITS".into(),
            opts.wait_threshold.as_nanos().to_string(),
        ));
    }
    let exec = match &opts.target {
        Target::Launch(cmd) => Some(prepare_exec(cmd, &py_env)?),
        Target::Attach(pid) => {
            check_attach_target(*pid)?;
            None
        }
    };
    Ok(Prepared {
        python_expected,
        py_link,
        exec,
    })
}

/// The started target.
pub(super) struct Started {
    /// The launched child, stopped before its exec until released (None: attach).
    pub(super) child: Option<sys::StoppedChild>,
    /// The target's pid.
    pub(super) pid: i32,
    /// The command as the manifest records it.
    pub(super) command: Vec<String>,
}

/// Launch: fork a child that waits for us, so events cover its first instruction.
pub(super) fn start(opts: &CollectOptions, prepared: &Prepared) -> Result<Started, CollectError> {
    match (&opts.target, &prepared.exec) {
        (Target::Launch(cmd), Some((path, argv, envp))) => {
            let c = sys::spawn_stopped(path, argv, envp).map_err(io_err("fork"))?;
            Ok(Started {
                pid: c.pid,
                child: Some(c),
                command: cmd.clone(),
            })
        }
        (Target::Attach(pid), _) => Ok(Started {
            child: None,
            pid: *pid,
            command: vec!["-p".into(), pid.to_string()],
        }),
        (Target::Launch(_), None) => Err(CollectError::Usage("nothing to run".into())),
    }
}

/// Resolve the command on PATH and build execve's arguments.
fn prepare_exec(cmd: &[String], extra_env: &[(String, String)]) -> Result<Exec, CollectError> {
    let first = &cmd[0];
    let path = resolve_command(first).ok_or_else(|| CollectError::Command {
        command: first.clone(),
        why: if first.contains('/') {
            "no such file".into()
        } else {
            "command not found on PATH".into()
        },
    })?;
    let meta = std::fs::metadata(&path).map_err(|e| CollectError::Command {
        command: first.clone(),
        why: e.to_string(),
    })?;
    if meta.is_dir() || !is_executable(&meta) {
        return Err(CollectError::Command {
            command: first.clone(),
            why: format!("{} is not an executable file (chmod +x?)", path.display()),
        });
    }
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| CollectError::Command {
            command: first.clone(),
            why: "argument contains a NUL byte".into(),
        })
    };
    let path_c = c(path.as_os_str().as_bytes())?;
    let argv = cmd
        .iter()
        .map(|a| c(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    // [python] extra_env (the agent's variables) replaces same-named variables.
    let envp = std::env::vars_os()
        .filter(|(k, _)| !extra_env.iter().any(|(e, _)| k.as_bytes() == e.as_bytes()))
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .chain(
            extra_env
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        )
        .map(|(k, v)| {
            let mut kv = k;
            kv.push(b'=');
            kv.extend_from_slice(&v);
            c(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((path_c, argv, envp))
}

/// Why the kernel refused to run the command, and what to do: execve's errno alone
/// ("Exec format error") does not say that a script needs a `#!` line, which a shell
/// makes up for by running it with `sh` itself.
pub(super) fn exec_failure(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOEXEC) => format!(
            "{e}: it is neither a program for this machine nor a script that starts with a `#!` line (a shell runs such a script with sh; here, add `#!/bin/sh` or name the interpreter: hwprof collect -- sh SCRIPT)"
        ),
        Some(libc::EACCES) => format!(
            "{e}: execute permission is missing on it or on a directory of its path, or its file system is mounted noexec"
        ),
        _ => e.to_string(),
    }
}

/// The command's path: as given when it has a `/`, else the first match on PATH.
fn resolve_command(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    // As a shell: the first executable file; else the first file, which is then
    // refused as not executable.
    let path = std::env::var_os("PATH")?;
    let mut first_file = None;
    for p in std::env::split_paths(&path).map(|d| d.join(name)) {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && is_executable(&m) => return Some(p),
            Ok(m) if m.is_file() => first_file = first_file.or(Some(p)),
            _ => {}
        }
    }
    first_file
}

/// Whether any execute bit is set.
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

/// Whether `-p PID` can be attached to: it exists, and we may ptrace it.
fn check_attach_target(pid: i32) -> Result<(), CollectError> {
    if !crate::util::proc::exists(pid) {
        return Err(CollectError::Command {
            command: format!("-p {pid}"),
            why: "no such process".into(),
        });
    }
    // The kernel lets perf attach only where ptrace could (same user in real, effective
    // and saved uid, or CAP_SYS_PTRACE): say so before perf_event_paranoid comes up.
    const CAP_SYS_PTRACE: u32 = 19;
    let (Some(theirs), Some(ours)) = (crate::util::proc::uids(pid), crate::util::proc::own_uids())
    else {
        return Ok(());
    };
    if !crate::util::proc::has_own_capability(CAP_SYS_PTRACE)
        && theirs.iter().any(|&u| u != ours[1])
    {
        return Err(CollectError::Attach {
            pid,
            why: format!(
                "ptrace refused: it runs as uid {} and you are uid {}; attaching needs the right to ptrace it (the same user, or CAP_SYS_PTRACE). Profile a process of your own, or run hwprof as uid {}",
                theirs[1], ours[1], theirs[1]
            ),
        });
    }
    Ok(())
}

/// "SIGKILL" for hwprof's exit code 128+9 (a launched target killed by a signal).
pub(super) fn killed_by(exit_code: i32) -> Option<String> {
    let sig = exit_code
        .checked_sub(128)
        .filter(|s| (1..=64).contains(s))?;
    let name = nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"));
    Some(name)
}

/// hwprof's exit code: the launched target's status (128+N when killed by signal N).
/// Stopped early (-d, or attached): the launched target runs on, its results written;
/// we wait for it.
pub(super) fn exit_code(
    ended: super::drain::Ended,
    child: Option<&sys::StoppedChild>,
    quiet: bool,
) -> i32 {
    match (ended, child) {
        (super::drain::Ended::ChildExited(code), _) => code,
        (super::drain::Ended::Stopped, Some(c)) => {
            if !quiet {
                eprintln!("hwprof: collection stopped; waiting for the target to exit");
            }
            sys::wait_blocking(c.pid)
        }
        (super::drain::Ended::Stopped, None) => 0,
    }
}
