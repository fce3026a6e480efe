//! [`PythonWorker`]: one simulator in a Python worker process (`tools/envs/worker.py`), as an [`Environment`].
//!
//! The worker is spawned with piped stdin/stdout; a reader thread turns stdout into frames so every request can
//! wait with a timeout. A worker that exits, hangs past the timeout or sends a malformed frame fails the request
//! with the reason (and its last lines of stderr) and is killed; the caller starts a new one. Every live worker's
//! process id is registered so [`kill_all_workers`] (the CLI's Ctrl-C/SIGTERM handler) leaves no orphan; the
//! worker also asks the kernel for SIGTERM when its parent dies and exits at the end of its input.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gato_data::{FieldMeta, FieldModality, Role};
use gato_tokenizers::{FieldValue, Image, ImagePixels};
use serde_json::json;

use super::frame::{Array, Frame};
use crate::environment::{Environment, Observation};
use crate::error::{Error, Result};

/// The worker's sources, embedded so an installed `gato` needs no checkout: unpacked once per process into a
/// directory of its own (see [`worker_dir`]).
const SOURCES: [(&str, &str); 3] = [
    ("worker.py", include_str!("../../../tools/envs/worker.py")),
    (
        "adapters.py",
        include_str!("../../../tools/envs/adapters.py"),
    ),
    (
        "gato_episodes.py",
        include_str!("../../../tools/record/gato_episodes.py"),
    ),
];

/// Version of the frame protocol this side speaks (`docs/env-protocol.md`).
pub const PROTOCOL: u64 = 1;

/// The set-up command named when Python or a simulator package is missing.
pub const SETUP_COMMAND: &str = "bash tools/record/setup.sh";

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The Python interpreter (with the simulator packages: `bash tools/record/setup.sh` makes
    /// `.cache/venv-record`).
    pub python: PathBuf,
    /// The environment's adapter name: `cartpole`, `pendulum`, `babyai`, `breakout`, `metaworld` (or `mock`).
    pub env: String,
    /// Seed given to the simulator's constructor (episodes are seeded at each reset).
    pub seed: u64,
    /// Start the simulator able to render (frames are sent for the episodes [`Environment::set_render`] asks
    /// for).
    pub render: bool,
    /// How long one request may take before the worker counts as hung.
    pub timeout: Duration,
    /// How long the worker may take to start (imports) and say hello.
    pub start_timeout: Duration,
    /// Extra environment variables of the worker process (e.g. `GATO_WORKER_FAULT` in tests).
    pub vars: Vec<(String, String)>,
}

impl WorkerOptions {
    /// Options with the default timeouts (60 s per request, 120 s to start), no rendering and no extra variables.
    pub fn new(python: impl Into<PathBuf>, env: impl Into<String>) -> Self {
        WorkerOptions {
            python: python.into(),
            env: env.into(),
            seed: 0,
            render: false,
            timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(120),
            vars: Vec::new(),
        }
    }
}

static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// The directory the worker's sources are unpacked into: `<temp>/gato-envs-<pid>` (so a process's workers can be
/// found by their command line), written on first use.
fn worker_dir() -> Result<PathBuf> {
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gato-envs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, text) in SOURCES {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(dir)
    })
    .clone()
    .map_err(|detail| Error::Environment {
        env: "worker".into(),
        detail: format!("cannot unpack the worker: {detail}"),
    })
}

/// Kill every live worker of this process and remove the unpacked sources (for signal handlers: never blocks on
/// a worker).
pub fn kill_all_workers() {
    let pids = match LIVE.lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for pid in pids {
        kill(pid);
    }
    remove_worker_dir();
}

