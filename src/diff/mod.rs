//! Comparing two profiles (`hwprof diff`, `hwprof export --diff`).
//!
//! A pure function of two loaded profiles: [`diff_table`] matches rows by name — never
//! by address or build id, so profiles from different machines, builds and Python
//! versions compare — and puts both sides on one scale ([`Normalize`]):
//!
//! | view       | a row is matched by                                        |
//! |------------|------------------------------------------------------------|
//! | `hotspots` | native: (name, module); Python: (qualname, file)           |
//! | `lines`    | (file, line); (function, module, line) where no file known |
//! | `modules`  | module name                                                |
//! | `ranks`    | MPI rank                                                   |
//!
//! Rows found on one side only are kept, marked [`Presence::BaseOnly`] or
//! [`Presence::NewOnly`], never dropped. [`gate`] is the CI regression gate, [`render`]
//! the text/CSV/JSON output. Whole stacks are matched by the differential exports
//! (`crate::export::diff::stack_pairs`), which build on [`Side`] and [`Normalize`].

pub mod gate;
pub mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::profile::stacks::{FramesFilter, StackFilter};
use crate::report::ReportFormat;

/// What `diff` compares: what a row is.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffView {
    /// Functions: native by (name, module), Python by (qualname, file).
    Hotspots,
    /// Source lines, by (file, line).
    Lines,
    /// Modules (ELF files, python), by name.
    Modules,
    /// MPI ranks, by rank number.
    Ranks,
}

/// How two profiles are put on one scale.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    /// Samples as seconds of CPU time (samples / sampling frequency); bytes and ns as
    /// they are.
    Time,
    /// Each profile's share of its own total, 0-100.
    Percent,
    /// The raw metric (samples, bytes, ns).
    None,
}

/// What `hwprof diff` is asked for, built from the command line by `cli.rs`.
#[derive(Clone, Debug)]
pub struct DiffCommandOptions {
    /// The base results directory.
    pub base: PathBuf,
    /// The new results directory (None: BASE, to compare two of its ranks).
    pub new: Option<PathBuf>,
    /// What to compare, on which scale, over which frames.
    pub compare: DiffOptions,
    /// Output format.
    pub format: ReportFormat,
    /// Rows to show (None: 20 in text, all in CSV and JSON).
    pub top: Option<usize>,
    /// Which MPI rank of each profile.
    pub ranks: DiffRanks,
    /// The regression gate (`--fail-above`), if asked for.
    pub gate: Option<GateOptions>,
    /// Write to this file instead of standard output.
    pub output: Option<PathBuf>,
}
use crate::profile::{FrameKind, Profile};

/// Which MPI rank of each profile `hwprof diff` takes (None: all).
#[derive(Clone, Copy, Debug)]
pub struct DiffRanks {
    /// Only this rank, in both profiles.
    pub both: Option<u32>,
    /// Only this rank of BASE.
    pub base: Option<u32>,
    /// Only this rank of NEW.
    pub new: Option<u32>,
}

impl DiffRanks {
    /// The rank taken from BASE.
    pub fn of_base(&self) -> Option<u32> {
        self.both.or(self.base)
    }

    /// The rank taken from NEW.
    pub fn of_new(&self) -> Option<u32> {
        self.both.or(self.new)
    }
}

/// The regression gate of `hwprof diff --fail-above`.
#[derive(Clone, Debug)]
pub struct GateOptions {
    /// Threshold as typed (`5` or `5%`).
    pub threshold: String,
    /// Gate on this function's inclusive value instead of the total.
    pub function: Option<String>,
}

/// Errors comparing profiles.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A combination of options that cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The two profiles measure different things.
    #[error(
        "cannot compare a {base} profile with a {new} profile: their metrics differ; compare two runs of the same mode"
    )]
    ModeMismatch {
        /// BASE's mode.
        base: String,
        /// NEW's mode.
        new: String,
    },
    /// `--normalize time` on samples needs the sampling frequency.
    #[error(
        "{0} does not record its sampling frequency, so its samples cannot be turned into time; use --normalize percent or --normalize none"
    )]
    NoFrequency(PathBuf),
    /// A rank that the profile does not have.
    #[error("rank {rank} is not in {dir}: {hint}")]
    NoSuchRank {
        /// The rank asked for.
        rank: u32,
        /// The results directory.
        dir: PathBuf,
        /// The ranks present, or that it is not an MPI run.
        hint: String,
    },
    /// `--function NAME` names a function in neither profile.
    #[error(
        "function {0:?} has no samples in either profile; check the name with `hwprof report DIR --view hotspots` (Python functions go by their qualified name, Class.method)"
    )]
    NoSuchFunction(String),
}

