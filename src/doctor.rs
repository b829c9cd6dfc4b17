//! `hwprof doctor` (being built).

/// The doctor's report.
pub fn doctor_text() -> String {
    format!(
        "perf_event_paranoid: {}\n",
        crate::collect::sys::paranoid_level()
            .map(|p| p.to_string())
            .unwrap_or("unknown".into())
    )
}
