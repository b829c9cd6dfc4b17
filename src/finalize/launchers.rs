//! Which process images are the program and which only launched it (pyenv shims,
//! `env`, `sh -c`, mpirun's helpers), from perf's task records.
//!
//! A process image is what a pid runs between two execs. The rule (docs/architecture.md,
//! "Launchers"):
//! 1. an image that exec'd away (a later `COMM exec` for its pid) is a launcher: it only
//!    prepared what it became (`env` → `bash` shim → `pyenv` → `python3.11`);
//! 2. a process forked by such an image that exited before the image exec'd away is a
//!    helper of the launch (pyenv's `$(pyenv-version-name)`, `readlink`, ...), and so is
//!    every process a helper forks: all their images are launchers;
//! 3. an image whose name is a shell or a launch tool (`sh`, `bash`, `env`, `mpirun`,
//!    `prted`, `srun`, ... see [`LAUNCH_TOOLS`]) and that forked children is a launcher
//!    (`sh -c "python3 app.py; true"` forks python and waits);
//!
//! everything else is the program. A child that outlives the image that forked it is
//! never a helper, so a daemon started by a shell script stays the program.

use rustc_hash::FxHashMap;

use crate::profile::ProcessRole;

/// Names (comm) of shells and tools that only start other programs.
pub const LAUNCH_TOOLS: &[&str] = &[
    "sh",
    "dash",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "env",
    "pyenv",
    "time",
    "timeout",
    "nice",
    "nohup",
    "setsid",
    "taskset",
    "numactl",
    "stdbuf",
    "mpirun",
    "mpiexec",
    "mpiexec.hydra",
    "orterun",
    "prterun",
    "prted",
    "orted",
    "hydra_pmi_proxy",
    "srun",
];

struct Image {
    pid: u32,
    comm: String,
    /// The image of the same pid before this one's exec.
    prev: Option<u32>,
    /// For a pid's first image: the image that forked it.
    forked_by: Option<u32>,
    /// When a later exec replaced this image.
    exec_away_at: Option<u64>,
    /// It forked at least one process.
    forked: bool,
}

/// The images of one process tree, built from FORK, COMM and EXIT records in time order.
#[derive(Default)]
pub struct Lineage {
    images: Vec<Image>,
    current: FxHashMap<u32, u32>,
    exited_at: FxHashMap<u32, u64>,
}

impl Lineage {
    /// The current image of `pid` (created for a pid first seen in a sample).
    pub fn image(&mut self, pid: u32) -> u32 {
        if let Some(&i) = self.current.get(&pid) {
            return i;
        }
        self.push(Image {
            pid,
            comm: String::new(),
            prev: None,
            forked_by: None,
            exec_away_at: None,
            forked: false,
        })
    }

    fn push(&mut self, img: Image) -> u32 {
        let i = self.images.len() as u32;
        self.current.insert(img.pid, i);
        self.images.push(img);
        i
    }

    /// A new process `pid` forked by `ppid`.
    pub fn fork(&mut self, pid: u32, ppid: u32) {
        let parent = self.image(ppid);
        self.images[parent as usize].forked = true;
        let comm = self.images[parent as usize].comm.clone();
        self.push(Image {
            pid,
            comm,
            prev: None,
            forked_by: Some(parent),
            exec_away_at: None,
            forked: false,
        });
    }

    /// `pid` exec'd `comm` at `time`: a new image. Returns its index.
    pub fn exec(&mut self, pid: u32, comm: &str, time: u64) -> u32 {
        let prev = self.current.get(&pid).copied();
        if let Some(p) = prev {
            self.images[p as usize].exec_away_at = Some(time);
        }
        self.push(Image {
            pid,
            comm: comm.to_string(),
            prev,
            forked_by: None,
            exec_away_at: None,
            forked: false,
        })
    }

    /// `pid` renamed itself (prctl) without exec.
    pub fn rename(&mut self, pid: u32, comm: &str) {
        let i = self.image(pid);
        self.images[i as usize].comm = comm.to_string();
    }

