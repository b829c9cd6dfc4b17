//! End-to-end tests: real programs under real perf events, asserted against the ground
//! truth designed into them. One test binary, one module per topic.

#[macro_use]
mod common;
mod agent_faults;
mod agent_stress;
mod crash;
mod diff;
mod errors;
mod export;
mod fortran;
mod groups;
mod hostile;
mod hotspots;
mod html;
mod install;
mod launch;
mod launchers;
mod locks;
mod locks_user;
mod memory;
mod mpi;
mod perf_data;

mod private;
mod project;
mod python;
mod python_accuracy;
mod python_identity;
mod socket_trust;
mod stalls;
mod symbols;
