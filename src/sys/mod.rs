//! The operating system, wrapped where it bites: opening files others
//! control without blocking, advice for files we may not read, locks,
//! mounts, signals, and the inotify and signal wake-ups a wait sleeps on
//! (and a child that releases the inotify instance after our exit).

pub mod access;
pub mod flock;
pub mod linger;
pub mod mounts;
pub mod open;
pub mod signals;
pub mod waiter;
