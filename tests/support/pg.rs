//! Real-server test harness: throw-away PostgreSQL primaries and warm standbys.
//!
//! Shared by `tests/real_pg.rs` and by examples/benchmarks through
//! `#[path = "../tests/support/pg.rs"] mod pg;`, so it only uses std, tempfile
//! and anyhow, and no test-only macros.
//!
//! * Server binaries: `$PG_BINDIR`, else `pg_config --bindir`, else the newest
//!   `/usr/lib/postgresql/*/bin`. `LD_LIBRARY_PATH` is set to `$PG_BINDIR/../lib`
//!   when that directory exists (the npm builds need it).
//! * Queries go through a local `psql` client (`$PSQL`, else `<bindir>/psql`,
//!   else `/usr/bin/psql`): one client talks to every server major.
//! * As root (CI, this machine) the server programs run as `postgres` through
//!   `runuser`, inside a temp dir owned by `postgres`. The binary under test is
//!   copied into that dir so `postgres` can execute it.
//! * Every server listens only on a Unix socket inside its own directory.
//!   Servers are stopped (`-m immediate`) on drop, panics included, and their
//!   log is printed when the thread is panicking.
#![allow(dead_code)]

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Poll `pred` every 50 ms until it returns `Ok(true)` or `timeout` passes.
/// Errors from `pred` count as "not yet" (a server that is still starting);
/// the last one is reported on timeout.
pub fn wait_until<F>(timeout: Duration, what: &str, mut pred: F) -> Result<Duration>
where
    F: FnMut() -> Result<bool>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match pred() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(match last_err {
                Some(e) => {
                    anyhow!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
                }
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether we run as root (then servers and unprivileged runs use other users).
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    Ok(out)
}

fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}):\n{}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the ")" that closes the command name
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Processes (other than this one) whose program (argv[0]) is `prog`, or
/// lies under `prog` when it is a directory. Only the programs the harness
/// put into a sandbox are looked for this way, never arbitrary command lines.
pub fn pids_running(prog: &Path) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
                let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                let argv0 = Path::new(std::ffi::OsStr::from_bytes(argv0));
                if argv0.starts_with(prog) && pid_alive(pid) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Processes (other than this one) working in `dir`: their working
/// directory is under it, or an argument names a path under it. That is
/// how a binary's detached children (a fetcher, a cleanup process) are
/// found once the call that started them has exited.
pub fn pids_in(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = dir.as_os_str().as_bytes();
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let cwd_inside =
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir));
        let names_it = fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle));
        if cwd_inside || names_it {
            pids.push(pid);
        }
    }
    pids
}

/// End every process working in `dir` ([`pids_in`]) and wait until they
/// are gone, so that removing `dir` races with no writer.
pub fn end_processes_in(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids_in(dir);
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("[harness] still running in {}: {pids:?}", dir.display());
            return;
        }
        for pid in pids {
            kill9(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A free TCP port number. The servers listen on Unix sockets only, but every
/// server still gets its own port (it names the socket and keys shared memory).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Which PostgreSQL server binaries to use, and their major version.
#[derive(Debug)]
pub struct PgInstall {
    pub bindir: PathBuf,
    pub libdir: Option<PathBuf>,
    pub major: u32,
    pub version: String,
    pub psql: PathBuf,
}

impl PgInstall {
    pub fn detect() -> Result<Arc<PgInstall>> {
        let bindir = Self::find_bindir()?;
        let libdir = bindir.parent().map(|p| p.join("lib")).filter(|p| {
            // only the self-contained builds (PG_BINDIR) need this
            std::env::var_os("PG_BINDIR").is_some() && p.is_dir()
        });
        let mut cmd = Command::new(bindir.join("postgres"));
        if let Some(lib) = &libdir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let version = run_ok(cmd.arg("--version"))?.trim().to_string();
        let major = parse_major(&version)
            .with_context(|| format!("cannot parse the major version from {version:?}"))?;
        let psql = match std::env::var_os("PSQL") {
            Some(p) => PathBuf::from(p),
            None if bindir.join("psql").is_file() => bindir.join("psql"),
            None if Path::new("/usr/bin/psql").exists() => PathBuf::from("/usr/bin/psql"),
            None => PathBuf::from("psql"),
        };
        Ok(Arc::new(PgInstall {
            bindir,
            libdir,
            major,
            version,
            psql,
        }))
    }

    fn find_bindir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("PG_BINDIR") {
            let dir = PathBuf::from(dir);
            ensure!(
                dir.join("postgres").is_file(),
                "PG_BINDIR={} has no postgres binary",
                dir.display()
            );
            return Ok(dir);
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("postgres").is_file() && dir.join("initdb").is_file() {
                return Ok(dir);
            }
        }
        let mut best: Option<(u32, PathBuf)> = None;
        if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
            for e in rd.flatten() {
                let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let bin = e.path().join("bin");
                if bin.join("postgres").is_file() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, bin));
                }
            }
        }
        best.map(|(_, p)| p).ok_or_else(|| {
            anyhow!("no PostgreSQL server found: set PG_BINDIR, or install postgresql (pg_config --bindir)")
        })
    }

    /// A command for a server program (initdb, pg_ctl, ...), run as `postgres`
    /// when we are root.
    fn server_cmd(&self, prog: &str) -> Command {
        let exe = self.bindir.join(prog);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            if let Some(lib) = &self.libdir {
                c.arg(format!("LD_LIBRARY_PATH={}", lib.display()));
            }
            c.arg(exe);
            c
        } else {
            let mut c = Command::new(exe);
            if let Some(lib) = &self.libdir {
                c.env("LD_LIBRARY_PATH", lib);
            }
            c
        };
        c.env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        c
    }
}

