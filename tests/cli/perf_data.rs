//! The perf.data writer is hand-written (no crate writes the format), so its bytes are
//! checked against two independent readers: linux-perf-data (the crate samply reads
//! perf.data with) and `perf script`, perf's own reader.

use std::path::Path;
use std::process::Command;

use hwprof::collect::perf_data::{FileAttr, HostInfo, PerfDataWriter};
use linux_perf_data::linux_perf_event_reader::EventRecord;
use linux_perf_data::{PerfFileReader, PerfFileRecord};

use crate::common::*;

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_RECORD_COMM: u32 = 3;
const PERF_RECORD_SAMPLE: u32 = 9;
const PERF_RECORD_MISC_USER: u16 = 2;
/// IP | TID | TIME | PERIOD.
const SAMPLE_TYPE: u64 = 0x1 | 0x2 | 0x4 | 0x100;
const PID: u32 = 4242;
const COMM: &str = "roundtrip";

/// A `perf_event_attr` (size 128, PERF_ATTR_SIZE_VER7) for cpu-clock at 999 Hz with
/// comm records and sample_id_all, laid out as in `<linux/perf_event.h>`.
fn cpu_clock_attr() -> Vec<u8> {
    let mut a = vec![0u8; 128];
    a[0..4].copy_from_slice(&PERF_TYPE_SOFTWARE.to_le_bytes());
    a[4..8].copy_from_slice(&128u32.to_le_bytes());
    // config 0 = PERF_COUNT_SW_CPU_CLOCK
    a[16..24].copy_from_slice(&999u64.to_le_bytes());
    a[24..32].copy_from_slice(&SAMPLE_TYPE.to_le_bytes());
    let flags: u64 = (1 << 5) | (1 << 9) | (1 << 10) | (1 << 18); // exclude_kernel, comm, freq, sample_id_all
    a[40..48].copy_from_slice(&flags.to_le_bytes());
    a
}

/// sample_id_all's trailer for TID | TIME.
fn sample_id(time: u64) -> Vec<u8> {
    let mut v = PID.to_le_bytes().to_vec();
    v.extend_from_slice(&PID.to_le_bytes());
    v.extend_from_slice(&time.to_le_bytes());
    v
}

fn sample(ip: u64, time: u64, period: u64) -> Vec<u8> {
    let mut v = ip.to_le_bytes().to_vec();
    v.extend_from_slice(&PID.to_le_bytes());
    v.extend_from_slice(&PID.to_le_bytes());
    v.extend_from_slice(&time.to_le_bytes());
    v.extend_from_slice(&period.to_le_bytes());
    v
}

/// Writes a file of one COMM and `ips.len()` samples over two drain passes.
fn write_file(path: &Path, ips: &[u64]) {
    let attrs = vec![FileAttr {
        attr: cpu_clock_attr(),
        name: "cpu-clock".into(),
        ids: vec![7],
    }];
    let mut w = PerfDataWriter::create(path, attrs).expect("create perf.data");
    let mut comm = PID.to_le_bytes().to_vec();
    comm.extend_from_slice(&PID.to_le_bytes());
    let mut name = COMM.as_bytes().to_vec();
    name.resize((COMM.len() + 1).div_ceil(8) * 8, 0);
    comm.extend_from_slice(&name);
    comm.extend_from_slice(&sample_id(1_000));
    w.write_record(PERF_RECORD_COMM, 0, &[&comm]).unwrap();
    for (i, ip) in ips.iter().enumerate() {
        let body = sample(*ip, 2_000 + i as u64 * 1_000_000, 1_001_001);
        w.write_record(PERF_RECORD_SAMPLE, PERF_RECORD_MISC_USER, &[&body])
            .unwrap();
        if i == ips.len() / 2 {
            w.finish_round().unwrap();
        }
    }
    w.finish_round().unwrap();
    let host = HostInfo {
        hostname: "node-17".into(),
        osrelease: "6.18.0-test".into(),
        arch: "x86_64".into(),
        nr_cpus_online: 2,
        nr_cpus_avail: 4,
        cmdline: vec!["hwprof".into(), "collect".into(), "--".into(), COMM.into()],
    };
    w.finish(&host).unwrap();
}

const IPS: [u64; 5] = [0x40_1000, 0x40_1010, 0x40_2000, 0x7f00_0000_1234, 0x40_1000];

