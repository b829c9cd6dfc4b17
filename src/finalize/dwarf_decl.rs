//! What addr2line does not give: a function's declaration line (`DW_AT_decl_line` of
//! its subprogram DIE, through `DW_AT_abstract_origin` / `DW_AT_specification`, so a
//! `.constprop` or `.part` clone gets its source function's line), the host of a
//! Fortran contained procedure (gfortran nests its DIE inside the host's subprogram,
//! itself maybe inside a module): `solver::smooth`, `heat::relax::inner`, and the C++
//! namespaces and classes around a subprogram (a function addr2line names by its
//! DW_AT_name alone, with no linkage name to demangle, reads `std::__introsort_loop<...>`).
//!
//! Read once per file with DWARF, on first use, by walking its units with gimli, from
//! the sections [`super::dwarf_file::DwarfFile`] loaded (decompressed once for both).

use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitOffset};

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// Declaration lines by entry address, and qualified names of contained procedures.
#[derive(Debug, Default)]
pub struct DeclIndex {
    /// First address of each range of a subprogram with code -> its declaration line.
    lines: HashMap<u64, u32>,
    /// Fortran: name of a contained procedure -> `host::name` (None when two hosts
    /// contain a procedure of that name, or an outer procedure has it too); and the
    /// main program's outlined code, `MAIN__._omp_fn.0` -> `PROGRAM._omp_fn.0`.
    contained: HashMap<String, Option<String>>,
    /// C++: `.debug_info` offset of a subprogram DIE inside namespaces or classes -> the
    /// index in `scopes` of their path (`std`, `ns::Solver<double>`). A function
    /// without a linkage name (an inlined template instance's, usually) is named by
    /// its DW_AT_name alone, which leaves that path out.
    cpp_scope: HashMap<usize, u32>,
    /// Distinct C++ scope paths.
    scopes: Vec<String>,
    /// C++: `.debug_info` offset of a lambda's `operator()` DIE -> the lambda's file and
    /// line. GCC gives that DIE (artificial) neither; its closure type, an unnamed
    /// class in the enclosing function, has them. Without them every lambda of a
    /// program was one function, at no line.
    lambda_at: HashMap<usize, DeclSite>,
    /// C++: index in `scopes` of a lambda's closure type -> its file and line.
    lambda_types: HashMap<u32, DeclSite>,
}

/// Where something is declared: its file (as addr2line writes files) and line.
#[derive(Clone, Debug)]
struct DeclSite {
    /// The file (None: its unit's line program does not name it).
    file: Option<String>,
    /// The line.
    line: u32,
}

/// Subprograms nested deeper than this are not followed (bounds the walk's stack).
const MAX_DEPTH: usize = 64;

/// A file's units, parsed once (headers, abbreviations) with the code ranges of each:
/// what choosing the units to walk costs, and what needs no address.
pub struct Units<'a> {
    units: Vec<gimli::Unit<R<'a>>>,
    /// Per unit: its code ranges, and whether it counts as covering every address (its
    /// ranges could not all be read: it is walked, as before).
    ranges: Vec<(Vec<(u64, u64)>, bool)>,
    /// A unit is Fortran: the file is walked whole.
    fortran: bool,
}

impl<'a> Units<'a> {
    /// Parse every unit header of `dwarf` and read its ranges.
    pub fn parse(dwarf: &gimli::Dwarf<R<'a>>) -> Units<'a> {
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            if let Ok(unit) = dwarf.unit(header) {
                units.push(unit);
            }
        }
        let fortran = units.iter().any(is_fortran_unit);
        let ranges = units.iter().map(|u| unit_ranges(dwarf, u)).collect();
        Units {
            units,
            ranges,
            fortran,
        }
    }
}

/// Whether one of `dwarf`'s units is Fortran, read from each unit's root DIE alone (no
/// line program, no unit ranges: what [`Units::parse`] costs for every unit of a large
/// library, libc's 1,500, is only needed when the whole file is walked).
pub fn has_fortran_unit(dwarf: &gimli::Dwarf<R<'_>>) -> bool {
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(abbreviations) = dwarf.abbreviations(&header) else {
            continue;
        };
        if root_is_fortran(&mut header.entries(&abbreviations)) {
            return true;
        }
    }
    false
}

