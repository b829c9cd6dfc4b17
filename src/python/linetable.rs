//! Line numbers from CPython line tables, per format:
//! - 3.8, 3.9: `co_lnotab`, pairs (bytecode increment u8, line increment i8);
//! - 3.10: `co_linetable`, pairs (byte length u8, line delta i8, -128 = no line);
//! - 3.11+: `co_linetable` location table (entries of 1-8 code units with a
//!   short/one-line/no-column/long/none form and varint-coded deltas).
//!
//! `offset` is always a byte offset into the bytecode. Every decoder is bounded by the
//! table length and never panics on corrupt input.

/// Which encoding a table uses (by interpreter minor version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// 3.8, 3.9.
    Lnotab,
    /// 3.10.
    Linetable310,
    /// 3.11 and later.
    Locations,
}

impl TableKind {
    /// The encoding of CPython 3.`minor`.
    pub fn for_minor(minor: u32) -> TableKind {
        match minor {
            0..=9 => TableKind::Lnotab,
            10 => TableKind::Linetable310,
            _ => TableKind::Locations,
        }
    }
}

/// The source line of the instruction at byte `offset`, None when the table says the
/// instruction has no line (or is out of the table).
pub fn line_for_offset(
    kind: TableKind,
    table: &[u8],
    firstlineno: i64,
    offset: u32,
) -> Option<u32> {
    let line = match kind {
        TableKind::Lnotab => lnotab(table, firstlineno, offset),
        TableKind::Linetable310 => linetable310(table, firstlineno, offset),
        TableKind::Locations => locations(table, firstlineno, offset),
    }?;
    u32::try_from(line).ok().filter(|&l| l > 0)
}

fn lnotab(t: &[u8], first: i64, offset: u32) -> Option<i64> {
    let mut line = first;
    let mut addr: u64 = 0;
    for pair in t.chunks_exact(2) {
        addr += pair[0] as u64;
        if addr > offset as u64 {
            break;
        }
        line = line.saturating_add(pair[1] as i8 as i64);
    }
    Some(line)
}

fn linetable310(t: &[u8], first: i64, offset: u32) -> Option<i64> {
    let mut line = first;
    let mut end: u64 = 0;
    for pair in t.chunks_exact(2) {
        let start = end;
        end = start.saturating_add(pair[0] as u64);
        let ld = pair[1] as i8;
        let this = if ld == -128 {
            None
        } else {
            line = line.saturating_add(ld as i64);
            Some(line)
        };
        if (start..end).contains(&(offset as u64)) {
            return this;
        }
    }
    None
}

