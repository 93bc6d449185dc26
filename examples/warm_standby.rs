//! A warm standby in under a minute, with pg_standby as its restore_command.
//!
//!     cargo run --release --example warm_standby
//!
//! What it does, in a throw-away directory under /tmp:
//!   0. builds pg_standby itself (`cargo run --example` builds only the example);
//!   1. finds the PostgreSQL server binaries (PG_BINDIR, pg_config, or /usr/lib/postgresql/*/bin);
//!   2. creates a primary that archives every finished WAL segment into a directory;
//!   3. takes a base backup (a cold copy of the primary's data directory);
//!   4. starts a warm standby from it: archive recovery (recovery.signal), hot_standby = on,
//!      restore_command = 'pg_standby -s 1 -t TRIGGER ARCHIVE %f %p %r';
//!   5. writes on the primary for 15 s, switching WAL every second, and prints each
//!      segment as it is archived and as the standby restores it, with the lag;
//!   6. "loses" the primary (immediate stop) and fails over: creates the trigger file;
//!   7. checks that every row committed before the last archived segment is on the
//!      promoted standby, and that it accepts writes;
//!   8. stops the servers and removes the directory (also on errors and Ctrl-C).
//!
//! Run as root, the servers run as the `postgres` user (PostgreSQL refuses root).

#[path = "../tests/support/pg.rs"]
mod pg;

use anyhow::{Context, Result, bail};
use pg::{PrimaryOptions, Sandbox, StandbyOptions, is_segment_name, wait_until};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WRITE_FOR: Duration = Duration::from_secs(15);
const SWITCH_EVERY: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // Ctrl-C / SIGTERM only raise a flag: the demo stops at the next step and
    // the servers and the temp directory are still cleaned up.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let result = demo(&stop);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if stop.load(Ordering::SeqCst) => {
            eprintln!("\nInterrupted: servers stopped, temporary directory removed.");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn check_interrupt(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Builds pg_standby and returns its path. `cargo run --example` builds the
/// example and the library only, never the package's binaries, so the demo
/// asks the cargo that runs it (`$CARGO`) to build the binary with the same
/// profile into the same target directory: target/<profile>/pg_standby, next
/// to target/<profile>/examples/warm_standby. PG_STANDBY_BIN overrides it.
fn build_pg_standby() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PG_STANDBY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating this example")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("unexpected example location")?;
    let target_dir = profile_dir
        .parent()
        .context("unexpected example location")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => bail!("unexpected example location {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    println!("== 0. Building pg_standby (cargo build --profile {profile} --bin pg_standby)");
    let status = std::process::Command::new(&cargo)
        .arg("build")
        .arg("--profile")
        .arg(profile)
        .arg("--bin")
        .arg("pg_standby")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!("building pg_standby failed ({status})");
    }
    let bin = profile_dir.join("pg_standby");
    if !bin.is_file() {
        bail!(
            "{} not found after building it; set PG_STANDBY_BIN to a pg_standby binary",
            bin.display()
        );
    }
    Ok(bin)
}