impl DeclIndex {
    /// The declaration lines of `units` (each with the DWARF it belongs to), walked in
    /// the order given: the units addr2line found the looked-up addresses in, for a
    /// file without Fortran (a contained procedure needs the whole file, see
    /// [`DeclIndex::from_units`]).
    pub fn from_unit_refs<'a>(units: &[gimli::UnitRef<'_, R<'a>>]) -> DeclIndex {
        let mut index = DeclIndex::default();
        let mut outer_names = std::collections::HashSet::new();
        for u in units {
            index.add_unit(u.dwarf, u.unit, &mut outer_names);
        }
        index
    }

    /// Index what symbolizing `only` (sorted addresses) needs of `dwarf`, or all of it:
    /// the units whose code covers one of them (walking every unit of a large library,
    /// libc's 1,500, for the two addresses a profile has in it was most of a small
    /// finalize; a file with Fortran units is walked whole: a contained procedure's
    /// name is qualified only when no outer procedure anywhere has that name).
    pub fn from_dwarf(dwarf: &gimli::Dwarf<R<'_>>, only: Option<&[u64]>) -> DeclIndex {
        Self::from_units(dwarf, &Units::parse(dwarf), only)
    }

    /// [`DeclIndex::from_dwarf`] over units parsed before.
    pub fn from_units<'a>(
        dwarf: &gimli::Dwarf<R<'a>>,
        units: &Units<'a>,
        only: Option<&[u64]>,
    ) -> DeclIndex {
        let whole = only.is_none() || units.fortran;
        let mut index = DeclIndex::default();
        let mut outer_names = std::collections::HashSet::new();
        for (unit, ranges) in units.units.iter().zip(&units.ranges) {
            if whole || only.is_some_and(|a| covers_any(ranges, a)) {
                index.add_unit(dwarf, unit, &mut outer_names);
            }
        }
        // A name that is also an outer procedure's stays as it is: qualifying it would
        // guess which one a frame is.
        for name in outer_names {
            if let Some(q) = index.contained.get_mut(&name) {
                *q = None;
            }
        }
        index
    }

    fn add_unit<'a>(
        &mut self,
        dwarf: &gimli::Dwarf<R<'a>>,
        unit: &gimli::Unit<R<'a>>,
        outer_names: &mut std::collections::HashSet<String>,
    ) {
        let mut cursor = unit.entries();
        // Enclosing modules and subprograms: (depth, name, is a subprogram).
        let mut scopes: Vec<(isize, String, bool)> = Vec::new();
        // C++: enclosing namespaces and classes, (depth, index of their path), and
        // functions (depth, their DIE), for the lambdas defined in them.
        let mut cpp_scopes: Vec<(isize, u32)> = Vec::new();
        let mut cpp_functions: Vec<(isize, UnitOffset)> = Vec::new();
        let mut fortran = false;
        let mut cpp = false;
        while let Ok(Some(entry)) = cursor.next_dfs() {
            let depth = entry.depth();
            while scopes.last().is_some_and(|s| s.0 >= depth) {
                scopes.pop();
            }
            while cpp_scopes.last().is_some_and(|s| s.0 >= depth) {
                cpp_scopes.pop();
            }
            while cpp_functions.last().is_some_and(|s| s.0 >= depth) {
                cpp_functions.pop();
            }
            let tag = entry.tag();
            if tag == gimli::DW_TAG_compile_unit {
                fortran = is_fortran_die(entry);
                cpp = is_cpp_die(entry);
                continue;
            }
            if cpp && cpp_scopes.len() < MAX_DEPTH && cpp_functions.len() < MAX_DEPTH {
                self.note_cpp_scope(dwarf, unit, entry, &mut cpp_scopes, &cpp_functions);
                if tag == gimli::DW_TAG_subprogram {
                    cpp_functions.push((depth, entry.offset()));
                }
            }
            if tag != gimli::DW_TAG_subprogram && tag != gimli::DW_TAG_module {
                continue;
            }
            let name = name_of(dwarf, unit, entry);
            if tag == gimli::DW_TAG_subprogram {
                if let Some(line) = decl_line(unit, entry)
                    && let Ok(mut ranges) = dwarf.die_ranges(unit, entry)
                {
                    while let Ok(Some(r)) = ranges.next() {
                        if r.begin < r.end {
                            self.lines.entry(r.begin).or_insert(line);
                        }
                    }
                }
                // Outlined code (`relax._omp_fn.0`, an OpenMP region) lies inside its
                // source procedure's DIE but is no contained procedure of it; the main
                // program's is `MAIN__._omp_fn.0` whatever the program's name: it
                // takes that name (`heat._omp_fn.0`), as the program itself does.
                if fortran
                    && let Some(n) = &name
                    && let Some(suffix) = n.strip_prefix("MAIN__.")
                    && let Some(host) = scopes.iter().rev().find(|s| s.2)
                    && host.1 != "MAIN__"
                {
                    self.contained
                        .insert(n.clone(), Some(format!("{}.{suffix}", host.1)));
                }
                if fortran && let Some(n) = name.as_ref().filter(|n| !n.contains('.')) {
                    let hosts: Vec<&str> = scopes.iter().map(|s| s.1.as_str()).collect();
                    if scopes.iter().any(|s| s.2) {
                        let q = format!("{}::{n}", hosts.join("::"));
                        let slot = self.contained.entry(n.clone()).or_insert(Some(q.clone()));
                        if slot.as_deref() != Some(q.as_str()) {
                            *slot = None;
                        }
                    } else if !entry.has_attr(gimli::DW_AT_abstract_origin) {
                        outer_names.insert(n.clone());
                    }
                }
            }
            if fortran && scopes.len() < MAX_DEPTH {
                match name {
                    Some(n) => scopes.push((depth, n, tag == gimli::DW_TAG_subprogram)),
                    None => scopes.push((depth, String::new(), false)),
                }
            }
        }
    }

    /// C++: push the scope `entry` opens (a namespace, class, structure or union) on
    /// `open`, or note the scope path of a subprogram inside one.
    fn note_cpp_scope<'a>(
        &mut self,
        dwarf: &gimli::Dwarf<R<'a>>,
        unit: &gimli::Unit<R<'a>>,
        entry: &gimli::DebuggingInformationEntry<R<'a>>,
        open: &mut Vec<(isize, u32)>,
        functions: &[(isize, UnitOffset)],
    ) {
        let tag = entry.tag();
        if tag == gimli::DW_TAG_subprogram {
            if let Some(&(depth, scope)) = open.last()
                && let Some(at) = entry.offset().to_debug_info_offset(&unit.header)
            {
                let at = at.0;
                self.cpp_scope.insert(at, scope);
                // A lambda's operator(): directly in its closure type, in a function.
                if functions.last().is_some_and(|f| f.0 < depth)
                    && let Some(lambda) = self.lambda_types.get(&scope)
                {
                    self.lambda_at.insert(at, lambda.clone());
                }
            }
            return;
        }
        if !matches!(
            tag,
            gimli::DW_TAG_namespace
                | gimli::DW_TAG_class_type
                | gimli::DW_TAG_structure_type
                | gimli::DW_TAG_union_type
        ) {
            return;
        }
        let name = name_of(dwarf, unit, entry);
        // An unnamed class in a function is a lambda's closure type (GCC and clang
        // name no other): `f::<lambda>`, in the function's own scope.
        let function = functions
            .last()
            .filter(|_| name.is_none() && tag != gimli::DW_TAG_namespace)
            .filter(|f| open.last().is_none_or(|o| o.0 < f.0));
        let outer = match function {
            Some(&(_, f)) => {
                let f = unit.entry(f).ok();
                let fname = f.as_ref().and_then(|f| name_of(dwarf, unit, f));
                let scope = f
                    .as_ref()
                    .and_then(|f| self.scope_of_function(unit, f))
                    .or_else(|| open.last().map(|o| self.scopes[o.1 as usize].clone()));
                let fname = fname.unwrap_or_else(|| "<anonymous>".into());
                Some(match scope {
                    Some(s) => format!("{s}::{fname}"),
                    None => fname,
                })
            }
            None => open.last().map(|&(_, o)| self.scopes[o as usize].clone()),
        };
        let name = match (name, function) {
            (Some(n), _) => n,
            (None, Some(_)) => "<lambda>".into(),
            (None, None) if tag == gimli::DW_TAG_namespace => "(anonymous namespace)".into(),
            (None, None) => "<anonymous>".into(),
        };
        let path = match outer {
            Some(outer) => format!("{outer}::{name}"),
            None => name,
        };
        // Scopes repeat (every `std` of a unit): the last one, or a new entry.
        let index = match self.scopes.last() {
            Some(last) if *last == path => self.scopes.len() - 1,
            _ => {
                self.scopes.push(path);
                self.scopes.len() - 1
            }
        };
        open.push((entry.depth(), index as u32));
        if function.is_some()
            && let Some(line) = own_decl_line(entry).flatten()
        {
            let file = decl_file(gimli::UnitRef::new(dwarf, unit), entry);
            self.lambda_types
                .insert(index as u32, DeclSite { file, line });
        }
    }

    /// The C++ scope of a function defined outside its class or namespace block: that of
    /// the declaration its DW_AT_specification points to (seen before it in the unit).
    fn scope_of_function<'a>(
        &self,
        unit: &gimli::Unit<R<'a>>,
        f: &gimli::DebuggingInformationEntry<R<'a>>,
    ) -> Option<String> {
        completing(unit, f)
            .skip(1)
            .find_map(|e| {
                let at = e.offset().to_debug_info_offset(&unit.header)?.0;
                self.cpp_scope.get(&at)
            })
            .and_then(|&i| self.scopes.get(i as usize).cloned())
    }

    /// The file and first line of a frame's function: its DIE's, else (a lambda's
    /// `operator()`, which has none) its closure type's.
    pub fn declaration(&self, die: &FrameDie) -> (Option<String>, Option<u32>) {
        if die.decl_line.is_some() {
            return (die.decl_file.clone(), die.decl_line);
        }
        match die.dies.iter().find_map(|d| self.lambda_at.get(d)) {
            Some(site) => (site.file.clone(), Some(site.line)),
            None => (die.decl_file.clone(), None),
        }
    }

    /// C++: the namespaces and classes around the function of a frame, `std` or
    /// `ns::Solver<double>`, from the first of `dies` (`.debug_info` offsets: the
    /// frame's DIE, then those its abstract origin and specification lead to, as
    /// [`FrameDie`] gives them) that lies inside one.
    pub fn cpp_scope(&self, dies: impl IntoIterator<Item = usize>) -> Option<&str> {
        dies.into_iter()
            .find_map(|d| self.cpp_scope.get(&d))
            .and_then(|&i| self.scopes.get(i as usize))
            .map(String::as_str)
    }

    /// The declaration line of the function whose code starts at `entry`.
    pub fn decl_line(&self, entry: u64) -> Option<u32> {
        self.lines.get(&entry).copied()
    }

    /// `host::name` for a Fortran contained procedure called `name`.
    pub fn qualified(&self, name: &str) -> Option<&str> {
        self.contained.get(name)?.as_deref()
    }
}