/// `hwprof diff`: load both profiles, compare, print; returns the exit status (0, or
/// [`gate::GATE_FAILED_EXIT`] when the gate fails).
pub fn run(args: &DiffCommandOptions) -> anyhow::Result<u8> {
    let threshold = args
        .gate
        .as_ref()
        .map(|g| gate::parse_threshold(&g.threshold))
        .transpose()?;
    let function = args.gate.as_ref().and_then(|g| g.function.as_deref());
    if function.is_some() && matches!(args.compare.view, DiffView::Modules | DiffView::Ranks) {
        return Err(DiffError::Usage(
            "--function needs --view hotspots or lines, where functions are rows".into(),
        )
        .into());
    }
    let new_dir = args.new.as_deref().unwrap_or(&args.base);
    if args.new.is_none() && args.ranks.base.is_none() && args.ranks.new.is_none() {
        return Err(DiffError::Usage(format!(
            "hwprof diff needs two results directories (BASE NEW), or one with --base-rank A --new-rank B; got only {}",
            args.base.display()
        ))
        .into());
    }
    let base_profile = Profile::load(&args.base)?;
    let new_profile = if args.new.is_some() {
        Profile::load(new_dir)?
    } else {
        base_profile.clone()
    };
    let base = Side {
        profile: &base_profile,
        dir: &args.base,
        rank: args.ranks.of_base(),
    };
    let new = Side {
        profile: &new_profile,
        dir: new_dir,
        rank: args.ranks.of_new(),
    };
    let table = diff_table(&base, &new, &args.compare)?;
    let top = match (args.top, args.format) {
        (Some(n), _) => Some(n),
        (None, ReportFormat::Text) => Some(20),
        (None, _) => None,
    };
    let verdict = threshold
        .map(|t| gate::check(&table, t, function))
        .transpose()?;
    let text = render::render(&table, args.format, top);
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    Ok(match verdict {
        Some(v) => {
            eprint!("{}", v.message(&table.unit));
            if v.failed { gate::GATE_FAILED_EXIT } else { 0 }
        }
        None => 0,
    })
}

/// One side of a comparison: a loaded profile and which of its samples to take.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// Its results directory (for messages).
    pub dir: &'a Path,
    /// Only this MPI rank.
    pub rank: Option<u32>,
}

impl Side<'_> {
    /// The stack filter of this side with `frames`.
    pub(crate) fn filter(&self, frames: FramesFilter) -> StackFilter {
        StackFilter {
            frames,
            rank: self.rank,
            ranks: None,
            mpi_threads: false,
        }
    }

    /// The factor turning this side's metric into the unit of `normalize`, given
    /// its filtered total in the metric.
    pub(crate) fn scale(&self, normalize: Normalize, total: u64) -> Result<f64, DiffError> {
        Ok(match normalize {
            Normalize::None => 1.0,
            Normalize::Percent if total == 0 => 0.0,
            Normalize::Percent => 100.0 / total as f64,
            // Bytes and ns are absolute already; a sample is 1/frequency of CPU time.
            Normalize::Time if self.profile.metric() != "samples" => 1.0,
            Normalize::Time => {
                let hz: f64 = self
                    .profile
                    .meta_str("frequency_hz")
                    .parse()
                    .ok()
                    .filter(|h: &f64| h.is_finite() && *h > 0.0)
                    .ok_or_else(|| DiffError::NoFrequency(self.dir.to_path_buf()))?;
                1.0 / hz
            }
        })
    }

    fn check_rank(&self) -> Result<(), DiffError> {
        let Some(rank) = self.rank else { return Ok(()) };
        crate::options::check_rank(self.profile, rank, "the rank option").map_err(|hint| {
            DiffError::NoSuchRank {
                rank,
                dir: self.dir.to_path_buf(),
                hint,
            }
        })
    }
}

/// What the comparison is asked for.
#[derive(Clone, Copy, Debug)]
pub struct DiffOptions {
    /// What a row is.
    pub view: DiffView,
    /// The common scale.
    pub normalize: Normalize,
    /// Which frames.
    pub frames: FramesFilter,
}

/// Whether a row was found in both profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Matched.
    Both,
    /// Only BASE has samples in it (gone, renamed, or inlined away in NEW).
    BaseOnly,
    /// Only NEW has samples in it.
    NewOnly,
}

