//! Per-version CPython layouts of release builds 3.8-3.12: generated tables (`v3_*.rs`,
//! see README.md beside them), chosen in one place ([`for_version`]). 3.13 and later
//! are read from the interpreter's own `_Py_DebugOffsets` by the collector
//! (`hwprof::python::layouts::from_debug_offsets`); 3.13's generated table
//! ([`V3_13_FROM_HEADERS`]) is for tests and to check that reader against.

pub use crate::{Layout, NONE};

mod v3_10;
mod v3_11;
mod v3_12;
mod v3_13;
mod v3_8;
mod v3_9;

/// The table for a release build of CPython `major.minor`, for 3.8-3.12.
pub fn for_version(major: u32, minor: u32) -> Option<Layout> {
    match (major, minor) {
        (3, 8) => Some(v3_8::LAYOUT),
        (3, 9) => Some(v3_9::LAYOUT),
        (3, 10) => Some(v3_10::LAYOUT),
        (3, 11) => Some(v3_11::LAYOUT),
        (3, 12) => Some(v3_12::LAYOUT),
        _ => None,
    }
}

/// CPython 3.13's offsets from its headers (generated like the others). Not returned by
/// [`for_version`]: the collector reads a 3.13 target's own `_Py_DebugOffsets`; this is
/// for the decoder's tests and to check that reader against.
pub const V3_13_FROM_HEADERS: Layout = v3_13::LAYOUT;
