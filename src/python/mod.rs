//! CPython knowledge: version detection, per-version layouts, the remote reader of code
//! objects, line tables, and the python sidecar files.

pub mod layouts;
pub mod linetable;
pub mod memory;
pub mod process;
pub mod wire;
