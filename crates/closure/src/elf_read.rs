//! Reading what loading depends on from an ELF file: its class, byte order and machine, and
//! its dynamic section (`PT_INTERP`, `DT_NEEDED`, `DT_RPATH`/`DT_RUNPATH`, `DT_SONAME`,
//! `DF_1_NODEFLIB`), with every size bounded. Not for deciding where a library is found.

use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::read::{ReadCache, ReadRef};
use object::Endianness;

use crate::{ElfProblem, MAX_DYNAMIC_SIZE, MAX_INTERP_SIZE, MAX_NEEDED, MAX_STRING_SIZE};

/// What makes a library usable by an object: `ld.so` refuses any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arch {
    pub(crate) class64: bool,
    pub(crate) big_endian: bool,
    pub(crate) machine: elf::Machine,
}

/// The parts of an ELF file that loading depends on.
pub(crate) struct ElfInfo {
    pub(crate) arch: Arch,
    /// `e_flags`: only used to order the ARM hard/soft-float multiarch dirs.
    pub(crate) flags: u32,
    /// Kept as an error until the file is really loaded: a broken file that
    /// does not qualify anyway is merely skipped.
    pub(crate) dynamic: Result<Rc<Dynamic>, ElfProblem>,
}

#[derive(Debug, Default)]
pub(crate) struct Dynamic {
    pub(crate) interp: Option<Vec<u8>>,
    pub(crate) needed: Vec<Vec<u8>>,
    /// `None` when the object has a `DT_RUNPATH` (glibc drops it then).
    pub(crate) rpath: Option<Vec<u8>>,
    pub(crate) runpath: Option<Vec<u8>>,
    pub(crate) soname: Option<Vec<u8>>,
    pub(crate) nodeflib: bool,
}

/// Reads the ELF header and dynamic information of the file at `host`,
/// touching only the parts needed. `None` if it is not an ELF file.
pub(crate) fn read_elf(host: &Path) -> io::Result<Option<ElfInfo>> {
    let cache = ReadCache::new(File::open(host)?);
    let data = &cache;
    let Ok(ident) = data.read_bytes_at(0, 16) else {
        return Ok(None);
    };
    if !ident.starts_with(&elf::ELFMAG) {
        return Ok(None);
    }
    Ok(match ident.get(4) {
        Some(&c) if c == elf::ELFCLASS32.0 => parse_elf::<elf::FileHeader32<Endianness>, _>(data),
        Some(&c) if c == elf::ELFCLASS64.0 => parse_elf::<elf::FileHeader64<Endianness>, _>(data),
        _ => None,
    })
}

pub(crate) fn parse_elf<'data, H, R>(data: R) -> Option<ElfInfo>
where
    H: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let arch = Arch {
        class64: header.is_class_64(),
        big_endian: header.is_big_endian(),
        machine: header.e_machine(endian),
    };
    Some(ElfInfo {
        arch,
        flags: header.e_flags(endian).0,
        dynamic: parse_dynamic(header, endian, data).map(Rc::new),
    })
}

/// Reads `PT_INTERP` and the `PT_DYNAMIC` entries loading depends on, through
/// the program headers as `ld.so` does (section headers may be stripped).
pub(crate) fn parse_dynamic<'data, H, R>(
    header: &H,
    endian: Endianness,
    data: R,
) -> Result<Dynamic, ElfProblem>
where
    H: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let mut out = Dynamic::default();
    let mut dynamic: &[H::Dyn] = &[];
    // PT_LOAD segments as (address, file offset, file size).
    let mut loads: Vec<(u64, u64, u64)> = Vec::new();
    let headers = header
        .program_headers(endian, data)
        .map_err(ElfProblem::Read)?;
    for ph in headers {
        let kind = ph.p_type(endian);
        let size: u64 = ph.p_filesz(endian).into();
        if kind == elf::PT_INTERP {
            if size > MAX_INTERP_SIZE {
                return Err(ElfProblem::InterpTooLarge { size });
            }
            out.interp = ph
                .interpreter(endian, data)
                .map_err(ElfProblem::Read)?
                .map(<[u8]>::to_vec);
        } else if kind == elf::PT_DYNAMIC {
            if size > MAX_DYNAMIC_SIZE {
                return Err(ElfProblem::DynamicTooLarge { size });
            }
            dynamic = ph
                .dynamic(endian, data)
                .map_err(ElfProblem::Read)?
                .unwrap_or_default();
        } else if kind == elf::PT_LOAD {
            loads.push((ph.p_vaddr(endian).into(), ph.p_offset(endian).into(), size));
        }
    }

    let (mut strtab, mut strsz) = (None, None);
    let mut strings = Vec::new();
    for entry in dynamic {
        let tag = entry.tag(endian);
        let value = entry.val(endian);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_STRTAB {
            strtab = Some(value);
        } else if tag == elf::DT_STRSZ {
            strsz = Some(value);
        } else if tag == elf::DT_FLAGS_1 {
            out.nodeflib = value & elf::DF_1_NODEFLIB.0 != 0;
        } else if [
            elf::DT_NEEDED,
            elf::DT_RPATH,
            elf::DT_RUNPATH,
            elf::DT_SONAME,
        ]
        .contains(&tag)
        {
            strings.push((tag, value));
            if strings.len() > MAX_NEEDED + 3 {
                return Err(ElfProblem::TooManyNeeded);
            }
        }
    }
    if strings.is_empty() {
        return Ok(out);
    }

    let strtab = strtab.ok_or(ElfProblem::NoStringTable)?;
    let start = loads
        .iter()
        .find_map(|&(address, offset, size)| {
            let delta = strtab.checked_sub(address)?;
            (delta < size).then(|| offset.checked_add(delta)).flatten()
        })
        .ok_or(ElfProblem::StringTableNotLoaded)?;
    let len = data.len().map_err(|()| ElfProblem::NoFileSize)?;
    let end = strsz
        .and_then(|size| start.checked_add(size))
        .map_or(len, |end| end.min(len));
    for (tag, value) in strings {
        let string =
            dynamic_string(data, start, end, value).ok_or(ElfProblem::BadString { tag: tag.0 })?;
        if tag == elf::DT_NEEDED {
            out.needed.push(string);
        } else if tag == elf::DT_RPATH {
            out.rpath = Some(string);
        } else if tag == elf::DT_RUNPATH {
            out.runpath = Some(string);
        } else {
            out.soname = Some(string);
        }
    }
    if out.runpath.is_some() {
        out.rpath = None;
    }
    Ok(out)
}

/// The NUL-terminated string at `offset` in the string table that spans
/// `start..end` of the file.
pub(crate) fn dynamic_string<'data, R: ReadRef<'data>>(
    data: R,
    start: u64,
    end: u64,
    offset: u64,
) -> Option<Vec<u8>> {
    let at = start.checked_add(offset).filter(|&at| at < end)?;
    let available = (end - at).min(MAX_STRING_SIZE);
    // Strings are short and tables can be megabytes: read growing windows.
    let mut window = 256;
    loop {
        let size = window.min(available);
        let bytes = data.read_bytes_at(at, size).ok()?;
        if let Some(len) = bytes.iter().position(|&b| b == 0) {
            return Some(bytes[..len].to_vec());
        }
        if size == available {
            return None;
        }
        window *= 4;
    }
}
