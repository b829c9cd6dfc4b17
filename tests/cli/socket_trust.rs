//! The agents' socket trusts only the target's own processes (issue 16, part B): a
//! process outside the target's tree (the same user, or uid 65534) and one inside it
//! that names another process are refused; nothing they send makes the collector read
//! another process or take their fds; the real agent's captures are unchanged.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::python::python311;

/// The target: tells the test its socket, runs the in-tree attacker (a child of the
/// target, so of its tree, naming another process), then works 3:1 in `three`/`one`
/// until the test says the outside attacks are over.
const TARGET: &str = r#"import os, subprocess, sys, time
base, attacker, victim = sys.argv[1], sys.argv[2], sys.argv[3]
sock = os.environ.get("HWPROF_AGENT_SOCK", "")
out = subprocess.run([sys.executable, attacker, sock, victim],
                     capture_output=True, text=True).stdout
with open(base + ".intree", "w") as f:
    f.write(out)
with open(base + ".sock", "w") as f:
    f.write(sock)

def three(n):
    s = 0
    for i in range(n):
        s += i % 7
    return s

def one(n):
    s = 0
    for i in range(n):
        s += i % 5
    return s

start = time.time()
rounds = 0
while rounds < 40 or not os.path.exists(base + ".done") or time.time() - start < 1.5:
    three(150_000)
    one(50_000)
    rounds += 1
print("rounds", rounds)
"#;

/// Connects and sends what a hostile peer would; prints one line per attempt:
/// `NAME:connect-failed:ERRNO`, `NAME:reply:BYTES` or `NAME:error:ERRNO`.
const ATTACKER: &str = r#"import array, os, socket, struct, sys
path, victim = sys.argv[1], int(sys.argv[2])
HELLO = struct.unpack("<Q", b"HWPAHELO")[0]
EVTS = struct.unpack("<Q", b"HWPAEVTS")[0]
results = []

