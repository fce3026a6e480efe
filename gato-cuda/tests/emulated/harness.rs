//! The host emulation of the CUDA kernels shared by the `emulated_*` tests: compile `kernels.cu` +
//! `kernels_backward.cu` with `cuda_host.h` and `harness.cpp` into a shared library once per test binary, and
//! launch kernels by name with `cuLaunchKernel`'s argument convention. See `tests/emulated_attention.rs`.

#![allow(dead_code)]

use std::ffi::{c_void, CString};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The padding id ([`gato_core::PAD_ID`]).
pub const PAD: u32 = u32::MAX;

/// The emulated kernels, compiled once per test binary.
pub struct Emu {
    lib: libloading::Library,
}

type Launch = unsafe extern "C" fn(*const i8, u32, u32, u32, *mut *mut c_void) -> i32;

fn build() -> Result<Emu, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gato-cuda-emulated");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/emulated");
    let harness = std::fs::read_to_string(here.join("harness.cpp")).map_err(|e| e.to_string())?;
    let src = dir.join(format!("kernels_host_{}.cpp", std::process::id()));
    std::fs::write(&src, format!("{}\n{harness}", gato_cuda::KERNELS))
        .map_err(|e| e.to_string())?;
    let lib = dir.join(format!("libgato_emulated_{}.so", std::process::id()));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let out = std::process::Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-shared",
            "-fPIC",
            "-pthread",
            "-include",
        ])
        .arg(here.join("cuda_host.h"))
        .arg(&src)
        .arg("-o")
        .arg(&lib)
        .output()
        .map_err(|e| format!("cannot run the C++ compiler `{cxx}`: {e}"))?;
    if !out.status.success() {
        // A compiler that runs but rejects the kernels is a failure, not a skip.
        panic!(
            "`{cxx}` rejected the emulated kernels:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // SAFETY: the library was just built from the kernels and the harness; loading runs no foreign initialiser
    // beyond C++ static construction of the kernel table.
    let lib = unsafe { libloading::Library::new(&lib) }.map_err(|e| e.to_string())?;
    Ok(Emu { lib })
}

/// The emulator, or why it cannot run (printed as a skip).
pub fn emu(test: &str) -> Option<&'static Emu> {
    static EMU: OnceLock<Result<Emu, String>> = OnceLock::new();
    match EMU.get_or_init(build) {
        Ok(e) => Some(e),
        Err(why) => {
            if std::env::var_os("GATO_REQUIRE_EMULATION").is_some() {
                panic!("{why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// A kernel's arguments in `cuLaunchKernel`'s convention: each boxed so its address is stable.
#[derive(Default)]
pub struct Args {
    held: Vec<Box<dyn std::any::Any>>,
    ptrs: Vec<*mut c_void>,
}

impl Args {
    pub fn val<T: 'static>(mut self, v: T) -> Self {
        let mut b = Box::new(v);
        self.ptrs.push(&mut *b as *mut T as *mut c_void);
        self.held.push(b);
        self
    }
    /// A buffer's address (the kernel reads or writes through it).
    pub fn buf<T: 'static>(self, v: &mut [T]) -> Self {
        self.val(v.as_mut_ptr())
    }
}

impl Emu {
    pub fn launch(&self, name: &str, grid: usize, block: usize, smem: usize, mut args: Args) {
        // SAFETY: `emu_launch` has this signature (harness.cpp).
        let f: libloading::Symbol<Launch> = unsafe { self.lib.get(b"emu_launch") }.unwrap();
        let c = CString::new(name).unwrap();
        // SAFETY: the arguments match the kernel's parameters (each test mirrors the backend's launch), and every
        // buffer is sized for the indices the kernel computes from them.
        let rc = unsafe {
            f(
                c.as_ptr(),
                grid as u32,
                block as u32,
                smem as u32,
                args.ptrs.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "no kernel named {name}");
    }
}

pub fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `got` within `rel` of `want` (relative to `1 + |want|`), naming the first element that is not.
pub fn close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= rel * (1.0 + w.abs()),
            "{what}[{i}] = {g}, reference {w}"
        );
    }
}

pub fn grid(n: usize) -> usize {
    n.div_ceil(256).clamp(1, 65_535 * 8)
}
