//! `hwprof list-events`: what this machine can count and sample, and what each mode
//! will use. Availability of generic events is probed by opening each one as a
//! disabled user-only counter on hwprof itself (what an ordinary user can do), never
//! assumed from a table.

use std::fmt::Write as _;

use super::{EventEnv, EventSpec, GENERIC, llc_miss_event, mode_defaults, resolve_all, sysfs};

/// Try to open `spec` as a disabled, user-only counting event on this process.
pub fn probe(spec: &EventSpec) -> Result<(), String> {
    let mut attr = super::group::attr_for(spec);
    attr.set_disabled(1);
    attr.set_exclude_kernel(1);
    attr.set_exclude_hv(1);
    let mut b = perf_event::Builder::new(perf_event::events::Software::DUMMY);
    *b.attrs_mut() = attr;
    b.observe_self().any_cpu();
    match b.build() {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
                "not supported here (no hardware PMU or no such event)".to_string()
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                "not permitted (kernel.perf_event_paranoid / CAP_PERFMON)".to_string()
            }
            _ => e.to_string(),
        }),
    }
}

/// Group `uncore_imc_0..7` style boxes by family: (family, boxes).
pub fn pmu_families(names: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for n in names {
        let fam = {
            let t = n.trim_end_matches(|c: char| c.is_ascii_digit());
            if t.len() < n.len() && t.ends_with('_') {
                t.trim_end_matches('_').to_string()
            } else {
                n.clone()
            }
        };
        match out.iter_mut().find(|(f, _)| *f == fam) {
            Some((_, v)) => v.push(n.clone()),
            None => out.push((fam, vec![n.clone()])),
        }
    }
    out
}

/// The text of `hwprof list-events` for this machine.
pub fn list_events_text() -> String {
    list_events_text_in(&EventEnv::system(), true)
}

