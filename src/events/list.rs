//! `hwprof list-events`: what this machine can count and sample, and what each mode
//! will use.

/// The text of `hwprof list-events` (being built).
pub fn list_events_text() -> String {
    String::new()
}
