//! Symbolization: C++ demangling and inlined frames, separate debug info found by
//! `.gnu_debuglink` and by build id, build-id checks, and event / rank plumbing.

use std::process::Command;

use crate::common::*;
use hwprof::profile::Profile;

/// `tests/programs/NAME.cpp` built `-O2 -g` into DIR/NAME.
fn build_cpp(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let bin = dir.join(name);
    compile("g++", &["-O2", "-g"], &format!("{name}.cpp"), &bin, &[]);
    bin
}

#[test]
fn cpp_names_are_demangled_and_inlined_frames_kept() {
    let t = shared_tempdir();
    let bin = build_cpp(t.path(), "inline");
    let dir = t.path().join("run");
    let rows = collect_hotspots(&dir, &[], &[bin.to_str().unwrap(), "1500"]);
    let run = rows
        .keys()
        .find(|k| k.contains("ns::Solver<double>::run"))
        .unwrap_or_else(|| panic!("demangled method missing: {rows:#?}"));
    assert!(rows[run].total_pct > 95.0, "{rows:#?}");
    // DWARF names an inlined static function by its DW_AT_name alone (no linkage
    // name): its namespace comes from the DIEs around it.
    let kernel = rows
        .get("ns::kernel")
        .unwrap_or_else(|| panic!("ns::kernel: {rows:#?}"));
    assert!(
        kernel.self_pct > 90.0,
        "inlined kernel gets the self time: {rows:#?}"
    );
    // The inlined frame is marked as such, below the function it is inlined into.
    let p = Profile::load(&dir).unwrap();
    let inlined: Vec<&str> = p
        .frames
        .iter()
        .enumerate()
        .filter(|(i, _)| p.frame_inlined[*i])
        .map(|(_, f)| p.functions[f.function].name.as_str())
        .collect();
    assert!(inlined.iter().any(|n| n.ends_with("kernel")), "{inlined:?}");
    // Lines: the loop line of kernel is the hottest line.
    let loop_line = source_line("inline.cpp", "sink = sink + 1.0");
    let lines = report_csv(&dir, "lines", &[]);
    let hottest = (lines[0].get(2), lines[0].get(3));
    assert!(
        hottest.0.is_some_and(|f| f.ends_with("inline.cpp"))
            && hottest.1 == Some(loop_line.to_string().as_str()),
        "the hottest line is kernel's loop, inline.cpp:{loop_line}: {lines:?}"
    );
}

/// A template constrained by `std::enable_if` (whose mangled name cpp_demangle cannot
/// read; so is std::sort's `std::swap`) is named as c++filt and perf name it, with its
/// designed half of the work; no function is left mangled.
#[test]
fn cpp_names_the_rust_demangler_rejects_are_demangled() {
    let t = shared_tempdir();
    let dir = t.path().join("run");
    let sfinae = build_cpp(t.path(), "sfinae");
    let rows = collect_hotspots(&dir, &SHARES_HZ, &[sfinae.to_str().unwrap(), "1200"]);
    let mangled: Vec<_> = rows.keys().filter(|k| k.starts_with("_Z")).collect();
    assert!(mangled.is_empty(), "left mangled: {mangled:?}");
    let sweep = rows
        .keys()
        .find(|k| k.contains("sweep<double>(double const*, long)") && k.contains("enable_if"))
        .unwrap_or_else(|| panic!("sweep<double> by its demangled name: {rows:#?}"));
    let plain = "plain(double const*, long)";
    let share = split_pct(&rows, (sweep, plain), |h| h.self_pct, 90.0, "sfinae");
    assert!((share - 50.0).abs() <= 6.0, "sweep {share}%: {rows:#?}");
}

