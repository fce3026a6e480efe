//! Writing a directory of files (a checkpoint) as one atomic step: the files are written into a temporary directory
//! beside the destination, flushed to disk, and the temporary directory then takes the destination's place in one
//! rename (on Linux an atomic exchange with an existing destination, so at every instant the path holds either the
//! whole old or the whole new directory). Training's checkpoints use the same helper.
//!
//! Temporary directories are named `.{name}.gato-tmp-{pid}-{n}`. One is removed when the write fails, by
//! [`remove_pending`] (the `gato` binary calls it on SIGINT and SIGTERM), and — for a process killed outright
//! (SIGKILL), which runs no code of its own — by a watchdog: on Unix each write starts `sh` with a pipe from this
//! process, and when the pipe closes (the writer finished or died) the watchdog removes the temporary directory if
//! it is still there. As a last resort the next write or load of the same destination removes temporaries whose
//! process is gone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use gato_core::{Error, Result};

/// Temporary directories being written by this process.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Makes each temporary name of this process unique, so a watchdog never removes a later write's directory.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A process that removes `tmp` once this process closes the pipe to it — by finishing, or by being killed.
/// `None` where it cannot be started (not Unix, no `sh`): then only the sweeps clean up after a SIGKILL.
fn watchdog(tmp: &Path) -> Option<Child> {
    if !cfg!(unix) {
        return None;
    }
    Command::new("sh")
        .arg("-c")
        .arg("cat >/dev/null; rm -rf -- \"$1\"")
        .arg("gato-checkpoint-cleanup")
        .arg(tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// What to do when the destination exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with an error naming the path (the default of `gato init`).
    Refuse,
    /// Replace it atomically (`--force`).
    Replace,
}

fn io_err(path: &Path, what: &str, e: io::Error) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problems: vec![format!("{what}: {e}")],
    }
}

fn tmp_prefix(dest: &Path) -> Result<(PathBuf, String)> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Checkpoint {
            path: dest.to_path_buf(),
            problems: vec!["the destination must end in a directory name".into()],
        })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, format!(".{name}.gato-tmp-")))
}

/// Whether process `pid` is alive (Linux: `/proc/{pid}` exists; elsewhere assumed alive, so nothing is swept).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Remove temporaries beside `dest` left by processes that no longer run. Returns how many were removed.
pub fn sweep_stale(dest: &Path) -> usize {
    let Ok((parent, prefix)) = tmp_prefix(dest) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(&parent) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) && fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Remove every temporary directory this process is writing (for a signal handler; the write in progress then
/// fails or is abandoned as the process exits).
pub fn remove_pending() {
    let pending = match PENDING.lock() {
        Ok(p) => p.clone(),
        Err(p) => p.into_inner().clone(),
    };
    for p in pending {
        let _ = fs::remove_dir_all(p);
    }
}

fn set_pending(path: &Path, on: bool) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if on {
        pending.push(path.to_path_buf());
    } else {
        pending.retain(|p| p != path);
    }
}

/// Flush every file of `dir` and the directory itself to disk, and make the files readable by all (mode 0644 on
/// Unix: the files of a checkpoint are ordinary files, whatever mode a library created them with).
fn finish_files(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_file() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
            }
            fs::File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

/// Atomically swap two existing paths (Linux `renameat2(RENAME_EXCHANGE)`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where exchange is not available: move the old directory aside, then the new one in (a crash between the two
/// renames leaves the old directory at the temporary's name, which the next write sweeps).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let aside = a.with_extension("old");
    fs::rename(b, &aside)?;
    fs::rename(a, b)?;
    fs::rename(&aside, a)
}

/// Write the directory `dest` as one atomic step: `write` fills a fresh temporary directory (its argument), then
/// that directory replaces `dest`. Missing parent directories are created. With [`Overwrite::Refuse`] an existing
/// `dest` is an error naming it. On any error the temporary directory is removed and `dest` is untouched.
pub fn write_dir(
    dest: &Path,
    overwrite: Overwrite,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let exists = dest.exists();
    if exists && !dest.is_dir() {
        return Err(io_err(
            dest,
            "exists and is not a directory",
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    if exists && overwrite == Overwrite::Refuse {
        return Err(Error::Checkpoint {
            path: dest.to_path_buf(),
            problems: vec!["already exists; pass --force to overwrite it".into()],
        });
    }
    let (parent, prefix) = tmp_prefix(dest)?;
    fs::create_dir_all(&parent).map_err(|e| {
        io_err(
            dest,
            &format!("cannot create its parent directory {}", parent.display()),
            e,
        )
    })?;
    sweep_stale(dest);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let tmp = parent.join(format!("{prefix}{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    set_pending(&tmp, true);
    let mut guard = watchdog(&tmp);
    let result = (|| {
        fs::create_dir(&tmp).map_err(|e| io_err(dest, "cannot create a directory beside it", e))?;
        write(&tmp)?;
        finish_files(&tmp).map_err(|e| io_err(dest, "cannot flush the new files", e))?;
        if exists {
            exchange(&tmp, dest).map_err(|e| io_err(dest, "cannot replace it", e))?;
            // `tmp` now holds the old directory.
            fs::remove_dir_all(&tmp)
                .map_err(|e| io_err(dest, "replaced, but cannot remove the old copy", e))?;
        } else {
            fs::rename(&tmp, dest)
                .map_err(|e| io_err(dest, "cannot move the new directory in", e))?;
        }
        sync_dir(&parent).map_err(|e| io_err(dest, "cannot flush its parent directory", e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    set_pending(&tmp, false);
    if let Some(child) = guard.as_mut() {
        // Closing the pipe lets the watchdog finish (the directory is gone by now); reap it.
        drop(child.stdin.take());
        let _ = child.wait();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gato-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("gato-tmp"))
            .collect()
    }

    #[test]
    fn writes_refuses_replaces_and_cleans_up() {
        let d = scratch("basic");
        let dest = d.join("ckpt");
        write_dir(&dest, Overwrite::Refuse, |t| {
            fs::write(t.join("a"), "old").map_err(|e| io_err(t, "w", e))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "old");
        let e = write_dir(&dest, Overwrite::Refuse, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists; pass --force"), "{e}");
        // A failing write leaves the old directory and no temporary.
        let e = write_dir(&dest, Overwrite::Replace, |t| {
            fs::write(t.join("a"), "half").unwrap();
            Err(Error::invalid("test", "disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("disk full"));
        assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "old");
        write_dir(&dest, Overwrite::Replace, |t| {
            fs::write(t.join("b"), "new").map_err(|e| io_err(t, "w", e))
        })
        .unwrap();
        assert!(!dest.join("a").exists(), "the old files are gone");
        assert_eq!(fs::read_to_string(dest.join("b")).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dest.join("b")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        // Parent directories are created, as `mkdir -p` would.
        write_dir(&d.join("a/b/ckpt"), Overwrite::Refuse, |_| Ok(())).unwrap();
        assert!(d.join("a/b/ckpt").is_dir());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_swept() {
        let d = scratch("sweep");
        let dest = d.join("ckpt");
        // No process has pid 4294967295; this one's own temporary is kept.
        let dead = d.join(".ckpt.gato-tmp-4294967295-0");
        let mine = d.join(format!(".ckpt.gato-tmp-{}-0", std::process::id()));
        fs::create_dir_all(&dead).unwrap();
        fs::create_dir_all(&mine).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(sweep_stale(&dest), 1);
            assert!(!dead.exists() && mine.exists());
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