/// Whether the unit's root DIE says Fortran.
fn is_fortran_unit(unit: &gimli::Unit<R<'_>>) -> bool {
    root_is_fortran(&mut unit.entries())
}

/// Whether the first DIE of `cursor` (a unit's root) says Fortran.
fn root_is_fortran(cursor: &mut gimli::EntriesCursor<'_, R<'_>>) -> bool {
    cursor.next_dfs().ok().flatten().is_some_and(is_fortran_die)
}

/// Whether a DIE's language (a unit's root DIE) is C++.
fn is_cpp_die(entry: &gimli::DebuggingInformationEntry<R<'_>>) -> bool {
    language(entry).is_some_and(|l| {
        matches!(
            l,
            gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14
                | gimli::DW_LANG_C_plus_plus_17
                | gimli::DW_LANG_C_plus_plus_20
        )
    })
}

/// Whether a DIE's language (a unit's root DIE) is Fortran.
fn is_fortran_die(entry: &gimli::DebuggingInformationEntry<R<'_>>) -> bool {
    language(entry).is_some_and(super::fortran::is_fortran)
}

/// A unit's root DIE's DW_AT_language.
fn language(entry: &gimli::DebuggingInformationEntry<R<'_>>) -> Option<gimli::DwLang> {
    match entry.attr_value(gimli::DW_AT_language)? {
        AttributeValue::Language(l) => Some(l),
        _ => None,
    }
}

