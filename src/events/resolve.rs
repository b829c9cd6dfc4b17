//! Resolution of a name the user typed, in DESIGN section 5's order: generic names,
//! sysfs `pmu/event/` terms, perfmon names, raw `rUUEE`, tracepoints `sys:name`.

use std::path::{Path, PathBuf};

use perf_event_open_sys::bindings as sys;

use super::generic::{GENERIC, generic};
use super::suggest::close_matches;
use super::{EventEnv, EventError, EventKind, EventSpec, perfmon, sysfs};

/// Resolve an event name as the user typed it. For uncore events (one PMU per box)
/// this is the first box; [`resolve_all`] gives every box.
pub fn resolve(name: &str) -> Result<EventSpec, EventError> {
    first(resolve_all(name, &EventEnv::system()), name)
}

/// Resolve with an explicit tracefs root (tests use fixture trees).
pub fn resolve_in(name: &str, tracefs: &Path) -> Result<EventSpec, EventError> {
    let env = EventEnv {
        tracefs: tracefs.to_path_buf(),
        ..EventEnv::system()
    };
    first(resolve_all(name, &env), name)
}

fn first(r: Result<Vec<EventSpec>, EventError>, name: &str) -> Result<EventSpec, EventError> {
    r?.into_iter().next().ok_or_else(|| EventError::Unknown {
        name: name.to_string(),
        close: Vec::new(),
    })
}

const MODIFIERS: &str = "ukhp";

/// Split `cycles:pp` / `cpu/.../up` modifiers; returns the precise level asked for.
fn parse_modifiers(m: &str) -> Option<u8> {
    if m.is_empty() || !m.chars().all(|c| MODIFIERS.contains(c)) {
        return None;
    }
    Some(m.chars().filter(|&c| c == 'p').count().min(3) as u8)
}