/// The text for an environment; `probe_generic` opens generic events to test them
/// (only meaningful for the running machine).
pub fn list_events_text_in(env: &EventEnv, probe_generic: bool) -> String {
    let mut s = String::new();
    let cpu = env.cpu();
    let _ = writeln!(
        s,
        "CPU: {}",
        cpu.as_ref()
            .map(|c| format!("{} ({})", c.model_name, c.perf_string()))
            .unwrap_or_else(|| "unknown (cannot read cpuinfo)".into())
    );
    let hw_ok = |name: &str| {
        if !probe_generic {
            return None;
        }
        resolve_all(name, env)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|spec| probe(&spec))
    };

    s.push_str("\nGeneric events (perf names; probed by opening each on hwprof itself):\n");
    for (name, _, _, kind) in GENERIC {
        let status = match hw_ok(name) {
            Some(Ok(())) => "available".to_string(),
            Some(Err(e)) => e,
            None => "-".into(),
        };
        let _ = writeln!(
            s,
            "  {name:<24} {:<10} {status}",
            format!("{kind:?}").to_lowercase()
        );
    }

    let names = sysfs::pmu_names(&env.sysfs);
    s.push_str(&format!(
        "\nPMUs in {} (use pmu/event=..,umask=../ or pmu/alias/):\n",
        sysfs::devices_dir(&env.sysfs).display()
    ));
    if names.is_empty() {
        s.push_str("  (none readable)\n");
    }
    for (fam, boxes) in pmu_families(&names) {
        let first = sysfs::Pmu::read(&env.sysfs, &boxes[0]).ok();
        let boxes_s = if boxes.len() > 1 {
            format!("{fam}_0..{} ({} boxes)", boxes.len() - 1, boxes.len())
        } else {
            fam.clone()
        };
        let _ = write!(s, "  {boxes_s}");
        if let Some(p) = &first {
            if !p.cpus.is_empty() {
                s.push_str("  [uncore: system-wide, counting only]");
            }
            s.push('\n');
            if !p.formats.is_empty() {
                let _ = writeln!(
                    s,
                    "      terms: {}",
                    p.formats.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for (a, al) in &p.aliases {
                let unit = if al.unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({} {})", al.scale, al.unit)
                };
                let _ = writeln!(s, "      {fam}/{a}/{unit}");
            }
        } else {
            s.push('\n');
        }
    }

    s.push('\n');
    match cpu.as_ref().map(super::perfmon::Table::for_cpu_cached) {
        Some((Some(t), _)) => {
            let _ = writeln!(
                s,
                "Intel perfmon events for this CPU ({}: {} core, {} uncore; uncore ones need their PMU above):",
                t.arch,
                t.core.len(),
                t.uncore.len()
            );
            for e in t.core.iter().chain(t.uncore.iter()) {
                let brief: String = e.brief.chars().take(70).collect();
                let _ = writeln!(s, "  {:<44} {brief}", e.name);
            }
        }
        Some((None, super::perfmon::TableLookup::NotBundled(f))) => {
            let _ = writeln!(
                s,
                "Intel perfmon events: this CPU's tables ({f}) are not bundled with hwprof; use raw rUUEE or pmu/event=../ terms."
            );
        }
        _ => s.push_str(
            "Intel perfmon events: none for this CPU (not an Intel CPU hwprof has tables for).\n",
        ),
    }

    s.push_str("\nRaw events: rUUEE (hex umask+event for the cpu PMU), e.g. r01c2.\n");
    let tp = env.tracefs.join("events");
    match std::fs::read_dir(&tp) {
        Ok(rd) => {
            let n = rd.flatten().filter(|e| e.path().is_dir()).count();
            let _ = writeln!(
                s,
                "Tracepoints: {n} subsystems under {} (name them sys:event, e.g. sched:sched_switch).",
                tp.display()
            );
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "Tracepoints: {} not readable ({e}): {}",
                tp.display(),
                super::tracefs_fix(&e)
            );
        }
    }

    s.push_str("\nWhat each mode uses here:\n");
    for mode in [
        super::Mode::Hotspots,
        super::Mode::Memory,
        super::Mode::Locks,
    ] {
        let _ = writeln!(s, "  {}:", mode.as_str());
        for d in mode_defaults(mode) {
            if d.primary == "cache-misses" && mode == super::Mode::Memory {
                match llc_miss_event(env) {
                    Some(e) => {
                        let _ = writeln!(
                            s,
                            "    {} (LLC misses, period {}, precise {})",
                            e.name, e.period, e.precise
                        );
                    }
                    None => s.push_str(
                        "    LLC-miss sampling: not available (no hardware PMU); skipped with a notice\n",
                    ),
                }
                continue;
            }
            let status = hw_ok(d.primary);
            let line = match (status, d.fallback) {
                (Some(Err(e)), Some(fb)) => {
                    format!("{} -> {fb} ({}: {e})", d.primary, d.primary)
                }
                (Some(Err(e)), None) => format!("{} ({e})", d.primary),
                _ => d.primary.to_string(),
            };
            let period = d
                .period
                .map(|p| format!(", every {p}"))
                .unwrap_or_else(|| ", at -F Hz".into());
            let _ = writeln!(s, "    {line}{period}");
        }
        if mode == super::Mode::Hotspots {
            let members: Vec<String> = super::HOTSPOT_GROUP_MEMBERS
                .iter()
                .map(|m| match hw_ok(m) {
                    Some(Err(_)) => format!("{m} (not here)"),
                    _ => m.to_string(),
                })
                .collect();
            let _ = writeln!(
                s,
                "    group members read per sample: {}",
                members.join(", ")
            );
        }
        if mode == super::Mode::Memory {
            s.push_str("    RSS timeline from procfs (--rss-interval, default 50 ms)\n");
            let plan = super::bandwidth::bandwidth_plan(env);
            for c in &plan.counters {
                let _ = writeln!(
                    s,
                    "    bandwidth {}: {} on {} boxes ({} bytes per count)",
                    c.name,
                    c.event,
                    c.specs.len(),
                    c.bytes_per_count
                );
            }
            for n in &plan.notices {
                let _ = writeln!(s, "    {n}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn families_group_numbered_boxes_only() {
        let n: Vec<String> = [
            "cpu",
            "uncore_imc_0",
            "uncore_imc_1",
            "uncore_imc_uclk_0",
            "uncore_pcu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = pmu_families(&n);
        assert_eq!(
            f[1],
            (
                "uncore_imc".into(),
                vec!["uncore_imc_0".into(), "uncore_imc_1".into()]
            )
        );
        assert_eq!(f[2].0, "uncore_imc_uclk");
        assert_eq!(f[3].0, "uncore_pcu");
    }

    #[test]
    fn haswell_ep_listing_names_aliases_perfmon_and_mode_plan() {
        let env = EventEnv::fixture(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/hsx"),
        );
        let t = list_events_text_in(&env, false);
        for want in [
            "GenuineIntel-6-3F-2",
            "uncore_imc_0..7 (8 boxes)",
            "uncore_imc/cas_count_read/ (0.00006103515625 MiB)",
            "MEM_LOAD_UOPS_RETIRED.L3_MISS",
            "UNC_M_CAS_COUNT.RD",
            "bandwidth dram_read_bytes: uncore_imc/cas_count_read/ on 8 boxes (64 bytes per count)",
        ] {
            assert!(t.contains(want), "{want:?} missing: {t}");
        }
    }

    #[test]
    fn this_machine_probes_software_events() {
        let t = list_events_text();
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with("page-faults "))
            .unwrap();
        assert!(line.contains("available"), "{line}");
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with("cpu-clock "))
            .unwrap();
        assert!(line.contains("available"), "{line}");
        // Without a hardware PMU, cycles is reported missing and hotspots falls back.
        if probe(&resolve_all("cycles", &EventEnv::system()).unwrap()[0]).is_err() {
            assert!(t.contains("cycles -> cpu-clock"), "{t}");
            assert!(t.contains("LLC-miss sampling: not available"), "{t}");
        }
    }
}