/// A unit's code ranges, and whether reading them failed (then it counts as covering
/// every address: it is walked, as before).
fn unit_ranges(dwarf: &gimli::Dwarf<R<'_>>, unit: &gimli::Unit<R<'_>>) -> (Vec<(u64, u64)>, bool) {
    let mut out = Vec::new();
    let Ok(mut ranges) = dwarf.unit_ranges(unit) else {
        return (out, true);
    };
    loop {
        match ranges.next() {
            Ok(Some(r)) => out.push((r.begin, r.end)),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

/// Whether one of `addrs` (sorted) lies in the unit's code (`ranges` from
/// [`unit_ranges`]).
fn covers_any((ranges, always): &(Vec<(u64, u64)>, bool), addrs: &[u64]) -> bool {
    *always
        || ranges.iter().any(|&(begin, end)| {
            let i = addrs.partition_point(|&a| a < begin);
            addrs.get(i).is_some_and(|&a| a < end)
        })
}

/// DW_AT_name, here or on the DIE this one completes (abstract origin, specification).
fn name_of<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
) -> Option<String> {
    let v = completing(unit, entry).find_map(|e| e.attr_value(gimli::DW_AT_name))?;
    let s = dwarf.attr_string(unit, v).ok()?;
    Some(s.to_string_lossy().into_owned())
}

/// DW_AT_decl_line, here or on the DIE this one completes (a few links at most).
pub(super) fn decl_line<'a>(
    unit: &gimli::Unit<R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
) -> Option<u32> {
    completing(unit, entry)
        .find_map(|e| own_decl_line(&e))
        .flatten()
}

/// What a frame's DIE and those it completes say of its function.
#[derive(Debug, Default)]
pub struct FrameDie {
    /// Its declaration line.
    pub decl_line: Option<u32>,
    /// Its declaration file, from the DIE that gave the line (so that file and line
    /// are one place), as addr2line writes files.
    pub decl_file: Option<String>,
    /// The `.debug_info` offsets of those DIEs, the frame's first (for
    /// [`DeclIndex::cpp_scope`]).
    pub dies: Vec<usize>,
}

/// [`FrameDie`] of a frame's DIE: one walk of the chain.
pub(super) fn frame_facts<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
) -> FrameDie {
    let mut facts = FrameDie::default();
    let mut line = None;
    for e in completing(unit.unit, entry) {
        if line.is_none() {
            line = own_decl_line(&e);
            if line.is_some() {
                facts.decl_file = decl_file(unit, &e);
            }
        }
        facts
            .dies
            .extend(e.offset().to_debug_info_offset(&unit.header).map(|o| o.0));
    }
    facts.decl_line = line.flatten();
    facts
}