/// A PLT stub is named `NAME@plt`, with the share of the samples perf script counts in
/// it (it had no symbol: one `func@0x<.plt>` row, read as a function of the program);
/// also with IBT, where calls go through `.plt.sec`.
#[test]
fn a_plt_stub_is_named_for_the_function_it_calls() {
    let t = shared_tempdir();
    build_shared_lib("cc", t.path(), "plt_lib.c", "libplt_lib.so");
    let rpath = format!("-Wl,-rpath,{}", t.path().display());
    let libdir = format!("-L{}", t.path().display());
    for (out, flags) in [
        ("plt_calls", &["-O2", "-g"][..]),
        (
            "plt_calls_ibt",
            &["-O2", "-g", "-fcf-protection", "-Wl,-z,ibtplt"][..],
        ),
    ] {
        let bin = t.path().join(out);
        compile(
            "cc",
            flags,
            "plt_calls.c",
            &bin,
            &[&libdir, "-lplt_lib", &rpath],
        );
        let dir = t.path().join(format!("run-{out}"));
        let rows = collect_hotspots(&dir, &[], &[bin.to_str().unwrap(), "200000000"]);
        let unnamed: Vec<_> = rows.keys().filter(|k| k.starts_with("func@")).collect();
        assert!(unnamed.is_empty(), "{out}: {unnamed:?}: {rows:#?}");
        let stub = self_pct(&rows, "tiny@plt");
        let script = Command::new("perf")
            .args(["script", "-f", "-G", "-F", "ip,sym,dso", "-i"])
            .arg(first_perf_data(&dir))
            .output()
            .expect("run perf script (.ci/run installs it)");
        assert_ran(&script, "perf script");
        let text = String::from_utf8_lossy(&script.stdout);
        let samples: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let in_program = format!("/{out})");
        let outside_main = samples
            .iter()
            .filter(|l| l.ends_with(&in_program) && !l.contains(" main ("))
            .count();
        let perf_pct = 100.0 * outside_main as f64 / samples.len().max(1) as f64;
        eprintln!("{out}: tiny@plt {stub:.1}% here, {perf_pct:.1}% by perf script");
        assert!(stub >= 5.0, "{out}: the stub's own share: {rows:#?}");
        assert!(
            (stub - perf_pct).abs() <= 1.0,
            "{out}: {stub}% vs perf's {perf_pct}%"
        );
    }
}

/// The `ld.lld` that rustup ships (`gcc-ld/` of the toolchain), as a `cc -B` directory.
fn rust_lld_dir() -> Option<std::path::PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let host = Command::new("rustc").arg("-vV").output().ok()?;
    let host = String::from_utf8(host.stdout).ok()?;
    let triple = host.lines().find_map(|l| l.strip_prefix("host: "))?;
    let dir = std::path::Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(triple)
        .join("bin/gcc-ld");
    dir.join("ld.lld").exists().then_some(dir)
}

#[test]
fn lld_linked_binary_is_symbolized_and_unwound() {
    // lld (clang's and Rust's linker) starts .text in the same file page as the
    // read-only segment, at another address (offset 0x710, address 0x1710): the
    // mapping's pgoff is 0 for both. Mistaking one for the other named nothing.
    let Some(lld) = rust_lld_dir() else {
        eprintln!("SKIPPED: no ld.lld in the Rust toolchain (rustup's gcc-ld)");
        return;
    };
    let t = shared_tempdir();
    let b = format!("-B{}", lld.display());
    let bin = build_c(t.path(), "hot.c", "hot_lld", &[&b, "-fuse-ld=lld"]);
    let dir = t.path().join("run");
    // At 4,999 Hz: ~1,200 samples, so that the 3:1 band is several times the noise (at
    // 999 Hz, ~240 samples, a CI run read 69.0%).
    let rows = collect_hotspots(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "300"]);
    let (a, b) = (self_pct(&rows, "hot_a"), self_pct(&rows, "hot_b"));
    eprintln!("lld: hot_a {a:.1}%, hot_b {b:.1}% (designed 3:1)");
    assert_three_to_one(a, b, &format!("hot_a, hot_b: {rows:#?}"));
    // Unwound through the lld-linked frames up to main.
    let work = rows.get("work").map(|h| h.total_pct).unwrap_or(0.0);
    assert!(work > 90.0, "work total {work}: {rows:#?}");
}