fn parse_major(version: &str) -> Option<u32> {
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "postgres (PostgreSQL) 10.23"
    let rest = version.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

struct SandboxInner {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pg: Arc<PgInstall>,
    owner: Option<(u32, u32)>,
    watchdog: Option<std::process::Child>,
}

/// Cleans up after a test process that died without running its destructors
/// (killed by `timeout`, SIGKILL, an abort): once `$1` (our pid) is gone, the
/// sandbox's postmasters get SIGQUIT (immediate shutdown), then SIGKILL, the
/// programs copied into `$2/bin` are killed, and `$2` is removed unless `$3`
/// is 1. It only touches processes started from this sandbox.
const WATCHDOG: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pids=""
for f in "$2"/*/data/postmaster.pid; do
  [ -f "$f" ] && pids="$pids $(head -n 1 "$f")"
done
[ -n "$pids" ] && kill -QUIT $pids 2>/dev/null && sleep 2 && kill -KILL $pids 2>/dev/null
for p in /proc/[0-9]*; do
  a=$(tr '\0' '\n' < "$p/cmdline" 2>/dev/null | head -n 1)
  case "$a" in "$2"/bin/*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
done
[ "$3" = 1 ] || rm -rf "$2"
"#;

fn start_watchdog(root: &Path) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let keep = if std::env::var_os("PG_HARNESS_KEEP").is_some() {
        "1"
    } else {
        "0"
    };
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("pg-harness-watchdog")
        .arg(std::process::id().to_string())
        .arg(root)
        .arg(keep)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // its own process group: Ctrl-C and `timeout` signal ours, not it
        .process_group(0)
        .spawn()
        .map_err(|e| eprintln!("[harness] no watchdog for {}: {e}", root.display()))
        .ok()
}

impl Drop for SandboxInner {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // Anything still running from this sandbox (a restore command that
        // outlived its server, for instance) goes first.
        for pid in pids_running(&self.root.join("bin")) {
            kill9(pid);
        }
        end_processes_in(&self.root);
        if std::env::var_os("PG_HARNESS_KEEP").is_some()
            && let Some(d) = self.dir.take()
        {
            let p = d.keep();
            eprintln!("[harness] kept sandbox {}", p.display());
        }
    }
}

/// A temp directory holding servers, a shared WAL archive and a copy of the
/// binary under test. Cheap to clone; removed when the last clone (and every
/// server made from it) is dropped.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<SandboxInner>,
}

impl Sandbox {
    pub fn new(label: &str) -> Result<Sandbox> {
        let pg = PgInstall::detect()?;
        Self::with_install(label, pg)
    }

    pub fn with_install(label: &str, pg: Arc<PgInstall>) -> Result<Sandbox> {
        // Short path under /tmp: Unix socket paths are limited to ~107 bytes.
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgsb-{label}-"))
            .tempdir_in("/tmp")
            .context("create temp dir")?;
        let root = dir.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        let owner = if is_root() {
            let uid = run_ok(Command::new("id").args(["-u", "postgres"]))
                .context("running as root needs a 'postgres' user")?;
            let gid = run_ok(Command::new("id").args(["-g", "postgres"]))?;
            Some((uid.trim().parse()?, gid.trim().parse()?))
        } else {
            None
        };
        let sb = Sandbox {
            inner: Arc::new(SandboxInner {
                dir: Some(dir),
                root,
                pg,
                owner,
                watchdog: None,
            }),
        };
        sb.chown(sb.path())?;
        sb.mkdir(&sb.archive())?;
        sb.mkdir(&sb.path().join("bin"))?;
        let mut sb = sb;
        if let Some(inner) = Arc::get_mut(&mut sb.inner) {
            inner.watchdog = start_watchdog(&inner.root);
        }
        Ok(sb)
    }

    pub fn pg(&self) -> &Arc<PgInstall> {
        &self.inner.pg
    }
    pub fn major(&self) -> u32 {
        self.inner.pg.major
    }
    pub fn path(&self) -> &Path {
        &self.inner.root
    }
    /// The shared WAL archive directory.
    pub fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }
    /// A trigger-file path for `name` (the file itself is not created).
    pub fn trigger_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.trigger"))
    }

    fn chown(&self, p: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.inner.owner {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
        }
        Ok(())
    }

    pub fn mkdir(&self, p: &Path) -> Result<()> {
        fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))?;
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
        self.chown(p)
    }

    /// Write a file owned by the server user (trigger files, config files).
    pub fn write_file(&self, p: &Path, contents: &[u8]) -> Result<()> {
        fs::write(p, contents).with_context(|| format!("write {}", p.display()))?;
        self.chown(p)
    }

    pub fn append_file(&self, p: &Path, contents: &str) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .with_context(|| format!("open {}", p.display()))?;
        f.write_all(contents.as_bytes())?;
        drop(f);
        self.chown(p)
    }

    /// Copy the binary under test into the sandbox (mode 755) so the server
    /// user can run it; returns the copy's path.
    pub fn install_binary(&self, src: &Path) -> Result<PathBuf> {
        let name = src.file_name().context("binary path has no file name")?;
        let dst = self.path().join("bin").join(name);
        fs::copy(src, &dst)
            .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
        self.chown(&dst)?;
        Ok(dst)
    }

    /// `<binary> <options> <archive> %f %p [%r]`, for restore_command.
    pub fn restore_command(&self, binary: &Path, options: &str, with_r: bool) -> String {
        format!(
            "{} {} {} %f %p{}",
            binary.display(),
            options,
            self.archive().display(),
            if with_r { " %r" } else { "" }
        )
    }

    /// Names of the files in the archive (sorted).
    pub fn archive_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.archive())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Bare segment names in the archive (24 hex digits), sorted.
    pub fn archived_segments(&self) -> Vec<String> {
        self.archive_files()
            .into_iter()
            .filter(|n| is_segment_name(n))
            .collect()
    }

    fn server_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.path().join(name);
        ensure!(
            !d.exists(),
            "server name {name} already used in this sandbox"
        );
        self.mkdir(&d)?;
        Ok(d)
    }

    /// initdb + start a primary archiving into `archive()` with
    /// `test ! -f ARCH/%f && cp %p ARCH/%f`. Creates table `t(id, note)`.
    pub fn primary(&self, name: &str, opts: &PrimaryOptions) -> Result<Server> {
        let pg = self.pg().clone();
        let dir = self.server_dir(name)?;
        let data = dir.join("data");
        let mut cmd = pg.server_cmd("initdb");
        cmd.current_dir(&dir).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "-N",
        ]);
        if let Some(mb) = opts.wal_segsize_mb {
            ensure!(pg.major >= 11, "--wal-segsize needs PostgreSQL 11 or later");
            cmd.arg(format!("--wal-segsize={mb}"));
        }
        run_ok(&mut cmd).context("initdb")?;
        let srv = Server::new(self.clone(), name, dir, data)?;
        let arch = self.archive();
        srv.append_conf(&format!(
            "\n# --- test harness: primary ---\n\
             wal_level = replica\n\
             archive_mode = on\n\
             archive_command = 'test ! -f {arch}/%f && cp %p {arch}/%f'\n\
             {extra}\n",
            arch = arch.display(),
            extra = opts.extra_conf,
        ))?;
        srv.start()?;
        srv.psql("CREATE TABLE t (id bigint PRIMARY KEY, note text)")?;
        Ok(srv)
    }

    /// A standby in *archive recovery* (recovery.signal on 12+, recovery.conf
    /// without standby_mode on 10/11) made from a copy of `backup`, or in
    /// standby mode when `opts.standby_mode` is set. Not started.
    pub fn standby(
        &self,
        name: &str,
        backup: &BaseBackup,
        opts: &StandbyOptions,
    ) -> Result<Server> {
        let major = self.major();
        let dir = self.server_dir(name)?;
        let data = dir.join("data");
        run_ok(Command::new("cp").arg("-a").arg(&backup.data).arg(&data))
            .context("copy base backup")?;
        let _ = fs::remove_file(data.join("postmaster.pid"));
        let mut srv = Server::new(self.clone(), name, dir, data.clone())?;
        srv.standby = true;
        let mut recovery = format!("restore_command = '{}'\n", opts.restore_command);
        if let Some(t) = &opts.trigger {
            recovery += &format!("recovery_end_command = 'rm -f {}'\n", t.display());
        }
        recovery += "recovery_target_timeline = 'latest'\n";
        if opts.standby_mode && major < 12 {
            recovery += "standby_mode = on\n";
        }
        let mut conf = String::from("\n# --- test harness: warm standby ---\nhot_standby = on\n");
        conf += if opts.archive_mode {
            "archive_mode = on\n"
        } else {
            "archive_mode = off\n"
        };
        if major >= 15 {
            // see measured.md: with prefetch the newest segment's commits stay invisible
            conf += "recovery_prefetch = off\n";
        }
        conf += &opts.extra_conf;
        conf += "\n";
        if major >= 12 {
            conf += &recovery;
            let signal = if opts.standby_mode {
                "standby.signal"
            } else {
                "recovery.signal"
            };
            self.write_file(&data.join(signal), b"")?;
        } else {
            self.write_file(&data.join("recovery.conf"), recovery.as_bytes())?;
        }
        srv.append_conf(&conf)?;
        Ok(srv)
    }
}

pub fn is_segment_name(n: &str) -> bool {
    n.len() == 24
        && n.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

#[derive(Default, Clone)]
pub struct PrimaryOptions {
    /// initdb --wal-segsize (MB), PostgreSQL 11+.
    pub wal_segsize_mb: Option<u32>,
    /// Extra postgresql.conf lines.
    pub extra_conf: String,
}

#[derive(Default, Clone)]
pub struct StandbyOptions {
    /// The full restore_command (see `Sandbox::restore_command`).
    pub restore_command: String,
    /// Trigger file: `recovery_end_command = 'rm -f <trigger>'` is set up.
    pub trigger: Option<PathBuf>,
    /// Archive after promotion (into the same archive as the primary).
    pub archive_mode: bool,
    /// Extra postgresql.conf lines.
    pub extra_conf: String,
    /// PostgreSQL's own standby mode (standby.signal, or standby_mode = on in
    /// recovery.conf) instead of archive recovery: not the warm-standby setup,
    /// used to check that the binary answers at once there.
    pub standby_mode: bool,
}

/// A stopped, consistent copy of a primary's data directory.
#[derive(Clone, Debug)]
pub struct BaseBackup {
    pub data: PathBuf,
}

/// One PostgreSQL server of a sandbox.
pub struct Server {
    sandbox: Sandbox,
    pub name: String,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub logfile: PathBuf,
    standby: bool,
}

impl Server {
    fn new(sandbox: Sandbox, name: &str, dir: PathBuf, data: PathBuf) -> Result<Server> {
        let port = free_port()?;
        let srv = Server {
            sandbox,
            name: name.to_string(),
            logfile: dir.join("server.log"),
            dir,
            data,
            port,
            standby: false,
        };
        srv.append_conf(&format!(
            "\n# --- test harness: common ---\n\
             port = {port}\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{sock}'\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] '\n\
             fsync = off\n\
             autovacuum = off\n\
             max_connections = 20\n\
             shared_buffers = 16MB\n",
            sock = srv.dir.display()
        ))?;
        Ok(srv)
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
    pub fn major(&self) -> u32 {
        self.sandbox.major()
    }

    /// Append lines to postgresql.conf (later settings win).
    pub fn append_conf(&self, text: &str) -> Result<()> {
        self.sandbox
            .append_file(&self.data.join("postgresql.conf"), text)
    }

    /// `pg_ctl -D <data>` for this server, run as `postgres` when we are root.
    pub fn pg_ctl(&self) -> Command {
        let mut c = self.sandbox.pg().server_cmd("pg_ctl");
        c.current_dir(&self.dir).arg("-D").arg(&self.data);
        c
    }

    /// Start without waiting (a standby may block in restore_command, or fail).
    pub fn start_nowait(&self) -> Result<()> {
        let mut c = self.pg_ctl();
        c.arg("-l").arg(&self.logfile).args(["-W", "start"]);
        run_ok(&mut c).with_context(|| format!("pg_ctl start {}", self.name))?;
        Ok(())
    }

    /// Start and wait until it accepts connections (a hot standby: once consistent).
    pub fn start(&self) -> Result<()> {
        self.start_nowait()?;
        self.wait_ready(Duration::from_secs(60))
    }

    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.psql("SELECT 1").is_ok() {
                return Ok(());
            }
            // A pid file whose process is gone means the server died; no pid
            // file at all is judged only after a while (a loaded machine).
            let died = match self.postmaster_pid() {
                Some(pid) => !pid_alive(pid),
                None => start.elapsed() > Duration::from_secs(10),
            };
            if died && start.elapsed() > Duration::from_millis(300) {
                bail!(
                    "server {} is not running; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "server {} not ready after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pg_ctl promote`, waiting for the end of recovery.
    pub fn promote(&self) -> Result<()> {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "promote"]);
        run_ok(&mut c).with_context(|| format!("pg_ctl promote {}", self.name))?;
        Ok(())
    }

    /// `pg_ctl stop -m <mode>` (smart|fast|immediate), waiting for it.
    pub fn stop(&self, mode: &str) -> Result<()> {
        let mut c = self.pg_ctl();
        c.args(["-m", mode, "-w", "-t", "60", "stop"]);
        run_ok(&mut c).with_context(|| format!("pg_ctl stop -m {mode} {}", self.name))?;
        Ok(())
    }

    pub fn postmaster_pid(&self) -> Option<u32> {
        let s = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        s.lines().next()?.trim().parse().ok()
    }

    /// The postmaster is alive.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(pid_alive)
    }

    /// Wait until the postmaster has gone (e.g. after a FATAL in recovery).
    pub fn wait_stopped(&self, timeout: Duration) -> Result<Duration> {
        wait_until(timeout, &format!("{} to stop", self.name), || {
            Ok(!self.is_running())
        })
    }

    /// A psql command for `statements` on this server (`-XAtq`, one `-c`
    /// per statement so each runs in its own transaction).
    pub fn psql_command(&self, statements: &[&str]) -> Command {
        let mut c = Command::new(&self.sandbox.pg().psql);
        c.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .arg("-p")
        .arg(self.port.to_string())
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
        for s in statements {
            c.arg("-c").arg(s);
        }
        c
    }

    /// Run SQL through psql; returns stdout, trimmed.
    pub fn psql_multi(&self, statements: &[&str]) -> Result<String> {
        let mut c = self.psql_command(statements);
        let out = run(&mut c)?;
        if !out.status.success() {
            bail!(
                "psql on {} failed: {:?}: {}",
                self.name,
                statements,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_multi(&[sql])
    }

    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let s = self.psql(sql)?;
        s.parse()
            .with_context(|| format!("{sql}: not an integer: {s:?}"))
    }

    pub fn in_recovery(&self) -> Result<bool> {
        Ok(self.psql("SELECT pg_is_in_recovery()")? == "t")
    }

    /// Rows in table `t`.
    pub fn count(&self) -> Result<i64> {
        self.query_i64("SELECT count(*) FROM t")
    }

    pub fn has_row(&self, id: i64) -> Result<bool> {
        Ok(self.psql(&format!("SELECT count(*) FROM t WHERE id = {id}"))? == "1")
    }

    /// WAL segment size in bytes.
    pub fn wal_segment_size(&self) -> Result<u64> {
        let s = self.psql("SELECT pg_size_bytes(current_setting('wal_segment_size'))")?;
        Ok(s.parse()?)
    }

    /// Current WAL segment name (on a primary).
    pub fn current_segment(&self) -> Result<String> {
        self.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    }

    /// Insert row `id` into `t` (committed), then `pg_switch_wal()`. Returns
    /// the name of the segment that was completed (and will be archived).
    pub fn insert_and_switch(&self, id: i64) -> Result<String> {
        self.insert_rows_and_switch(id..=id)
    }

    pub fn insert_rows_and_switch(&self, ids: std::ops::RangeInclusive<i64>) -> Result<String> {
        let ins = format!(
            "INSERT INTO t SELECT g, 'row ' || g FROM generate_series({}, {}) g",
            ids.start(),
            ids.end()
        );
        self.psql_multi(&[&ins, "SELECT pg_walfile_name(pg_switch_wal())"])
    }

    /// Write something (so the switch is not a no-op), then switch WAL.
    /// Returns the completed segment's name.
    pub fn switch_wal(&self) -> Result<String> {
        self.psql_multi(&[
            "CREATE TABLE IF NOT EXISTS harness_tick (x int)",
            "INSERT INTO harness_tick VALUES (1)",
            "SELECT pg_walfile_name(pg_switch_wal())",
        ])
    }

    /// Wait until `segment` is complete in the archive: the server marks
    /// it `.done` once archive_command succeeded (whatever form it stores:
    /// plain or compressed).
    pub fn wait_archived(&self, segment: &str, timeout: Duration) -> Result<Duration> {
        let done = self
            .data
            .join("pg_wal/archive_status")
            .join(format!("{segment}.done"));
        wait_until(timeout, &format!("{segment} to be archived"), || {
            Ok(done.exists())
        })
    }

    /// A consistent cold copy of this (running) primary's data directory:
    /// CHECKPOINT, stop fast, copy, start again, then switch WAL so the segment
    /// holding the shutdown checkpoint reaches the archive (a warm standby
    /// built from the copy starts by asking for it).
    pub fn cold_backup(&self, label: &str) -> Result<BaseBackup> {
        self.psql("CHECKPOINT")?;
        self.stop("fast")?;
        let dir = self.sandbox.path().join("backups");
        self.sandbox.mkdir(&dir)?;
        let dest = dir.join(label);
        ensure!(!dest.exists(), "backup {label} already exists");
        run_ok(Command::new("cp").arg("-a").arg(&self.data).arg(&dest))
            .context("copy data directory")?;
        let _ = fs::remove_file(dest.join("postmaster.pid"));
        self.start()?;
        let seg = self.switch_wal()?;
        self.wait_archived(&seg, Duration::from_secs(30))?;
        Ok(BaseBackup { data: dest })
    }

    /// The whole server log.
    pub fn log(&self) -> String {
        fs::read(&self.logfile)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let v: Vec<&str> = log.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// The server promoted itself at some point (new timeline chosen).
    pub fn log_shows_promotion(&self) -> bool {
        self.log().contains("selected new timeline ID")
    }

    /// Wait until the standby has left recovery (promoted).
    pub fn wait_promoted(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_until(timeout, &format!("{} to be promoted", self.name), || {
            if start.elapsed() > Duration::from_secs(1) && !self.is_running() {
                bail!("server {} is not running", self.name);
            }
            Ok(!self.in_recovery()?)
        })
    }

    /// Wait until row `id` is visible.
    pub fn wait_row(&self, id: i64, timeout: Duration) -> Result<Duration> {
        wait_until(timeout, &format!("row {id} on {}", self.name), || {
            self.has_row(id)
        })
    }

    /// Wait until `t` holds at least `n` rows.
    pub fn wait_count(&self, n: i64, timeout: Duration) -> Result<Duration> {
        wait_until(timeout, &format!("{n} rows on {}", self.name), || {
            Ok(self.count()? >= n)
        })
    }

    fn kill_leftovers(&self) {
        if let Some(pid) = self.postmaster_pid()
            && pid_alive(pid)
        {
            kill9(pid);
        }
        // A restore command left waiting is killed with the sandbox (see
        // SandboxInner::drop); backends exit on their own once the postmaster is gone.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== server log of {} ({}) =====\n{}\n===== end of {} log =====",
                self.name,
                self.logfile.display(),
                self.log(),
                self.name
            );
        }
        if self.is_running() {
            let mut c = self.pg_ctl();
            c.args(["-m", "immediate", "-w", "-t", "20", "stop"]);
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        self.kill_leftovers();
    }
}
