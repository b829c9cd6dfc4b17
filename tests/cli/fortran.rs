//! Fortran names as their users write them: a gfortran module procedure reads
//! `heat::relax` (not `__heat_MOD_relax`), the external `sweep_` reads `sweep`, the
//! program's contained `smooth` (`smooth.0` in the symbol table; its DWARF DIE nested in
//! the program's) reads `solver::smooth`, as Fortran users and VTune name it, and
//! `MAIN__` reads as the program's name, `solver`. Ground truth in
//! tests/programs/heat.f90: self shares 50% / 30% / 20%; `relax` and `smooth` start on
//! the lines of their `subroutine` statements, and relax's hot line is the sweep's body.

use crate::common::*;

#[test]
fn gfortran_names_and_shares() {
    let t = shared_tempdir();
    let bin = t.path().join("heat");
    // -J: the .mod file goes to the scratch dir, not the cwd.
    let flags = [
        "-O2",
        "-g",
        "-fno-inline",
        "-fno-ipa-icf",
        "-J",
        t.path().to_str().unwrap(),
    ];
    compile("gfortran", &flags, "heat.f90", &bin, &[]);
    let dir = t.path().join("run");
    ok(&collect(&dir, &SHARES_HZ, &[bin.to_str().unwrap(), "1500"]));
    let csv = report_view(&dir, "hotspots", "csv", &["--top", "1000"]);
    for mangled in ["__heat_MOD_relax", "sweep_", "smooth.0", "MAIN__"] {
        assert!(!csv.contains(mangled), "{mangled} shown mangled:\n{csv}");
    }
    let rows = hotspots(&dir, &[]);
    for (f, want) in [
        ("heat::relax", 50.0),
        ("solver::smooth", 30.0),
        ("sweep", 20.0),
    ] {
        let got = rows.get(f).map(|h| h.self_pct).unwrap_or(0.0);
        assert!(
            (got - want).abs() < 6.0,
            "{f}: {got}% (designed {want}%)\n{csv}"
        );
    }
    let solver = rows.get("solver").map(|h| h.total_pct).unwrap_or(0.0);
    assert!(
        solver > 90.0,
        "the main program is `solver`: {solver}%\n{csv}"
    );
    // The function's first line (the CSV `line` column of hotspots).
    let relax = csv.lines().find(|l| l.starts_with("heat::relax,")).unwrap();
    let fields: Vec<&str> = relax.split(',').collect();
    assert!(fields[2].ends_with("heat.f90"), "{relax}");
    let relax_line = source_line("heat.f90", "subroutine relax(").to_string();
    assert_eq!(
        fields[3], relax_line,
        "relax starts on line {relax_line}: {relax}"
    );
    let smooth = csv
        .lines()
        .find(|l| l.starts_with("solver::smooth,"))
        .unwrap();
    let smooth_line = source_line("heat.f90", "subroutine smooth(").to_string();
    assert_eq!(
        smooth.split(',').nth(3),
        Some(smooth_line.as_str()),
        "smooth is declared on line {smooth_line}: {smooth}"
    );
    // Its hot line.
    let lines = report_view(&dir, "lines", "csv", &["--top", "1000"]);
    let hot = lines
        .lines()
        .filter(|l| l.starts_with("heat::relax,"))
        .max_by_key(|l| l.split(',').nth(4).and_then(|v| v.parse::<u64>().ok()))
        .unwrap();
    // The sweep's body, first in relax.
    let body = source_line("heat.f90", "u(i) = 0.5d0").to_string();
    assert_eq!(hot.split(',').nth(3), Some(body.as_str()), "{lines}");
}

/// OpenMP regions of Fortran code read as their source procedure's, as the compiler
/// names them: `grid::relax._omp_fn.0` (it was `grid::relax::__grid_MOD_relax._omp_fn.0`,
/// taken for a contained procedure), and the main program's by the program's name
/// (`regions._omp_fn.0`, not `MAIN__._omp_fn.0`), each at its `!$omp parallel do`
/// line, with the designed 3:1 split (tests/programs/omp_regions.f90, one thread).
#[test]
fn gfortran_openmp_regions_are_named_for_their_procedure() {
    let t = shared_tempdir();
    let bin = t.path().join("omp_regions");
    let flags = ["-O2", "-g", "-fopenmp", "-J", t.path().to_str().unwrap()];
    compile("gfortran", &flags, "omp_regions.f90", &bin, &[]);
    let dir = t.path().join("run");
    let mut hw = std::process::Command::new(hwprof_bin());
    hw.env("OMP_NUM_THREADS", "1");
    ok(&collect_through(
        hw,
        &dir,
        &SHARES_HZ,
        &[bin.as_os_str(), "1500".as_ref()],
    ));
    let rows = report_csv(&dir, "hotspots", &["--top", "1000"]);
    let source = std::fs::read_to_string(program_source("omp_regions.f90")).unwrap();
    let regions: Vec<String> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "!$omp parallel do")
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let mut shares = Vec::new();
    for (name, line) in [
        ("grid::relax._omp_fn.0", &regions[0]),
        ("regions._omp_fn.0", &regions[1]),
    ] {
        let row = rows
            .iter()
            .find(|r| r.get(0) == Some(name))
            .unwrap_or_else(|| panic!("{name}: {rows:?}"));
        assert_eq!(row.get(3), Some(line.as_str()), "{name}: {rows:?}");
        shares.push(
            row.get(5)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0),
        );
    }
    assert!(
        rows.iter().all(|r| r
            .get(0)
            .is_some_and(|n| !n.contains("_MOD_") && !n.contains("MAIN__"))),
        "{rows:?}"
    );
    assert_three_to_one(
        shares[0],
        shares[1],
        &format!("relax's region, the program's: {rows:?}"),
    );
}

/// `program main` (gfortran leaves it `MAIN__`: `main` is the C entry's name) and a
/// program without a `program` statement read `main program`, holding the program's
/// time: it calls nothing, so nearly all samples are its own.
#[test]
fn gfortran_program_named_main_or_unnamed_reads_main_program() {
    let t = shared_tempdir();
    let body = "  implicit none\n  integer :: i\n  real(8) :: s\n  s = 0\n  \
                do i = 1, 300000000\n    s = s + sqrt(dble(i))\n  end do\n  print *, s\n";
    for (name, src) in [
        (
            "named_main",
            format!("program main\n{body}end program main\n"),
        ),
        ("unnamed", format!("{body}end\n")),
    ] {
        let f90 = t.path().join(format!("{name}.f90"));
        std::fs::write(&f90, src).unwrap();
        let bin = t.path().join(name);
        let out = std::process::Command::new("gfortran")
            .args(["-O2", "-g", "-o"])
            .arg(&bin)
            .arg(&f90)
            .output()
            .expect("gfortran (.ci/run installs it)");
        assert_ran(&out, "gfortran failed");
        let dir = t.path().join(format!("run-{name}"));
        ok(&collect(&dir, &[], &[bin.to_str().unwrap()]));
        let csv = report_view(&dir, "hotspots", "csv", &["--top", "1000"]);
        assert!(!csv.contains("MAIN__"), "{name}: MAIN__ shown:\n{csv}");
        let rows = hotspots(&dir, &[]);
        let main = rows.get("main program");
        let self_pct = main.map(|h| h.self_pct).unwrap_or(0.0);
        assert!(
            self_pct > 90.0,
            "{name}: main program self {self_pct}%\n{csv}"
        );
    }
}