fn split_debug(bin: &std::path::Path) -> std::path::PathBuf {
    let debug = bin.with_extension("debug");
    let run = |args: &[&str]| {
        let s = Command::new("objcopy").args(args).status().unwrap();
        assert!(s.success(), "objcopy {args:?}");
    };
    run(&[
        "--only-keep-debug",
        bin.to_str().unwrap(),
        debug.to_str().unwrap(),
    ]);
    run(&["--strip-all", bin.to_str().unwrap()]);
    let name = debug.file_name().unwrap().to_str().unwrap();
    let cwd = bin.parent().unwrap();
    let s = Command::new("objcopy")
        .current_dir(cwd)
        .args([
            &format!("--add-gnu-debuglink={name}"),
            bin.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(s.success());
    debug
}

#[test]
fn debug_info_found_by_debuglink() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "hot.c", "hot", &[]);
    split_debug(&bin);
    let dir = t.path().join("run");
    let rows = collect_hotspots(&dir, &[], &[bin.to_str().unwrap(), "500"]);
    assert!(self_pct(&rows, "hot_a") > 65.0, "{rows:#?}");
    let lines = report_view(&dir, "lines", "csv", &[]);
    assert!(
        lines.lines().nth(1).unwrap().contains("hot.c"),
        "file:line from the .debug file: {lines}"
    );
}

#[test]
fn debug_info_found_by_build_id_in_a_search_dir() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "hot.c", "hot", &[]);
    let debug = split_debug(&bin);
    // Move the debug file into a .build-id tree, as distributions lay them out.
    let text = run_ok(Command::new("readelf").arg("-n").arg(&bin));
    let id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("build id")
        .trim()
        .to_string();
    let root = t.path().join("debugroot");
    let d = root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::rename(&debug, d.join(format!("{}.debug", &id[2..]))).unwrap();
    let dir = t.path().join("run");
    ok(&collect(
        &dir,
        &["--no-finalize"],
        &[bin.to_str().unwrap(), "500"],
    ));
    ok(&hwprof(&[
        "finalize",
        "-q",
        dir.to_str().unwrap(),
        "--search-dir",
        root.to_str().unwrap(),
    ]));
    let lines = report_view(&dir, "lines", "csv", &[]);
    assert!(lines.lines().nth(1).unwrap().contains("hot.c"), "{lines}");
}

#[test]
fn a_rebuilt_binary_with_another_build_id_is_not_used() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    ok(&collect(
        &dir,
        &["--no-finalize"],
        &[bin.to_str().unwrap(), "400"],
    ));
    // Same path, different code: symbols from it would be wrong.
    build_c(t.path(), "threads.c", "hot", &[]);
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let rows = hotspots(&dir, &[]);
    assert!(
        !rows.contains_key("func_a") && !rows.contains_key("func_b"),
        "{rows:#?}"
    );
    assert!(
        rows.keys().any(|k| k.starts_with("hot+0x")),
        "kept as module+offset: {rows:#?}"
    );
}

#[test]
fn tracepoint_and_software_events_by_name() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("exits.c", "exits", &[]);
    let tracefs = std::path::Path::new("/sys/kernel/tracing/events/sched/sched_switch");
    if !tracefs.exists() {
        eprintln!("SKIPPED: tracefs is not mounted");
        return;
    }
    ok(&collect(
        &dir,
        &["-e", "sched:sched_switch", "-e", "page-faults"],
        &[bin.to_str().unwrap(), "sleep", "1"],
    ));
    let p = Profile::load(&dir).unwrap();
    let names: Vec<&str> = p.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["sched:sched_switch", "page-faults"]);
    let switches: u64 = p
        .samples
        .iter()
        .filter(|s| s.event == 0)
        .map(|s| s.count)
        .sum();
    // The program sleeps in 10 steps of 100 ms: at least 10 switches out.
    assert!(switches >= 10, "{switches}");
    let rows = hotspots(&dir, &[]);
    assert!(
        rows.contains_key("main"),
        "switch stacks reach main: {rows:#?}"
    );
}

