//! Names for the procedure linkage table's stubs, as perf and objdump give them
//! (`free@plt`; `*ABS*+0xa0c30@plt` for a stub bound by an `IRELATIVE` relocation, as
//! libc's calls to its own string functions are). The PLT has no symbols and one FDE
//! for the whole section, so its samples were one `func@0x<.plt>` row of the module,
//! which reads as some function of it.
//!
//! By hand: object reads the relocations, but no crate maps stubs to them. x86-64
//! only (the stub layout is the architecture's): `.plt` starts with the resolver's
//! 16-byte stub and then one 16-byte stub per `.rela.plt` entry, in its order; with
//! IBT, `.plt.sec` holds the stubs calls go through, one per entry from its start.

use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader};
use object::{Object, ObjectSection};

/// Bytes per stub.
const STUB: u64 = 16;

/// Beyond this many relocations the table is not read (a large C++ binary has a few
/// thousand).
const MAX_ENTRIES: usize = 1 << 20;

/// The PLT sections of one binary and a name per stub.
#[derive(Debug, Default)]
pub struct PltNames {
    /// (first address, end, stubs before the first `.rela.plt` entry's).
    sections: Vec<(u64, u64, u64)>,
    /// One per `.rela.plt` entry, in order: the symbol's raw name (demangled when a
    /// sample needs it: a C++ program has thousands), else the relocation's addend.
    targets: Vec<Result<String, i64>>,
}

impl PltNames {
    /// The PLT of `object`, when it is an x86-64 ELF file with a `.rela.plt` (none in a
    /// separate debug file: its sections have no contents).
    pub fn of(object: &object::File<'_>) -> Option<PltNames> {
        let object::File::Elf64(file) = object else {
            return None;
        };
        let endian = file.endian();
        if file.elf_header().e_machine(endian) != elf::EM_X86_64 {
            return None;
        }
        let table = file.elf_section_table();
        let (_, rela_section) = table.section_by_name(endian, b".rela.plt")?;
        let (relas, link) = rela_section.rela(endian, file.data()).ok()??;
        if relas.is_empty() || relas.len() > MAX_ENTRIES {
            return None;
        }
        let symbols = table.symbol_table_by_index(endian, file.data(), link).ok();
        let targets = relas
            .iter()
            .map(|r| {
                let index = r.r_sym(endian, false);
                symbols
                    .as_ref()
                    .filter(|_| index != 0)
                    .and_then(|s| s.symbol(object::SymbolIndex(index as usize)).ok())
                    .and_then(|sym| symbols.as_ref()?.symbol_name(endian, sym).ok())
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .ok_or(r.r_addend(endian))
            })
            .collect();
        let mut sections = Vec::new();
        for (name, before) in [(".plt", 1), (".plt.sec", 0)] {
            if let Some(s) = object.section_by_name(name)
                && let Some(end) = s.address().checked_add(s.size())
            {
                sections.push((s.address(), end, before));
            }
        }
        Some(PltNames { sections, targets })
    }

    /// The name of the stub holding `address` (a stated virtual address of the file),
    /// when it is in the PLT: `[plt]` for the lazy-binding resolver's own stub.
    pub fn name(&self, address: u64) -> Option<String> {
        let &(start, _, before) = self
            .sections
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&address))?;
        let stub = (address - start) / STUB;
        if stub < before {
            return Some("[plt]".into());
        }
        let entry = usize::try_from(stub - before).ok()?;
        Some(match self.targets.get(entry)? {
            Ok(symbol) => format!("{}@plt", super::symbols::demangle(symbol)),
            Err(addend) => format!("*ABS*+{addend:#x}@plt"),
        })
    }
}
