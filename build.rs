//! Builds the Python agent (`agent/`, a cdylib preloaded into launched processes) so
//! that `hwprof` embeds it (`include_bytes!` in `src/python/embedded.rs`): the one
//! installed binary is the whole install (`cargo install --path .` installs no library).
//!
//! The agent is built by a nested `cargo build --release` of `agent/Cargo.toml` into its
//! own target directory under OUT_DIR, so it never waits on the lock of the outer build's
//! target directory. It is built `--locked` against the workspace's Cargo.lock and first
//! `--offline` (its dependencies, libc and the path crate `hwprof-wire`, are what the
//! outer build already fetched); only when that fails (an install that ignored the lock file) does it retry
//! with the network.
//!
//! It also generates the pprof message types from third_party/pprof/profile.proto
//! (`generate_pprof_types`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let agent_dir = manifest_dir.join("agent");
    for p in [
        "agent/Cargo.toml",
        "agent/build.rs",
        "agent/src",
        "wire/Cargo.toml",
        "wire/src",
        "Cargo.lock",
        "third_party/pprof/profile.proto",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=HWPROF_AGENT_PREBUILT");
    generate_pprof_types(&manifest_dir, &out_dir);
    let dest = out_dir.join("libhwprof_agent.so");
    // A packager may hand over an agent built elsewhere.
    if let Some(pre) = std::env::var_os("HWPROF_AGENT_PREBUILT") {
        copy(Path::new(&pre), &dest);
        return;
    }
    let target_dir = out_dir.join("agent-target");
    let target = env("TARGET");
    let cross = target != env("HOST");
    let built = build(&agent_dir, &target_dir, &target, cross, true).or_else(|first| {
        build(&agent_dir, &target_dir, &target, cross, false).map_err(|e| format!("{first}\n{e}"))
    });
    if let Err(e) = built {
        panic!(
            "building the Python agent (agent/) failed:\n{e}\n(set HWPROF_AGENT_PREBUILT=/path/to/libhwprof_agent.so to embed one built elsewhere)"
        );
    }
    let mut lib = target_dir.clone();
    if cross {
        lib.push(&target);
    }
    lib.push("release/libhwprof_agent.so");
    copy(&lib, &dest);
}

/// The pprof message types (`perftools.profiles`, for src/export/pprof.rs), generated
/// from google/pprof's schema as vendored in third_party/pprof/ rather than restated by
/// hand. protox compiles the schema in Rust, so building needs no `protoc`.
fn generate_pprof_types(manifest_dir: &Path, out_dir: &Path) {
    let include = manifest_dir.join("third_party/pprof");
    let schema = include.join("profile.proto");
    let descriptors = protox::compile([&schema], [&include])
        .unwrap_or_else(|e| panic!("compile {}: {e}", schema.display()));
    if let Err(e) = prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(descriptors)
    {
        panic!("generate the pprof types from {}: {e}", schema.display());
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!("copy {} to {}: {e}", from.display(), to.display());
    }
}

fn build(
    agent_dir: &Path,
    target_dir: &Path,
    target: &str,
    cross: bool,
    offline: bool,
) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(agent_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if offline {
        cmd.arg("--offline");
    }
    if cross {
        cmd.arg("--target").arg(target);
    }
    // The outer cargo's settings for *this* crate must not leak in: its target dir, the
    // clippy wrapper of `cargo clippy`. Symbols stay (finalize names agent frames);
    // debug info goes (4.5 MB → ~0.5 MB written at each Python launch).
    // Nor its compiler flags: the agent runs inside the user's processes, and a
    // sanitizer or coverage flag (cargo-fuzz builds hwprof with them) must never reach it.
    cmd.env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // Inside the target nothing may unwind or check overflow: a panic aborts (never
        // unwinds through the target's frames or out of a signal handler), and the
        // handler has no overflow-check panics (docs/security.md).
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "false");
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build of the agent{} failed ({}):\n{}",
            if offline { " (offline)" } else { "" },
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
