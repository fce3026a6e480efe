//! Pick a backend from the registry by name and run a few ops through `&dyn Backend`.
//!
//! `cargo run -p gato-cpu --example backend_ops -- cpu`

// Link the CPU backend so the registry holds `cpu`.
use gato_core::{create_backend, BackendOptions, HostSlice, MatmulSpec, Shape, UnaryOp};
use gato_cpu as _;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> gato_core::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "cpu".into());
    let backend = create_backend(&name, &BackendOptions::default())?;
    println!(
        "backend {} on {}",
        backend.name(),
        backend.device_description()
    );

    let a = backend.upload(
        HostSlice::F32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        &Shape::from([2, 3]),
    )?;
    let b = backend.upload(
        HostSlice::F32(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
        &Shape::from([3, 2]),
    )?;
    let c = backend.matmul(&a, &b, &MatmulSpec::default())?;
    println!("a·b = {:?} {:?}", c.dims(), backend.download(&c)?);
    let g = backend.unary(UnaryOp::Gelu, &c)?;
    println!("gelu(a·b) = {:?}", backend.download(&g)?);
    let p = backend.softmax(&c)?;
    println!("softmax rows = {:?}", backend.download(&p)?);
    Ok(())
}
