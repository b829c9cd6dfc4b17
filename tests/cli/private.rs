//! Private results directories (docs/security.md "Results directories"): created 0700
//! with 0600 files, an existing directory used only when it is the caller's, not
//! group/other writable and empty, and no write ever goes through a planted link.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Regression (issue 16): a pre-created 0777 directory was used and stayed 0777.
#[test]
fn a_world_writable_results_dir_is_refused() {
    let t = shared_tempdir();
    let d = t.path().join("open");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = hwprof(&["collect", "-r", d.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr_of(&out);
    assert!(
        e.contains("writable by group or others") && e.contains("chmod go-w"),
        "{e}"
    );
    assert_eq!(mode(&d), 0o777);
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
}

#[test]
fn non_empty_symlinked_or_foreign_results_dirs_are_refused() {
    let t = shared_tempdir();
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // Non-empty: a link planted before collect starts.
    let d = t.path().join("planted");
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("manifest.json")).unwrap();
    let out = hwprof(&["collect", "-r", d.to_str().unwrap(), "--", "true"]);
    assert_fails_with(&out, 1, "exists and is not empty");
    // A link as the directory itself.
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = hwprof(&["collect", "-r", link.to_str().unwrap(), "--", "true"]);
    assert_fails_with(&out, 1, "symbolic link");
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    // Somebody else's empty directory, as uid 65534.
    let hw = hwprof_for_nobody(t.path());
    let out = as_nobody(&hw)
        .args(["collect", "-r"])
        .arg(&real)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "belongs to uid 0");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// Every file hwprof writes is 0600 and every directory 0700, whatever the umask.
#[test]
fn results_are_private_whatever_the_umask() {
    let Scratch { tmp: t, bin, dir } = scratch_with("hot.c", "hot", &[]);
    let hw = hwprof_for_nobody(t.path());
    let out = as_nobody(Path::new("sh"))
        .arg("-c")
        .arg("umask 0; exec \"$@\"")
        .arg("sh")
        .arg(&hw)
        .args(["collect", "-q", "-r"])
        .arg(&dir)
        .arg("--")
        .arg(&bin)
        .arg("50")
        .output()
        .unwrap();
    ok(&out);
    let mut seen = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        assert_eq!(mode(&d), 0o700, "{d:?}");
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                assert!(ft.is_file(), "{:?}", e.path());
                assert_eq!(mode(&e.path()), 0o600, "{:?}", e.path());
                seen += 1;
            }
        }
    }
    assert!(seen >= 4, "{seen} files");
}

/// Every name hwprof writes in a results directory (hidden temporary names with
/// this pid and a counter), for a link planter.
fn names_written(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = [
        "manifest.json",
        "profile.db",
        "raw",
        "symbols",
        "parts",
        &format!(".hwprof-reserve.{pid}"),
    ]
    .iter()
    .map(|n| dir.join(n))
    .collect();
    for base in ["manifest.json", "profile.db"] {
        for n in 0..8 {
            names.push(dir.join(format!(".{base}.{pid}.{n}")));
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("raw")) {
        for raw in rd.flatten() {
            for f in [
                "perf.data",
                "modules.json",
                "complete",
                "kallsyms",
                "manifest.json",
                "python-codes.jsonl",
                "collector-sampled.json",
                "peak.csv",
                "rss.csv",
                "counters.csv",
            ] {
                names.push(raw.path().join(f));
            }
        }
    }
    names
}

/// Regression (issue 16): a link planted at `.manifest.json.<pid>` made root overwrite
/// its target and chmod it 0600. A thread plants links at every name hwprof writes
/// while `collect` and then `finalize` run: the targets stay as they were. The targets
/// are Python (3.12, with the agent, then `--python perfmap`), so that the names of the
/// Python sidecars (`python-<pid>.bin`, `python-codes.jsonl`, `perf-<pid>.map` and its
/// temporary) are planted too, from the moment the target process exists.
#[test]
fn links_planted_during_collect_and_finalize_are_never_followed() {
    let t = shared_tempdir();
    let py = pyenv_required("3.12.1");
    let script = write_script(
        t.path(),
        "busy.py",
        "import time\nend = time.time() + 1.5\ndef spin():\n    s = 0\n    for i in range(20000):\n        s += i\n    return s\nwhile time.time() < end:\n    spin()\n",
    );
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let victim_dir = t.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    let dir = t.path().join("run");
    let perfmap_dir = t.path().join("run-perfmap");
    let mut sidecar_links = 0u64;
    for step in ["collect", "collect-perfmap", "finalize"] {
        let mut cmd = Command::new(hwprof_bin());
        cmd.env("HWPROF_AGENT_LIB", crate::python::agent_lib());
        let step_dir = if step == "collect-perfmap" {
            perfmap_dir.clone()
        } else {
            dir.clone()
        };
        match step {
            "finalize" => cmd.arg("finalize").arg("-q").arg(&dir),
            _ => {
                cmd.args(["collect", "-q", "--no-finalize", "-r"])
                    .arg(&step_dir);
                if step == "collect-perfmap" {
                    cmd.args(["--python", "perfmap"]);
                }
                cmd.arg("--").arg(&py).arg(&script)
            }
        };
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let planter = {
            let (stop, dir, victim, victim_dir) = (
                stop.clone(),
                step_dir.clone(),
                victim.clone(),
                victim_dir.clone(),
            );
            std::thread::spawn(move || {
                let (mut planted, mut sidecars) = (0u64, 0u64);
                // During collect: from when perf.data exists (the raw directory made).
                while step != "finalize"
                    && !stop.load(Ordering::Relaxed)
                    && !std::fs::read_dir(dir.join("raw")).is_ok_and(|mut rd| {
                        rd.any(|e| e.is_ok_and(|e| e.path().join("perf.data").exists()))
                    })
                {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                while !stop.load(Ordering::Relaxed) {
                    let mut names = names_written(&dir, pid);
                    let sidecar = python_sidecar_names(&dir, pid);
                    let first_sidecar = names.len();
                    names.extend(sidecar);
                    for (i, name) in names.iter().enumerate() {
                        let to = if name.ends_with("raw") || name.ends_with("symbols") {
                            &victim_dir
                        } else {
                            &victim
                        };
                        if std::os::unix::fs::symlink(to, name).is_ok() {
                            planted += 1;
                            if i >= first_sidecar {
                                sidecars += 1;
                            }
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                (planted, sidecars)
            })
        };
        let out = child.wait_with_output().unwrap();
        stop.store(true, Ordering::Relaxed);
        let (planted, sidecars) = planter.join().unwrap();
        sidecar_links += sidecars;
        println!(
            "{step}: exit {:?}, {planted} links planted ({sidecars} at Python sidecar names)",
            out.status
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode(&victim), 0o644);
        assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0);
    }
    assert!(
        sidecar_links > 0,
        "no link planted at a Python sidecar name"
    );
}

/// The Python sidecar names of the processes hwprof (`pid`) launched: the capture file
/// and perf map copy (with its temporary names) of each child of hwprof.
fn python_sidecar_names(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let mut children = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                children.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    let mut names = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("raw")) else {
        return names;
    };
    for raw in rd.flatten() {
        for c in &children {
            names.push(raw.path().join(format!("python-{c}.bin")));
            names.push(raw.path().join(format!("perf-{c}.map")));
            for n in 0..8 {
                names.push(raw.path().join(format!(".perf-{c}.map.{pid}.{n}")));
            }
        }
    }
    names
}
