//! Facts about the project itself that a new user relies on.

use std::process::Command;

use crate::common::assert_success;

/// `rust-version` in Cargo.toml is what the README promises; it must cover every locked
/// dependency, or `cargo install --locked` fails on the toolchain we name (issue 13:
/// rusqlite 0.43 needs 1.89 while we said 1.88). The dependencies are those built for
/// the platform hwprof runs on (Linux x86-64): the ones of other platforms are neither
/// built by `cargo install` nor downloaded on a new machine, where `--offline` would fail
/// for want of them.
#[test]
fn rust_version_covers_every_locked_dependency() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert_success(&out, "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    // "1.89" and "1.89.0" are the same version: compare (major, minor, patch).
    let parse = |v: &str| -> [u32; 3] {
        let mut n = [0; 3];
        for (slot, part) in n.iter_mut().zip(v.split('.')) {
            *slot = part.parse().unwrap_or(0);
        }
        n
    };
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "hwprof")
        .and_then(|p| p["rust_version"].as_str())
        .map(parse)
        .expect("hwprof declares rust-version");
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            (parse(v) > ours).then(|| format!("{} {} needs {v}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {ours:?} is older than locked dependencies need: {too_new:?}"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let promised = format!("Rust {}.{}+", ours[0], ours[1]);
    assert!(
        readme.contains(&promised),
        "README does not say {promised:?}"
    );
    assert!(
        readme.contains("cargo install --path . --locked"),
        "README's install line must use --locked (the tested versions)"
    );
}
