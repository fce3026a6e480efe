//! # gato-cli
//!
//! The `gato` command line as a library. `gato_cli::run()` is the whole program, so a third party adds plugins by
//! writing a three-line binary:
//!
//! ```ignore
//! use their_plugin as _; // link the crate so its `inventory::submit!` entries exist
//! fn main() -> std::process::ExitCode { gato_cli::run() }
//! ```
//!
//! This crate parses arguments, formats output and times things; the logic lives in the library crates.

#![warn(missing_docs)]

// Link the plugin crates by name: a dependency that is never named is dropped by rustc, and its
// `inventory::submit!` entries with it (the CPU and CUDA backends, the byte tokenizer).
use gato_cpu as _;
use gato_cuda as _;
use gato_tokenizers as _;

pub mod alloc_count;
mod cli;
mod commands;
mod error;
mod gif;
mod output;
mod plot;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use cli::{ActArgs, Cli, Command, ForwardArgs, TokenizeArgs, TrainArgs};
pub use error::CliError;

/// Backends every `gato` binary built from this crate must have registered.
pub const EXPECTED_BACKENDS: [&str; 2] = ["cpu", "cuda"];

/// Names of the backends registered in this binary.
pub fn registered_backends() -> Vec<&'static str> {
    gato_core::backends().iter().map(|e| e.name).collect()
}

/// Run `gato` with the process's arguments.
pub fn run() -> ExitCode {
    run_from(std::env::args_os())
}

/// Run `gato` with the given arguments (the first is the program name). Errors are printed to stderr without a
/// backtrace and give exit code 1; usage errors give clap's code 2.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    keep_large_allocations();
    // SIGINT, SIGTERM: remove the temporary directory of a checkpoint being written, then exit as interrupted.
    // (An embedding application that installed its own handler keeps it.)
    // `gato train` asks for a graceful stop instead: the first signal finishes the step and writes a checkpoint,
    // a second one exits at once.
    let _ = ctrlc::set_handler(|| {
        if commands::request_graceful_stop() {
            return;
        }
        gato_transformer::atomic_dir::remove_pending();
        gato_agent::bridge::kill_all_workers();
        std::process::exit(130);
    });
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match commands::dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Interrupted(msg)) => {
            output::error(&msg);
            ExitCode::from(130)
        }
        Err(e) => {
            output::error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// glibc maps every block above 128 KiB (a threshold that adapts up to 32 MiB) with `mmap` and returns it to the
/// kernel when freed, so a training step that frees and reallocates its activations pays page faults, the kernel's
/// page zeroing and TLB shootdowns on every op (a fifth of a `small` training step before this, measured with
/// `perf`). The `gato` binary raises the mapping threshold to glibc's maximum, 32 MiB, and the trim threshold to
/// 1 GiB, so such blocks stay in the heap for reuse: the process keeps up to that much freed memory instead of
/// returning it, and blocks above 32 MiB (the shared table's gradients) are still mapped. It also keeps every
/// thread on the main heap (one arena): the backend's worker threads would otherwise each get an arena made of
/// 64 MiB heaps, which multi-megabyte activations fill and empty over and over, each new heap mapped afresh (a
/// third of a `small` training step's page faults, and 0.8 GB more peak memory). With one worker per core the
/// shared arena's lock is taken a few hundred times per step, never contended for long.
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds (under glibc's own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inventory linking trap: both backends must be registered in anything linking this crate.
    #[test]
    fn expected_backends_are_registered() {
        let names = registered_backends();
        for b in EXPECTED_BACKENDS {
            assert!(
                names.contains(&b),
                "backend `{b}` missing from the registry: {names:?}"
            );
        }
        assert!(gato_core::tokenizers().iter().any(|t| t.name == "bytes"));
    }
}
