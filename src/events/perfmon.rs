//! Intel perfmon event tables (`data/perfmon/`, embedded), chosen by the running CPU.
//!
//! The CPU is identified as perf does: `/proc/cpuinfo` `vendor_id`, `cpu family`,
//! `model`, `stepping` make `GenuineIntel-<family>-<MODEL hex>-<STEPPING hex>`, matched
//! against the patterns of `mapfile.csv` (`GenuineIntel-6-55-[01234]`; a pattern
//! without a stepping ignores it). The matching rows name the JSON event lists.
//!
//! Encoding (Intel SDM vol. 3 "Architectural performance monitoring", perf's
//! `cpu/format/`): a core event is `PERF_TYPE_RAW` with
//! `config = EventCode | UMask<<8 | EdgeDetect<<18 | AnyThread<<21 | Invert<<23 |
//! CounterMask<<24` and, when `MSRIndex` is non-zero (offcore response, load latency,
//! frontend), `config1 = MSRValue`. Events on fixed counters use the encodings perf
//! uses for them (`INST_RETIRED.ANY` = 0xc0, `CPU_CLK_UNHALTED.THREAD` = 0x3c).
//! Uncore events go to the sysfs PMUs of their unit (`iMC` → `uncore_imc_N`,
//! `EDC_ECLK` → `uncore_edc_eclk_N`), encoded through those PMUs' format files;
//! events that need box filters are refused with the pmu/terms/ spelling to use.

use std::path::Path;

use serde_json::Value;

/// One event from a perfmon JSON list.
#[derive(Clone, Debug, PartialEq)]
pub struct PerfmonEvent {
    /// `EventName`.
    pub name: String,
    /// `Unit` for uncore events (`iMC`, `EDC_ECLK`), None for core events.
    pub unit: Option<String>,
    /// First `EventCode`.
    pub event_code: u64,
    /// `UMask`.
    pub umask: u64,
    /// `UMaskExt` (Skylake-SP uncore and later), 0 when absent.
    pub umask_ext: u64,
    /// `CounterMask`.
    pub cmask: u64,
    /// `Invert`.
    pub inv: bool,
    /// `AnyThread`.
    pub any: bool,
    /// `EdgeDetect`.
    pub edge: bool,
    /// `MSRIndex` (0 = none).
    pub msr_index: u64,
    /// `MSRValue`.
    pub msr_value: u64,
    /// `PEBS` (0, 1 or 2) or `Precise`.
    pub pebs: u8,
    /// `SampleAfterValue`.
    pub sample_after: u64,
    /// `Counter` (`0,1,2,3`, `Fixed counter 0`).
    pub counter: String,
    /// `PortMask` (IIO channel mask), 0 when absent.
    pub port_mask: u64,
    /// `FCMask` (IIO function-class mask), 0 when absent.
    pub fc_mask: u64,
    /// `Filter` for uncore events (`na`/`null` when none).
    pub filter: String,
    /// `BriefDescription`.
    pub brief: String,
}

impl PerfmonEvent {
    /// True when the event only counts on a fixed counter.
    pub fn fixed(&self) -> bool {
        self.counter.starts_with("Fixed counter")
    }

    /// True when the uncore event needs a box filter register.
    pub fn needs_filter(&self) -> bool {
        // "fc"/"chnl" are the IIO masks, carried as ch_mask/fc_mask terms.
        self.filter.split(',').map(str::trim).any(|f| {
            !(f.is_empty()
                || ["na", "null", "fc", "chnl"]
                    .iter()
                    .any(|k| f.eq_ignore_ascii_case(k)))
        })
    }

    /// The `cpu` PMU config words: (config, config1).
    pub fn core_config(&self) -> (u64, u64) {
        // Fixed-counter events: the encodings perf uses (tools/perf/pmu-events/jevents.py).
        let upper = self.name.to_ascii_uppercase();
        let (code, umask, any) = match upper.as_str() {
            "INST_RETIRED.ANY" => (0xc0, 0, false),
            "CPU_CLK_UNHALTED.THREAD" | "CPU_CLK_UNHALTED.CORE" => (0x3c, 0, false),
            "CPU_CLK_UNHALTED.THREAD_ANY" => (0x3c, 0, true),
            _ => (self.event_code, self.umask, self.any),
        };
        let config = (code & 0xff)
            | (umask & 0xff) << 8
            | u64::from(self.edge) << 18
            | u64::from(any) << 21
            | u64::from(self.inv) << 23
            | (self.cmask & 0xff) << 24;
        let config1 = if self.msr_index != 0 {
            self.msr_value
        } else {
            0
        };
        (config, config1)
    }