#[test]
fn mpi_rank_from_the_launcher_environment() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let out = Command::new(hwprof_bin())
        .env("PMI_RANK", "3")
        .env("PMI_SIZE", "4")
        .args(["collect", "-q", "-r", dir.to_str().unwrap(), "--"])
        .arg(&bin)
        .arg("200")
        .output()
        .unwrap();
    ok(&out);
    // Only rank 0 finalizes; this lone rank 3 is finalized by hand, as after a job.
    assert!(!dir.join("profile.db").exists());
    ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    let raw: Vec<String> = std::fs::read_dir(dir.join("raw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(raw.len(), 1);
    assert!(raw[0].contains(".3."), "{raw:?}");
    let csv = report_view(&dir, "ranks", "csv", &[]);
    assert!(
        csv.starts_with("rank,host,pid,total,work,pct_of_mean,mpi_pct,idle"),
        "{csv}"
    );
    assert!(csv.lines().nth(1).unwrap().starts_with("3,"), "{csv}");
}

#[test]
fn an_ordinary_user_attaches_to_their_own_process() {
    let t = shared_tempdir();
    let bin = build_c(t.path(), "hot.c", "hot", &[]);
    let hw = hwprof_for_nobody(t.path());
    let mut target = as_nobody(&bin).arg("100000").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // setpriv execs the program: same pid.
    let pid = target.id().to_string();
    let dir = t.path().join("run");
    let out = collect_through(as_nobody(&hw), &dir, &["-p", &pid, "-d", "1"], &[]);
    let _ = target.kill();
    let _ = target.wait();
    ok(&out);
    let rows = hotspots(&dir, &[]);
    assert!(self_pct(&rows, "hot_a") > 60.0, "{rows:#?}");
    // The summary names what was attached to, not the pid alone.
    let summary = report(&dir, &[]);
    assert!(
        summary.starts_with(&format!("hwprof hotspots profile: -p {pid} (hot) — ")),
        "{summary}"
    );
}

/// `finalize --part I/N` on two ranks of one job, then `merge`: the merged profile has
/// both ranks and the same totals as finalizing the directory whole.
#[test]
fn parts_finalized_apart_merge_into_the_whole() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let d = dir.to_str().unwrap();
    for rank in ["1", "2"] {
        let mut hw = Command::new(hwprof_bin());
        hw.env("PMI_RANK", rank)
            .env("PMI_SIZE", "3")
            .env("SLURM_JOB_ID", "4242");
        let program = [bin.as_os_str(), std::ffi::OsStr::new("200")];
        ok(&collect_through(hw, &dir, &["--no-finalize"], &program));
    }
    ok(&hwprof(&["finalize", "-q", d, "--part", "1/2"]));
    ok(&hwprof(&["finalize", "-q", d, "--part", "2/2"]));
    ok(&hwprof(&["merge", d]));
    let ranks = |dir: &str| -> Vec<(String, u64)> {
        let csv = ok(&hwprof(&[
            "report", dir, "--view", "ranks", "--format", "csv",
        ]));
        let mut v: Vec<(String, u64)> = csv
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some((f.first()?.to_string(), f.get(3)?.parse().ok()?))
            })
            .collect();
        v.sort();
        v
    };
    let merged = ranks(d);
    assert_eq!(
        merged.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["1", "2"],
        "{merged:?}"
    );
    assert!(merged.iter().all(|r| r.1 > 100), "{merged:?}");
    let merged_hot = hotspots(&dir, &[]);
    // The whole directory finalized at once gives the same per-rank totals.
    let whole = t.path().join("whole");
    std::fs::create_dir(&whole).unwrap();
    std::fs::rename(dir.join("raw"), whole.join("raw")).unwrap();
    std::fs::copy(dir.join("manifest.json"), whole.join("manifest.json")).unwrap();
    ok(&hwprof(&["finalize", "-q", whole.to_str().unwrap()]));
    assert_eq!(ranks(whole.to_str().unwrap()), merged);
    let whole_hot = hotspots(&whole, &[]);
    for f in ["hot_a", "hot_b"] {
        assert_eq!(
            merged_hot.get(f).map(|h| h.self_value),
            whole_hot.get(f).map(|h| h.self_value),
            "{f}"
        );
    }
}

