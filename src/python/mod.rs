//! CPython knowledge: version detection, per-version layouts, the remote reader of code
//! objects, line tables, and the python.bin sidecar. (Being built.)
