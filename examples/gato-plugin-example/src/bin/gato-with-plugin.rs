//! `gato` with the example plugin linked in: the three lines a third party writes.
use gato_plugin_example as _;
fn main() -> std::process::ExitCode {
    gato_cli::run()
}
