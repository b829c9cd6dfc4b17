//! Which uncore events measure memory bandwidth on this machine, and bytes per count
//! (the table is in `collect/uncore.rs`, which opens and reads them): DRAM CAS counts
//! through sysfs aliases or perfmon names, KNL's MCDRAM (EDC) inserts.

use super::{EventEnv, EventSpec, resolve_all, sysfs};

/// One bandwidth counter: its events (one per box) and bytes per count.
#[derive(Clone, Debug)]
pub struct BandwidthCounter {
    /// `dram_read_bytes`, `dram_write_bytes`, `mcdram_read_bytes`, `mcdram_write_bytes`.
    pub name: &'static str,
    /// The event name resolved (`uncore_imc/cas_count_read/`, `UNC_E_RPQ_INSERTS`).
    pub event: String,
    /// One spec per box.
    pub specs: Vec<EventSpec>,
    /// Bytes per raw count (from the sysfs scale and unit, else 64 per CAS/insert).
    pub bytes_per_count: f64,
}

/// What can be measured on this machine, and one notice per part that cannot.
#[derive(Clone, Debug, Default)]
pub struct BandwidthPlan {
    /// Counters to open.
    pub counters: Vec<BandwidthCounter>,
    /// One line per missing part (for stderr and the manifest).
    pub notices: Vec<String>,
}

/// Bytes in one `unit` of a sysfs `.unit` file.
fn unit_bytes(unit: &str) -> Option<f64> {
    match unit.trim() {
        "B" | "bytes" | "Bytes" => Some(1.0),
        "KiB" | "KB" => Some(1024.0),
        "MiB" | "MB" => Some(1048576.0),
        "GiB" | "GB" => Some(1073741824.0),
        _ => None,
    }
}

/// Try names in order; the first that resolves wins.
fn first_resolving(names: &[&str], env: &EventEnv) -> Option<(String, Vec<EventSpec>, f64)> {
    for n in names {
        if let Ok(specs) = resolve_all(n, env)
            && let Some(s) = specs.first()
            && s.is_uncore()
        {
            let bpc = if s.unit.is_empty() {
                // A CAS command or a queue insert moves one 64-byte line.
                64.0
            } else {
                match unit_bytes(&s.unit) {
                    Some(u) => s.scale * u,
                    None => continue,
                }
            };
            return Some((n.to_string(), specs, bpc));
        }
    }
    None
}

/// Decide what to count for memory bandwidth on the machine `env` describes.
pub fn bandwidth_plan(env: &EventEnv) -> BandwidthPlan {
    let mut plan = BandwidthPlan::default();
    let pmus = sysfs::pmu_names(&env.sysfs);
    let has = |fam: &str| !sysfs::pmu_boxes(&env.sysfs, fam).is_empty();
    let cpu = env
        .cpu()
        .map(|c| format!("{} ({})", c.model_name, c.perf_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let wanted: [(&'static str, &[&str]); 4] = [
        (
            "dram_read_bytes",
            &["uncore_imc/cas_count_read/", "UNC_M_CAS_COUNT.RD"],
        ),
        (
            "dram_write_bytes",
            &["uncore_imc/cas_count_write/", "UNC_M_CAS_COUNT.WR"],
        ),
        ("mcdram_read_bytes", &["UNC_E_RPQ_INSERTS"]),
        ("mcdram_write_bytes", &["UNC_E_WPQ_INSERTS"]),
    ];
    for (name, names) in wanted {
        let mcdram = name.starts_with("mcdram");
        if mcdram && !has("uncore_edc_eclk") {
            continue; // only Knights Landing has MCDRAM; no notice elsewhere
        }
        match first_resolving(names, env) {
            Some((event, specs, bytes_per_count)) => plan.counters.push(BandwidthCounter {
                name,
                event,
                specs,
                bytes_per_count,
            }),
            None if !mcdram && !has("uncore_imc") => {
                if !plan.notices.iter().any(|n| n.contains("DRAM bandwidth")) {
                    plan.notices.push(format!(
                        "memory: DRAM bandwidth not measured: no uncore memory-controller PMU (uncore_imc_*) in {} on this {cpu} (PMUs present: {}); it needs an Intel Xeon or Xeon Phi node with the kernel's uncore driver, not a VM",
                        sysfs::devices_dir(&env.sysfs).display(),
                        pmus.join(", ")
                    ));
                }
            }
            None => plan.notices.push(format!(
                "memory: {name} not measured: none of {} resolves on this {cpu}",
                names.join(", ")
            )),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> EventEnv {
        EventEnv::sysfs_fixture(name)
    }

    #[test]
    fn haswell_ep_plan_uses_sysfs_cas_aliases_and_scale() {
        let p = bandwidth_plan(&fixture("hsx"));
        assert!(p.notices.is_empty(), "{:?}", p.notices);
        let names: Vec<&str> = p.counters.iter().map(|c| c.name).collect();
        assert_eq!(names, ["dram_read_bytes", "dram_write_bytes"]);
        let r = &p.counters[0];
        assert_eq!(r.event, "uncore_imc/cas_count_read/");
        assert_eq!(r.specs.len(), 8);
        assert!(
            (r.bytes_per_count - 64.0).abs() < 1e-9,
            "{}",
            r.bytes_per_count
        );
        assert_eq!(r.specs[0].cpus, vec![0, 16]);
        assert_eq!(p.counters[1].specs[5].config, 0x0c04);
    }

    #[test]
    fn knl_plan_has_ddr_and_mcdram() {
        let p = bandwidth_plan(&fixture("knl"));
        assert!(p.notices.is_empty(), "{:?}", p.notices);
        let got: Vec<(&str, &str, usize)> = p
            .counters
            .iter()
            .map(|c| (c.name, c.event.as_str(), c.specs.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("dram_read_bytes", "UNC_M_CAS_COUNT.RD", 6),
                ("dram_write_bytes", "UNC_M_CAS_COUNT.WR", 6),
                ("mcdram_read_bytes", "UNC_E_RPQ_INSERTS", 8),
                ("mcdram_write_bytes", "UNC_E_WPQ_INSERTS", 8),
            ]
        );
        assert!(p.counters.iter().all(|c| c.bytes_per_count == 64.0));
        assert_eq!(p.counters[2].specs[0].pmu, "uncore_edc_eclk_0");
    }
}