impl Presence {
    /// The CSV/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Both => "both",
            Presence::BaseOnly => "base_only",
            Presence::NewOnly => "new_only",
        }
    }
}

/// One matched (or unmatched) row, values in the table's unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffRow {
    /// Function name (the module in the modules view, `rank N` in the ranks view).
    pub function: String,
    /// Module (`python` for Python).
    pub module: String,
    /// Source file, "" where unknown (from NEW where both have it).
    pub file: String,
    /// Line: the function's first line (hotspots) or the row's line (lines view).
    pub line: Option<u32>,
    /// BASE: metric where this row is the leaf.
    pub base_self: f64,
    /// NEW: metric where this row is the leaf.
    pub new_self: f64,
    /// BASE: metric of stacks through this row.
    pub base_total: f64,
    /// NEW: metric of stacks through this row.
    pub new_total: f64,
    /// Matched, or found on one side only.
    pub presence: Presence,
}

impl DiffRow {
    /// NEW - BASE, self.
    pub fn delta_self(&self) -> f64 {
        self.new_self - self.base_self
    }
    /// NEW - BASE, total.
    pub fn delta_total(&self) -> f64 {
        self.new_total - self.base_total
    }
    /// NEW / BASE, self; None when BASE is 0.
    pub fn ratio_self(&self) -> Option<f64> {
        ratio(self.new_self, self.base_self)
    }
    /// NEW / BASE, total; None when BASE is 0.
    pub fn ratio_total(&self) -> Option<f64> {
        ratio(self.new_total, self.base_total)
    }
}

fn ratio(new: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| new / base)
}

/// The comparison: rows sorted by absolute change of self, then of total.
#[derive(Clone, Debug, Serialize)]
pub struct DiffTable {
    /// What a row is.
    pub view: &'static str,
    /// The mode's metric (`samples`, `bytes`, `ns`).
    pub metric: String,
    /// The scale's name (`time`, `percent`, `none`).
    pub normalize: &'static str,
    /// The unit of every value: `s`, `%`, `samples`, `bytes` or `ns`.
    pub unit: String,
    /// BASE's filtered total in the unit.
    pub base_total: f64,
    /// NEW's filtered total in the unit.
    pub new_total: f64,
    /// The rows.
    pub rows: Vec<DiffRow>,
}

impl DiffTable {
    /// Rows found in BASE only.
    pub fn only_in_base(&self) -> impl Iterator<Item = &DiffRow> {
        self.rows
            .iter()
            .filter(|r| r.presence == Presence::BaseOnly)
    }
    /// Rows found in NEW only.
    pub fn only_in_new(&self) -> impl Iterator<Item = &DiffRow> {
        self.rows.iter().filter(|r| r.presence == Presence::NewOnly)
    }
}

/// The name of a view.
pub fn view_name(v: DiffView) -> &'static str {
    match v {
        DiffView::Hotspots => "hotspots",
        DiffView::Lines => "lines",
        DiffView::Modules => "modules",
        DiffView::Ranks => "ranks",
    }
}

/// The name of a scale.
pub fn normalize_name(n: Normalize) -> &'static str {
    match n {
        Normalize::Time => "time",
        Normalize::Percent => "percent",
        Normalize::None => "none",
    }
}

/// The unit of values for a metric on a scale.
pub fn unit_of(metric: &str, normalize: Normalize) -> String {
    match (normalize, metric) {
        (Normalize::Percent, _) => "%".into(),
        (Normalize::Time, "samples") => "s".into(),
        (_, m) => m.into(),
    }
}

/// Checks both sides can be compared: same metric, ranks present.
pub fn check_sides(base: &Side, new: &Side) -> Result<(), DiffError> {
    base.check_rank()?;
    new.check_rank()?;
    if base.profile.metric() != new.profile.metric() {
        let mode = |s: &Side| match s.profile.meta_str("mode") {
            "" => s.profile.metric().to_string(),
            m => m.to_string(),
        };
        return Err(DiffError::ModeMismatch {
            base: mode(base),
            new: mode(new),
        });
    }
    Ok(())
}

/// How a row is matched across profiles (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Native {
        name: String,
        module: String,
    },
    Python {
        qualname: String,
        file: String,
    },
    Line {
        file: String,
        line: Option<u32>,
    },
    LineNoFile {
        function: Box<Key>,
        line: Option<u32>,
    },
    Module(String),
    Rank(Option<u32>),
}

