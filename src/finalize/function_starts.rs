//! Where the function holding an address starts, from the binary's unwind tables, for
//! code that has no symbol: a stripped binary keeps `.eh_frame` (it needs it to unwind),
//! and each of its FDEs covers one function. Debian's `/usr/bin/python3.11` has no
//! symbol table; without this, every sampled address of a static function was a row of
//! its own (`python3.11+0x5a85da`, `python3.11+0x5a85ed`, ...), and no row had the
//! function's share. Named `func@0xSTART` as VTune names them.
//!
//! Only through `.eh_frame_hdr`'s sorted table (a binary search, then one FDE parsed);
//! a binary without one (rare: every linker writes it by default) keeps `module+0xaddr`.

use addr2line::gimli;
use addr2line::gimli::UnwindSection;
use object::{Object, ObjectSection};

type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// A binary's `.eh_frame_hdr` and `.eh_frame`, at their addresses.
pub struct FunctionStarts<'a> {
    bases: gimli::BaseAddresses,
    hdr: gimli::ParsedEhFrameHdr<Reader<'a>>,
    frames: gimli::EhFrame<Reader<'a>>,
}

impl<'a> FunctionStarts<'a> {
    /// The unwind tables of `object`, when it has both sections with contents (a
    /// separate debug file has them as `NOBITS`) and the header parses.
    pub fn of(object: &object::File<'a>) -> Option<Self> {
        let endian = if object.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let section = |name: &str| {
            let s = object.section_by_name(name)?;
            let data = s.data().ok().filter(|d| !d.is_empty())?;
            Some((s.address(), data))
        };
        let (hdr_addr, hdr_data) = section(".eh_frame_hdr")?;
        let (frames_addr, frames_data) = section(".eh_frame")?;
        let mut bases = gimli::BaseAddresses::default()
            .set_eh_frame_hdr(hdr_addr)
            .set_eh_frame(frames_addr);
        if let Some(text) = object.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        let address_size = if object.is_64() { 8 } else { 4 };
        let hdr = gimli::EhFrameHdr::new(hdr_data, endian)
            .parse(&bases, address_size)
            .ok()?;
        hdr.table()?;
        let mut frames = gimli::EhFrame::new(frames_data, endian);
        frames.set_address_size(address_size);
        Some(FunctionStarts { bases, hdr, frames })
    }

    /// The first address of the function whose FDE covers `address` (a stated virtual
    /// address of the file), when one does.
    pub fn containing(&self, address: u64) -> Option<u64> {
        self.fde(address).map(|fde| fde.initial_address())
    }

    /// The name of the function without a symbol whose FDE covers `address`: the
    /// signal trampoline (its CIE's `S` augmentation: glibc's and musl's
    /// `__restore_rt`, local symbols a stripped libc does not keep) by its name,
    /// any other `func@0xSTART`.
    pub fn name(&self, address: u64) -> Option<String> {
        let fde = self.fde(address)?;
        Some(if fde.cie().is_signal_trampoline() {
            SIGNAL_TRAMPOLINE.to_string()
        } else {
            unnamed(fde.initial_address())
        })
    }

    fn fde(&self, address: u64) -> Option<gimli::FrameDescriptionEntry<Reader<'a>>> {
        let table = self.hdr.table()?;
        table
            .fde_for_address(
                &self.frames,
                &self.bases,
                address,
                gimli::EhFrame::cie_from_offset,
            )
            .ok()
    }
}

/// The name of the kernel's return path from a signal handler, the frame between a
/// handler and the code the signal interrupted (as perf names it).
pub const SIGNAL_TRAMPOLINE: &str = "__restore_rt";

/// The name of an unnamed function that starts at `start`.
pub fn unnamed(start: u64) -> String {
    format!("func@{start:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_of_this_test_binary_start_where_their_symbols_do() {
        // This test binary has both a symbol table and unwind tables: every function
        // symbol with a size that an FDE covers starts where the FDE says.
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(exe).unwrap();
        let object = object::File::parse(&*data).unwrap();
        let starts = FunctionStarts::of(&object).expect("unwind tables");
        let mut checked = 0;
        use object::{ObjectSymbol, SymbolKind};
        for sym in object.symbols() {
            if sym.kind() != SymbolKind::Text || sym.size() < 16 {
                continue;
            }
            if let Some(start) = starts.containing(sym.address() + sym.size() / 2) {
                assert_eq!(start, sym.address(), "{:?}", sym.name());
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} functions checked");
        assert_eq!(unnamed(0x5a8500), "func@0x5a8500");
    }

    #[test]
    fn scrambled_unwind_tables_never_panic() {
        // Hostile input: the same binary with its `.eh_frame` overwritten by noise.
        let exe = std::env::current_exe().unwrap();
        let mut data = std::fs::read(exe).unwrap();
        let (range, text) = {
            let object = object::File::parse(&*data).unwrap();
            let frames = object.section_by_name(".eh_frame").unwrap();
            let text = object.section_by_name(".text").unwrap();
            (frames.file_range().unwrap(), (text.address(), text.size()))
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in &mut data[range.0 as usize..(range.0 + range.1) as usize] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let object = object::File::parse(&*data).unwrap();
        let starts = FunctionStarts::of(&object).expect("the header is intact");
        let found = (0..10_000u64)
            .filter_map(|i| starts.containing(text.0 + i * (text.1 / 10_000)))
            .count();
        assert!(found < 10_000);
        assert_eq!(starts.containing(0), None);
        assert_eq!(starts.containing(u64::MAX), None);
    }
}
