//! A clean stop on SIGINT / SIGTERM (Ctrl-C, a cluster's pre-emption notice): the first
//! signal only raises a flag that long-running loops poll ([`requested`]) to finish the work
//! in progress, save and exit normally; a second one ends the process at once with the
//! shell's status for that signal (130 / 143). Nothing is half-written either way: outputs
//! are written atomically (see [`crate::util::atomic`]).
//!
//! The handlers are signal-hook's (only an atomic store and, for the second signal, `_exit`
//! run inside the handler). On platforms without Unix signals [`install`] does nothing and
//! Ctrl-C ends the process as before.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop was requested (by a signal, or by [`request`]).
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Requests a stop, as the first signal does.
pub fn request() {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the handlers of SIGINT and SIGTERM (once per process is enough; again is
/// harmless).
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
        // the order matters: the second signal finds the flag set by the first and exits
        signal_hook::flag::register_conditional_shutdown(signal, status, &STOP)?;
        signal_hook::flag::register(signal, &STOP)?;
    }
    Ok(())
}

/// Does nothing where there are no Unix signals.
#[cfg(not(unix))]
pub fn install() -> std::io::Result<()> {
    Ok(())
}