def attempt(name, msgs):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(3)
        s.connect(path)
    except OSError as e:
        results.append("%s:connect-failed:%d" % (name, e.errno or 0))
        return
    try:
        for m, fds in msgs:
            if fds:
                s.sendmsg([m], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                s.send(m)
        got = s.recv(8192)
        results.append("%s:reply:%d" % (name, len(got)))
    except socket.timeout:
        results.append("%s:reply:timeout" % name)
    except OSError as e:
        results.append("%s:error:%d" % (name, e.errno or 0))
    s.close()

r, w = os.pipe()
passwd = os.open("/etc/passwd", os.O_RDONLY)
events = struct.pack("<QII", EVTS, victim, 2) + struct.pack("<64I", *([0] * 64))
own_events = struct.pack("<QII", EVTS, os.getpid(), 2) + struct.pack("<64I", *([0] * 64))
attempt("hello-victim", [(struct.pack("<QII", HELLO, victim, 0), [])])
attempt("events-victim", [(events, [r, passwd])])
attempt("events-own-pid-foreign-fds", [(own_events, [r, passwd]),
                                       (struct.pack("<QII", HELLO, os.getpid(), 0), [])])
attempt("garbage", [(os.urandom(900), [])])
attempt("hello-self", [(struct.pack("<QII", HELLO, os.getpid(), 0), [])])
print("\n".join(results))
"#;

fn wait_for(path: &Path, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn outsiders_and_impostors_are_refused_and_captures_hold() {
    let py = python311();
    let tmp = shared_tempdir();
    let target = write_script(tmp.path(), "target.py", TARGET);
    let attacker = write_script(tmp.path(), "attacker.py", ATTACKER);
    // A Python process that is none of the target's: the impostors name it.
    let mut victim = Command::new(&py)
        .args(["-c", "import time; time.sleep(60)"])
        .spawn()
        .expect("victim");
    let victim_pid = victim.id();
    let base = tmp.path().join("sig");
    let dir = tmp.path().join("r");
    let victim_arg = victim_pid.to_string();
    let program = [
        py.as_os_str(),
        target.as_os_str(),
        base.as_os_str(),
        attacker.as_os_str(),
        victim_arg.as_ref(),
    ];
    let hw = spawn_collect_with_agent(&dir, &[], &program, Stdio::piped());
    let sock_file = base.with_extension("sock");
    assert!(
        wait_for(&sock_file, Duration::from_secs(60)),
        "the target never reported its socket"
    );
    let sock = std::fs::read_to_string(&sock_file).unwrap();
    // The socket's directory: private to the collector's user.
    let sock_dir = Path::new(&sock).parent().expect("socket dir");
    let mode = std::fs::metadata(sock_dir)
        .expect("socket dir")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "socket dir {} mode {mode:o}",
        sock_dir.display()
    );

    // Outside the tree, the same user.
    let same = Command::new(&py)
        .arg(&attacker)
        .arg(&sock)
        .arg(victim_pid.to_string())
        .output()
        .expect("attacker");
    // Outside the tree, uid 65534 (the system python: pyenv's is under /root).
    let nobody = as_nobody(Path::new("/usr/bin/python3"))
        .arg(&attacker)
        .arg(&sock)
        .arg(victim_pid.to_string())
        .output()
        .expect("attacker as 65534");
    std::fs::write(base.with_extension("done"), "1").unwrap();
    let out = hw.wait_with_output().expect("hwprof");
    let _ = victim.kill();
    let _ = victim.wait();
    ok(&out);
    let intree = std::fs::read_to_string(base.with_extension("intree")).unwrap_or_default();
    let same = String::from_utf8_lossy(&same.stdout).into_owned();
    let nobody = String::from_utf8_lossy(&nobody.stdout).into_owned();
    eprintln!("in tree:\n{intree}\nsame user:\n{same}\nuid 65534:\n{nobody}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("hwprof stderr:\n{stderr}");

    // Outsiders, same user: accepted by the kernel, closed by the collector unanswered.
    let same = lines(&same);
    assert_eq!(same.len(), 5, "{same:?}");
    for (name, what) in &same {
        assert!(
            what == "reply:0" || what.starts_with("error:"),
            "same-user outsider {name} got {what}"
        );
    }
    // uid 65534 cannot even reach the socket (0700 directory).
    let nobody = lines(&nobody);
    assert_eq!(nobody.len(), 5, "{nobody:?}");
    for (name, what) in &nobody {
        assert_eq!(what, "connect-failed:13", "uid 65534 {name}");
    }
    // In the tree: a hello or events naming another process end the connection; its
    // own hello is answered (it is one of the target's processes).
    let intree: std::collections::HashMap<_, _> = lines(&intree).into_iter().collect();
    assert_eq!(
        intree.get("hello-victim").map(String::as_str),
        Some("reply:0")
    );
    assert_eq!(
        intree.get("events-victim").map(String::as_str),
        Some("reply:0")
    );
    assert!(
        intree
            .get("hello-self")
            .is_some_and(|r| r.starts_with("reply:") && r != "reply:0"),
        "in-tree hello-self: {intree:?}"
    );

    // Nothing about the victim was read or written.
    let raw = first_raw_dir(&dir);
    assert!(
        !raw.join(format!("python-{victim_pid}.bin")).exists(),
        "a capture file for the foreign process"
    );
    let codes = std::fs::read_to_string(raw.join("python-codes.jsonl")).unwrap_or_default();
    assert!(
        !codes.contains(&format!("\"pid\":{victim_pid},")),
        "python-codes.jsonl names the foreign process"
    );

    // The real agent's captures: the designed 3:1 split.
    let rows = hotspots(&dir, &["--frames", "python"]);
    // More than 60% of the samples: else Python frames are missing.
    let share = split_pct(&rows, ("three", "one"), |h| h.self_pct, 60.0, "captures");
    assert!(
        (69.0..=81.0).contains(&share),
        "three's share {share:.1}% not 75±6"
    );
}