    /// Terms for an uncore PMU: `event=..,umask=..[,edge][,inv][,thresh=..]`.
    pub fn uncore_terms(&self) -> Vec<(String, Option<u64>)> {
        let mut t = vec![
            ("event".to_string(), Some(self.event_code)),
            ("umask".to_string(), Some(self.umask)),
        ];
        if self.umask_ext != 0 {
            t.push(("umask_ext".into(), Some(self.umask_ext)));
        }
        if self.port_mask != 0 {
            t.push(("ch_mask".into(), Some(self.port_mask)));
        }
        if self.fc_mask != 0 {
            t.push(("fc_mask".into(), Some(self.fc_mask)));
        }
        if self.edge {
            t.push(("edge".into(), Some(1)));
        }
        if self.inv {
            t.push(("inv".into(), Some(1)));
        }
        if self.cmask != 0 {
            t.push(("thresh".into(), Some(self.cmask)));
        }
        t
    }
}

/// A CPU identity from /proc/cpuinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuId {
    /// `vendor_id`.
    pub vendor: String,
    /// `cpu family`.
    pub family: u32,
    /// `model`.
    pub model: u32,
    /// `stepping`.
    pub stepping: u32,
    /// `model name`.
    pub model_name: String,
}

impl CpuId {
    /// Parse the first processor block of /proc/cpuinfo text.
    pub fn from_cpuinfo(text: &str) -> Option<CpuId> {
        let mut vendor = None;
        let mut family = None;
        let mut model = None;
        let mut stepping = 0;
        let mut model_name = String::new();
        for line in text.lines() {
            if line.trim().is_empty() && vendor.is_some() {
                break;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "vendor_id" => vendor = Some(v.to_string()),
                "cpu family" => family = v.parse().ok(),
                "model" => model = v.parse().ok(),
                "stepping" => stepping = v.parse().unwrap_or(0),
                "model name" => model_name = v.to_string(),
                _ => {}
            }
        }
        Some(CpuId {
            vendor: vendor?,
            family: family?,
            model: model?,
            stepping,
            model_name,
        })
    }

    /// Read a cpuinfo file.
    pub fn read(path: &Path) -> Option<CpuId> {
        Self::from_cpuinfo(&std::fs::read_to_string(path).ok()?)
    }

    /// perf's CPUID string: `GenuineIntel-6-3F-2`.
    pub fn perf_string(&self) -> String {
        format!(
            "{}-{}-{:X}-{:X}",
            self.vendor, self.family, self.model, self.stepping
        )
    }
}

/// Match one mapfile pattern (literal text with `[...]` classes) against the CPUID,
/// ignoring the stepping when the pattern has none.
pub fn mapfile_matches(pattern: &str, cpu: &CpuId) -> bool {
    let full = cpu.perf_string();
    let subject = if pattern.matches('-').count() >= 3 {
        full
    } else {
        format!("{}-{}-{:X}", cpu.vendor, cpu.family, cpu.model)
    };
    glob_match(pattern.as_bytes(), subject.as_bytes())
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'[') => {
            let Some(close) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let class = &p[1..close];
            match s.first() {
                Some(c) if class.iter().any(|k| k.eq_ignore_ascii_case(c)) => {
                    glob_match(&p[close + 1..], &s[1..])
                }
                _ => false,
            }
        }
        Some(c) => match s.first() {
            Some(d) if c.eq_ignore_ascii_case(d) => glob_match(&p[1..], &s[1..]),
            _ => false,
        },
    }
}

