//! "Could the data directory's owner do this?": the server runs
//! restore_command as that user, so a check done as root would lie. As root
//! we fork and drop to the owner's uid, gid and supplementary groups, then ask
//! access(2); as the owner we ask access(2) directly; as anyone else we judge
//! from the mode bits (ACLs are not seen then).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub name: Option<String>,
    pub groups: Vec<u32>,
}

impl Owner {
    /// The owner of `path` (the data directory), with its groups from the
    /// group database.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let uid = meta.uid();
        let (name, gid) = match crate::sys::access::user_by_uid(uid) {
            Some((name, gid)) => (Some(name), gid),
            None => (None, meta.gid()),
        };
        let groups = name
            .as_deref()
            .and_then(|n| group_list(n, gid))
            .unwrap_or_else(|| vec![gid]);
        Ok(Self {
            uid,
            gid,
            name,
            groups,
        })
    }

    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }

    /// Whether this user may access `path` with `mode` (libc::R_OK, W_OK,
    /// X_OK, combined); `None` when we cannot tell (mode bits we may not
    /// read ourselves).
    pub fn may(&self, path: &Path, mode: i32) -> Option<bool> {
        let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == self.uid {
            // SAFETY: c_path is a valid NUL-terminated string.
            return Some(unsafe { libc::access(c_path.as_ptr(), mode) } == 0);
        }
        if euid == 0
            && let Some(ok) = self.access_forked(&c_path, mode)
        {
            return Some(ok);
        }
        self.by_mode_bits(path, mode)
    }

    /// access(2) in a child that became the owner. `None` if the child could
    /// not change its identity.
    fn access_forked(&self, path: &CString, mode: i32) -> Option<bool> {
        let groups: Vec<libc::gid_t> = self.groups.clone();
        // SAFETY: the child only makes async-signal-safe calls (setgroups,
        // setgid, setuid, access, _exit) on memory prepared before the fork.
        unsafe {
            let pid = libc::fork();
            if pid < 0 {
                return None;
            }
            if pid == 0 {
                if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(self.gid) != 0
                    || libc::setuid(self.uid) != 0
                {
                    libc::_exit(2);
                }
                libc::_exit(if libc::access(path.as_ptr(), mode) == 0 {
                    0
                } else {
                    1
                });
            }
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    return None;
                }
            }
            if !libc::WIFEXITED(status) {
                return None;
            }
            match libc::WEXITSTATUS(status) {
                0 => Some(true),
                1 => Some(false),
                _ => None,
            }
        }
    }

    /// Search permission on every ancestor, then `mode` on the path itself,
    /// from the owner/group/other bits.
    fn by_mode_bits(&self, path: &Path, mode: i32) -> Option<bool> {
        let allowed = |p: &Path, want: u32| -> Option<bool> {
            let m = std::fs::metadata(p).ok()?;
            let bits = m.mode();
            let class = if self.uid == 0 {
                // root: everything but execute without any x bit
                return Some(want & 1 == 0 || bits & 0o111 != 0 || m.is_dir());
            } else if m.uid() == self.uid {
                (bits >> 6) & 7
            } else if self.groups.contains(&m.gid()) || m.gid() == self.gid {
                (bits >> 3) & 7
            } else {
                bits & 7
            };
            Some(class & want == want)
        };
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        for ancestor in abs.ancestors().skip(1) {
            if !allowed(ancestor, 1)? {
                return Some(false);
            }
        }
        let mut want = 0;
        if mode & libc::R_OK != 0 {
            want |= 4;
        }
        if mode & libc::W_OK != 0 {
            want |= 2;
        }
        if mode & libc::X_OK != 0 {
            want |= 1;
        }
        allowed(&abs, want)
    }
}

fn group_list(name: &str, gid: u32) -> Option<Vec<u32>> {
    let c_name = CString::new(name).ok()?;
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: groups holds `count` entries.
        let rc =
            unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count as usize);
            return Some(groups);
        }
        if count <= n || n > 65536 {
            return None;
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mode_bits_follow_owner_group_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        let me = Owner::of(dir.path()).unwrap();
        let stranger = Owner {
            uid: 4_000_000_001,
            gid: 4_000_000_001,
            name: None,
            groups: vec![4_000_000_001],
        };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(me.by_mode_bits(&f, libc::R_OK), Some(true));
        assert_eq!(stranger.by_mode_bits(&f, libc::R_OK), Some(false));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(stranger.by_mode_bits(&f, libc::R_OK), Some(true));
        assert_eq!(stranger.by_mode_bits(&f, libc::X_OK), Some(false));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            stranger.by_mode_bits(&f, libc::R_OK),
            Some(false),
            "no search permission on the parent"
        );
        // As root, the forked check agrees with the bits for a stranger.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(stranger.may(&f, libc::R_OK), Some(false));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            assert_eq!(stranger.may(&f, libc::R_OK), Some(true));
        }
    }
}