    /// `pid` exited at `time`.
    pub fn exit(&mut self, pid: u32, time: u64) {
        self.exited_at.insert(pid, time);
    }

    /// Per image: (pid, name, role), by image index.
    pub fn finish(&self) -> Vec<(u32, String, ProcessRole)> {
        let mut helper = vec![false; self.images.len()];
        let mut out = Vec::with_capacity(self.images.len());
        // Images are created in time order: a parent or previous image comes first.
        for (i, img) in self.images.iter().enumerate() {
            helper[i] = match (img.prev, img.forked_by) {
                (Some(p), _) => helper[p as usize],
                (None, Some(f)) => {
                    let parent = &self.images[f as usize];
                    let short_lived = match (parent.exec_away_at, self.exited_at.get(&img.pid)) {
                        (Some(away), Some(&exit)) => exit <= away,
                        _ => false,
                    };
                    helper[f as usize] || short_lived
                }
                (None, None) => false,
            };
            let launcher = img.exec_away_at.is_some()
                || helper[i]
                || (img.forked && LAUNCH_TOOLS.contains(&img.comm.as_str()));
            let role = if launcher {
                ProcessRole::Launcher
            } else {
                ProcessRole::Program
            };
            out.push((img.pid, img.comm.clone(), role));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(l: &Lineage) -> Vec<(String, ProcessRole)> {
        l.finish().into_iter().map(|(_, c, r)| (c, r)).collect()
    }

    /// What a process does, for [`roles_after`]: exec (pid, command, time), fork (child,
    /// parent), exit (pid, time).
    enum Event {
        Exec(u32, &'static str, u64),
        Fork(u32, u32),
        Exit(u32, u64),
    }

    /// The role of each image after the `events` of each phase, in order.
    fn roles_after(phases: &[&[Event]]) -> Vec<ProcessRole> {
        let mut l = Lineage::default();
        for e in phases.iter().copied().flatten() {
            match *e {
                Event::Exec(pid, comm, time) => _ = l.exec(pid, comm, time),
                Event::Fork(pid, ppid) => l.fork(pid, ppid),
                Event::Exit(pid, time) => l.exit(pid, time),
            }
        }
        roles(&l).into_iter().map(|x| x.1).collect()
    }

    #[test]
    fn pyenv_shim_chain_is_launcher_and_python_is_program() {
        let mut l = Lineage::default();
        l.exec(10, "python3", 1); // env, by the shebang
        l.exec(10, "bash", 2);
        l.fork(11, 10);
        l.exec(11, "readlink", 3);
        l.exit(11, 4);
        l.exec(10, "python3", 5);
        let r = roles(&l);
        use ProcessRole::*;
        assert_eq!(
            r,
            [
                ("python3".into(), Launcher),
                ("bash".into(), Launcher),
                ("bash".into(), Launcher),
                ("readlink".into(), Launcher),
                ("python3".into(), Program),
            ]
        );
    }

    #[test]
    fn shell_that_forks_is_launcher_and_program_children_stay_program() {
        use Event::*;
        use ProcessRole::*;
        let start = [Exec(20, "sh", 1), Fork(21, 20), Exec(21, "python3", 2)];
        // python's own worker (multiprocessing), then both exit.
        let worker = [Fork(22, 21), Exit(22, 3), Exit(21, 4)];
        let r = roles_after(&[&start, &worker]);
        assert_eq!(r, [Launcher, Launcher, Program, Program]);
        // A lone shell doing its own work is the program.
        assert_eq!(roles_after(&[&[Exec(30, "bash", 1)]])[0], Program);
    }

    #[test]
    fn child_outliving_the_exec_is_not_a_helper() {
        use Event::*;
        use ProcessRole::*;
        let start = [Exec(40, "run.sh", 1), Fork(41, 40), Exec(41, "solver", 2)];
        // The script goes on to another program while the solver runs.
        let rest = [Exec(40, "monitor", 3), Exit(41, 9)];
        let r = roles_after(&[&start, &rest]);
        assert_eq!(r, [Launcher, Launcher, Program, Program]);
    }
}
