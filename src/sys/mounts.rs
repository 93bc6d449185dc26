//! Waking on mounts and unmounts. An unmounted archive sends no file event
//! that the watcher reports (inotify's IN_UNMOUNT is dropped), and a mount
//! sends none at all; the mount table itself can be waited on: proc(5)
//! says /proc/PID/mounts and mountinfo report POLLPRI when it changes.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::mpsc::SyncSender;
use std::thread;

use anyhow::{Context, Result};

pub fn wake_on_change(wake: SyncSender<()>) -> Result<()> {
    let table = File::open("/proc/self/mountinfo").context("opening /proc/self/mountinfo")?;
    thread::Builder::new()
        .name("mounts".into())
        .spawn(move || {
            let mut fd = libc::pollfd {
                fd: table.as_raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            };
            loop {
                // SAFETY: one valid pollfd, for a descriptor this thread owns.
                let n = unsafe { libc::poll(&mut fd, 1, -1) };
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                if n < 0 || fd.revents & libc::POLLNVAL != 0 {
                    return;
                }
                // A full channel already holds a wake-up: nothing is lost.
                let _ = wake.try_send(());
            }
        })
        .context("starting the mount-table thread")?;
    Ok(())
}
