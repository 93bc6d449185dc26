//! Arrival latency against a shell loop that checks the
//! segment's size every 5 ms and then runs `cp`, with and without `%r`
//! cleanup, on a quiet machine and with both cores kept busy. Each
//! restore_command gets its own archive (the primary copies every segment
//! into all of them, in place with `cp`, as the issue measured), because
//! `%r` removes files; the standbys run one at a time, rotated, so that
//! they never compete with each other.

use super::*;

pub fn poller(p: &Progs) -> Result<()> {
    let samples = env_num("POLLER_SAMPLES", 25);
    let rounds = env_num("POLLER_ROUNDS", 3);
    let sb = Sandbox::new("poll")?;
    let base = std::env::var_os("PG_STANDBY_BASE").map(PathBuf::from);
    let dirs: Vec<PathBuf> = ["a_r", "a_plain", "a_poll", "a_base"]
        [..if base.is_some() { 4 } else { 3 }]
        .iter()
        .map(|d| sb.path().join(d))
        .collect();
    for d in &dirs {
        sb.mkdir(d)?;
    }
    // Every segment goes to a master archive first, then to the archive of
    // the standby that runs (`current`, a symbolic link switched per run):
    // the copy a standby waits for is the archiver's last act, so no
    // standby replays while the archiver still writes other copies.
    let master = sb.path().join("a_master");
    sb.mkdir(&master)?;
    let current = sb.path().join("current");
    let archive_command = format!(
        "cp %p {m}/%f && cp %p {c}/%f",
        m = master.display(),
        c = current.display()
    );
    point(&current, &dirs[0])?;
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: format!("archive_command = '{archive_command}'\n"),
            ..Default::default()
        },
    )?;
    let backup = primary.cold_backup("base")?;
    let segsize = primary.wal_segment_size()?;
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let poll = dirs[2].display();
    let mut progs = vec![
        (
            "pg_standby with %r",
            format!("{} {} %f %p %r", ours.display(), dirs[0].display()),
        ),
        (
            "pg_standby without %r",
            format!("{} {} %f %p", ours.display(), dirs[1].display()),
        ),
        (
            "5 ms poller, then cp",
            format!(
                "case %f in *.history) exec cp {poll}/%f %p;; esac; \
                 while [ \"$(stat -c %s {poll}/%f 2>/dev/null)\" != {segsize} ]; do sleep 0.005; done; \
                 exec cp {poll}/%f %p"
            ),
        ),
    ];
    if let Some(base) = &base {
        let earlier = install_as(&sb, base, "pg_standby_base")?;
        progs.push((
            "earlier build ($PG_STANDBY_BASE) with %r",
            format!("{} {} %f %p %r", earlier.display(), dirs[3].display()),
        ));
    }
    let standbys = progs
        .iter()
        .enumerate()
        .map(|(k, (_, rc))| standby(&sb, &backup, &format!("s{k}"), rc, None))
        .collect::<Result<Vec<_>>>()?;
    say(&format!(
        "### Arrival latency against a 5 ms poller ({samples} samples per run, {rounds} runs per load, programs rotated)\n\n\
         Hot standbys from one cold backup, recovery_prefetch = off, each with its own archive; the primary copies \
         each segment with an in-place `cp` into a master archive, then into the archive of the standby that runs \
         (one standby at a time; the others are filled from the master before they start). Per sample: \
         `INSERT` + `pg_switch_wal()` on the primary; the time from the segment being complete in that \
         standby's archive (polled every 0.5 ms) to the row being visible. *loaded*: two shell loops \
         `while :; do :; done` keep both cores busy during the run.\n"
    ));
    let mut next_id = 10_000i64;
    // POLLER_LOAD=quiet or loaded runs one of the two.
    let which = std::env::var("POLLER_LOAD").unwrap_or_default();
    for loaded in [false, true] {
        if !which.is_empty() && which != if loaded { "loaded" } else { "quiet" } {
            continue;
        }
        let mut all: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
        let mut runs: Vec<Vec<String>> = vec![Vec::new(); progs.len()];
        let _load = loaded.then(BusyLoops::start).transpose()?;
        for r in 0..rounds {
            for j in 0..progs.len() {
                let k = (j + r as usize) % progs.len();
                let s = &standbys[k];
                point(&current, &dirs[k])?;
                fill_from(&master, &dirs[k])?;
                s.start()?;
                // Caught up: the newest row so far is visible.
                primary.insert_and_switch(next_id)?;
                s.wait_row(next_id, Duration::from_secs(120))?;
                next_id += 1;
                let mut lat = Vec::new();
                for _ in 0..samples {
                    let id = next_id;
                    next_id += 1;
                    let waiter = spawn_waiter(psql_cmd(s, &[&wait_row_sql(id)]))?;
                    thread::sleep(Duration::from_millis(300));
                    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let watch = watch_archive(dirs[k].clone(), segsize, stop.clone());
                    let switched = primary.insert_and_switch(id)?;
                    let (seen, ok, err) = waiter.join().map_err(|_| anyhow::anyhow!("waiter"))?;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    ensure!(ok, "row {id}: {err}");
                    if let Some(arrived) = watch.join().unwrap().get(&switched) {
                        lat.push(ms(seen, *arrived));
                    }
                }
                s.stop("fast")?;
                runs[k].push(format!("{:.1} / {:.1}", median(&lat), pct(&lat, 90.0)));
                eprintln!(
                    "{} {}: {:?}",
                    progs[k].0,
                    if loaded { "loaded" } else { "quiet" },
                    runs[k].last()
                );
                all[k].extend(lat);
            }
        }
        say(&format!(
            "\n{}, load average at the end {}:\n",
            if loaded { "Loaded" } else { "Quiet" },
            loadavg()
        ));
        say("| restore_command | p50 | p90 | per run p50 / p90 (ms) |");
        say("|---|---|---|---|");
        for (k, (label, _)) in progs.iter().enumerate() {
            say(&format!(
                "| {label} | {:.1} ms | {:.1} ms | {} |",
                median(&all[k]),
                pct(&all[k], 90.0),
                runs[k].join("; ")
            ));
        }
    }
    Ok(())
}

/// Make `link` a symbolic link to `target`, atomically.
fn point(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension("new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    Ok(())
}

/// Copy into `dir` the segments `master` holds beyond `dir`'s newest: what
/// the primary archived while another standby ran (not what `%r` removed).
fn fill_from(master: &Path, dir: &Path) -> Result<()> {
    let names = |d: &Path| -> Result<Vec<String>> {
        Ok(fs::read_dir(d)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect())
    };
    let newest = names(dir)?.into_iter().filter(|n| n.len() == 24).max();
    for name in names(master)? {
        let to = dir.join(&name);
        let newer = name.len() != 24 || newest.as_ref().is_none_or(|m| name > *m);
        if newer && !to.exists() {
            use std::os::unix::fs::MetadataExt;
            let from = master.join(&name);
            fs::copy(&from, &to)?;
            // As the archiver (the server's OS user) made it.
            let meta = fs::metadata(&from)?;
            std::os::unix::fs::chown(&to, Some(meta.uid()), Some(meta.gid()))?;
        }
    }
    Ok(())
}

/// Two shell loops keeping both cores busy, killed when dropped.
struct BusyLoops(Vec<Child>);

impl BusyLoops {
    fn start() -> Result<Self> {
        let loops = (0..2)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .context("busy loop")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(loops))
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