#[test]
fn perf_data_writer_round_trips_through_linux_perf_data() {
    let t = shared_tempdir();
    let path = t.path().join("perf.data");
    write_file(&path, &IPS);

    let file = std::fs::File::open(&path).unwrap();
    let PerfFileReader {
        mut perf_file,
        mut record_iter,
    } = PerfFileReader::parse_file(std::io::BufReader::new(file)).expect("parse header");
    assert_eq!(perf_file.hostname().unwrap(), Some("node-17"));
    assert_eq!(perf_file.os_release().unwrap(), Some("6.18.0-test"));
    assert_eq!(perf_file.arch().unwrap(), Some("x86_64"));
    let cpus = perf_file.nr_cpus().unwrap().expect("NRCPUS");
    assert_eq!((cpus.nr_cpus_online, cpus.nr_cpus_available), (2, 4));
    assert_eq!(
        perf_file.cmdline().unwrap(),
        Some(vec!["hwprof", "collect", "--", COMM])
    );
    // SAMPLE_TIME: the first and the last sample's time (finalize's timeline buckets).
    let range = perf_file.sample_time_range().unwrap().expect("SAMPLE_TIME");
    assert_eq!(
        (range.first_sample_time, range.last_sample_time),
        (2_000, 2_000 + (IPS.len() as u64 - 1) * 1_000_000)
    );
    let attrs = perf_file.event_attributes();
    assert_eq!(attrs.len(), 1);
    assert_eq!(attrs[0].name.as_deref(), Some("cpu-clock"));
    assert_eq!(attrs[0].event_ids, vec![7]);
    assert_eq!(attrs[0].attr.sample_format.bits(), SAMPLE_TYPE);

    let (mut comms, mut samples) = (Vec::new(), Vec::new());
    while let Some(rec) = record_iter.next_record(&mut perf_file).expect("record") {
        let PerfFileRecord::EventRecord { record, .. } = rec else {
            continue;
        };
        match record.parse().expect("parse record") {
            EventRecord::Comm(c) => comms.push((
                c.pid,
                String::from_utf8_lossy(&c.name.as_slice()).into_owned(),
            )),
            EventRecord::Sample(s) => samples.push((
                s.ip.unwrap(),
                s.pid.unwrap(),
                s.timestamp.unwrap(),
                s.period,
            )),
            _ => {}
        }
    }
    assert_eq!(comms, vec![(PID as i32, COMM.to_string())]);
    let ips: Vec<u64> = samples.iter().map(|s| s.0).collect();
    assert_eq!(ips, IPS.to_vec(), "samples in order, none lost or added");
    assert!(
        samples
            .iter()
            .all(|s| s.1 == PID as i32 && s.3 == Some(1_001_001))
    );
    assert_eq!(samples[4].2, 2_000 + 4_000_000);
}

#[test]
fn perf_data_writer_round_trips_through_perf_script() {
    need_perf();
    let t = shared_tempdir();
    let path = t.path().join("perf.data");
    write_file(&path, &IPS);
    let out = Command::new("perf")
        .args(["script", "-F", "comm,pid,ip,period", "-i"])
        .arg(&path)
        .output()
        .expect("run perf script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_success(&out, "perf script failed");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), IPS.len(), "{text}");
    for (line, ip) in lines.iter().zip(IPS) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&COMM), "{line}");
        assert!(words.contains(&PID.to_string().as_str()), "{line}");
        assert!(words.contains(&"1001001"), "{line}");
        assert!(
            words.contains(&format!("{ip:x}").as_str()),
            "{line}: {ip:x}"
        );
    }
}

/// Tracepoint samples need their tracefs formats in perf.data (the TRACING_DATA
/// feature): perf script reads root locks mode's `sched:sched_waking` and a
/// `-e sched:sched_switch` collection with their fields, `perf report --stdio` exits 0,
/// and finalize (linux-perf-data) still reads the files.
#[test]
fn perf_reads_tracepoint_samples_with_their_fields() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: tracepoints need root (tracefs, perf_event_paranoid 2)");
        return;
    }
    need_perf();
    let t = shared_tempdir();
    for (args, event, field) in [
        (["-m", "locks"], "sched:sched_waking", "target_cpu="),
        (
            ["-e", "sched:sched_switch"],
            "sched:sched_switch",
            "prev_state=",
        ),
    ] {
        let dir = t.path().join(event.replace(':', "_"));
        let out = collect(
            &dir,
            &[args[0], args[1], "--no-finalize"],
            &["sleep", "0.2"],
        );
        assert_success(&out, "collect");
        let data = first_perf_data(&dir);
        let text = run_ok(Command::new("perf").arg("script").arg("-i").arg(&data));
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{event}:")))
            .unwrap_or_else(|| panic!("no {event} sample in perf script's output: {text}"));
        assert!(line.contains(field), "{event} without its fields: {line}");
        run_ok(
            Command::new("perf")
                .args(["report", "--stdio", "-i"])
                .arg(&data),
        );
        ok(&hwprof(&["finalize", "-q", dir.to_str().unwrap()]));
    }
}
