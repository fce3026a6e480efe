//! The `gato` binary: everything lives in the `gato_cli` library so third parties can build their own binary
//! with extra plugins linked in.

fn main() -> std::process::ExitCode {
    gato_cli::run()
}
