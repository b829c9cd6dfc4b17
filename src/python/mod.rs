//! CPython knowledge: version detection, per-version layouts, the remote reader of code
//! objects, line tables, and the python.bin sidecar. (Being built.)

use crate::profile::FrameInfo;

/// Merge a sample's native stack (leaf first) with its Python stack (leaf first).
/// Until the interpreter-frame merge lands, Python frames go above the native ones.
pub fn merge_for_finalize(
    native_leaf_first: &[FrameInfo],
    py_leaf_first: &[FrameInfo],
) -> Vec<FrameInfo> {
    let mut v = py_leaf_first.to_vec();
    v.extend_from_slice(native_leaf_first);
    v
}
