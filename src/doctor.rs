//! `hwprof doctor`: what this machine lets hwprof do, and the fix for what it does not.
//!
//! Facts are gathered from procfs/sysfs and by probing: each event that matters is
//! opened for real (disabled, user-only, on hwprof itself, as the current user), so the
//! answer is what `collect` will meet, not a guess from a table. Rendering is separate
//! from gathering so tests can feed facts of other machines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::events::{EventEnv, list::probe, resolve_all, sysfs};

/// What doctor found.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `uname -r`.
    pub kernel: String,
    /// CPU description and perf CPUID.
    pub cpu: String,
    /// Effective uid.
    pub uid: u32,
    /// CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_BPF in the effective set.
    pub caps: [bool; 4],
    /// kernel.perf_event_paranoid.
    pub paranoid: Option<i32>,
    /// kernel.perf_event_mlock_kb.
    pub mlock_kb: Option<u64>,
    /// kernel.perf_event_max_sample_rate.
    pub max_sample_rate: Option<u64>,
    /// kernel.yama.ptrace_scope (None: Yama absent).
    pub ptrace_scope: Option<i32>,
    /// tracefs events directory, if readable.
    pub tracefs: Option<PathBuf>,
    /// Why it is not readable, with the fix ("": it is not mounted).
    pub tracefs_unreadable: String,
    /// PMU names in sysfs.
    pub pmus: Vec<String>,
    /// Probe results: cycles, instructions, cache-misses, cpu-clock, page-faults,
    /// context-switches, sched:sched_switch. Err holds the reason.
    pub probes: Vec<(String, Result<(), String>)>,
    /// Perfmon table folder for this CPU, or why none.
    pub perfmon: String,
    /// Bandwidth counters that can be planned, and notices.
    pub bandwidth: (Vec<String>, Vec<String>),
    /// python3 on PATH: (path, version).
    pub python3: Option<(String, String)>,
    /// pyenv versions found.
    pub pyenv: Vec<String>,
    /// The embedded Python agent: what it is, or what is wrong (None: not checked).
    pub agent: Option<Result<String, String>>,
}

/// A sysctl file of one number (procfs has no reader for the perf ones).
fn read_num<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

fn python_version(exe: &Path) -> Option<String> {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .to_string();
    (!s.is_empty()).then_some(s)
}

impl Facts {
    /// Gather the facts of this machine and user.
    pub fn gather() -> Facts {
        let env = EventEnv::system();
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cpu = env
            .cpu()
            .map(|c| format!("{} ({})", c.model_name, c.perf_string()))
            .unwrap_or_else(|| "unknown".into());
        let perfmon = match env
            .cpu()
            .map(|c| crate::events::perfmon::Table::for_cpu_cached(&c))
        {
            Some((Some(t), _)) => format!(
                "{} ({} core, {} uncore events)",
                t.arch,
                t.core.len(),
                t.uncore.len()
            ),
            Some((None, crate::events::perfmon::TableLookup::NotBundled(f))) => {
                format!("{f}: known CPU, tables not bundled (use raw rUUEE or pmu/terms/)")
            }
            _ => "none for this CPU (generic, sysfs and raw names still work)".into(),
        };
        let mut probes = Vec::new();
        for name in [
            "cycles",
            "instructions",
            "cache-misses",
            "cpu-clock",
            "page-faults",
            "context-switches",
            "sched:sched_switch",
        ] {
            let r = match resolve_all(name, &env) {
                Ok(v) => match v.first() {
                    Some(s) => probe(s),
                    None => Err("does not resolve".into()),
                },
                Err(e) => Err(e.to_string()),
            };
            probes.push((name.to_string(), r));
        }
        let plan = crate::events::bandwidth::bandwidth_plan(&env);
        let events = env.tracefs.join("events");
        let (tracefs, tracefs_unreadable) = match std::fs::read_dir(&events) {
            Ok(_) => (Some(events), String::new()),
            Err(e) => (
                None,
                format!(
                    "{} not readable ({e}): {}",
                    events.display(),
                    crate::events::tracefs_fix(&e)
                ),
            ),
        };
        let python3 = which("python3").map(|p| {
            let v = python_version(&p).unwrap_or_else(|| "version unknown".into());
            (p.display().to_string(), v)
        });
        let pyenv_root = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
        let mut pyenv: Vec<String> = pyenv_root
            .and_then(|r| std::fs::read_dir(r.join("versions")).ok())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        e.path().join("bin/python3").exists()
                            || e.path().join("bin/python").exists()
                    })
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        pyenv.sort_by_key(|v| {
            v.split(['.', '-'])
                .map(|x| x.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        });
        Facts {
            kernel,
            cpu,
            uid: nix::unistd::geteuid().as_raw(),
            caps: [
                crate::util::proc::has_own_capability(38),
                crate::util::proc::has_own_capability(21),
                crate::util::proc::has_own_capability(19),
                crate::util::proc::has_own_capability(39),
            ],
            paranoid: read_num("/proc/sys/kernel/perf_event_paranoid"),
            mlock_kb: read_num("/proc/sys/kernel/perf_event_mlock_kb"),
            max_sample_rate: read_num("/proc/sys/kernel/perf_event_max_sample_rate"),
            ptrace_scope: read_num("/proc/sys/kernel/yama/ptrace_scope"),
            tracefs,
            tracefs_unreadable,
            pmus: sysfs::pmu_names(&env.sysfs),
            probes,
            perfmon,
            bandwidth: (
                plan.counters
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.event))
                    .collect(),
                plan.notices,
            ),
            python3,
            pyenv,
            agent: Some(crate::python::embedded::check()),
        }
    }

    fn probe(&self, name: &str) -> Result<(), String> {
        self.probes
            .iter()
            .find(|p| p.0 == name)
            .map(|p| p.1.clone())
            .unwrap_or_else(|| Err("not probed".into()))
    }

    fn privileged(&self) -> bool {
        self.uid == 0 || self.caps[0] || self.caps[1]
    }
}