/// The embedded tables: mapfile path → JSON text.
const FILES: &[(&str, &str)] = &[
    (
        "/HSW/events/haswell_core.json",
        include_str!("../../data/perfmon/HSW/events/haswell_core.json"),
    ),
    (
        "/HSW/events/haswell_uncore.json",
        include_str!("../../data/perfmon/HSW/events/haswell_uncore.json"),
    ),
    (
        "/HSX/events/haswellx_core.json",
        include_str!("../../data/perfmon/HSX/events/haswellx_core.json"),
    ),
    (
        "/HSX/events/haswellx_uncore.json",
        include_str!("../../data/perfmon/HSX/events/haswellx_uncore.json"),
    ),
    (
        "/KNL/events/knightslanding_core.json",
        include_str!("../../data/perfmon/KNL/events/knightslanding_core.json"),
    ),
    (
        "/KNL/events/knightslanding_uncore.json",
        include_str!("../../data/perfmon/KNL/events/knightslanding_uncore.json"),
    ),
    (
        "/SKX/events/skylakex_core.json",
        include_str!("../../data/perfmon/SKX/events/skylakex_core.json"),
    ),
    (
        "/SKX/events/skylakex_uncore.json",
        include_str!("../../data/perfmon/SKX/events/skylakex_uncore.json"),
    ),
    (
        "/ICX/events/icelakex_core.json",
        include_str!("../../data/perfmon/ICX/events/icelakex_core.json"),
    ),
    (
        "/ICX/events/icelakex_uncore.json",
        include_str!("../../data/perfmon/ICX/events/icelakex_uncore.json"),
    ),
    (
        "/SPR/events/sapphirerapids_core.json",
        include_str!("../../data/perfmon/SPR/events/sapphirerapids_core.json"),
    ),
    (
        "/SPR/events/sapphirerapids_uncore.json",
        include_str!("../../data/perfmon/SPR/events/sapphirerapids_uncore.json"),
    ),
];

const MAPFILE: &str = include_str!("../../data/perfmon/mapfile.csv");

/// The event tables for one CPU.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Folder of the tables (`HSX`).
    pub arch: String,
    /// Core events.
    pub core: Vec<PerfmonEvent>,
    /// Uncore events.
    pub uncore: Vec<PerfmonEvent>,
}

/// What the mapfile says about a CPU.
#[derive(Clone, Debug, PartialEq)]
pub enum TableLookup {
    /// Tables bundled and parsed.
    Found(String),
    /// The CPU is in the mapfile but its folder is not bundled.
    NotBundled(String),
    /// Not in the mapfile (AMD, ARM, unknown Intel).
    Unknown,
}

impl Table {
    /// The tables for a CPU, parsed once per process and shared.
    pub fn for_cpu_cached(cpu: &CpuId) -> (Option<std::sync::Arc<Table>>, TableLookup) {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex, OnceLock};
        type Cache = Mutex<HashMap<String, (Option<Arc<Table>>, TableLookup)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let key = cpu.perf_string();
        if let Ok(c) = cache.lock()
            && let Some(hit) = c.get(&key)
        {
            return hit.clone();
        }
        let (t, l) = Self::for_cpu(cpu);
        let v = (t.map(Arc::new), l);
        if let Ok(mut c) = cache.lock() {
            c.insert(key, v.clone());
        }
        v
    }

    /// The tables for a CPU, from the embedded files.
    pub fn for_cpu(cpu: &CpuId) -> (Option<Table>, TableLookup) {
        let mut table = Table::default();
        let mut lookup = TableLookup::Unknown;
        for line in MAPFILE.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            if cols.len() < 4 || !mapfile_matches(cols[0], cpu) {
                continue;
            }
            let (file, kind) = (cols[2], cols[3]);
            let folder = file.trim_start_matches('/').split('/').next().unwrap_or("");
            if kind != "core" && kind != "uncore" {
                continue;
            }
            let Some((_, text)) = FILES.iter().find(|(p, _)| *p == file) else {
                if lookup == TableLookup::Unknown {
                    lookup = TableLookup::NotBundled(folder.to_string());
                }
                continue;
            };
            lookup = TableLookup::Found(folder.to_string());
            table.arch = folder.to_string();
            let events = parse_events(text);
            if kind == "core" {
                table.core = events;
            } else {
                table.uncore = events;
            }
        }
        match lookup {
            TableLookup::Found(_) => (Some(table), lookup),
            _ => (None, lookup),
        }
    }

    /// Find an event by name, case-insensitively.
    pub fn find(&self, name: &str) -> Option<&PerfmonEvent> {
        self.core
            .iter()
            .chain(self.uncore.iter())
            .find(|e| e.name.eq_ignore_ascii_case(name))
    }

    /// All names, core first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.core
            .iter()
            .chain(self.uncore.iter())
            .map(|e| e.name.as_str())
    }
}