/// Remove the unpacked worker sources.
fn remove_worker_dir() {
    if let Some(Ok(dir)) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn kill(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet (reaping removes it from LIVE first).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// A simulator in a Python worker process.
pub struct PythonWorker {
    /// The adapter name (`cartpole`), used in errors.
    adapter: String,
    env_id: String,
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<std::result::Result<Option<Frame>, String>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    fields: Vec<FieldMeta>,
    timeout: Duration,
    broken: Option<String>,
    render_note: Option<String>,
    render: bool,
}

impl PythonWorker {
    /// Start a worker and read its hello (the environment's fields). Errors name the set-up command when Python
    /// or a simulator package is missing.
    pub fn spawn(opts: &WorkerOptions) -> Result<Self> {
        let dir = worker_dir()?;
        let err = |detail: String| Error::Environment {
            env: opts.env.clone(),
            detail,
        };
        let mut cmd = Command::new(&opts.python);
        cmd.arg("-u")
            .arg(dir.join("worker.py"))
            .args(["--env", &opts.env, "--seed", &opts.seed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opts.render {
            cmd.arg("--render");
        }
        for (k, v) in &opts.vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            err(format!(
                "cannot start Python `{}`: {e}; set up the simulators with `{SETUP_COMMAND}` (or pass --python)",
                opts.python.display()
            ))
        })?;
        if let Ok(mut l) = LIVE.lock() {
            l.push(child.id());
        }
        let stdout = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let (tx, frames) = mpsc::channel();
        if let Some(mut out) = stdout {
            std::thread::spawn(move || loop {
                let f = Frame::read(&mut out);
                let end = !matches!(f, Ok(Some(_)));
                if tx.send(f).is_err() || end {
                    break;
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(e) = stderr_pipe {
            let keep = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(e).lines().map_while(|l| l.ok()) {
                    if let Ok(mut k) = keep.lock() {
                        if k.len() == 20 {
                            k.pop_front();
                        }
                        k.push_back(line);
                    }
                }
            });
        }
        let mut w = PythonWorker {
            adapter: opts.env.clone(),
            env_id: opts.env.clone(),
            stdin: child.stdin.take(),
            child,
            frames,
            stderr,
            fields: Vec::new(),
            timeout: opts.start_timeout,
            broken: None,
            render_note: None,
            render: false,
        };
        let hello = w.receive("start")?;
        w.timeout = opts.timeout;
        if hello.kind() != "hello" {
            return Err(w.fail(format!(
                "first frame is `{}`, expected `hello`",
                hello.kind()
            )));
        }
        let protocol = hello.header["protocol"].as_u64().unwrap_or(0);
        if protocol != PROTOCOL {
            return Err(w.fail(format!(
                "worker speaks protocol {protocol}, this gato speaks {PROTOCOL}"
            )));
        }
        w.env_id = hello.header["env_id"]
            .as_str()
            .unwrap_or(&opts.env)
            .to_string();
        let fields: Vec<FieldMeta> = serde_json::from_value(hello.header["fields"].clone())
            .map_err(|e| w.fail(format!("hello's fields: {e}")))?;
        for f in &fields {
            f.validate()
                .map_err(|e| w.fail(format!("hello's field `{}`: {e}", f.name)))?;
        }
        w.fields = fields;
        Ok(w)
    }

    /// The environment's fields as the episode files describe them.
    pub fn fields(&self) -> &[FieldMeta] {
        &self.fields
    }

    /// The simulator's id (e.g. `CartPole-v1`).
    pub fn env_id(&self) -> &str {
        &self.env_id
    }

    /// Mark the worker broken (killed), and the error to return.
    fn fail(&mut self, why: String) -> Error {
        self.shutdown(false);
        let status = self
            .child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| format!(" (worker {s})"))
            .unwrap_or_default();
        let tail: Vec<String> = self
            .stderr
            .lock()
            .map(|l| l.iter().rev().take(5).rev().cloned().collect())
            .unwrap_or_default();
        let detail = if tail.is_empty() {
            format!("{why}{status}")
        } else {
            format!("{why}{status}; its stderr ends: {}", tail.join(" | "))
        };
        self.broken = Some(detail.clone());
        Error::Environment {
            env: self.adapter.clone(),
            detail,
        }
    }

    fn receive(&mut self, what: &str) -> Result<Frame> {
        match self.frames.recv_timeout(self.timeout) {
            Ok(Ok(Some(f))) if f.kind() == "error" => {
                let msg = f.header["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string();
                if f.header["kind"] == "setup" {
                    return Err(self.fail(format!("cannot start: {msg}")));
                }
                Err(Error::Environment {
                    env: self.adapter.clone(),
                    detail: msg,
                })
            }
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => {
                // Give the process a moment to be reaped so the status says how it ended.
                std::thread::sleep(Duration::from_millis(50));
                Err(self.fail(format!("worker exited during {what}")))
            }
            Ok(Err(e)) => Err(self.fail(format!("malformed frame during {what}: {e}"))),
            Err(RecvTimeoutError::Timeout) => Err(self.fail(format!(
                "no answer to {what} within {:.1} s (hung; killed)",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    fn request(&mut self, what: &str, frame: Frame) -> Result<Frame> {
        if let Some(b) = &self.broken {
            return Err(Error::Environment {
                env: self.adapter.clone(),
                detail: format!("worker is broken: {b}"),
            });
        }
        let sent = match self.stdin.as_mut() {
            Some(w) => frame.write(w),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if let Err(e) = sent {
            std::thread::sleep(Duration::from_millis(50));
            return Err(self.fail(format!("cannot send {what}: {e}")));
        }
        self.receive(what)
    }

    fn observation(&mut self, f: Frame) -> Result<Observation> {
        if f.kind() != "observation" {
            return Err(self.fail(format!("got `{}`, expected an observation", f.kind())));
        }
        let mut fields = BTreeMap::new();
        for meta in self.fields.iter().filter(|m| m.role == Role::Observation) {
            let v = field_value(meta, &f).map_err(|e| e.to_string());
            match v {
                Ok(v) => fields.insert(meta.name.clone(), v),
                Err(e) => return Err(self.fail(format!("malformed observation: {e}"))),
            };
        }
        let h = &f.header;
        let frame = f.array("__frame__").and_then(image_of);
        if let Some(e) = h["frame_error"].as_str() {
            self.render_note.get_or_insert_with(|| e.to_string());
        }
        Ok(Observation {
            fields,
            reward: h["reward"].as_f64().unwrap_or(0.0),
            terminated: h["terminated"].as_bool().unwrap_or(false),
            truncated: h["truncated"].as_bool().unwrap_or(false),
            success: h["success"].as_bool(),
            frame,
        })
    }

    /// Ask the worker to exit (politely when `close`), then kill it and reap it.
    fn shutdown(&mut self, close: bool) {
        if close {
            if let Some(mut w) = self.stdin.take() {
                let _ = Frame::new(json!({"type": "close"}), vec![]).write(&mut w);
            }
            for _ in 0..20 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.stdin = None;
        let pid = self.child.id();
        if let Ok(mut l) = LIVE.lock() {
            l.retain(|&p| p != pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonWorker {
    fn drop(&mut self) {
        self.shutdown(self.broken.is_none());
    }
}

fn image_of(a: &Array) -> Option<Image> {
    match (a.shape.as_slice(), a.dtype) {
        (&[h, w, c], super::frame::Dtype::U8) if matches!(c, 3 | 4) => Some(Image {
            height: h,
            width: w,
            channels: c,
            pixels: ImagePixels::U8(a.bytes.clone()),
        }),
        _ => None,
    }
}

/// One observation field from a frame, checked against its description.
fn field_value(meta: &FieldMeta, f: &Frame) -> std::result::Result<FieldValue, String> {
    let name = &meta.name;
    if meta.modality == FieldModality::Text {
        return f.header["text"][name]
            .as_str()
            .map(|s| FieldValue::Text(s.to_string()))
            .ok_or_else(|| format!("text field `{name}` is missing"));
    }
    let a = f
        .array(name)
        .ok_or_else(|| format!("field `{name}` is missing"))?;
    let want = meta.values_per_step();
    if a.len() != want {
        return Err(format!(
            "field `{name}` has shape {:?} ({} values), expected {:?} ({want})",
            a.shape,
            a.len(),
            meta.shape
        ));
    }
    Ok(match meta.modality {
        FieldModality::Image => match image_of(a) {
            Some(img) if a.shape == meta.shape => FieldValue::Image(img),
            _ => return Err(format!("image `{name}` is not uint8 {:?}", meta.shape)),
        },
        FieldModality::Discrete => {
            let v = a
                .to_i64()
                .ok_or_else(|| format!("field `{name}` is {}, expected int64", a.dtype.name()))?;
            let n = meta.num_values.unwrap_or(1) as i64;
            if let Some(x) = v.iter().find(|&&x| !(0..n).contains(&x)) {
                return Err(format!("field `{name}` holds {x}, outside [0, {n})"));
            }
            FieldValue::Discrete(v)
        }
        FieldModality::Continuous => {
            let v = a
                .to_f32()
                .ok_or_else(|| format!("field `{name}` is {}, expected float32", a.dtype.name()))?;
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(format!("field `{name}` holds {x}"));
            }
            FieldValue::Continuous(v)
        }
        FieldModality::Text => unreachable!("handled above"),
    })
}

/// Check an action against the action fields before it is sent: every field present, discrete values in
/// `[0, num_values)`, continuous values finite and inside the bounds.
pub fn check_action(
    fields: &[FieldMeta],
    action: &BTreeMap<String, FieldValue>,
) -> std::result::Result<Vec<Array>, String> {
    let mut arrays = Vec::new();
    for meta in fields.iter().filter(|m| m.role == Role::Action) {
        let name = &meta.name;
        let v = action
            .get(name)
            .ok_or_else(|| format!("action field `{name}` is missing"))?;
        let want = meta.values_per_step();
        match (meta.modality, v) {
            (FieldModality::Discrete, FieldValue::Discrete(v)) if v.len() == want => {
                let n = meta.num_values.unwrap_or(1) as i64;
                if let Some(x) = v.iter().find(|&&x| !(0..n).contains(&x)) {
                    return Err(format!(
                        "`{name}` = {x} is outside the action space [0, {n}); not sent"
                    ));
                }
                arrays.push(Array::i64(name, meta.shape.clone(), v));
            }
            (FieldModality::Continuous, FieldValue::Continuous(v)) if v.len() == want => {
                let (lo, hi) = meta.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                if let Some(x) = v.iter().find(|&&x| !x.is_finite() || x < lo || x > hi) {
                    return Err(format!(
                        "`{name}` = {x} is outside the action space [{lo}, {hi}]; not sent"
                    ));
                }
                arrays.push(Array::f32(name, meta.shape.clone(), v));
            }
            _ => {
                return Err(format!(
                    "action field `{name}` does not match its spec {:?} {:?}",
                    meta.modality, meta.shape
                ))
            }
        }
    }
    Ok(arrays)
}

impl Environment for PythonWorker {
    fn name(&self) -> &str {
        &self.env_id
    }

    fn reset(&mut self, seed: u64) -> Result<Observation> {
        let header = json!({"type": "reset", "seed": seed, "render": self.render});
        let f = self.request("reset", Frame::new(header, vec![]))?;
        self.observation(f)
    }

    fn step(&mut self, action: &BTreeMap<String, FieldValue>) -> Result<Observation> {
        let arrays = check_action(&self.fields, action).map_err(|detail| Error::Environment {
            env: self.adapter.clone(),
            detail,
        })?;
        let f = self.request("step", Frame::new(json!({"type": "step"}), arrays))?;
        self.observation(f)
    }

    fn expert_action(&mut self) -> Result<Option<BTreeMap<String, FieldValue>>> {
        let f = self.request("expert", Frame::new(json!({"type": "expert"}), vec![]))?;
        if f.kind() != "action" {
            return Err(self.fail(format!("got `{}`, expected an action", f.kind())));
        }
        let mut out = BTreeMap::new();
        for meta in self.fields.iter().filter(|m| m.role == Role::Action) {
            let a = f.array(&meta.name);
            let v = match (meta.modality, a) {
                (FieldModality::Discrete, Some(a)) => a.to_i64().map(FieldValue::Discrete),
                (FieldModality::Continuous, Some(a)) => a.to_f32().map(FieldValue::Continuous),
                _ => None,
            };
            match v {
                Some(v) => out.insert(meta.name.clone(), v),
                None => return Err(self.fail(format!("expert action lacks `{}`", meta.name))),
            };
        }
        Ok(Some(out))
    }

    fn set_render(&mut self, on: bool) {
        self.render = on;
    }

    fn render_note(&self) -> Option<String> {
        self.render_note.clone()
    }
}

/// The default interpreter: `$GATO_PYTHON`, else `.cache/venv-record/bin/python` under the current directory or
/// under the checkout this binary was built from, else `None`.
pub fn default_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GATO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let rel = Path::new(".cache/venv-record/bin/python");
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    [rel.to_path_buf(), built].into_iter().find(|p| p.is_file())
}