/// A native function's first line is its declaration line (DW_AT_decl_line), not the
/// line of its entry address: tests/programs/decl_line.c declares `spin` on line 11,
/// its first statement is on line 18, and gcc -O2 emits it only as the clone
/// `spin.constprop.0`, whose DIE takes the line from the original through
/// DW_AT_abstract_origin.
#[test]
fn native_first_line_is_the_declaration_line_also_for_a_clone() {
    let t = shared_tempdir();
    let bin = crate::common::build_c(t.path(), "decl_line.c", "decl_line", &[]);
    let nm = Command::new("nm").arg(&bin).output().expect("nm");
    let syms = String::from_utf8_lossy(&nm.stdout);
    assert!(
        syms.contains("spin.constprop"),
        "gcc made no constprop clone of spin:\n{syms}"
    );
    let dir = t.path().join("run");
    ok(&collect(&dir, &[], &[bin.to_str().unwrap(), "150000000"]));
    let csv = report_view(&dir, "hotspots", "csv", &[]);
    let spin = csv
        .lines()
        .find(|l| l.starts_with("spin,"))
        .unwrap_or_else(|| panic!("no spin row:\n{csv}"));
    let fields: Vec<&str> = spin.split(',').collect();
    assert!(fields[2].ends_with("decl_line.c"), "{spin}");
    assert_eq!(fields[3], "11", "spin is declared on line 11: {spin}");
}

/// `finalize --timings` names every stage with its wall and CPU time, and the
/// per-sample stages of reading; the timed run's profile is the usual one.
#[test]
fn finalize_timings_name_every_stage() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let d = dir.to_str().unwrap();
    ok(&collect(
        &dir,
        &["--no-finalize"],
        &[bin.to_str().unwrap(), "200"],
    ));
    let out = Command::new(hwprof_bin())
        .args(["finalize", "-q", "--timings", d])
        .output()
        .unwrap();
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    // "  NAME   WALL s   CPU s" (CPU absent on the per-sample lines): the first number.
    let secs = |name: &str| -> f64 {
        err.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} line in:\n{err}"))
    };
    for stage in ["read", "unwind", "aggregate", "symbolize", "write", "total"] {
        assert!(secs(stage) >= 0.0, "{stage}");
    }
    assert!(secs("total") >= secs("read"), "{err}");
    // The timed run gives the same profile: hot_a does 3/4 of the work.
    let hot = hotspots(&dir, &[]);
    let (a, b) = (hot["hot_a"].self_value, hot["hot_b"].self_value);
    assert!(a > 2 * b, "hot_a {a} vs hot_b {b}");
}

/// The address of `symbol` in `bin`'s symbol table (`nm`).
fn symbol_address(bin: &std::path::Path, symbol: &str) -> u64 {
    let out = Command::new("nm")
        .arg(bin)
        .output()
        .expect("run nm (binutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            (f.nth(1)? == symbol).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{symbol} not in nm {}", bin.display()))
}

