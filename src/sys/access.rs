//! A file in the archive this process may not read (EACCES): who owns it,
//! its mode, and the `chmod`/`chown` that lets the server's OS user read
//! it. The archived copy may be the only one: the advice never removes it.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What blocks the read: the file itself, or a directory on its path that
/// we may not search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub path: String,
    pub is_dir: bool,
    pub owner: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Who we are: the server's OS user, as the server runs us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub name: String,
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// The fix, for the log: owner, mode, and the command. Pure.
pub fn advice(b: &Blocker, me: &Reader) -> String {
    let what = if b.is_dir { "directory" } else { "file" };
    // Reading a file needs r; going through a directory needs x (and r
    // to list it, which the cleanup and the metrics do).
    let bits = if b.is_dir { "rx" } else { "r" };
    let class = if b.uid == me.uid {
        "u"
    } else if me.groups.contains(&b.gid) {
        "g"
    } else {
        "o"
    };
    let chmod = format!("chmod {class}+{bits} \"{}\"", b.path);
    let alternative = if class == "o" {
        format!(
            " (or chown {} \"{}\", or add {} to group {})",
            me.name, b.path, me.name, b.group
        )
    } else {
        String::new()
    };
    format!(
        "the {what} \"{}\" is owned by {}:{} with mode {:04o}, and pg_standby runs as {}: \
         let it read the {what}, without removing or replacing it (it may be the only copy): \
         {chmod}{alternative}, then start the server",
        b.path,
        b.owner,
        b.group,
        b.mode & 0o7777,
        me.name
    )
}

/// The advice for `path` when this process may not read it; `None` when it
/// may (or the path is not a local file: object storage).
pub fn unreadable_fix(path: &Path) -> Option<String> {
    // Never a blocking open: the name may be a FIFO.
    match crate::sys::open::regular(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        _ => return None,
    }
    let me = Reader::current();
    // A directory on the way that we may not search, outermost first;
    // else the file itself.
    let abs = std::path::absolute(path).ok()?;
    let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
    dirs.reverse();
    let blocked = dirs
        .into_iter()
        .find(|d| !may(d, libc::X_OK))
        .unwrap_or(&abs);
    let meta = std::fs::metadata(blocked).ok()?;
    let blocker = Blocker {
        path: blocked.display().to_string(),
        is_dir: meta.is_dir(),
        owner: user_name(meta.uid()).unwrap_or_else(|| format!("uid {}", meta.uid())),
        group: group_name(meta.gid()).unwrap_or_else(|| format!("gid {}", meta.gid())),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
    };
    Some(advice(&blocker, &me))
}

impl Reader {
    fn current() -> Self {
        // SAFETY: getuid, getgid and getgroups have no preconditions; the
        // buffer holds the count asked for.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut groups = vec![0 as libc::gid_t; 256];
        let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
        groups.truncate(n.max(0) as usize);
        groups.push(gid);
        Self {
            name: user_name(uid).unwrap_or_else(|| format!("uid {uid}")),
            uid,
            groups,
        }
    }
}

fn may(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: c is a valid NUL-terminated string.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

fn user_name(uid: u32) -> Option<String> {
    user_by_uid(uid).map(|(name, _)| name)
}

/// The name and primary group of a user id, from the password database.
pub fn user_by_uid(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in buf.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, pw.pw_gid))
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed group is a valid out-parameter for getgrgid_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in buf.
    Some(
        unsafe { CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocker(is_dir: bool, uid: u32, gid: u32, mode: u32) -> Blocker {
        Blocker {
            path: "/arch/000000010000000000000005".into(),
            is_dir,
            owner: if uid == 0 { "root" } else { "postgres" }.into(),
            group: if gid == 0 { "root" } else { "backup" }.into(),
            uid,
            gid,
            mode,
        }
    }

    #[test]
    fn the_fix_names_owner_mode_and_command_and_never_removes() {
        let me = Reader {
            name: "postgres".into(),
            uid: 104,
            groups: vec![108, 34],
        };
        // (blocker, expected command, expected alternative)
        let table = [
            (
                blocker(false, 0, 0, 0o100600),
                "chmod o+r",
                Some("chown postgres"),
            ),
            (blocker(false, 0, 34, 0o100640 & !0o040), "chmod g+r", None),
            (blocker(false, 104, 108, 0o100000), "chmod u+r", None),
            (
                blocker(true, 0, 0, 0o040700),
                "chmod o+rx",
                Some("chown postgres"),
            ),
        ];
        for (b, command, alternative) in table {
            let said = advice(&b, &me);
            assert!(said.contains(command), "{said}");
            assert_eq!(said.contains("(or chown"), alternative.is_some(), "{said}");
            if let Some(a) = alternative {
                assert!(said.contains(a), "{said}");
            }
            assert!(said.contains(&format!("{}:{}", b.owner, b.group)), "{said}");
            assert!(
                said.contains(&format!("mode {:04o}", b.mode & 0o7777)),
                "{said}"
            );
            assert!(said.contains("runs as postgres"), "{said}");
            assert!(said.contains("without removing"), "{said}");
            assert!(!said.contains("remove or replace"), "{said}");
        }
    }
}
