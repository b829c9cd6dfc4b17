//! The install is one file: `cargo install --path . --locked` installs `bin/hwprof`
//! alone, and that file, copied anywhere, profiles Python (its agent is embedded).
//!
//! Slow the first time (a release build in its own target dir, ~4 min on an idle
//! 2-core VM); the target dir is kept under this test's target dir, so a re-run only
//! rebuilds what changed.

use std::path::Path;
use std::process::Command;

use crate::common::{
    as_nobody, assert_success, copy_executable, ok, parse_hotspots_csv, shared_tempdir,
};

#[test]
fn installed_binary_alone_profiles_python_as_an_ordinary_user() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = shared_tempdir();
    let prefix = tmp.path().join("prefix");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-target");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--path"])
        .arg(root)
        .args(["--locked", "--root"])
        .arg(&prefix)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo install");
    assert_success(&out, "cargo install failed");
    let installed: Vec<String> = walk(&prefix);
    assert_eq!(
        installed,
        ["bin/hwprof"],
        "the install is one file (cargo's .crates*.json aside)"
    );

    // Only the binary, in a fresh directory, run by uid 65534.
    let fresh = tmp.path().join("elsewhere");
    std::fs::create_dir(&fresh).unwrap();
    let hw = fresh.join("hwprof");
    copy_executable(&prefix.join("bin/hwprof"), &hw);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = tmp.path().join("work.py");
    std::fs::write(
        &script,
        "def spin(n):\n    s = 0\n    for i in range(n):\n        s += i * 3\n    return s\nprint(spin(4_000_000))\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = tmp.path().join("r");
    ok(&as_nobody(&hw)
        .args(["collect", "-q", "-r"])
        .arg(&dir)
        .args(["--", "/usr/bin/python3"])
        .arg(&script)
        .env_remove("HWPROF_AGENT_LIB")
        .output()
        .expect("collect"));
    let csv = ok(&as_nobody(&hw)
        .args(["report"])
        .arg(&dir)
        .args(["--view", "hotspots", "--format", "csv", "--top", "1000"])
        .output()
        .expect("report"));
    let rows = parse_hotspots_csv(&csv);
    let spin = rows
        .get("spin")
        .unwrap_or_else(|| panic!("no Python frame `spin`:\n{csv}"));
    assert_eq!(spin.module, "python");
    assert!(spin.total_pct > 50.0, "spin total {}%", spin.total_pct);
}

/// Files under `dir`, relative, sorted; cargo's own bookkeeping left out.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let rel = rel.display().to_string();
                if !rel.starts_with(".crates") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}
