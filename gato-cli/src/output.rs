//! Writing to stdout/stderr without panicking on a closed pipe, and number formatting.

use std::io::Write;

/// Print to stdout; a closed pipe (e.g. `gato info | head`) is not an error.
pub fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// `Ok` when `path` can be created as a file: its directory exists and it is not itself a directory. Checked
/// before a long computation whose result goes there; the error names the flag and the user's path.
pub fn writable_file(flag: &'static str, path: &std::path::Path) -> crate::error::Result<()> {
    let fail = |detail: String| crate::error::CliError::Argument { flag, detail };
    if path.is_dir() {
        return Err(fail(format!(
            "{} is a directory, not a file",
            path.display()
        )));
    }
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => Err(fail(format!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            d.display()
        ))),
        _ => Ok(()),
    }
}

/// Print an error line to stderr.
pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
}

/// JSON to stdout.
pub fn json(v: &serde_json::Value) {
    print(&(serde_json::to_string_pretty(v).unwrap_or_default() + "\n"));
}

/// `12345678` → `12,345,678`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `95_123_456` → `95.1M`.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A field value, compactly, for tables.
pub fn show(v: &gato_tokenizers::FieldValue) -> String {
    use gato_tokenizers::FieldValue;
    match v {
        FieldValue::Discrete(x) => format!("{x:?}"),
        FieldValue::Continuous(x) => format!(
            "[{}]",
            x.iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FieldValue::Text(s) => format!("{s:?}"),
        FieldValue::Image(i) => format!("image {}x{}x{}", i.height, i.width, i.channels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(95123456), "95,123,456");
        assert_eq!(human(79_000_000), "79.0M");
        assert_eq!(human(1_180_000_000), "1.18B");
    }
}