/// What a row shows besides its numbers.
#[derive(Clone, Debug, Default)]
struct Label {
    function: String,
    module: String,
    file: String,
    line: Option<u32>,
}

fn function_key(p: &Profile, fi: usize) -> Key {
    let f = &p.functions[fi];
    match f.kind {
        FrameKind::Python => Key::Python {
            qualname: f.name.clone(),
            file: f.file.clone().unwrap_or_default(),
        },
        FrameKind::Native | FrameKind::Kernel => Key::Native {
            name: f.name.clone(),
            module: f.module.clone(),
        },
    }
}

/// The key and label of a frame in a view (not the ranks view).
fn frame_key(p: &Profile, frame: usize, view: DiffView) -> (Key, Label) {
    let fr = &p.frames[frame];
    let f = &p.functions[fr.function];
    match view {
        DiffView::Lines => {
            let file = fr
                .file
                .clone()
                .or_else(|| f.file.clone())
                .unwrap_or_default();
            let key = if file.is_empty() {
                Key::LineNoFile {
                    function: Box::new(function_key(p, fr.function)),
                    line: fr.line,
                }
            } else {
                Key::Line {
                    file: file.clone(),
                    line: fr.line,
                }
            };
            let label = Label {
                function: f.name.clone(),
                module: f.module.clone(),
                file,
                line: fr.line,
            };
            (key, label)
        }
        DiffView::Modules => (
            Key::Module(f.module.clone()),
            Label {
                function: f.module.clone(),
                module: f.module.clone(),
                ..Default::default()
            },
        ),
        DiffView::Hotspots | DiffView::Ranks => (
            function_key(p, fr.function),
            Label {
                function: f.name.clone(),
                module: f.module.clone(),
                file: f.file.clone().unwrap_or_default(),
                line: f.start_line,
            },
        ),
    }
}

/// One side aggregated: per key (self, total) in the metric, labels, and the total.
struct Aggregate {
    values: HashMap<Key, (u64, u64)>,
    labels: HashMap<Key, Label>,
    total: u64,
}

fn aggregate(side: &Side, opts: &DiffOptions) -> Aggregate {
    let p = side.profile;
    let stacks = p.weighted_stacks(side.filter(opts.frames));
    let total = stacks.iter().map(|s| s.value).sum();
    let mut labels = HashMap::new();
    let values = if opts.view == DiffView::Ranks {
        let mut acc: HashMap<Key, (u64, u64)> = HashMap::new();
        for s in &stacks {
            let rank = p.thread_rank(s.thread);
            let e = acc.entry(Key::Rank(rank)).or_default();
            e.0 += s.value;
            e.1 += s.value;
            labels.entry(Key::Rank(rank)).or_insert_with(|| Label {
                function: rank.map_or("-".to_string(), |r| r.to_string()),
                ..Default::default()
            });
        }
        acc
    } else {
        let acc = crate::report::table::rank_by(&stacks, |f| frame_key(p, f, opts.view).0);
        for s in &stacks {
            for &f in &s.frames {
                let (k, label) = frame_key(p, f, opts.view);
                labels.entry(k).or_insert(label);
            }
        }
        acc.into_iter().map(|(k, (s, t, _))| (k, (s, t))).collect()
    };
    Aggregate {
        values,
        labels,
        total,
    }
}

