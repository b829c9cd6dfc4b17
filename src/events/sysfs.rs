//! PMUs as the kernel describes them under `<sysfs>/bus/event_source/devices/`.
//!
//! Each PMU directory holds (kernel ABI, `Documentation/ABI/testing/sysfs-bus-event_source-devices-*`):
//!
//! - `type`: the number for `perf_event_attr.type`;
//! - `format/<term>`: where a term's value goes, `config:0-7`, `config1:0-15`,
//!   `config:0-7,32-35` or a single bit `config:21`; the value's bits fill the ranges
//!   from the lowest bit up;
//! - `events/<alias>`: terms, `event=0x04,umask=0x03` (a term without value means 1),
//!   with optional `<alias>.scale` (multiply a count by it) and `<alias>.unit`
//!   (`MiB`, `Joules`);
//! - `cpumask`: the CPUs to open a system-wide (uncore) event on; absent for core PMUs.
//!
//! Nothing here opens an event: it reads files and computes `config` words, so fixture
//! trees test it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors from sysfs PMU descriptions and `pmu/terms/` strings.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// No such PMU directory.
    #[error(
        "no PMU '{pmu}' under {dir}: this machine (or its kernel) does not have it; `hwprof list-events` shows the PMUs present"
    )]
    NoPmu {
        /// The PMU name asked for.
        pmu: String,
        /// The devices directory searched.
        dir: PathBuf,
    },
    /// A term is not in the PMU's format directory.
    #[error(
        "PMU '{pmu}' has no term '{term}' (its terms: {known}); check the spelling or the kernel's format files"
    )]
    NoTerm {
        /// PMU.
        pmu: String,
        /// Term.
        term: String,
        /// Terms it has.
        known: String,
    },
    /// Unparsable text in a file or term.
    #[error("{what}: cannot parse '{text}': expected {expected}")]
    Parse {
        /// Where.
        what: String,
        /// The text.
        text: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A value does not fit the term's bits.
    #[error("{pmu}/{term}={value:#x}/ does not fit the {bits} bits of the term")]
    TooWide {
        /// PMU.
        pmu: String,
        /// Term.
        term: String,
        /// Value.
        value: u64,
        /// Width in bits.
        bits: u32,
    },
}

/// Which `perf_event_attr` word a format term lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigWord {
    /// `config`.
    Config,
    /// `config1`.
    Config1,
    /// `config2`.
    Config2,
    /// `config3`.
    Config3,
}

/// A format term: a word and the bit ranges (inclusive) it occupies, lowest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// The word.
    pub word: ConfigWord,
    /// Inclusive bit ranges in the order the value's bits fill them.
    pub ranges: Vec<(u32, u32)>,
}

impl Format {
    /// Parse a format file's text (`config:0-7,32-35`).
    pub fn parse(text: &str) -> Result<Format, SysfsError> {
        let bad = || SysfsError::Parse {
            what: "format".into(),
            text: text.trim().to_string(),
            expected: "config[N]:LO-HI[,LO-HI...]",
        };
        let (w, bits) = text.trim().split_once(':').ok_or_else(bad)?;
        let word = match w {
            "config" => ConfigWord::Config,
            "config1" => ConfigWord::Config1,
            "config2" => ConfigWord::Config2,
            "config3" => ConfigWord::Config3,
            _ => return Err(bad()),
        };
        let mut ranges = Vec::new();
        for part in bits.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok(), b.trim().parse().ok()),
                None => {
                    let v = part.trim().parse().ok();
                    (v, v)
                }
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi && hi < 64 => ranges.push((lo, hi)),
                _ => return Err(bad()),
            }
        }
        Ok(Format { word, ranges })
    }

    /// Number of value bits.
    pub fn width(&self) -> u32 {
        self.ranges.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    /// Scatter `value` into a word, or None when it does not fit.
    pub fn place(&self, value: u64) -> Option<u64> {
        let w = self.width();
        if w < 64 && value >> w != 0 {
            return None;
        }
        let mut out = 0u64;
        let mut v = value;
        for &(lo, hi) in &self.ranges {
            let n = hi - lo + 1;
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            out |= (v & mask) << lo;
            v = if n == 64 { 0 } else { v >> n };
        }
        Some(out)
    }

    /// Gather the term's value back out of a word (for tests and `list-events`).
    pub fn extract(&self, word: u64) -> u64 {
        let mut out = 0u64;
        let mut shift = 0;
        for &(lo, hi) in &self.ranges {
            let n = hi - lo + 1;
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            out |= ((word >> lo) & mask) << shift;
            shift += n;
        }
        out
    }
}

/// One event alias from `events/`.
#[derive(Clone, Debug, PartialEq)]
pub struct Alias {
    /// Its terms, in order.
    pub terms: Vec<(String, Option<u64>)>,
    /// `.scale`, 1.0 when absent.
    pub scale: f64,
    /// `.unit`, empty when absent.
    pub unit: String,
}

/// A PMU directory, read.
#[derive(Clone, Debug)]
pub struct Pmu {
    /// Directory name (`uncore_imc_0`).
    pub name: String,
    /// `type`.
    pub type_: u32,
    /// Format terms.
    pub formats: BTreeMap<String, Format>,
    /// Event aliases.
    pub aliases: BTreeMap<String, Alias>,
    /// `cpumask`, empty for core PMUs.
    pub cpus: Vec<u32>,
}

/// `<sysfs>/bus/event_source/devices`.
pub fn devices_dir(sysfs: &Path) -> PathBuf {
    sysfs.join("bus/event_source/devices")
}

/// Names of all PMUs present, sorted.
pub fn pmu_names(sysfs: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(devices_dir(sysfs))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| natural_cmp(a, b));
    v
}

