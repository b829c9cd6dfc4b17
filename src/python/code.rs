//! Reading code objects (and the few other objects a name needs) from another process,
//! with bounded reads, and caching them by address with revalidation.

use std::collections::HashMap;

use super::layouts::{Layout, NONE};
use super::memory::{ProcessMemory, ReadError};
use super::wire::{code_token, unicode_hash_offset};

/// Longest string read (characters).
const MAX_STR: usize = 4096;
/// Longest line table read (bytes).
const MAX_TABLE: usize = 1 << 20;

/// What a code object says about its function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_name`.
    pub name: String,
    /// `co_qualname` (3.11+); before 3.11 `co_name` (see [`CodeInfo::self_first`]).
    pub qualname: String,
    /// `co_filename`.
    pub filename: String,
    /// `co_firstlineno`.
    pub firstlineno: i64,
    /// Raw line table (`co_lnotab` / `co_linetable`).
    pub linetable: Vec<u8>,
    /// The first parameter is called `self` (<3.11: the qualname is then built from the
    /// captured type of the first local).
    pub self_first: bool,
    /// Token (see `wire::code_token`) of the object read.
    pub token: u64,
}

fn field(addr: u64, off: u64) -> Result<u64, ReadError> {
    if off == NONE {
        return Err(ReadError { addr, len: 0 });
    }
    Ok(addr.wrapping_add(off))
}

/// Reads a `str` object (compact forms: ASCII, latin-1, UCS-2, UCS-4).
pub fn read_unicode(m: &dyn ProcessMemory, l: &Layout, addr: u64) -> Result<String, ReadError> {
    let err = ReadError { addr, len: 0 };
    let len = m.read_u64(field(addr, l.unicode_length)?)? as usize;
    let mut st = [0u8; 4];
    m.read(field(addr, l.unicode_state)?, &mut st)?;
    let state = u32::from_le_bytes(st);
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    if !compact || len > MAX_STR || !matches!(kind, 1 | 2 | 4) {
        return Err(err);
    }
    let data = addr.wrapping_add(if ascii {
        l.unicode_ascii_size
    } else {
        l.unicode_compact_size
    });
    let raw = m.read_vec(data, len * kind as usize, MAX_STR * 4)?;
    decode_unicode(kind as u8, &raw).ok_or(err)
}

/// The text of a compact `str` object's data: `kind` bytes per character (1: latin-1 or
/// ASCII, 2: UCS-2, 4: UCS-4); None for another kind.
pub fn decode_unicode(kind: u8, raw: &[u8]) -> Option<String> {
    Some(match kind {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => {
            let u: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&u)
        }
        4 => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => return None,
    })
}

/// Reads a `bytes` object's contents.
pub fn read_bytes(m: &dyn ProcessMemory, l: &Layout, addr: u64) -> Result<Vec<u8>, ReadError> {
    let n = m.read_u64(field(addr, l.bytes_size)?)? as usize;
    m.read_vec(field(addr, l.bytes_data)?, n, MAX_TABLE)
}

/// `tp_name` of a type object.
pub fn read_type_name(m: &dyn ProcessMemory, l: &Layout, ty: u64) -> Result<String, ReadError> {
    let p = m.read_u64(field(ty, l.type_name)?)?;
    m.read_cstr(p, 256)
}

/// Reads a code object, checking that its type is `code`.
pub fn read_code(m: &dyn ProcessMemory, l: &Layout, addr: u64) -> Result<CodeInfo, ReadError> {
    let err = ReadError { addr, len: 0 };
    let ty = m.read_u64(field(addr, l.object_type)?)?;
    if read_type_name(m, l, ty)? != "code" {
        return Err(err);
    }
    let name_p = m.read_u64(field(addr, l.code_name)?)?;
    let file_p = m.read_u64(field(addr, l.code_filename)?)?;
    let name = read_unicode(m, l, name_p)?;
    let filename = read_unicode(m, l, file_p)?;
    let qualname = if l.code_qualname != NONE {
        read_unicode(m, l, m.read_u64(field(addr, l.code_qualname)?)?)?
    } else {
        name.clone()
    };
    let firstlineno = m.read_i32(field(addr, l.code_firstlineno)?)? as i64;
    let linetable = read_bytes(m, l, m.read_u64(field(addr, l.code_linetable)?)?)?;
    let mut self_first = false;
    if l.class_from_first_arg() && m.read_i32(field(addr, l.code_argcount)?)? >= 1 {
        let names = m.read_u64(field(addr, l.code_varnames)?)?;
        if m.read_u64(field(names, l.tuple_size)?)? >= 1 {
            let first = m.read_u64(field(names, l.tuple_items)?)?;
            self_first = read_unicode(m, l, first).is_ok_and(|s| s == "self");
        }
    }
    Ok(CodeInfo {
        name,
        qualname,
        filename,
        firstlineno,
        linetable,
        self_first,
        token: code_token(
            name_p,
            file_p,
            firstlineno as i32,
            m.read_u64(name_p.wrapping_add(unicode_hash_offset(l.unicode_length)))
                .unwrap_or(0),
        ),
    })
}

/// Code objects of one process, read once each and cached by address. A capture's token
/// must equal the object's token when read: a different token means the address was
/// freed and reused, and the object is read again (the stale capture stays unresolved).
#[derive(Default)]
pub struct CodeCache {
    /// By (address, token): a reused address keeps both objects.
    codes: HashMap<(u64, u64), CodeInfo>,
    types: HashMap<u64, Option<String>>,
    /// Reads that failed (object gone, or not a code object).
    pub failed: u64,
    /// Code objects read from outside (the fallback when the agent sent no identity).
    pub remote_reads: u64,
    /// Code objects named by the agent's identity records.
    pub from_agent: u64,
}

impl CodeCache {
    /// The code at `addr` as captured with `token`, reading it if needed; None when it
    /// cannot be read or is not the object captured. The bool is true when it was read
    /// now (new to the caller).
    pub fn get(
        &mut self,
        m: &dyn ProcessMemory,
        l: &Layout,
        addr: u64,
        token: u64,
    ) -> Option<(&CodeInfo, bool)> {
        let fresh = match self.codes.get(&(addr, token)) {
            Some(_) => false,
            None => {
                match read_code(m, l, addr) {
                    Ok(c) if c.token == token => {
                        self.remote_reads += 1;
                        self.codes.insert((addr, token), c);
                    }
                    _ => {
                        self.failed += 1;
                        return None;
                    }
                }
                true
            }
        };
        self.codes.get(&(addr, token)).map(|c| (c, fresh))
    }

    /// Records a code object the agent named (its identity record): true when it was
    /// not known with this token (new to the caller).
    pub fn insert_identity(&mut self, addr: u64, info: CodeInfo) -> bool {
        let key = (addr, info.token);
        if self.codes.contains_key(&key) {
            return false;
        }
        self.from_agent += 1;
        self.codes.insert(key, info);
        true
    }

    /// `tp_name` of a type, cached; the bool is true when read now.
    pub fn type_name(
        &mut self,
        m: &dyn ProcessMemory,
        l: &Layout,
        ty: u64,
    ) -> (Option<String>, bool) {
        if let Some(n) = self.types.get(&ty) {
            return (n.clone(), false);
        }
        let n = read_type_name(m, l, ty).ok();
        self.types.insert(ty, n.clone());
        (n, true)
    }
}
