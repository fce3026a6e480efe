//! The environment bridge (`docs/env-protocol.md`): live simulators in Python worker processes, driven over
//! stdin/stdout in length-prefixed frames with a JSON header and raw little-endian arrays. The worker
//! (`tools/envs/worker.py`) shares its environment adapters with the recorder, so a live observation reaches the
//! sequence builder exactly as a recorded one does.

pub mod frame;
mod worker;

pub use worker::{
    check_action, default_python, kill_all_workers, PythonWorker, WorkerOptions, PROTOCOL,
    SETUP_COMMAND,
};