/// Order `uncore_imc_2` before `uncore_imc_10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let t = s.trim_end_matches(|c: char| c.is_ascii_digit());
        (t.to_string(), s[t.len()..].parse::<u64>().unwrap_or(0))
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// The boxes of a PMU family: `uncore_imc` matches `uncore_imc` and `uncore_imc_N`
/// (not `uncore_imc_uclk_0`); an exact name matches itself.
pub fn pmu_boxes(sysfs: &Path, family: &str) -> Vec<String> {
    pmu_names(sysfs)
        .into_iter()
        .filter(|n| {
            n == family
                || n.strip_prefix(family)
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
        })
        .collect()
}

/// Parse `event=0x04,umask=0x03,edge` into terms.
pub fn parse_terms(text: &str) -> Result<Vec<(String, Option<u64>)>, SysfsError> {
    let mut out = Vec::new();
    for t in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match t.split_once('=') {
            Some((k, v)) => {
                let n = parse_num(v).ok_or_else(|| SysfsError::Parse {
                    what: format!("term '{k}'"),
                    text: v.to_string(),
                    expected: "a decimal or 0x hex number",
                })?;
                out.push((k.trim().to_string(), Some(n)));
            }
            None => out.push((t.to_string(), None)),
        }
    }
    Ok(out)
}

/// Parse `0x1F` or `31`.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

impl Pmu {
    /// Read one PMU directory.
    pub fn read(sysfs: &Path, name: &str) -> Result<Pmu, SysfsError> {
        let dir = devices_dir(sysfs).join(name);
        let no_pmu = || SysfsError::NoPmu {
            pmu: name.to_string(),
            dir: devices_dir(sysfs),
        };
        if name.contains('/') || name.contains("..") || !dir.is_dir() {
            return Err(no_pmu());
        }
        let type_text = std::fs::read_to_string(dir.join("type")).map_err(|_| no_pmu())?;
        let type_ = type_text.trim().parse().map_err(|_| SysfsError::Parse {
            what: format!("{}/type", dir.display()),
            text: type_text.trim().to_string(),
            expected: "a number",
        })?;
        let mut formats = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("format")) {
            for e in rd.flatten() {
                let Ok(term) = e.file_name().into_string() else {
                    continue;
                };
                if let Ok(text) = std::fs::read_to_string(e.path())
                    && let Ok(f) = Format::parse(&text)
                {
                    formats.insert(term, f);
                }
            }
        }
        let mut aliases = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("events")) {
            for e in rd.flatten() {
                let Ok(alias) = e.file_name().into_string() else {
                    continue;
                };
                if alias.contains('.') {
                    continue; // .scale, .unit, .snapshot, .per-pkg
                }
                let Ok(text) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                let Ok(terms) = parse_terms(&text) else {
                    continue;
                };
                let scale =
                    std::fs::read_to_string(dir.join("events").join(format!("{alias}.scale")))
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .unwrap_or(1.0);
                let unit =
                    std::fs::read_to_string(dir.join("events").join(format!("{alias}.unit")))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default();
                aliases.insert(alias, Alias { terms, scale, unit });
            }
        }
        let cpus = std::fs::read_to_string(dir.join("cpumask"))
            .map(|s| crate::util::parse_cpu_list(&s))
            .unwrap_or_default();
        Ok(Pmu {
            name: name.to_string(),
            type_,
            formats,
            aliases,
            cpus,
        })
    }

    /// Encode terms into (config, config1, config2). Unknown terms are errors, so a
    /// typo never opens a different event. `period`, `name` are left to the caller.
    pub fn encode(&self, terms: &[(String, Option<u64>)]) -> Result<[u64; 3], SysfsError> {
        let mut words = [0u64; 3];
        for (k, v) in terms {
            let v = v.unwrap_or(1);
            let f = self.formats.get(k).ok_or_else(|| SysfsError::NoTerm {
                pmu: self.name.clone(),
                term: k.clone(),
                known: self.formats.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            let bits = f.place(v).ok_or_else(|| SysfsError::TooWide {
                pmu: self.name.clone(),
                term: k.clone(),
                value: v,
                bits: f.width(),
            })?;
            let i = match f.word {
                ConfigWord::Config => 0,
                ConfigWord::Config1 => 1,
                ConfigWord::Config2 => 2,
                // config3 is not carried by EventSpec; no PMU hwprof uses needs it.
                ConfigWord::Config3 => continue,
            };
            words[i] |= bits;
        }
        Ok(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_split_ranges_round_trip() {
        let f = Format::parse("config:0-7,32-35\n").unwrap();
        assert_eq!(f.width(), 12);
        let w = f.place(0x123).unwrap();
        assert_eq!(w, 0x23 | (0x1 << 32));
        assert_eq!(f.extract(w), 0x123);
        assert!(f.place(0x1000).is_none());
        let b = Format::parse("config:21").unwrap();
        assert_eq!(b.place(1), Some(1 << 21));
        assert!(Format::parse("conf:0-7").is_err());
        assert!(Format::parse("config:9-3").is_err());
        assert!(Format::parse("config:0-64").is_err());
    }

    #[test]
    fn terms_and_cpu_lists() {
        let t = parse_terms("event=0x04,umask=0x03,edge").unwrap();
        assert_eq!(
            t,
            vec![
                ("event".into(), Some(4)),
                ("umask".into(), Some(3)),
                ("edge".into(), None)
            ]
        );
        assert!(parse_terms("event=zz").is_err());
        assert_eq!(crate::util::parse_cpu_list("0-2,8\n"), vec![0, 1, 2, 8]);
        assert_eq!(
            natural_cmp("uncore_imc_2", "uncore_imc_10"),
            std::cmp::Ordering::Less
        );
    }
}
