//! Encodings checked against the perfmon JSON files themselves, on fixture sysfs trees
//! of Haswell-EP, Knights Landing and Skylake-SP (tests/fixtures/sysfs/README.md).

use std::path::PathBuf;

use serde_json::Value;

use super::sysfs::{Pmu, parse_num};
use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> EventEnv {
    EventEnv::sysfs_fixture(name)
}

/// The JSON events, read straight from data/perfmon (not through perfmon.rs).
fn json_events(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("data/perfmon").join(rel)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["Events"].as_array().unwrap().clone()
}

fn j(e: &Value, k: &str) -> u64 {
    let s = e[k].as_str().unwrap_or("0");
    parse_num(s.split(',').next().unwrap().trim()).unwrap_or(0)
}

fn s<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or("")
}

/// Every programmable-counter core event of the file, resolved by name on the fixture,
/// decoded bit field by bit field and compared with its JSON fields.
fn check_core(arch_fixture: &str, rel: &str) -> usize {
    let env = fixture(arch_fixture);
    let cpu = Pmu::read(&env.sysfs, "cpu").unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut checked = 0;
    for e in json_events(rel) {
        let name = s(&e, "EventName");
        if !seen.insert(name.to_ascii_uppercase()) || s(&e, "Counter").starts_with("Fixed") {
            continue;
        }
        let spec = resolve_all(name, &env)
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .remove(0);
        assert_eq!(spec.type_, cpu.type_, "{name}");
        // Decoded through the fixture's format files (cpu/format/event = config:0-7,
        // ...), not through bit positions repeated from the encoder.
        let get = |term: &str| {
            let f = &cpu.formats[term];
            let word = match f.word {
                sysfs::ConfigWord::Config => spec.config,
                sysfs::ConfigWord::Config1 => spec.config1,
                sysfs::ConfigWord::Config2 => spec.config2,
                sysfs::ConfigWord::Config3 => panic!("{term}: config3 is not a core term"),
            };
            f.extract(word)
        };
        assert_eq!(get("event"), j(&e, "EventCode"), "{name} event");
        assert_eq!(get("umask"), j(&e, "UMask"), "{name} umask");
        assert_eq!(get("edge"), j(&e, "EdgeDetect"), "{name} edge");
        assert_eq!(get("any"), j(&e, "AnyThread"), "{name} any");
        assert_eq!(get("inv"), j(&e, "Invert"), "{name} inv");
        assert_eq!(get("cmask"), j(&e, "CounterMask"), "{name} cmask");
        let msr = if j(&e, "MSRIndex") != 0 {
            j(&e, "MSRValue")
        } else {
            0
        };
        assert_eq!(spec.config1, msr, "{name} config1");
        assert_eq!(spec.period, j(&e, "SampleAfterValue").max(1));
        assert_eq!(spec.precise > 0, j(&e, "PEBS") > 0, "{name} precise");
        checked += 1;
    }
    checked
}

/// Every uncore event without a box filter whose unit's PMU is in the fixture: one spec
/// per box, each box's type, and the fields decoded through the box's format files.
fn check_uncore(arch_fixture: &str, rel: &str) -> usize {
    let env = fixture(arch_fixture);
    let mut seen = std::collections::HashSet::new();
    let mut checked = 0;
    for e in json_events(rel) {
        let name = s(&e, "EventName");
        let f = s(&e, "Filter");
        let filtered = f
            .split(',')
            .map(str::trim)
            .any(|x| !["", "na", "null", "fc", "chnl"].contains(&x));
        if filtered || !seen.insert(name.to_ascii_uppercase()) {
            continue;
        }
        let family = perfmon::uncore_pmu_family(s(&e, "Unit"));
        let boxes = sysfs::pmu_boxes(&env.sysfs, &family);
        if boxes.is_empty() {
            continue;
        }
        let specs = resolve_all(name, &env).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(specs.len(), boxes.len(), "{name}: one spec per box");
        for (spec, b) in specs.iter().zip(&boxes) {
            let pmu = Pmu::read(&env.sysfs, b).unwrap();
            assert_eq!(spec.type_, pmu.type_, "{name} on {b}");
            assert_eq!(&spec.pmu, b);
            assert!(!spec.cpus.is_empty(), "{name}: uncore has a cpumask");
            let get = |t: &str| pmu.formats[t].extract(spec.config);
            assert_eq!(get("event"), j(&e, "EventCode"), "{name} event");
            assert_eq!(get("umask"), j(&e, "UMask"), "{name} umask");
            if pmu.formats.contains_key("ch_mask") {
                assert_eq!(get("ch_mask"), j(&e, "PortMask"), "{name} ch_mask");
                assert_eq!(get("fc_mask"), j(&e, "FCMask"), "{name} fc_mask");
            }
        }
        checked += 1;
    }
    checked
}

/// Per fixture: its perfmon files (`{prefix}_core.json`, `{prefix}_uncore.json`) and the
/// numbers of core and uncore events checked that each check must exceed.
const PLATFORMS: [(&str, &str, usize, usize); 3] = [
    ("hsx", "HSX/events/haswellx", 300, 1000),
    ("knl", "KNL/events/knightslanding", 300, 400),
    ("skx", "SKX/events/skylakex", 350, 120),
];

#[test]
fn haswell_ep_knl_and_skylake_sp_core_and_uncore_encodings_match_perfmon() {
    for (arch, prefix, core_min, uncore_min) in PLATFORMS {
        let n = check_core(arch, &format!("{prefix}_core.json"));
        assert!(n > core_min, "{arch}: {n} core events checked");
        let n = check_uncore(arch, &format!("{prefix}_uncore.json"));
        assert!(n > uncore_min, "{arch}: {n} uncore events checked");
    }
}

