//! How much memory the machine has available, so that a model too large for it is refused with both figures
//! before anything is allocated, instead of the process aborting halfway through an allocation.

use crate::error::{Error, Result};

/// Bytes of memory available for new allocations: `MemAvailable` of `/proc/meminfo` on Linux; `None` where it
/// cannot be read (other systems), in which case no check is made.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `Ok` when `needed` bytes fit in the memory available (or it cannot be known), else
/// [`Error::InsufficientMemory`] naming `what` and both figures.
pub fn ensure_available(what: impl Into<String>, needed: u64) -> Result<()> {
    check_against(what, needed, available_memory())
}

/// [`ensure_available`] against a given amount (`None`: unknown, always `Ok`).
pub fn check_against(what: impl Into<String>, needed: u64, available: Option<u64>) -> Result<()> {
    match available {
        Some(available) if needed > available => Err(Error::InsufficientMemory {
            what: what.into(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// `1536` → `1.5 KiB`, `3 << 30` → `3.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_both_figures() {
        let e = check_against("a model", 3 << 30, Some(1 << 30))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "not enough memory for a model: it needs 3.0 GiB and 1.0 GiB is available"
        );
        assert!(check_against("a model", 1 << 30, Some(3 << 30)).is_ok());
        assert!(check_against("a model", u64::MAX, None).is_ok());
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