/// This DIE's own DW_AT_decl_file, as addr2line writes files.
fn decl_file<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    e: &gimli::DebuggingInformationEntry<R<'a>>,
) -> Option<String> {
    match e.attr_value(gimli::DW_AT_decl_file)? {
        AttributeValue::FileIndex(i) => file_path(unit, i),
        _ => None,
    }
}

/// The path of file `index` of `unit`'s line program, written as addr2line writes a
/// line's file (its `render_file` is private): the compilation directory, the
/// file's directory, its name, each replacing what is before it when absolute. A
/// function's file then is the same string as its lines' files.
fn file_path(unit: gimli::UnitRef<'_, R<'_>>, index: u64) -> Option<String> {
    let header = unit.line_program.as_ref()?.header();
    let file = header.file(index)?;
    let text =
        |v| -> Option<String> { Some(unit.attr_string(v).ok()?.to_string_lossy().into_owned()) };
    let mut path = unit
        .comp_dir
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file.directory_index() != 0
        && let Some(dir) = file.directory(header)
    {
        path_push(&mut path, &text(dir)?);
    }
    path_push(&mut path, &text(file.path_name())?);
    Some(path)
}

/// addr2line's `path_push`: `p` replaces `path` when absolute, else is appended.
fn path_push(path: &mut String, p: &str) {
    let rooted = |s: &str| {
        s.starts_with('/')
            || s.starts_with('\\')
            || s.get(1..3) == Some(":/")
            || s.get(1..3) == Some(":\\")
    };
    if rooted(p) {
        *path = p.to_string();
        return;
    }
    let sep = if path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        '\\'
    } else {
        '/'
    };
    if !path.is_empty() && !path.ends_with(sep) {
        path.push(sep);
    }
    path.push_str(p);
}

/// This DIE's own DW_AT_decl_line: `None` when it has none, `Some(None)` when it has
/// one that is not a line (0, or past `u32`).
fn own_decl_line(e: &gimli::DebuggingInformationEntry<R<'_>>) -> Option<Option<u32>> {
    let l = e.attr_value(gimli::DW_AT_decl_line)?.udata_value()?;
    Some(u32::try_from(l).ok().filter(|&l| l > 0))
}

/// `entry`, then the DIEs it completes (its abstract origin or specification, and
/// theirs): four at most, in the same unit.
fn completing<'a, 'u>(
    unit: &'u gimli::Unit<R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
) -> impl Iterator<Item = gimli::DebuggingInformationEntry<R<'a>>> + 'u {
    std::iter::successors(Some(entry.clone()), move |e| unit.entry(origin(e)?).ok()).take(4)
}

/// The DIE of the same unit this one refers to for its declaration.
fn origin(e: &gimli::DebuggingInformationEntry<R<'_>>) -> Option<UnitOffset> {
    for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Some(AttributeValue::UnitRef(o)) = e.attr_value(at) {
            return Some(o);
        }
    }
    None
}
