//! Ending without paying for the inotify instance. Releasing the last
//! reference to one waits for an SRCU grace period in the kernel
//! (fsnotify_destroy_group): 8 to 14 ms at p50 on a loaded 2-core machine,
//! where the rest of a restore's exit takes well under 1 ms. Our exit
//! releases it, and the server waits for our exit before it replays the
//! segment just delivered. A child holding the same instance until we are
//! gone moves that release after the exit, where nobody waits for it.

use std::fs;
use std::os::fd::RawFd;

/// Fork a child that holds the inotify instances open until this process
/// has ended, then ends itself. Best effort: if anything fails, our exit
/// pays the release as before.
pub fn hold_inotify_past_exit() {
    // Everything the child needs is computed here: after fork() in a
    // process with threads it may only make async-signal-safe calls (no
    // allocation, no locks).
    let Some((mut keep, close)) = descriptors() else {
        return;
    };
    if keep.is_empty() {
        return;
    }
    let mut ends = [0; 2];
    // SAFETY: a two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let [read_end, write_end] = ends;
    keep.push(read_end);
    keep.sort_unstable();
    // SAFETY: the child only calls close, close_range, read and _exit
    // (async-signal-safe) on memory allocated before the fork.
    match unsafe { libc::fork() } {
        0 => unsafe {
            close_all_but(&keep, &close);
            // End of file once the last writer is gone: our process, whose
            // copy of the write end closes with it (close-on-exec keeps it
            // from the processes we start).
            let mut byte = 0u8;
            loop {
                let n = libc::read(read_end, (&raw mut byte).cast(), 1);
                let interrupted =
                    n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
                if !interrupted {
                    break;
                }
            }
            libc::_exit(0);
        },
        -1 => {
            // SAFETY: both ends are ours.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
        }
        _ => {
            // The write end stays open until our exit; the child is
            // reparented when we end, and ends right after.
            // SAFETY: the read end is ours and used by nobody else here.
            unsafe { libc::close(read_end) };
        }
    }
}

/// In the child: close every descriptor but `keep` (sorted), including
/// any another thread opened after the listing; where close_range(2) is
/// missing, the listed ones.
unsafe fn close_all_but(keep: &[RawFd], listed: &[RawFd]) {
    let mut first: libc::c_uint = 0;
    let mut ranged = true;
    for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        let fd = fd as libc::c_uint;
        if fd > first {
            // SAFETY: a plain system call on our own descriptor table.
            ranged &= unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) } == 0;
        }
        first = fd.saturating_add(1);
    }
    if !ranged {
        for fd in listed.iter().filter(|fd| !keep.contains(fd)) {
            // SAFETY: closing a descriptor the child does not use.
            unsafe { libc::close(*fd) };
        }
    }
}

/// Our open descriptors, split into the inotify instances (kept by the
/// child) and the rest (closed by it: it must hold no pipe, lock or file
/// of ours past our exit).
fn descriptors() -> Option<(Vec<RawFd>, Vec<RawFd>)> {
    let mut keep = Vec::new();
    let mut close = Vec::new();
    for entry in fs::read_dir("/proc/self/fd").ok()? {
        let entry = entry.ok()?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // The listing's own descriptor is gone by the time the child runs;
        // closing a closed one is harmless.
        match fs::read_link(entry.path()) {
            Ok(target) if target.as_os_str() == "anon_inode:inotify" => keep.push(fd),
            _ => close.push(fd),
        }
    }
    Some((keep, close))
}
