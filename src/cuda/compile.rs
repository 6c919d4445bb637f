//! How kernels become GPU code: each kernels/*.cu source (with kernels/common.cuh and mma.cuh as
//! in-memory headers) is embedded in the binary, compiled by NVRTC for the GPU's exact
//! architecture (`sm_XY`, giving a cubin) at first use, and cached on disk under
//! `$REVELIO_CACHE_DIR` (default `$XDG_CACHE_HOME/revelio` or `~/.cache/revelio`) in
//! `kernels/<module>-<arch>-<hash>.cubin`; the hash covers the sources, the options and the
//! NVRTC version, so a change to any of them recompiles. `check_all` is `revelio kernels`.

use super::kernels::{Module, HEADERS};
use super::nvrtc;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// NVRTC options for `arch` (e.g. `sm_90`). `-lineinfo` lets Nsight Compute map SASS to source.
pub fn options(arch: &str, verbose_ptxas: bool) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={arch}"), "--std=c++17".into(), "-lineinfo".into()];
    if verbose_ptxas {
        o.push("-Xptxas=-v".into());
    }
    o
}

/// FNV-1a, 64 bit: a stable content hash for cache keys (not for security).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("REVELIO_CACHE_DIR") {
        return PathBuf::from(d).join("kernels");
    }
    if let Ok(d) = std::env::var("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("revelio/kernels");
    }
    if let Ok(h) = std::env::var("HOME") {
        return PathBuf::from(h).join(".cache/revelio/kernels");
    }
    std::env::temp_dir().join("revelio-kernels")
}

/// The cubin of `module` for `arch`, from the disk cache or freshly compiled (and cached).
pub fn cubin(module: Module, arch: &str) -> Result<Vec<u8>> {
    let ((major, minor), _) = nvrtc::version().map_err(Error::Cuda)?;
    let opts = options(arch, false);
    let version = format!("nvrtc {major}.{minor}");
    let options = opts.join(" ");
    let mut parts: Vec<&[u8]> = vec![version.as_bytes(), options.as_bytes()];
    parts.extend(HEADERS.iter().map(|(_, text)| text.as_bytes()));
    parts.push(module.source().as_bytes());
    let key = fnv1a(&parts);
    let stem = module.file_name().trim_end_matches(".cu");
    let path = cache_dir().join(format!("{stem}-{arch}-{key:016x}.cubin"));
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
    }
    let compiled = nvrtc::compile(module.file_name(), module.source(), &HEADERS, &opts)
        .map_err(|msg| Error::Kernel { module: module.file_name().into(), msg })?;
    // A cache that cannot be written only costs a recompile next time.
    let _ = crate::io::write_atomic(&path, &compiled.cubin);
    Ok(compiled.cubin)
}

/// What ptxas reported for one kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let idx = line.find(unit)?;
    line[..idx].split(|c: char| c == ',' || c == ':').last()?.trim().parse().ok()
}

/// Parses the `-Xptxas=-v` report in an NVRTC program log.
pub fn parse_ptxas_report(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    let mut current: Option<usize> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelResources { name, ..Default::default() });
            current = Some(out.len() - 1);
            continue;
        }
        let Some(i) = current else { continue };
        let k = &mut out[i];
        if line.contains("bytes stack frame") {
            k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            k.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            k.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used ") && line.contains("registers") {
            k.registers = line
                .split("Used ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// One module compiled for one arch, with its report and the problems found.
pub struct ModuleReport {
    pub module: Module,
    pub arch: String,
    pub kernels: Vec<KernelResources>,
    /// Compile errors, spills, stack frames, kernels missing from the source or from the table.
    pub problems: Vec<String>,
}

/// Compiles `module` for `arch` with the ptxas report on, and checks it: no compile error, no
/// register spill, no stack frame (a local array lives in local memory: slow), and the kernels
/// in the source are exactly the ones in the Rust table.
pub fn check_module(module: Module, arch: &str) -> ModuleReport {
    let mut report = ModuleReport { module, arch: arch.to_string(), kernels: Vec::new(), problems: Vec::new() };
    let compiled = match nvrtc::compile(module.file_name(), module.source(), &HEADERS, &options(arch, true)) {
        Ok(c) => c,
        Err(msg) => {
            report.problems.push(format!("does not compile for {arch}:\n{msg}"));
            return report;
        }
    };
    report.kernels = parse_ptxas_report(&compiled.log);
    report.kernels.sort_by(|a, b| a.name.cmp(&b.name));
    for k in &report.kernels {
        if k.spill_stores > 0 || k.spill_loads > 0 {
            report.problems.push(format!(
                "{} spills registers on {arch} ({} bytes stored, {} loaded)",
                k.name, k.spill_stores, k.spill_loads
            ));
        }
        if k.stack_bytes > 0 {
            report.problems.push(format!(
                "{} has a {}-byte stack frame on {arch} (a local array or a run-time indexed register array)",
                k.name, k.stack_bytes
            ));
        }
    }
    let compiled_names: BTreeSet<&str> = report.kernels.iter().map(|k| k.name.as_str()).collect();
    let table_names: BTreeSet<String> = module.kernels().iter().flat_map(|k| k.names()).collect();
    for name in &table_names {
        if !compiled_names.contains(name.as_str()) {
            report.problems.push(format!("{name} is in the Rust kernel table but not in {}", module.file_name()));
        }
    }
    for name in &compiled_names {
        if !table_names.contains(*name) {
            report.problems.push(format!("{name} is in {} but not in the Rust kernel table", module.file_name()));
        }
    }
    report
}

/// `check_module` for every module and arch.
pub fn check_all(archs: &[String]) -> Vec<ModuleReport> {
    let mut reports = Vec::new();
    for arch in archs {
        for module in Module::ALL {
            reports.push(check_module(module, arch));
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'silu_fwd_f32' for 'sm_90'
ptxas info    : Function properties for silu_fwd_f32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers, 368 bytes cmem[0]
ptxas info    : Compiling entry function 'conv_f16' for 'sm_90'
ptxas info    : Function properties for conv_f16
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 32768 bytes smem, 400 bytes cmem[0]
";
        let r = parse_ptxas_report(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            KernelResources { name: "silu_fwd_f32".into(), registers: 10, ..Default::default() }
        );
        assert_eq!(
            r[1],
            KernelResources {
                name: "conv_f16".into(),
                registers: 255,
                shared_bytes: 32768,
                stack_bytes: 16,
                spill_stores: 8,
                spill_loads: 4
            }
        );
    }

    #[test]
    fn cache_key_depends_on_every_part() {
        let a = fnv1a(&[b"x", b"y"]);
        assert_ne!(a, fnv1a(&[b"xy"]));
        assert_ne!(a, fnv1a(&[b"x", b"z"]));
        assert_eq!(a, fnv1a(&[b"x", b"y"]));
    }
}
