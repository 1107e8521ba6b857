//! Where `ld.so` looks: rpath and runpath lists with `$ORIGIN`, `$LIB` and `$PLATFORM`
//! expanded, the multiarch and default directories for a machine, and `ld.so.conf`
//! directives. Pure functions over paths and bytes; no file is read here.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use object::elf;

use regbuild_paths::glob::{Dialect, Glob};

use crate::elf_read::Arch;
use crate::{rooted, MAX_DIRS, MAX_DST_RESULTS};

/// `line` without `keyword` and the blank after it, if it starts so.
pub(crate) fn directive<'l>(line: &'l [u8], keyword: &[u8]) -> Option<&'l [u8]> {
    let rest = line.strip_prefix(keyword)?;
    match rest.first() {
        Some(b' ' | b'\t') => Some(&rest[1..]),
        _ => None,
    }
}

/// Expands a colon-separated rpath or runpath; `None` if it is too long.
pub(crate) fn search_path(
    list: Option<&[u8]>,
    origin: &Path,
    arch: Arch,
    flags: u32,
) -> Option<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for element in list.unwrap_or_default().split(|&b| b == b':') {
        for dir in expand_dst(element, origin, arch, flags) {
            // ld.so ignores empty elements.
            if !dir.is_empty() {
                dirs.push(rooted(&dir));
            }
        }
        if dirs.len() > MAX_DIRS {
            return None;
        }
    }
    Some(dirs)
}

#[derive(Clone, Copy)]
pub(crate) enum Dst {
    Origin,
    Lib,
    Platform,
}

/// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form) the way
/// `ld.so` does. Gives several strings when `$LIB` is ambiguous, none when
/// `$PLATFORM` is unknown for `arch`.
pub(crate) fn expand_dst(s: &[u8], origin: &Path, arch: Arch, flags: u32) -> Vec<Vec<u8>> {
    let mut results = vec![Vec::new()];
    let mut i = 0;
    while i < s.len() {
        let token = if s[i] == b'$' {
            dst_token(&s[i + 1..])
        } else {
            None
        };
        let Some((dst, len)) = token else {
            results.iter_mut().for_each(|r| r.push(s[i]));
            i += 1;
            continue;
        };
        i += 1 + len;
        let choices: Vec<Vec<u8>> = match dst {
            Dst::Origin => vec![origin.as_os_str().as_bytes().to_vec()],
            Dst::Platform => match platform(arch) {
                Some(p) => vec![p.as_bytes().to_vec()],
                None => return Vec::new(),
            },
            Dst::Lib => lib_names(arch, flags)
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        };
        // Past the cap only the first choice is kept: enough for any real
        // path, bounded for a hostile one.
        let take = if results.len() * choices.len() > MAX_DST_RESULTS {
            1
        } else {
            choices.len()
        };
        results = results
            .iter()
            .flat_map(|r| {
                choices.iter().take(take).map(move |c| {
                    let mut r = r.clone();
                    r.extend_from_slice(c);
                    r
                })
            })
            .collect();
    }
    results
}

/// The token after a `$`, and its length, if it is one `ld.so` knows. The
/// bare form must not run on into a longer name (`$ORIGINAL` is no token).
pub(crate) fn dst_token(s: &[u8]) -> Option<(Dst, usize)> {
    const TOKENS: [(&[u8], Dst); 3] = [
        (b"ORIGIN", Dst::Origin),
        (b"PLATFORM", Dst::Platform),
        (b"LIB", Dst::Lib),
    ];
    for (name, dst) in TOKENS {
        if let Some(rest) = s.strip_prefix(b"{".as_slice()) {
            if rest
                .strip_prefix(name)
                .is_some_and(|r| r.first() == Some(&b'}'))
            {
                return Some((dst, name.len() + 2));
            }
        } else if let Some(rest) = s.strip_prefix(name) {
            if !rest
                .first()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                return Some((dst, name.len()));
            }
        }
    }
    None
}