/// Resolve a name to every event it stands for: one for core, software and tracepoint
/// events, one per box for uncore events (`UNC_M_CAS_COUNT.RD` on `uncore_imc_0..7`,
/// `uncore_imc/cas_count_read/`).
pub fn resolve_all(name: &str, env: &EventEnv) -> Result<Vec<EventSpec>, EventError> {
    let name = name.trim();
    // 1. perf's generic names, with optional :ukp modifiers.
    if let Some(g) = generic(name) {
        return Ok(vec![g]);
    }
    if let Some((base, m)) = name.rsplit_once(':')
        && let Some(p) = parse_modifiers(m)
        && let Some(mut g) = generic(base)
    {
        g.precise = p;
        return Ok(vec![g]);
    }
    // 2. sysfs PMU events: pmu/terms/[modifiers].
    if name.contains('/') {
        return resolve_pmu_terms(name, env);
    }
    // 3. perfmon names for the running CPU.
    if let Some(table) = env.perfmon()
        && let Some(ev) = table.find(name)
    {
        return encode_perfmon(ev, env);
    }
    // 4. raw rUUEE.
    if let Some(hex) = name.strip_prefix('r')
        && !hex.is_empty()
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(config) = u64::from_str_radix(hex, 16)
    {
        return Ok(vec![EventSpec {
            name: name.to_string(),
            type_: sys::PERF_TYPE_RAW,
            config,
            kind: EventKind::Hardware,
            pmu: "raw".into(),
            ..Default::default()
        }]);
    }
    // 5. tracepoints sys:name.
    if let Some((sys_name, ev)) = name.split_once(':')
        && !sys_name.is_empty()
        && !ev.is_empty()
        && !ev.contains(':')
    {
        return tracepoint(name, sys_name, ev, &env.tracefs).map(|t| vec![t]);
    }
    // A bare sysfs alias (`cas_count_read`): every PMU that has it.
    if !name.is_empty() && !name.contains(['.', ' ']) {
        let mut out = Vec::new();
        for pmu in sysfs::pmu_names(&env.sysfs) {
            if let Ok(p) = sysfs::Pmu::read(&env.sysfs, &pmu)
                && p.aliases.contains_key(name)
            {
                out.extend(resolve_pmu_terms(&format!("{pmu}/{name}/"), env)?);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Err(EventError::Unknown {
        name: name.to_string(),
        close: close_matches(name, &known_names(env)),
    })
}

/// Every name resolution knows on this machine: generic, sysfs `pmu/alias/`, perfmon.
pub fn known_names(env: &EventEnv) -> Vec<String> {
    let mut v: Vec<String> = GENERIC.iter().map(|g| g.0.to_string()).collect();
    let mut families = std::collections::BTreeSet::new();
    for pmu in sysfs::pmu_names(&env.sysfs) {
        if let Ok(p) = sysfs::Pmu::read(&env.sysfs, &pmu) {
            let fam = pmu
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches('_')
                .to_string();
            for a in p.aliases.keys() {
                v.push(format!("{pmu}/{a}/"));
                if fam != pmu && families.insert((fam.clone(), a.clone())) {
                    v.push(format!("{fam}/{a}/"));
                }
            }
        }
    }
    if let Some(t) = env.perfmon() {
        v.extend(t.names().map(str::to_string));
    }
    v
}

fn tracepoint(
    name: &str,
    sys_name: &str,
    ev: &str,
    tracefs: &Path,
) -> Result<EventSpec, EventError> {
    let bad = |path: PathBuf, error| EventError::Tracepoint {
        name: name.to_string(),
        path,
        error,
    };
    if [sys_name, ev].iter().any(|p| p.contains('/') || *p == "..") {
        return Err(bad(
            tracefs.join("events"),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a tracepoint name"),
        ));
    }
    let path = tracefs.join("events").join(sys_name).join(ev).join("id");
    let id = std::fs::read_to_string(&path).map_err(|e| bad(path.clone(), e))?;
    let config = id.trim().parse::<u64>().map_err(|e| {
        bad(
            path.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    Ok(EventSpec {
        name: name.to_string(),
        type_: sys::PERF_TYPE_TRACEPOINT,
        config,
        kind: EventKind::Tracepoint,
        pmu: "tracepoint".into(),
        ..Default::default()
    })
}

/// `pmu/term=v,alias,.../mods`: encode through the PMU's format files; a PMU family
/// without a number (`uncore_imc`) expands to all its boxes.
fn resolve_pmu_terms(name: &str, env: &EventEnv) -> Result<Vec<EventSpec>, EventError> {
    let pmu_err = |source| EventError::Pmu {
        name: name.to_string(),
        source,
    };
    let mut parts = name.splitn(3, '/');
    let pmu_name = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let mods = parts.next().unwrap_or("");
    let precise = if mods.is_empty() {
        0
    } else {
        parse_modifiers(mods).ok_or_else(|| EventError::Unsupported {
            name: name.to_string(),
            why: format!("modifier '{mods}' not understood (use u, k, h, p, pp, ppp)"),
        })?
    };
    let user_terms = sysfs::parse_terms(body).map_err(pmu_err)?;
    let boxes = sysfs::pmu_boxes(&env.sysfs, pmu_name);
    if boxes.is_empty() {
        return Err(pmu_err(sysfs::SysfsError::NoPmu {
            pmu: pmu_name.to_string(),
            dir: sysfs::devices_dir(&env.sysfs),
        }));
    }
    let mut out = Vec::new();
    for b in boxes {
        let pmu = sysfs::Pmu::read(&env.sysfs, &b).map_err(pmu_err)?;
        let mut terms = Vec::new();
        let mut scale = 1.0;
        let mut unit = String::new();
        let mut period: Option<u64> = None;
        let mut alias_name = None;
        for (k, v) in &user_terms {
            if k == "period" {
                period = *v;
            } else if v.is_none()
                && !pmu.formats.contains_key(k)
                && let Some(a) = pmu.aliases.get(k)
            {
                for (ak, av) in &a.terms {
                    if ak == "period" {
                        period = period.or(*av);
                    } else {
                        terms.push((ak.clone(), *av));
                    }
                }
                scale = a.scale;
                unit = a.unit.clone();
                alias_name = Some(k.clone());
            } else {
                terms.push((k.clone(), *v));
            }
        }
        let [config, config1, config2] = pmu.encode(&terms).map_err(pmu_err)?;
        let canonical = match &alias_name {
            Some(a) if user_terms.len() == 1 => format!("{b}/{a}/"),
            _ => format!("{b}/{body}/"),
        };
        out.push(EventSpec {
            name: canonical,
            type_: pmu.type_,
            config,
            config1,
            config2,
            kind: EventKind::Hardware,
            time_based: false,
            pmu: b.clone(),
            scale,
            unit,
            period: period.unwrap_or(1).max(1),
            precise,
            cpus: pmu.cpus.clone(),
        });
    }
    Ok(out)
}

/// Encode a perfmon event for this machine's PMUs.
pub(super) fn encode_perfmon(
    ev: &perfmon::PerfmonEvent,
    env: &EventEnv,
) -> Result<Vec<EventSpec>, EventError> {
    let Some(unit) = &ev.unit else {
        let (config, config1) = ev.core_config();
        // The core PMU's type is in sysfs when present; PERF_TYPE_RAW means the same.
        let type_ = sysfs::Pmu::read(&env.sysfs, "cpu")
            .map(|p| p.type_)
            .unwrap_or(sys::PERF_TYPE_RAW);
        return Ok(vec![EventSpec {
            name: ev.name.clone(),
            type_,
            config,
            config1,
            kind: EventKind::Hardware,
            pmu: "cpu".into(),
            period: ev.sample_after.max(1),
            // PEBS events take precise_ip 2 (perf's `:pp`); the opener lowers it if refused.
            precise: if ev.pebs > 0 { 2 } else { 0 },
            ..Default::default()
        }]);
    };
    if ev.needs_filter() {
        return Err(EventError::Unsupported {
            name: ev.name.clone(),
            why: format!(
                "it needs the box filter '{}', which hwprof does not set from perfmon names; \
                 give it as {}/event={:#x},umask={:#x},<filter terms>/ (see the PMU's format directory)",
                ev.filter,
                perfmon::uncore_pmu_family(unit),
                ev.event_code,
                ev.umask
            ),
        });
    }
    let family = perfmon::uncore_pmu_family(unit);
    let boxes = sysfs::pmu_boxes(&env.sysfs, &family);
    if boxes.is_empty() {
        return Err(EventError::Pmu {
            name: ev.name.clone(),
            source: sysfs::SysfsError::NoPmu {
                pmu: family,
                dir: sysfs::devices_dir(&env.sysfs),
            },
        });
    }
    let terms = ev.uncore_terms();
    // A CAS command or an RPQ/WPQ insert moves one 64-byte line.
    let upper = ev.name.to_ascii_uppercase();
    let (scale, unit_s) = if upper.starts_with("UNC_M_CAS_COUNT.")
        || upper.starts_with("UNC_E_RPQ_INSERTS")
        || upper.starts_with("UNC_E_WPQ_INSERTS")
    {
        (64.0, "bytes")
    } else {
        (1.0, "")
    };
    let mut out = Vec::new();
    for b in boxes {
        let pmu = sysfs::Pmu::read(&env.sysfs, &b).map_err(|source| EventError::Pmu {
            name: ev.name.clone(),
            source,
        })?;
        let [config, config1, config2] = pmu.encode(&terms).map_err(|source| EventError::Pmu {
            name: ev.name.clone(),
            source,
        })?;
        out.push(EventSpec {
            name: ev.name.clone(),
            type_: pmu.type_,
            config,
            config1,
            config2,
            kind: EventKind::Hardware,
            pmu: b,
            scale,
            unit: unit_s.into(),
            cpus: pmu.cpus,
            ..Default::default()
        });
    }
    Ok(out)
}