fn demo(stop: &Arc<AtomicBool>) -> Result<()> {
    let pg_standby = build_pg_standby()?;

    step(1, "Setting up");
    let sb = Sandbox::new("demo")?;
    println!(
        "   PostgreSQL:  {} ({})",
        sb.pg().version,
        sb.pg().bindir.display()
    );
    println!("   pg_standby:  {}", pg_standby.display());
    println!("   directory:   {}", sb.path().display());
    let bin = sb.install_binary(&pg_standby)?;

    step(
        2,
        "Primary: archive_mode = on, every finished segment is copied to the archive",
    );
    let primary = sb.primary("primary", &PrimaryOptions::default())?;
    println!(
        "   archive_command = 'test ! -f {a}/%f && cp %p {a}/%f'",
        a = sb.archive().display()
    );
    check_interrupt(stop)?;

    step(
        3,
        "Base backup: a cold copy of the primary's data directory",
    );
    let backup = primary.cold_backup("base")?;
    println!("   {}", backup.data.display());
    check_interrupt(stop)?;

    step(
        4,
        "Warm standby: archive recovery with pg_standby as restore_command",
    );
    let trigger = sb.trigger_path("standby");
    let options = format!("-s 1 -t {}", trigger.display());
    let so = StandbyOptions {
        restore_command: sb.restore_command(&bin, &options, true),
        trigger: Some(trigger.clone()),
        ..Default::default()
    };
    let standby = sb.standby("standby", &backup, &so)?;
    if sb.major() >= 12 {
        println!("   recovery.signal (archive recovery, not standby.signal)");
    } else {
        println!("   recovery.conf without standby_mode (archive recovery)");
    }
    println!("   restore_command      = '{}'", so.restore_command);
    println!("   recovery_end_command = 'rm -f {}'", trigger.display());
    standby.start()?;
    println!(
        "   standby is up, read-only, in recovery: {}",
        standby.in_recovery()?
    );
    check_interrupt(stop)?;

    step(
        5,
        &format!(
            "Writing on the primary for {} s: a row every 100 ms, pg_switch_wal() every second",
            WRITE_FOR.as_secs()
        ),
    );
    println!(
        "   (archived = complete in the archive; restored = replayed by the standby; lag between the two)"
    );
    let segsize = primary.wal_segment_size()?;
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor = Monitor::new(&sb.archive(), &standby.logfile, segsize);
    let monitor = {
        let s = Arc::clone(&monitor_stop);
        std::thread::spawn(move || monitor.run(&s))
    };
    let t0 = Instant::now();
    let mut id = 0i64;
    let mut last_switch = Instant::now();
    let mut archived_upto = 0i64; // rows committed before the last switch
    let written = (|| -> Result<()> {
        while t0.elapsed() < WRITE_FOR {
            check_interrupt(stop)?;
            id += 1;
            primary.psql(&format!("INSERT INTO t VALUES ({id}, 'row {id}')"))?;
            if last_switch.elapsed() >= SWITCH_EVERY {
                primary.psql("SELECT pg_switch_wal()")?;
                archived_upto = id;
                last_switch = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // One last switch, and wait until that segment is in the archive.
        let seg = primary.psql("SELECT pg_walfile_name(pg_switch_wal())")?;
        archived_upto = id;
        primary.wait_archived(&seg, Duration::from_secs(30))?;
        // A few more rows that stay in the primary's current, unarchived segment.
        for _ in 0..5 {
            id += 1;
            primary.psql(&format!("INSERT INTO t VALUES ({id}, 'row {id}')"))?;
        }
        Ok(())
    })();
    // let the standby restore the last archived segment before the report
    if written.is_ok() {
        let _ = standby.wait_row(archived_upto, Duration::from_secs(10));
    }
    monitor_stop.store(true, Ordering::SeqCst);
    let lags = monitor.join().unwrap_or_default();
    written?;
    if !lags.is_empty() {
        let mut ms: Vec<u128> = lags.iter().map(Duration::as_millis).collect();
        ms.sort();
        println!(
            "   {} segments restored; lag archive -> standby: median {} ms, max {} ms",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    println!(
        "   the archive holds {} segments: with %r, pg_standby removes the ones older than the",
        sb.archived_segments().len()
    );
    println!("   standby's last restartpoint (made at checkpoint_timeout, 5 min by default)");

    step(
        6,
        "Failover: the primary crashes, then the trigger file is created (smart failover)",
    );
    let on_primary = primary.count()?;
    primary.stop("immediate")?;
    println!(
        "   primary stopped (-m immediate) with {on_primary} rows; {archived_upto} of them committed before the last archived segment"
    );
    let t_fail = Instant::now();
    sb.write_file(&trigger, b"")?;
    println!(
        "   created {} (empty = smart: restore all that is archived, then promote)",
        trigger.display()
    );
    standby.wait_promoted(Duration::from_secs(60))?;
    println!(
        "   standby promoted {:.2} s after the trigger",
        t_fail.elapsed().as_secs_f64()
    );
    check_interrupt(stop)?;

    step(7, "Checking the promoted standby");
    let on_standby = standby.count()?;
    let max_id = standby.query_i64("SELECT coalesce(max(id), 0) FROM t")?;
    println!("   rows on the promoted standby: {on_standby} (ids 1..{max_id})");
    if on_standby != archived_upto || max_id != archived_upto {
        bail!(
            "expected exactly the {archived_upto} rows committed before the last archived segment, found {on_standby}"
        );
    }
    println!("   OK: no archived row lost");
    println!(
        "   the {} rows in the primary's unarchived segment are not there: a warm standby sees only",
        on_primary - archived_upto
    );
    println!("   what reaches the archive (archive_timeout bounds that window)");
    standby.psql("INSERT INTO t VALUES (-1, 'written on the new primary')")?;
    println!("   OK: the new primary accepts writes");
    wait_until(Duration::from_secs(5), "trigger file removal", || {
        Ok(!trigger.exists())
    })?;
    println!("   OK: recovery_end_command removed the trigger file");

    step(8, "Cleaning up");
    standby.stop("fast")?;
    let dir = sb.path().to_path_buf();
    drop(standby);
    drop(primary);
    drop(sb);
    if dir.exists() {
        println!("   servers stopped; could not remove {}", dir.display());
    } else {
        println!("   servers stopped, {} removed", dir.display());
    }
    Ok(())
}

/// Watches the archive and the standby's log; prints each segment when it is
/// archived and when it is restored. Returns the archive -> restore lags.
struct Monitor {
    archive: PathBuf,
    log: PathBuf,
    segsize: u64,
}

impl Monitor {
    fn new(archive: &Path, log: &Path, segsize: u64) -> Monitor {
        Monitor {
            archive: archive.to_path_buf(),
            log: log.to_path_buf(),
            segsize,
        }
    }

    fn complete_segments(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.archive)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        e.metadata()
                            .map(|m| m.len() == self.segsize)
                            .unwrap_or(false)
                    })
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| is_segment_name(n))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn run(self, stop: &AtomicBool) -> Vec<Duration> {
        let start = Instant::now();
        let mut seen: HashSet<String> = self.complete_segments().into_iter().collect();
        let mut archived_at: HashMap<String, Instant> = HashMap::new();
        let mut log_offset = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut partial = String::new();
        let mut lags = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for name in self.complete_segments() {
                if seen.insert(name.clone()) {
                    let now = Instant::now();
                    println!(
                        "   +{:6.2} s  archived  {name}",
                        (now - start).as_secs_f64()
                    );
                    archived_at.insert(name, now);
                }
            }
            for line in read_new_lines(&self.log, &mut log_offset, &mut partial) {
                let Some(rest) = line.split("restored log file \"").nth(1) else {
                    continue;
                };
                let name: String = rest.chars().take_while(|c| *c != '"').collect();
                let now = Instant::now();
                match archived_at.get(&name) {
                    Some(at) => {
                        let lag = now - *at;
                        lags.push(lag);
                        println!(
                            "   +{:6.2} s  restored  {name}   lag {:4} ms",
                            (now - start).as_secs_f64(),
                            lag.as_millis()
                        );
                    }
                    None => println!(
                        "   +{:6.2} s  restored  {name}",
                        (now - start).as_secs_f64()
                    ),
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        lags
    }
}

/// Complete lines appended to `path` since `offset`.
fn read_new_lines(path: &Path, offset: &mut u64, partial: &mut String) -> Vec<String> {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path)
        && f.seek(SeekFrom::Start(*offset)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    *offset += buf.len() as u64;
    partial.push_str(&String::from_utf8_lossy(&buf));
    let mut lines = Vec::new();
    while let Some(i) = partial.find('\n') {
        lines.push(partial[..i].to_string());
        partial.drain(..=i);
    }
    lines
}