const NO_PMU_FIX: &str = "run on bare metal, or give the VM a virtual PMU (KVM/libvirt: <pmu state='on'/>, -cpu host); cloud VMs rarely have one";

/// Render the report for a set of facts.
pub fn render(f: &Facts) -> String {
    let mut s = String::from("hwprof doctor: what this machine lets hwprof do\n\nSystem\n");
    let _ = writeln!(s, "  kernel {}; CPU {}", f.kernel, f.cpu);
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        s,
        "  user uid {}{}; CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_SYS_PTRACE {}, CAP_BPF {}",
        f.uid,
        if f.uid == 0 { " (root)" } else { "" },
        yn(f.caps[0]),
        yn(f.caps[1]),
        yn(f.caps[2]),
        yn(f.caps[3])
    );
    let par = match f.paranoid {
        Some(p) if p >= 2 => format!(
            "{p}: ordinary users may profile their own processes, user space only{}",
            if f.privileged() { " (you are privileged: kernel samples too)" } else { "; kernel samples are excluded (fix: sysctl kernel.perf_event_paranoid=1, or setcap cap_perfmon+ep on hwprof)" }
        ),
        Some(1) => "1: user and kernel samples of one's own processes".into(),
        Some(0) => "0: also CPU-wide events (uncore bandwidth) without privileges".into(),
        Some(p) => format!("{p}: no restrictions"),
        None => "unknown (cannot read /proc/sys/kernel/perf_event_paranoid): perf events may be unsupported by this kernel".into(),
    };
    let _ = writeln!(s, "  kernel.perf_event_paranoid = {par}");
    if let Some(kb) = f.mlock_kb {
        let _ = writeln!(
            s,
            "  kernel.perf_event_mlock_kb = {kb}: ring buffers of ordinary users total at most {kb} KiB per user{}",
            if kb < 516 {
                " (low: raise to 516 or more, or ulimit -l)"
            } else {
                ""
            }
        );
    }
    if let Some(r) = f.max_sample_rate {
        let _ = writeln!(
            s,
            "  kernel.perf_event_max_sample_rate = {r} Hz (-F above it is throttled)"
        );
    }
    match f.ptrace_scope {
        None => s.push_str("  kernel.yama.ptrace_scope: Yama absent; -p works on your own processes\n"),
        Some(0) => s.push_str("  kernel.yama.ptrace_scope = 0: -p works on your own processes\n"),
        Some(1) => s.push_str("  kernel.yama.ptrace_scope = 1: -p only on your descendants (Python remote reads of other processes need CAP_SYS_PTRACE or sysctl kernel.yama.ptrace_scope=0)\n"),
        Some(v) => { let _ = writeln!(s, "  kernel.yama.ptrace_scope = {v}: -p and remote Python reads need CAP_SYS_PTRACE{}", if v >= 3 { " and are disabled until reboot" } else { "" }); }
    }
    match &f.tracefs {
        Some(p) => {
            let _ = writeln!(
                s,
                "  tracefs: {} readable (tracepoints available)",
                p.display()
            );
        }
        None if f.tracefs_unreadable.is_empty() => s.push_str(
            "  tracefs: not mounted (fix, as root: mount -t tracefs nodev /sys/kernel/tracing)\n",
        ),
        None => {
            let _ = writeln!(s, "  tracefs: {}", f.tracefs_unreadable);
        }
    }
    let _ = writeln!(
        s,
        "  PMUs: {}",
        if f.pmus.is_empty() {
            "none readable".into()
        } else {
            f.pmus.join(", ")
        }
    );
    let hw = f.probe("cycles");
    let _ = writeln!(
        s,
        "  hardware PMU: {}",
        match &hw {
            Ok(()) => "yes (cycles opens)".to_string(),
            Err(e) => format!("NO (cycles: {e}); fix: {NO_PMU_FIX}"),
        }
    );
    let uncore: Vec<&String> = f.pmus.iter().filter(|p| p.starts_with("uncore_")).collect();
    let _ = writeln!(
        s,
        "  uncore PMUs: {}",
        if uncore.is_empty() {
            "none".to_string()
        } else {
            format!("{} boxes", uncore.len())
        }
    );
    let _ = writeln!(s, "  perfmon tables: {}", f.perfmon);

    s.push_str("\nPythons\n");
    match &f.python3 {
        Some((p, v)) => {
            let _ = writeln!(s, "  python3: {p} ({v})");
        }
        None => s.push_str("  python3: not on PATH\n"),
    }
    if f.pyenv.is_empty() {
        s.push_str("  pyenv: no versions found ($PYENV_ROOT or ~/.pyenv/versions)\n");
    } else {
        let _ = writeln!(s, "  pyenv: {}", f.pyenv.join(", "));
    }
    match &f.agent {
        Some(Ok(a)) => {
            let _ = writeln!(s, "  python agent: OK, {a}");
        }
        Some(Err(e)) => {
            let _ = writeln!(
                s,
                "  python agent: PROBLEM: {e}; Python launches get native frames only"
            );
        }
        None => {}
    }

    s.push_str("\nModes\n");
    let ok = |name: &str| f.probe(name).is_ok();
    // hotspots
    if ok("cycles") {
        s.push_str("  hotspots: OK, samples cycles");
    } else if ok("cpu-clock") {
        s.push_str("  hotspots: OK, samples cpu-clock (cycles unavailable; timer-based samples give the same profile shape)");
    } else {
        let _ = write!(
            s,
            "  hotspots: CANNOT sample (cpu-clock: {}); fix: kernel.perf_event_paranoid <= 2 and CONFIG_PERF_EVENTS",
            f.probe("cpu-clock").err().unwrap_or_default()
        );
    }
    s.push('\n');
    if ok("instructions") && ok("cache-misses") {
        s.push_str("            group read per sample: instructions, cache-misses: OK\n");
    } else {
        let _ = writeln!(
            s,
            "            group read per sample (instructions, cache-misses): not available; fix: {NO_PMU_FIX}"
        );
    }
    // memory
    if ok("page-faults") {
        s.push_str("  memory: page faults with call stacks (bytes faulted in per stack): OK; RSS timeline (procfs): OK\n");
    } else {
        let _ = writeln!(
            s,
            "  memory: CANNOT sample page faults ({}); RSS timeline still works",
            f.probe("page-faults").err().unwrap_or_default()
        );
    }
    if ok("cache-misses") {
        s.push_str("          LLC-miss sampling: OK\n");
    } else {
        let _ = writeln!(
            s,
            "          LLC-miss sampling: not available (no hardware PMU); fix: {NO_PMU_FIX}"
        );
    }
    if f.bandwidth.0.is_empty() {
        for n in &f.bandwidth.1 {
            let _ = writeln!(s, "          {}", n.trim_start_matches("memory: "));
        }
        if f.bandwidth.1.is_empty() {
            s.push_str("          memory bandwidth: not available\n");
        }
    } else {
        let sys_wide = f.privileged() || f.paranoid.is_some_and(|p| p <= 0);
        let _ = writeln!(
            s,
            "          memory bandwidth: {}{}",
            f.bandwidth.0.join(", "),
            if sys_wide {
                ""
            } else {
                " — but CPU-wide counting is refused at this paranoid level; fix: sysctl kernel.perf_event_paranoid=0 or CAP_PERFMON"
            }
        );
    }
    // locks
    if ok("context-switches") {
        s.push_str("  locks: context switches with stacks: OK");
        if !f.privileged() && f.paranoid.is_some_and(|p| p >= 2) {
            s.push_str(" (switch records of your own processes; kernel-side detail excluded at paranoid 2)");
        }
        s.push('\n');
    } else {
        let _ = writeln!(
            s,
            "  locks: context switches: CANNOT ({})",
            f.probe("context-switches").err().unwrap_or_default()
        );
    }
    match f.probe("sched:sched_switch") {
        Ok(()) => s.push_str("         sched:sched_switch tracepoint: OK\n"),
        Err(e) => {
            let _ = writeln!(
                s,
                "         sched:sched_switch tracepoint: not available ({e})"
            );
        }
    }
    s
}

