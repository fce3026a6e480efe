//! Panics of third-party code turned into one-line errors, without the panic message and backtrace the default
//! hook would print first (a 0-byte SentencePiece model made a library panic with an 85-line backtrace before the
//! clean error). Scoped to the calling thread: panics elsewhere still reach the previous hook.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch_quietly`] calls are active on this thread.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();

/// Chain a hook in front of the current one that stays silent while this thread is inside [`catch_quietly`].
fn install() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// The message a panic carried (`&str` or `String` payloads), or "panic".
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// Run `f`; a panic inside it prints nothing and becomes `Err(its message)`.
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install();
    QUIET.with(|q| q.set(q.get() + 1));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get() - 1));
    r.map_err(|p| message(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let e = catch_quietly(|| -> u8 { panic!("index {} out of bounds", 3) });
        assert_eq!(e, Err("index 3 out of bounds".to_string()));
        let e = catch_quietly(|| -> u8 { std::panic::panic_any(5u8) });
        assert_eq!(e, Err("panic".to_string()));
        // Nested calls restore the count.
        let e = catch_quietly(|| catch_quietly(|| -> u8 { panic!("inner") }));
        assert_eq!(e, Ok(Err("inner".to_string())));
        assert_eq!(QUIET.with(Cell::get), 0);
    }
}