#[test]
fn fixed_counter_events_use_perf_encodings() {
    let env = fixture("hsx");
    let one = |n: &str| resolve_all(n, &env).unwrap().remove(0).config;
    assert_eq!(one("INST_RETIRED.ANY"), 0xc0);
    assert_eq!(one("CPU_CLK_UNHALTED.THREAD"), 0x3c);
    assert_eq!(one("cpu_clk_unhalted.thread_any"), 0x3c | 1 << 21);
}

#[test]
fn haswell_ep_cas_counts_all_channels_with_sysfs_scale() {
    let env = fixture("hsx");
    let alias = resolve_all("uncore_imc/cas_count_read/", &env).unwrap();
    assert_eq!(alias.len(), 8);
    assert_eq!(alias[7].pmu, "uncore_imc_7");
    assert_eq!(alias[0].name, "uncore_imc_0/cas_count_read/");
    assert_eq!(alias[0].config, 0x0304);
    assert_eq!(alias[0].unit, "MiB");
    // 6.103515625e-5 MiB per count = 64 bytes per CAS.
    assert!((alias[0].scale * 1048576.0 - 64.0).abs() < 1e-9);
    assert_eq!(alias[0].cpus, vec![0, 16]);
    let one = resolve_all("uncore_imc_3/cas_count_write/", &env).unwrap();
    assert_eq!((one.len(), one[0].config), (1, 0x0c04));
    // Perfmon name: same encoding, 64 bytes per count.
    let pm = resolve_all("UNC_M_CAS_COUNT.RD", &env).unwrap();
    assert_eq!(pm.len(), 8);
    assert_eq!(pm[0].config, alias[0].config);
    assert_eq!((pm[0].scale, pm[0].unit.as_str()), (64.0, "bytes"));
    // Raw terms, bare aliases.
    let t = resolve_all("uncore_imc_0/event=0x3c,umask=0x1,edge/", &env).unwrap();
    assert_eq!(t[0].config, 0x3c | 0x100 | 1 << 18);
    assert_eq!(resolve_all("cas_count_read", &env).unwrap().len(), 8);
    let c = resolve_all("cpu/event=0xd1,umask=0x20/pp", &env).unwrap();
    assert_eq!((c[0].type_, c[0].config, c[0].precise), (4, 0x20d1, 2));
}

#[test]
fn knl_ddr_and_mcdram_events() {
    let env = fixture("knl");
    let ddr = resolve_all("UNC_M_CAS_COUNT.RD", &env).unwrap();
    assert_eq!(
        ddr.len(),
        6,
        "six DDR channels on uncore_imc_N, not imc_uclk"
    );
    assert!(
        ddr.iter()
            .all(|s| s.pmu.starts_with("uncore_imc_") && !s.pmu.contains("uclk"))
    );
    assert_eq!(ddr[0].config, 0x0103);
    let rpq = resolve_all("UNC_E_RPQ_INSERTS", &env).unwrap();
    assert_eq!(rpq.len(), 8);
    assert_eq!(rpq[0].pmu, "uncore_edc_eclk_0");
    assert_eq!((rpq[0].config, rpq[0].scale), (0x0101, 64.0));
    let wpq = resolve_all("unc_e_wpq_inserts", &env).unwrap();
    assert_eq!(wpq[0].config, 0x0102);
    assert_eq!(
        llc_miss_event(&env).unwrap().name,
        "MEM_UOPS_RETIRED.L2_MISS_LOADS"
    );
}

#[test]
fn errors_name_the_problem_and_close_matches() {
    let env = fixture("hsx");
    let error = |name: &str| resolve_all(name, &env).unwrap_err().to_string();
    let e = error("UNC_M_CAS_COUNT.RDX");
    assert!(e.contains("UNC_M_CAS_COUNT.RD"), "{e}");
    let e = error("uncore_imc_0/evnt=1/");
    assert!(e.contains("no term 'evnt'") && e.contains("umask"), "{e}");
    let e = error("uncore_foo/event=1/");
    assert!(e.contains("no PMU 'uncore_foo'"), "{e}");
    let e = error("uncore_imc_0/event=0x1ff/");
    assert!(e.contains("does not fit"), "{e}");
    // A CBo event that needs a filter register is refused, not mis-encoded.
    let e = error("UNC_C_TOR_INSERTS.MISS_OPCODE");
    assert!(e.contains("filter"), "{e}");
    // Perfmon names of another CPU are not offered on this one.
    let knl = fixture("knl");
    assert!(resolve_all("UNC_C_CLOCKTICKS", &knl).is_err());
    // The no-PMU machine: uncore names are unknown, with a reason.
    let none = fixture("nopmu");
    assert!(resolve_all("uncore_imc/cas_count_read/", &none).is_err());
    assert!(llc_miss_event(&none).is_none());
}

#[test]
fn skylake_sp_llc_miss_is_precise() {
    let s = llc_miss_event(&fixture("skx")).unwrap();
    assert_eq!(s.name, "MEM_LOAD_RETIRED.L3_MISS");
    assert_eq!((s.config, s.precise), (0x20d1, 2));
    let h = llc_miss_event(&fixture("hsx")).unwrap();
    assert_eq!(h.name, "MEM_LOAD_UOPS_RETIRED.L3_MISS");
}
