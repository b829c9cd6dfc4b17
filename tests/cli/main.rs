//! End-to-end tests: real programs under real perf events, asserted against the ground
//! truth designed into them. One test binary, one module per topic.

mod common;
mod errors;
mod export;
mod groups;
mod hotspots;
mod install;
mod launch;
mod locks;
mod memory;
mod python;
mod python_accuracy;
mod symbols;