/// The sysfs PMU family of an uncore unit, per the kernel's uncore drivers
/// (arch/x86/events/intel/uncore_snbep.c names).
pub fn uncore_pmu_family(unit: &str) -> String {
    match unit {
        "CBO" => "uncore_cbox".into(),
        "SBO" => "uncore_sbox".into(),
        "HA" => "uncore_ha".into(),
        "QPI LL" => "uncore_qpi".into(),
        "UPI LL" => "uncore_upi".into(),
        "iMC" | "iMC_DCLK" => "uncore_imc".into(),
        "iMC_UCLK" => "uncore_imc_uclk".into(),
        "EDC_ECLK" => "uncore_edc_eclk".into(),
        "EDC_UCLK" => "uncore_edc_uclk".into(),
        "PCU" => "uncore_pcu".into(),
        "UBOX" => "uncore_ubox".into(),
        other => format!("uncore_{}", other.to_ascii_lowercase().replace(' ', "_")),
    }
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("")
}

fn num(e: &Value, k: &str) -> u64 {
    let s = field(e, k);
    let first = s.split(',').next().unwrap_or("").trim();
    super::sysfs::parse_num(first).unwrap_or(0)
}

/// Parse a perfmon JSON list (`{"Header":..,"Events":[..]}` or a bare array).
pub fn parse_events(text: &str) -> Vec<PerfmonEvent> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let list = match &v {
        Value::Array(a) => a.as_slice(),
        Value::Object(_) => v
            .get("Events")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or(&[]),
        _ => &[],
    };
    list.iter()
        .filter(|e| !field(e, "EventName").is_empty())
        .map(|e| {
            let unit = field(e, "Unit");
            let pebs = num(e, "PEBS").max(num(e, "Precise"));
            PerfmonEvent {
                name: field(e, "EventName").to_string(),
                unit: (!unit.is_empty()).then(|| unit.to_string()),
                event_code: num(e, "EventCode"),
                umask: num(e, "UMask"),
                umask_ext: num(e, "UMaskExt"),
                cmask: num(e, "CounterMask"),
                inv: num(e, "Invert") != 0,
                any: num(e, "AnyThread") != 0,
                edge: num(e, "EdgeDetect") != 0,
                msr_index: num(e, "MSRIndex"),
                msr_value: num(e, "MSRValue"),
                pebs: pebs.min(3) as u8,
                sample_after: num(e, "SampleAfterValue"),
                port_mask: num(e, "PortMask"),
                fc_mask: num(e, "FCMask"),
                counter: field(e, "Counter").to_string(),
                filter: field(e, "Filter").to_string(),
                brief: field(e, "BriefDescription").to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(model: u32, stepping: u32) -> CpuId {
        CpuId {
            vendor: "GenuineIntel".into(),
            family: 6,
            model,
            stepping,
            model_name: String::new(),
        }
    }

    #[test]
    fn cpuinfo_and_mapfile() {
        let c = CpuId::from_cpuinfo(
            "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 63\nmodel name\t: Intel(R) Xeon(R) CPU E5-2698 v3\nstepping\t: 2\n\nprocessor\t: 1\n",
        )
        .unwrap();
        assert_eq!(c.perf_string(), "GenuineIntel-6-3F-2");
        assert_eq!(Table::for_cpu(&c).1, TableLookup::Found("HSX".into()));
        assert_eq!(
            Table::for_cpu(&cpu(87, 1)).1,
            TableLookup::Found("KNL".into())
        );
        assert_eq!(
            Table::for_cpu(&cpu(0x55, 4)).1,
            TableLookup::Found("SKX".into())
        );
        // Cascade Lake (same model, stepping 7) is in the mapfile but not bundled.
        assert_eq!(
            Table::for_cpu(&cpu(0x55, 7)).1,
            TableLookup::NotBundled("CLX".into())
        );
        let amd = CpuId {
            vendor: "AuthenticAMD".into(),
            family: 25,
            model: 17,
            stepping: 1,
            model_name: String::new(),
        };
        assert_eq!(Table::for_cpu(&amd).1, TableLookup::Unknown);
        assert!(CpuId::from_cpuinfo("garbage").is_none());
    }

    #[test]
    fn every_bundled_file_parses() {
        for (p, text) in FILES {
            let n = parse_events(text).len();
            assert!(n > 20, "{p}: only {n} events");
        }
    }
}