/// The doctor's report for this machine and user.
pub fn doctor_text() -> String {
    render(&Facts::gather())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_report_is_consistent_with_probes() {
        let f = Facts::gather();
        let t = render(&f);
        assert!(t.contains("kernel.perf_event_paranoid = "), "{t}");
        // page faults and cpu-clock always open for the current user here.
        assert!(f.probe("page-faults").is_ok());
        assert!(t.contains("memory: page faults with call stacks"), "{t}");
        if f.probe("cycles").is_err() {
            assert!(t.contains("hardware PMU: NO"), "{t}");
            assert!(t.contains("samples cpu-clock"), "{t}");
            assert!(t.contains("LLC-miss sampling: not available"), "{t}");
        }
        if let Some(p) = f.paranoid {
            assert!(t.contains(&format!("kernel.perf_event_paranoid = {p}")));
        }
    }

    #[test]
    fn unprivileged_haswell_node_gets_the_fixes() {
        let f = Facts {
            kernel: "4.18".into(),
            cpu: "Xeon E5-2698 v3 (GenuineIntel-6-3F-2)".into(),
            uid: 1000,
            paranoid: Some(2),
            mlock_kb: Some(128),
            ptrace_scope: Some(1),
            pmus: vec!["cpu".into(), "uncore_imc_0".into()],
            probes: vec![
                ("cycles".into(), Ok(())),
                ("instructions".into(), Ok(())),
                ("cache-misses".into(), Ok(())),
                ("cpu-clock".into(), Ok(())),
                ("page-faults".into(), Ok(())),
                ("context-switches".into(), Ok(())),
                ("sched:sched_switch".into(), Err("not permitted".into())),
            ],
            bandwidth: (
                vec!["dram_read_bytes (uncore_imc/cas_count_read/)".into()],
                vec![],
            ),
            ..Default::default()
        };
        let t = render(&f);
        for want in [
            "kernel samples are excluded (fix: sysctl kernel.perf_event_paranoid=1",
            "(low: raise to 516",
            "-p only on your descendants",
            "hotspots: OK, samples cycles",
            "CPU-wide counting is refused",
            "sched:sched_switch tracepoint: not available",
            "tracefs: not mounted",
        ] {
            assert!(t.contains(want), "{want:?} missing: {t}");
        }
        // Mounted, mode 0700: the cause and the fix, not "mount it".
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let f = Facts {
            tracefs_unreadable: format!(
                "/sys/kernel/tracing/events not readable ({denied}): {}",
                crate::events::tracefs_fix(&denied)
            ),
            ..f
        };
        let t = render(&f);
        assert!(
            t.contains("tracefs is readable by root only here") && !t.contains("not mounted"),
            "{t}"
        );
    }
}
