//! Signals from the server and the operator.
//!
//! SIGTERM (shutdown) and SIGQUIT (immediate shutdown) end the program once
//! any temporary file is removed: by SIGTERM, which the server reads as a
//! shutdown, and by SIGINT for SIGQUIT, so that the server aborts recovery
//! instead of reading an exit status. SIGUSR1 and SIGINT ask for a fast
//! failover.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

static TERMINATE_BY: AtomicI32 = AtomicI32::new(0);
static FAILOVER_BY: AtomicI32 = AtomicI32::new(0);

const HANDLED: [i32; 4] = [SIGTERM, SIGQUIT, SIGUSR1, SIGINT];

/// Record the four signals from now on. No thread: the handlers only store
/// to atomics, which the copy loop and the waiter read.
pub fn install() -> Result<()> {
    for signal in HANDLED {
        // SAFETY: the action only does atomic stores, which are
        // async-signal-safe.
        unsafe { signal_hook::low_level::register(signal, move || record(signal)) }
            .with_context(|| format!("installing a handler for signal {signal}"))?;
    }
    Ok(())
}

/// Also wake a waiter blocked on `wake` at each signal. Started only when
/// there is something to wait for, so a call that finds its file at once
/// starts no thread.
pub fn wake_on_signal(wake: SyncSender<()>) -> Result<()> {
    let mut signals = Signals::new(HANDLED).context("installing signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                // A full channel already holds a wake-up: nothing is lost.
                let _ = wake.try_send(());
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn record(signal: i32) {
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