/// A stripped binary (no symbol table, no DWARF: a distribution's `python3.11`, a
/// vendor library) keeps its unwind tables, and each unnamed function is one row,
/// `func@0xSTART`, with the function's whole share: hot.c's 3:1 split, at the addresses
/// the unstripped build's symbols give.
#[test]
fn functions_of_a_stripped_binary_are_named_by_their_start() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let stripped = t.path().join("hot-stripped");
    std::fs::copy(&bin, &stripped).unwrap();
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg(&stripped)
        .status()
        .expect("run strip (binutils)");
    assert!(status.success());
    let name = |s: &str| format!("func@{:#x}", symbol_address(&bin, s));
    let rows = collect_hotspots(&dir, &SHARES_HZ, &[stripped.to_str().unwrap(), "600"]);
    assert!(!rows.contains_key("hot_a"), "{rows:#?}");
    let (a, b) = (
        self_pct(&rows, &name("hot_a")),
        self_pct(&rows, &name("hot_b")),
    );
    let share = 100.0 * a / (a + b).max(f64::MIN_POSITIVE);
    assert!(
        (share - 75.0).abs() <= 5.0 && a + b >= 80.0,
        "hot_a {a}%, hot_b {b}%: {rows:#?}"
    );
    let work = rows.get(&name("work")).map_or(0.0, |h| h.total_pct);
    assert!(work >= 95.0, "work total {work}%: {rows:#?}");
    // Every row of the program is a function, none an address.
    assert!(
        !rows.keys().any(|k| k.starts_with("hot-stripped+0x")),
        "{rows:#?}"
    );
    // The summary says how much is unnamed, where, and what to do; the unstripped
    // build's says nothing of it.
    let summary = report(&dir, &[]);
    let line = summary
        .lines()
        .find(|l| l.starts_with("  no symbols: "))
        .unwrap_or_else(|| panic!("{summary}"));
    let share: f64 = line["  no symbols: ".len()..]
        .split('%')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        share >= a + b - 0.1
            && line.contains("% in hot-stripped (its func@0x rows")
            && line.contains("debug symbols"),
        "{line}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&report(&dir, &["--format", "json"])).unwrap();
    assert_eq!(
        json["without_symbols"][0]["module"], "hot-stripped",
        "{json}"
    );
    let plain = t.path().join("plain");
    ok(&collect(&plain, &[], &[bin.to_str().unwrap(), "100"]));
    assert!(!report(&plain, &[]).contains("no symbols"));
}

/// A function whose body is partly in an included file (Python 3.12's eval loop includes
/// generated_cases.c.h; Cython points lines at its .pyx) is one function, filed under its
/// own file, with every sample; its lines keep their files: the designed 3:1 split
/// between the included file's loop and its own.
#[test]
fn a_function_with_an_included_body_is_one_function() {
    let Scratch { tmp: _t, bin, dir } = scratch_with("included_body.c", "included_body", &[]);
    ok(&collect(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "600"]));
    let rows = report_csv(&dir, "hotspots", &["--top", "1000"]);
    let mixed: Vec<_> = rows.iter().filter(|r| r.get(0) == Some("mixed")).collect();
    assert_eq!(mixed.len(), 1, "one function, not one per file: {rows:?}");
    assert!(
        mixed[0]
            .get(2)
            .is_some_and(|f| f.ends_with("included_body.c")),
        "{rows:?}"
    );
    let self_pct: f64 = mixed[0].get(5).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(self_pct >= 95.0, "{rows:?}");
    let lines = report_csv(&dir, "lines", &["--top", "1000"]);
    let in_file = |suffix: &str| -> f64 {
        lines
            .iter()
            .filter(|r| r.get(0) == Some("mixed") && r.get(2).is_some_and(|f| f.ends_with(suffix)))
            .filter_map(|r| r.get(5)?.parse::<f64>().ok())
            .sum()
    };
    let (part, own) = (in_file("included_body_part.h"), in_file("included_body.c"));
    let share = 100.0 * part / (part + own).max(f64::MIN_POSITIVE);
    assert!(
        (share - 75.0).abs() <= 5.0 && part + own >= 95.0,
        "included part {part}%, own lines {own}%: {lines:?}"
    );
}