/// What `$PLATFORM` (the kernel's `AT_PLATFORM`) is for `arch`, where fixed.
pub(crate) fn platform(arch: Arch) -> Option<&'static str> {
    match arch.machine {
        elf::EM_X86_64 => Some("x86_64"),
        elf::EM_386 => Some("i686"),
        elf::EM_AARCH64 if arch.big_endian => Some("aarch64_be"),
        elf::EM_AARCH64 => Some("aarch64"),
        _ => None,
    }
}

/// The candidates for `$LIB`, most common layout first.
pub(crate) fn lib_names(arch: Arch, flags: u32) -> Vec<String> {
    let mut names = Vec::new();
    if arch.class64 {
        names.push("lib64".to_owned());
    }
    names.extend(multiarch(arch, flags).iter().map(|t| format!("lib/{t}")));
    names.push("lib".to_owned());
    names
}

/// Debian multiarch tuples for `arch`, the likeliest first.
pub(crate) fn multiarch(arch: Arch, flags: u32) -> &'static [&'static str] {
    let Arch {
        class64,
        big_endian: be,
        machine,
    } = arch;
    match machine {
        elf::EM_X86_64 if class64 => &["x86_64-linux-gnu"],
        elf::EM_X86_64 => &["x86_64-linux-gnux32"],
        elf::EM_386 => &["i386-linux-gnu"],
        elf::EM_AARCH64 if be => &["aarch64_be-linux-gnu"],
        elf::EM_AARCH64 => &["aarch64-linux-gnu"],
        elf::EM_ARM if flags & elf::EF_ARM_ABI_FLOAT_HARD != 0 => {
            &["arm-linux-gnueabihf", "arm-linux-gnueabi"]
        }
        elf::EM_ARM => &["arm-linux-gnueabi", "arm-linux-gnueabihf"],
        elf::EM_RISCV if class64 => &["riscv64-linux-gnu"],
        elf::EM_PPC64 if be => &["powerpc64-linux-gnu"],
        elf::EM_PPC64 => &["powerpc64le-linux-gnu"],
        elf::EM_PPC => &["powerpc-linux-gnu"],
        elf::EM_S390 if class64 => &["s390x-linux-gnu"],
        elf::EM_MIPS => match (class64, be) {
            (true, true) => &["mips64-linux-gnuabi64"],
            (true, false) => &["mips64el-linux-gnuabi64"],
            (false, true) => &["mips-linux-gnu"],
            (false, false) => &["mipsel-linux-gnu"],
        },
        elf::EM_LOONGARCH if class64 => &["loongarch64-linux-gnu"],
        elf::EM_SPARCV9 => &["sparc64-linux-gnu"],
        elf::EM_ALPHA => &["alpha-linux-gnu"],
        elf::EM_PARISC => &["hppa-linux-gnu"],
        elf::EM_68K => &["m68k-linux-gnu"],
        elf::EM_SH => &["sh4-linux-gnu"],
        _ => &[],
    }
}

/// The trusted directories `ld.so` searches last.
pub(crate) fn default_dirs(arch: Arch, flags: u32) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for tuple in multiarch(arch, flags) {
        dirs.push(Path::new("/lib").join(tuple));
        dirs.push(Path::new("/usr/lib").join(tuple));
    }
    if arch.class64 {
        dirs.extend(["/lib64", "/usr/lib64"].map(PathBuf::from));
    }
    dirs.extend(["/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

/// fnmatch(3) without flags but for the leading-dot rule (left to the
/// caller): `*`, `?`, `[...]` with `!`/`^` negation and ranges, `\` escapes
/// ([`regbuild_paths::glob`]'s [`Dialect::Fnmatch`]).
pub(crate) fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    // fnmatch patterns are never refused: a malformed `[` or `\` is an ordinary character.
    Glob::from_bytes(pattern, Dialect::Fnmatch).is_ok_and(|glob| glob.matches_bytes(name))
}
