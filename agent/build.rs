//! Links the unwinder (`libgcc_eh.a`) into the agent instead of depending on
//! `libgcc_s.so.1`: the agent is preloaded into every process of a launch, and loading
//! libgcc_s runs its constructor `__cpu_indicator_init`, a dozen `cpuid` instructions,
//! each a VM exit on virtual machines (9-13 µs here): ~0.15 ms per process
//! (docs/performance.md "Fixed cost of a launch"). The agent never unwinds (panic =
//! abort); std only references the unwinder (backtraces). The cdylib's version script
//! keeps the archive's symbols local, so the target's own `_Unwind_*` stay libgcc_s's.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
    }
}