/// A function inlined into one caller and called out of line by another is one function:
/// one row with every sample, its first line the line of its declaration on both paths
/// (an inlined frame had none, so it was a second row), and the designed 1:1 split
/// between its callers.
#[test]
fn an_inlined_function_is_the_same_function_as_its_out_of_line_copy() {
    let Scratch { tmp: _t, bin, dir } =
        scratch_with("inlined_and_called.c", "inlined_and_called", &[]);
    ok(&collect(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "600"]));
    let decl = source_line("inlined_and_called.c", "double kern(long n)");
    let rows = report_csv(&dir, "hotspots", &["--top", "1000"]);
    let kern: Vec<_> = rows.iter().filter(|r| r.get(0) == Some("kern")).collect();
    assert_eq!(kern.len(), 1, "one function, inlined or not: {rows:?}");
    assert_eq!(kern[0].get(3), Some(decl.to_string().as_str()), "{rows:?}");
    let total_pct = |name: &str| -> f64 {
        rows.iter()
            .find(|r| r.get(0) == Some(name))
            .and_then(|r| r.get(7)?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(total_pct("kern") >= 95.0, "{rows:?}");
    assert!(
        (total_pct("direct") - 50.0).abs() <= 6.0,
        "the inlined half is under direct: {rows:?}"
    );
}

/// A Rust function is named at its own file and first line: `for` over a range begins
/// with core's inlined `cmp.rs`, whose file the function took (with its own line:
/// `r::hot_a .../core/src/cmp.rs:1`, a place that does not exist); the designed 3:1
/// split of totals.
#[test]
fn a_rust_function_is_at_its_own_file_and_line() {
    let t = shared_tempdir();
    let bin = t.path().join("two_loops");
    compile("rustc", &["-O", "-g"], "two_loops.rs", &bin, &[]);
    let dir = t.path().join("run");
    ok(&collect(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "150"]));
    let rows = report_csv(&dir, "hotspots", &["--top", "1000"]);
    let decl = |f: &str| source_line("two_loops.rs", &format!("fn {f}("));
    let mut totals = Vec::new();
    for f in ["hot_a", "hot_b"] {
        let name = format!("two_loops::{f}");
        let row: Vec<_> = rows
            .iter()
            .filter(|r| r.get(0) == Some(name.as_str()))
            .collect();
        assert_eq!(row.len(), 1, "{name}: one row: {rows:?}");
        assert!(
            row[0].get(2).is_some_and(|p| p.ends_with("two_loops.rs")),
            "{name} in its own file: {rows:?}"
        );
        assert_eq!(
            row[0].get(3),
            Some(decl(f).to_string().as_str()),
            "{rows:?}"
        );
        totals.push(
            row[0]
                .get(7)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0),
        );
    }
    assert_three_to_one(totals[0], totals[1], &format!("hot_a, hot_b: {rows:?}"));
}

/// C++ lambdas, inlined: GCC gives their `operator()` no line, so every lambda of a
/// program was one row `<anonymous>::operator()` at no line. Each is now its own row,
/// named in the function it is defined in (a method defined outside its class keeps
/// its class), at its line: the designed 3:1 split between the two threads' lambdas.
#[test]
fn cpp_lambdas_are_told_apart_at_their_lines() {
    let t = shared_tempdir();
    let bin = t.path().join("lambdas");
    compile("g++", &["-O2", "-g", "-pthread"], "lambdas.cpp", &bin, &[]);
    let dir = t.path().join("run");
    ok(&collect(
        &dir,
        &SHARES_HZ,
        &[bin.to_str().unwrap(), "20000"],
    ));
    let rows = report_csv(&dir, "hotspots", &["--top", "1000"]);
    let line_of = |marker: &str| source_line("lambdas.cpp", marker).to_string();
    let row = |name: &str, line: &str| {
        let found: Vec<_> = rows
            .iter()
            .filter(|r| r.get(0) == Some(name) && r.get(3) == Some(line))
            .collect();
        assert_eq!(found.len(), 1, "{name} at line {line}: {rows:?}");
        assert!(
            found[0].get(2).is_some_and(|f| f.ends_with("lambdas.cpp")),
            "{rows:?}"
        );
        let pct = |i| {
            found[0]
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (pct(5), pct(7))
    };
    let (relax_self, _) = row(
        "sim::Grid::sweep::<lambda>::operator()",
        &line_of("// RELAX"),
    );
    assert!(
        relax_self > 90.0,
        "the sweep's lambda does the work: {rows:?}"
    );
    let (_, a) = row("main::<lambda>::operator()", &line_of("// LAMBDA_A"));
    let (_, b) = row("main::<lambda>::operator()", &line_of("// LAMBDA_B"));
    assert_three_to_one(a, b, &format!("thread A's lambda, B's: {rows:?}"));
    assert!(
        !rows
            .iter()
            .any(|r| r.get(0).is_some_and(|n| n.contains("<anonymous>"))),
        "{rows:?}"
    );
}
