//! `hwprof list-events`: what this machine can count and sample, and what each mode
//! will use.
