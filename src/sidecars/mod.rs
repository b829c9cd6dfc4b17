//! The sidecar files of a raw directory, beside perf.data: written by `collect`, read
//! by `finalize` (and the fuzz targets). One module per format, its doc comment the
//! format; neither side reaches into the other for them. (`modules.json` stays in
//! `collect::modules`: finalize does not read it, only the fuzz targets do; the manifest
//! is `crate::manifest`.)

pub mod collector_sampled;
pub mod counters;
pub mod rss;