/// Compare two profiles row by row (`hwprof diff`).
pub fn diff_table(base: &Side, new: &Side, opts: &DiffOptions) -> Result<DiffTable, DiffError> {
    check_sides(base, new)?;
    let a = aggregate(base, opts);
    let b = aggregate(new, opts);
    let sa = base.scale(opts.normalize, a.total)?;
    let sb = new.scale(opts.normalize, b.total)?;
    let mut keys: Vec<&Key> = a.values.keys().chain(b.values.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<DiffRow> = keys
        .into_iter()
        .filter_map(|k| {
            let (bs, bt) = a.values.get(k).copied().unwrap_or_default();
            let (ns, nt) = b.values.get(k).copied().unwrap_or_default();
            let presence = match (bt > 0, nt > 0) {
                (true, true) => Presence::Both,
                (true, false) => Presence::BaseOnly,
                (false, true) => Presence::NewOnly,
                (false, false) => return None,
            };
            let label = b.labels.get(k).or_else(|| a.labels.get(k))?.clone();
            Some(DiffRow {
                function: label.function,
                module: label.module,
                file: label.file,
                line: label.line,
                base_self: bs as f64 * sa,
                new_self: ns as f64 * sb,
                base_total: bt as f64 * sa,
                new_total: nt as f64 * sb,
                presence,
            })
        })
        .collect();
    sort_rows(&mut rows);
    Ok(DiffTable {
        view: view_name(opts.view),
        metric: base.profile.metric().to_string(),
        normalize: normalize_name(opts.normalize),
        unit: unit_of(base.profile.metric(), opts.normalize),
        base_total: a.total as f64 * sa,
        new_total: b.total as f64 * sb,
        rows,
    })
}

/// Largest absolute change of self first, then of total, then by name.
fn sort_rows(rows: &mut [DiffRow]) {
    rows.sort_by(|x, y| {
        y.delta_self()
            .abs()
            .total_cmp(&x.delta_self().abs())
            .then(y.delta_total().abs().total_cmp(&x.delta_total().abs()))
            .then(x.function.cmp(&y.function))
            .then(x.line.cmp(&y.line))
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::{Frame, Function, Process, ProfileWriter, Thread};

    /// A profile with `main` calling the given (name, module, kind, file, value) leaves.
    pub(crate) fn profile(hz: &str, leaves: &[(&str, &str, FrameKind, &str, u64)]) -> Profile {
        // One event, named "".
        let mut w = ProfileWriter::hotspots_for_tests(hz, "");
        w.profile.processes.push(Process::default());
        w.profile.threads.push(Thread::default());
        let fun = |w: &mut ProfileWriter, name: &str, module: &str, kind, file: &str| {
            let function = w.function(Function {
                name: name.into(),
                module: module.into(),
                file: (!file.is_empty()).then(|| file.to_string()),
                start_line: Some(1),
                kind,
            });
            w.frame(Frame {
                function,
                file: (!file.is_empty()).then(|| file.to_string()),
                line: Some(2),
            })
        };
        let main = fun(&mut w, "main", "app", FrameKind::Native, "app.c");
        for &(name, module, kind, file, value) in leaves {
            let leaf = fun(&mut w, name, module, kind, file);
            let s = w.stack(&[main, leaf]);
            w.add_sample(s, 0, 0, value, value);
        }
        w.profile
    }

    /// BASE and NEW, each a [`profile`] at its frequency (`hz`: base, new), from a
    /// table of leaves, one a line: `name module kind file base new`, where kind is
    /// `native` or `python`, file `-` for none, and base and new the leaf's value on each
    /// side (0: the leaf is not in that side's profile).
    pub(crate) fn profiles(hz: (&str, &str), table: &str) -> (Profile, Profile) {
        fn leaf(l: &str) -> (&str, &str, FrameKind, &str, u64, u64) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let [name, module, kind, file, base, new] = cols[..] else {
                panic!("leaf '{l}': not name module kind file base new");
            };
            let kind = match kind {
                "native" => FrameKind::Native,
                "python" => FrameKind::Python,
                _ => panic!("leaf '{l}': kind {kind} is not native or python"),
            };
            let file = if file == "-" { "" } else { file };
            let value = |v: &str| v.parse::<u64>().expect("a count");
            (name, module, kind, file, value(base), value(new))
        }
        let leaves: Vec<_> = table
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(leaf)
            .collect();
        let side = |new: bool| {
            let value = |l: &(_, _, _, _, u64, u64)| if new { l.5 } else { l.4 };
            leaves
                .iter()
                .filter(|l| value(l) > 0)
                .map(|l| (l.0, l.1, l.2, l.3, value(l)))
                .collect::<Vec<_>>()
        };
        (profile(hz.0, &side(false)), profile(hz.1, &side(true)))
    }

    pub(crate) fn side(p: &Profile) -> Side<'_> {
        Side {
            profile: p,
            dir: Path::new("x"),
            rank: None,
        }
    }

    /// NEW against BASE by `view` on the `normalize` scale, all frames.
    fn table(
        base: &Profile,
        new: &Profile,
        view: DiffView,
        normalize: Normalize,
    ) -> Result<DiffTable, DiffError> {
        let opts = DiffOptions {
            view,
            normalize,
            frames: FramesFilter::All,
        };
        diff_table(&side(base), &side(new), &opts)
    }

    fn row<'a>(t: &'a DiffTable, f: &str, module: &str) -> &'a DiffRow {
        t.rows
            .iter()
            .find(|r| r.function == f && r.module == module)
            .unwrap_or_else(|| panic!("no row {f} ({module}): {:#?}", t.rows))
    }

    #[test]
    fn native_functions_match_by_name_and_module_python_by_qualname_and_file() {
        let (base, new) = profiles(
            ("1000", "1000"),
            "
            solve       libm.so  native  -     100  200
            solve       app      native  -     50   50
            Solver.run  python   python  a.py  30   60
            Solver.run  python   python  b.py  20   20",
        );
        let t = table(&base, &new, DiffView::Hotspots, Normalize::None).unwrap();
        let libm = row(&t, "solve", "libm.so");
        assert_eq!((libm.base_self, libm.new_self), (100.0, 200.0));
        assert_eq!(libm.ratio_self(), Some(2.0));
        let app = row(&t, "solve", "app");
        assert_eq!(app.delta_self(), 0.0);
        let a = t.rows.iter().find(|r| r.file == "a.py").unwrap();
        assert_eq!((a.base_self, a.new_self), (30.0, 60.0));
        let b = t.rows.iter().find(|r| r.file == "b.py").unwrap();
        assert_eq!(b.delta_self(), 0.0);
        // Sorted by absolute delta: solve (libm) +100, then Solver.run (a.py) +30.
        assert_eq!(t.rows[0].module, "libm.so");
        assert_eq!(t.rows[1].file, "a.py");
        assert!(t.rows.iter().all(|r| r.presence == Presence::Both));
    }

    #[test]
    fn unmatched_rows_are_listed_not_dropped() {
        // Same name in another module does not match: it is a different function.
        let (base, new) = profiles(
            ("1000", "1000"),
            "
            old_fn  app   native  -  10  0
            old_fn  app2  native  -  0   10
            kept    app   native  -  5   5",
        );
        let t = table(&base, &new, DiffView::Hotspots, Normalize::None).unwrap();
        let gone: Vec<_> = t.only_in_base().map(|r| r.module.as_str()).collect();
        let added: Vec<_> = t.only_in_new().map(|r| r.module.as_str()).collect();
        assert_eq!((gone, added), (vec!["app"], vec!["app2"]));
        let r = row(&t, "old_fn", "app");
        assert_eq!(
            (r.base_self, r.new_self, r.ratio_self()),
            (10.0, 0.0, Some(0.0))
        );
        let r = row(&t, "old_fn", "app2");
        assert_eq!(r.ratio_self(), None);
        assert_eq!(row(&t, "kept", "app").presence, Presence::Both);
    }

    #[test]
    fn time_uses_each_sides_frequency_percent_each_total() {
        // Same CPU time (0.1 s of f), sampled at 1000 Hz then at 500 Hz.
        let (base, new) = profiles(
            ("1000", "500"),
            "
            f  app  native  -  100  50
            g  app  native  -  100  150",
        );
        let t = table(&base, &new, DiffView::Hotspots, Normalize::Time).unwrap();
        assert_eq!(t.unit, "s");
        assert!((row(&t, "f", "app").delta_self()).abs() < 1e-12);
        assert!((row(&t, "g", "app").new_self - 0.3).abs() < 1e-12);
        let t = table(&base, &new, DiffView::Hotspots, Normalize::Percent).unwrap();
        assert_eq!(
            (row(&t, "f", "app").base_self, row(&t, "f", "app").new_self),
            (50.0, 25.0)
        );
        assert_eq!(row(&t, "main", "app").new_total, 100.0);
    }

    #[test]
    fn lines_match_by_file_and_line_modules_by_name() {
        // Renamed function, same file and line: the line matches.
        let (base, new) = profiles(
            ("1000", "1000"),
            "
            f     app  native  f.c  10  0
            f_v2  app  native  f.c  0   30",
        );
        let t = table(&base, &new, DiffView::Lines, Normalize::None).unwrap();
        let r = t.rows.iter().find(|r| r.file == "f.c").unwrap();
        assert_eq!((r.base_self, r.new_self, r.line), (10.0, 30.0, Some(2)));
        assert_eq!(r.function, "f_v2");
        let t = table(&base, &new, DiffView::Modules, Normalize::None).unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!((t.rows[0].base_total, t.rows[0].new_total), (10.0, 30.0));
    }

    #[test]
    fn different_metrics_do_not_compare() {
        let base = profile("1000", &[]);
        let mut new = profile("1000", &[]);
        new.meta.insert("metric".into(), "bytes".into());
        new.meta.insert("mode".into(), "memory".into());
        let e = table(&base, &new, DiffView::Hotspots, Normalize::None).unwrap_err();
        assert!(matches!(e, DiffError::ModeMismatch { .. }), "{e}");
    }
}