struct Reader<'a> {
    t: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.t.get(self.i)?;
        self.i += 1;
        Some(b)
    }
    fn varint(&mut self) -> Option<u64> {
        let mut b = self.byte()?;
        let mut v = (b & 63) as u64;
        let mut shift = 6;
        while b & 64 != 0 {
            b = self.byte()?;
            if shift > 56 {
                return None;
            }
            v |= ((b & 63) as u64) << shift;
            shift += 6;
        }
        Some(v)
    }
    fn svarint(&mut self) -> Option<i64> {
        let u = self.varint()?;
        Some(if u & 1 != 0 {
            -((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }
}

fn locations(t: &[u8], first: i64, offset: u32) -> Option<i64> {
    let unit = (offset / 2) as u64;
    let mut r = Reader { t, i: 0 };
    let mut line = first;
    let mut addr: u64 = 0;
    while let Some(b) = r.byte() {
        if b & 0x80 == 0 {
            return None; // not at an entry start: corrupt
        }
        let code = (b >> 3) & 15;
        let len = (b & 7) as u64 + 1;
        let this = match code {
            15 => None,
            14 => {
                line = line.saturating_add(r.svarint()?);
                r.varint()?;
                r.varint()?;
                r.varint()?;
                Some(line)
            }
            13 => {
                line = line.saturating_add(r.svarint()?);
                Some(line)
            }
            10..=12 => {
                line = line.saturating_add((code - 10) as i64);
                r.byte()?;
                r.byte()?;
                Some(line)
            }
            _ => {
                r.byte()?;
                Some(line)
            }
        };
        if (addr..addr.saturating_add(len)).contains(&unit) {
            return this;
        }
        addr = addr.saturating_add(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per pyenv interpreter: compile a snippet, dump its code objects' tables and the
    /// interpreter's own answer (co_lines on 3.10+, dis.findlinestarts before), and
    /// compare at every instruction offset.
    const DUMP: &str = r#"
import sys, dis
src = '''
def f(a, b):
    x = a + b
    if x > 3:
        y = [i * 2
             for i in range(x)]
    else:
        y = None

    return (x,
            y)

class C:
    def m(self):
        try:
            return 1 / 0
        except ZeroDivisionError:
            pass
        while True:
            break
        return [k for k in range(3)]
'''
top = compile(src, 'snip.py', 'exec')
def walk(c):
    yield c
    for k in c.co_consts:
        if hasattr(k, 'co_code'):
            yield from walk(k)
for c in walk(top):
    v = sys.version_info
    tab = c.co_linetable if v >= (3, 10) else c.co_lnotab
    n = len(c.co_code)
    exp = {}
    if v >= (3, 10):
        for s, e, l in c.co_lines():
            for o in range(s, e, 2):
                exp[o] = l
    else:
        starts = list(dis.findlinestarts(c))
        for o in range(0, n, 2):
            l = None
            for so, sl in starts:
                if so <= o:
                    l = sl
            exp[o] = l
    pairs = ' '.join('%d:%s' % (o, exp.get(o)) for o in range(0, n, 2))
    print(c.co_firstlineno, tab.hex(), pairs)
"#;

    #[test]
    fn line_tables_match_each_interpreter() {
        let home = std::env::var("HOME").unwrap_or_default();
        let mut tested = 0;
        for ver in ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"] {
            let py = format!("{home}/.pyenv/versions/{ver}/bin/python3");
            let Ok(out) = std::process::Command::new(&py).arg("-c").arg(DUMP).output() else {
                eprintln!("skip: {py} missing");
                continue;
            };
            assert!(
                out.status.success(),
                "{ver}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let minor: u32 = ver
                .split('.')
                .nth(1)
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let kind = TableKind::for_minor(minor);
            let text = String::from_utf8_lossy(&out.stdout);
            let mut checked = 0;
            for l in text.lines() {
                let mut it = l.split(' ');
                let first: i64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                let tab: Vec<u8> = {
                    let h = it.next().unwrap_or("");
                    (0..h.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                        .collect()
                };
                for p in it {
                    let Some((o, e)) = p.split_once(':') else {
                        continue;
                    };
                    let o: u32 = o.parse().unwrap_or(0);
                    let expect: Option<u32> = e.parse().ok().filter(|&l: &u32| l > 0);
                    let got = line_for_offset(kind, &tab, first, o);
                    // Before 3.10, findlinestarts-based lines include the first line for
                    // offset 0; "None" means the interpreter gives no line.
                    assert_eq!(got, expect, "{ver}: offset {o} in code at line {first}");
                    checked += 1;
                }
            }
            assert!(checked > 50, "{ver}: only {checked} offsets checked");
            tested += 1;
        }
        assert!(tested >= 1, "no pyenv interpreter found");
    }

    #[test]
    fn corrupt_tables_do_not_panic() {
        let junk: Vec<u8> = (0..200u32).map(|i| (i * 37 % 256) as u8).collect();
        for k in [
            TableKind::Lnotab,
            TableKind::Linetable310,
            TableKind::Locations,
        ] {
            for o in (0..500).step_by(2) {
                let _ = line_for_offset(k, &junk, 1, o);
                let _ = line_for_offset(k, &junk[..3], i64::MAX - 1, o);
            }
        }
    }
}
