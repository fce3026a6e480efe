//! The `gato` binary: everything lives in the `gato_cli` library so third parties can build their own binary
//! with extra plugins linked in.

/// Counts allocations so `gato bench` can report what acting allocates.
#[global_allocator]
static ALLOCATOR: gato_cli::alloc_count::CountingAllocator =
    gato_cli::alloc_count::CountingAllocator;

fn main() -> std::process::ExitCode {
    gato_cli::run()
}
