//! Signals from the server and the operator.
//!
//! SIGTERM (shutdown) and SIGQUIT (immediate shutdown) end the program once
//! any temporary file is removed: by SIGTERM, which the server reads as a
//! shutdown, and by SIGINT for SIGQUIT, so that the server aborts recovery
//! instead of reading an exit status. SIGUSR1 and SIGINT ask for a fast
//! failover.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

static TERMINATE_BY: AtomicI32 = AtomicI32::new(0);
static FAILOVER_BY: AtomicI32 = AtomicI32::new(0);
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// Handle the four signals from now on; each one also wakes the waiter.
pub fn install(wake: SyncSender<()>) -> Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGQUIT, SIGUSR1, SIGINT]).context("installing signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                record(signal);
                let _ = wake.try_send(());
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn record(signal: i32) {
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    match signal {
        SIGTERM => {
            let _ = TERMINATE_BY.compare_exchange(0, SIGTERM, Ordering::SeqCst, Ordering::SeqCst);
        }
        SIGQUIT => TERMINATE_BY.store(SIGINT, Ordering::SeqCst),
        _ => {
            let _ = FAILOVER_BY.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// The signal to die by, once a shutdown was requested.
pub fn terminating() -> Option<i32> {
    match TERMINATE_BY.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The signal that asked for a fast failover, if any.
pub fn failover_requested() -> Option<&'static str> {
    match FAILOVER_BY.load(Ordering::SeqCst) {
        SIGUSR1 => Some("SIGUSR1"),
        SIGINT => Some("SIGINT"),
        _ => None,
    }
}

/// Die by `signal` with its default action, no core dump (SIGTERM, SIGINT).
pub fn die_by(signal: i32) {
    // SAFETY: plain libc calls with a valid signal number; the handler is
    // reset to the default so the raised signal ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
