//! Per-version CPython layouts, chosen in one place ([`for_version`]).
//!
//! 3.8-3.12: generated tables in the `hwprof-wire` crate (`wire/src/layouts/`, shared
//! with the agent). 3.13 and later: [`from_debug_offsets`] reads the interpreter's own
//! `_Py_DebugOffsets` (here: it needs `thiserror`, and only the collector reads it).

pub use hwprof_wire::layouts::{Layout, NONE, for_version};

/// Size of the 3.13 `_Py_DebugOffsets` this reader knows.
pub const DEBUG_OFFSETS_SIZE: usize = 584;

/// Why a `_Py_DebugOffsets` block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebugOffsetsError {
    /// No `xdebugpy` cookie: not a CPython runtime, or memory not readable.
    #[error("no _Py_DebugOffsets cookie (xdebugpy) at _PyRuntime")]
    NoCookie,
    /// A free-threaded (no-GIL) build.
    #[error("free-threaded CPython {0}.{1} (no-GIL build) is not supported")]
    FreeThreaded(u32, u32),
    /// A version whose debug-offsets layout this reader does not know.
    #[error("CPython {0}.{1}: its _Py_DebugOffsets layout is not known to this hwprof")]
    UnknownVersion(u32, u32),
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(NONE)
}

/// Builds a [`Layout`] from the bytes of `_Py_DebugOffsets` (the start of `_PyRuntime`
/// on 3.13+). Checks the cookie, the version (3.13 only: the struct changes between
/// minor versions) and refuses free-threaded builds.
pub fn from_debug_offsets(b: &[u8]) -> Result<Layout, DebugOffsetsError> {
    if b.len() < DEBUG_OFFSETS_SIZE || &b[..8] != b"xdebugpy" {
        return Err(DebugOffsetsError::NoCookie);
    }
    let hex = u64_at(b, 8);
    let major = ((hex >> 24) & 0xff) as u32;
    let minor = ((hex >> 16) & 0xff) as u32;
    if u64_at(b, 16) != 0 {
        return Err(DebugOffsetsError::FreeThreaded(major, minor));
    }
    if (major, minor) != (3, 13) {
        return Err(DebugOffsetsError::UnknownVersion(major, minor));
    }
    let g = |off| u64_at(b, off);
    let ascii = g(560);
    Ok(Layout {
        major: major as u64,
        minor: minor as u64,
        runtime_interpreters_head: g(40),
        runtime_tstate_current: NONE,
        interp_threads_head: g(72),
        interp_next: g(64),
        tstate_next: g(168),
        tstate_thread_id: g(192),
        tstate_native_thread_id: g(200),
        tstate_frame: g(184),
        cframe_current_frame: NONE,
        cframe_previous: NONE,
        frame_previous: g(232),
        frame_code: g(240),
        frame_instr: g(248),
        frame_is_entry: NONE,
        frame_owner: g(264),
        // FRAME_OWNED_BY_CSTACK (3.13 pycore_frame.h; not in _Py_DebugOffsets).
        owner_cstack: 3,
        frame_localsplus: g(256),
        frame_lasti: NONE,
        lasti_unit: NONE,
        code_qualname: g(296),
        code_linetable: g(304),
        code_varnames: g(328),
        code_code_adaptive: g(344),
        code_argcount: g(320),
        code_firstlineno: g(312),
        code_name: g(288),
        code_filename: g(280),
        object_type: g(360),
        type_name: g(376),
        tuple_size: g(416),
        tuple_items: g(408),
        bytes_size: g(520),
        bytes_data: g(528),
        unicode_length: g(552),
        unicode_state: g(544),
        unicode_ascii_size: ascii,
        // PyCompactUnicodeObject = PyASCIIObject + utf8_length + utf8 (3.12+).
        unicode_compact_size: ascii.saturating_add(16),
    })
}
