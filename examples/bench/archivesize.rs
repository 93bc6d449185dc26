//! What one call and one cleanup cost as the archive grows: local archives
//! of 1,000 to 1,000,000 files and object-store prefixes of 1,000 and
//! 100,000 keys. Per archive, programs alternated round by round: one call
//! whose segment is there; one whose segment lands (renamed in) a second
//! into the call; one `%r` cleanup process removing 10 segments; and on a
//! store the peak memory of the fetcher's prefetch lanes.

use super::*;

/// Segments each cleanup removes: the oldest ones, put back after the run.
const REMOVED: u64 = 10;

pub fn archive_size(p: &Progs) -> Result<()> {
    let runs = env_num("ARCHIVE_RUNS", 10);
    let sizes = |var: &str, default: &str| -> Vec<u64> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    };
    let base = std::env::var_os("PG_STANDBY_BASE").map(PathBuf::from);
    let mut bins = vec![("ours".to_string(), p.ours.clone())];
    if let Some(b) = &base {
        bins.push(("earlier build ($PG_STANDBY_BASE)".into(), b.clone()));
    }
    let pg = PgInstall::detect()?;
    say(&format!(
        "### Cost as the archive grows ({runs} rounds per row, programs alternated)\n\n\
         Each archive holds N segment names (empty files or objects: names are what a listing \
         sees) plus the real 16 MiB segment R = N + 1. *present*: `pg_standby ARCHIVE R \
         pg_wal/RECOVERYXLOG` with R there. *arriving*: R is renamed into the archive 1 s after the \
         call starts; the wall time is counted from then. *cleanup*: the process a restore call \
         starts for `%r` (`--cleanup-before`, registered as one standby, its entry removed before \
         each run so that it always lists), removing the {REMOVED} oldest segments, which are put \
         back after each run. Peak RSS from `/usr/bin/time`.\n"
    ));
    for n in sizes("ARCHIVE_SIZES", "1000,100000,1000000") {
        let sc = Scratch::new("archivesize", SYSID)?;
        let started = Instant::now();
        for i in 1..=n {
            fs::File::create(sc.archive.join(seg_name(i)))?;
        }
        let req = seg_name(n + 1);
        let staged = sc.data.join(&req);
        fs::write(&staged, segment_bytes(&req, 16 * MIB, SYSID, 16 * MIB))?;
        say(&format!(
            "\n**Local archive, {n} files** (made in {:.0} s; load average {}):\n",
            started.elapsed().as_secs_f64(),
            loadavg()
        ));
        let archive = sc.archive.display().to_string();
        let call = |bin: &Path| {
            vec![
                bin.display().to_string(),
                archive.clone(),
                req.clone(),
                "pg_wal/RECOVERYXLOG".into(),
            ]
        };
        let mut cmds = vec![(
            "cp ARCHIVE/R pg_wal/RECOVERYXLOG".to_string(),
            vec![
                "cp".into(),
                sc.archive.join(&req).display().to_string(),
                "pg_wal/RECOVERYXLOG".into(),
            ],
        )];
        cmds.extend(bins.iter().map(|(l, b)| (l.clone(), call(b))));
        let place = |to: &Path| -> Result<()> {
            let tmp = to.with_extension("tmp");
            fs::copy(&staged, &tmp)?;
            fs::rename(&tmp, to)?;
            Ok(())
        };
        place(&sc.archive.join(&req))?;
        say("present:\n");
        alternate(&sc.data, &cmds, runs)?;
        say("\narriving 1 s into the call:\n");
        let arriving: Vec<_> = bins.iter().map(|(l, b)| (l.clone(), call(b))).collect();
        arrive(
            &sc.data,
            &sc.archive.join(&req),
            &place,
            &arriving,
            runs,
            None,
        )?;
        say(&format!("\ncleanup removing {REMOVED}:\n"));
        let mut cleanups: Vec<(String, Vec<String>)> = bins
            .iter()
            .map(|(l, b)| (l.clone(), cleanup_cmd(b, &[], &archive)))
            .collect();
        let archivecleanup = pg.bindir.join("pg_archivecleanup");
        if archivecleanup.is_file() {
            cleanups.push((
                "pg_archivecleanup ARCHIVE (removal only)".into(),
                vec![
                    archivecleanup.display().to_string(),
                    archive.clone(),
                    seg_name(REMOVED + 1),
                ],
            ));
        }
        clean_rounds(
            &sc.data,
            &cleanups,
            runs,
            &|| {
                let _ = fs::remove_dir_all(sc.archive.join(".pg_standby/standbys"));
                for i in 1..=REMOVED {
                    fs::File::create(sc.archive.join(seg_name(i)))?;
                }
                Ok(())
            },
            None,
        )?;
        let left = fs::read_dir(&sc.archive)?.count();
        ensure!(
            left as u64 >= n,
            "the cleanup removed more than {REMOVED}: {left} files left of {n}"
        );
        drop(sc);
    }
    let server = s3_server::S3Server::start();
    let proxy = CountingProxy::start(server.port)?;
    let keys = vec![
        format!("AWS_ENDPOINT_URL=http://127.0.0.1:{}", proxy.port),
        format!("AWS_ACCESS_KEY_ID={}", s3_server::ACCESS_KEY),
        format!("AWS_SECRET_ACCESS_KEY={}", s3_server::SECRET_KEY),
        format!("AWS_REGION={}", s3_server::REGION),
    ];
    for n in sizes("ARCHIVE_KEYS", "1000,100000") {
        let prefix = format!("a{n}");
        let dir = server.bucket("wal").join(&prefix);
        fs::create_dir_all(&dir)?;
        for i in 1..=n {
            fs::File::create(dir.join(seg_name(i)))?;
        }
        let req = seg_name(n + 1);
        let sc = Scratch::new("archivesize-s3", SYSID)?;
        let staged = sc.data.join(&req);
        fs::write(&staged, segment_bytes(&req, 16 * MIB, SYSID, 16 * MIB))?;
        let url = format!("s3://wal/{prefix}");
        let place = |to: &Path| -> Result<()> {
            let tmp = dir.join(format!(".{req}.tmp"));
            fs::copy(&staged, &tmp)?;
            fs::rename(&tmp, to)?;
            Ok(())
        };
        place(&dir.join(&req))?;
        say(&format!(
            "\n**S3 (s3s-fs on 127.0.0.1), {n} keys** (load average {}):\n",
            loadavg()
        ));
        let call = |bin: &Path| {
            let mut v = vec!["env".to_string()];
            v.extend(keys.iter().cloned());
            v.extend([
                bin.display().to_string(),
                "--prefetch=0".into(),
                url.clone(),
                req.clone(),
                "pg_wal/RECOVERYXLOG".into(),
            ]);
            v
        };
        let cmds: Vec<_> = bins.iter().map(|(l, b)| (l.clone(), call(b))).collect();
        let ours_sent = || proxy.counts()[0];
        say("present (`--prefetch=0`):\n");
        // The server unlinks %p before it runs restore_command.
        let unlink = || {
            let _ = fs::remove_file(sc.data.join("pg_wal/RECOVERYXLOG"));
            Ok(())
        };
        clean_rounds(&sc.data, &cmds, runs, &unlink, Some(&ours_sent))?;
        say("\narriving 1 s into the call (`--prefetch=0`):\n");
        arrive(
            &sc.data,
            &dir.join(&req),
            &place,
            &cmds,
            runs,
            Some(&ours_sent),
        )?;
        say(&format!("\ncleanup removing {REMOVED}:\n"));
        let cleanups: Vec<(String, Vec<String>)> = bins
            .iter()
            .map(|(l, b)| (l.clone(), cleanup_cmd(b, &keys, &url)))
            .collect();
        clean_rounds(
            &sc.data,
            &cleanups,
            runs,
            &|| {
                let _ = fs::remove_dir_all(dir.join(".pg_standby/standbys"));
                for i in 1..=REMOVED {
                    fs::File::create(dir.join(seg_name(i)))?;
                }
                Ok(())
            },
            Some(&ours_sent),
        )?;
        // The prefetch lanes: a call as the server makes it, with the next
        // four segments in the bucket for the fetcher to download at once.
        for i in n + 2..=n + 5 {
            let next = seg_name(i);
            fs::write(
                dir.join(&next),
                segment_bytes(&next, 16 * MIB, SYSID, 16 * MIB),
            )?;
        }
        let (call_rss, fetcher_rss) = prefetch_memory(&p.ours, &keys, &url, &req, &sc.data)?;
        say(&format!(
            "\nprefetch on (`--prefetch=4`, four segments after R in the bucket): the call's peak RSS \
             {:.1} MiB, the fetcher's {:.1} MiB\n",
            call_rss as f64 / 1024.0,
            fetcher_rss as f64 / 1024.0
        ));
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The cleanup process a restore call starts, registered as one standby.
fn cleanup_cmd(bin: &Path, env: &[String], archive: &str) -> Vec<String> {
    let mut v = vec!["env".to_string()];
    v.extend(env.iter().cloned());
    v.extend([
        bin.display().to_string(),
        format!("--cleanup-before={}", seg_name(REMOVED + 1)),
        format!("--cleanup-cluster={SYSID}:{}", 16 * MIB),
        "--standby-name=bench".into(),
        archive.into(),
    ]);
    v
}

/// `cmds` alternated, `reset` before each run; a table like [`alternate`]'s.
fn clean_rounds(
    cwd: &Path,
    cmds: &[(String, Vec<String>)],
    runs: u64,
    reset: &dyn Fn() -> Result<()>,
    requests: Option<&dyn Fn() -> u64>,
) -> Result<()> {
    let mut res: Vec<Vec<Usage>> = (0..cmds.len()).map(|_| Vec::new()).collect();
    let mut sent = vec![0; cmds.len()];
    for _ in 0..runs {
        for (k, (label, argv)) in cmds.iter().enumerate() {
            reset()?;
            let before = requests.map(|r| r());
            let u = run_usage(Command::new(&argv[0]).args(&argv[1..]).current_dir(cwd))?;
            sent[k] += requests.zip(before).map_or(0, |(r, b)| r() - b);
            ensure!(u.status == 0, "{label} exited with {}", u.status);
            res[k].push(u);
        }
    }
    reset()?;
    usage_table(cmds, &res, requests.map(|_| (sent, runs)));
    Ok(())
}

/// Each call started with its segment absent; the segment is placed 1 s
/// later. Wall time from the placing to the exit.
fn arrive(
    cwd: &Path,
    segment: &Path,
    place: &(dyn Fn(&Path) -> Result<()> + Sync),
    cmds: &[(String, Vec<String>)],
    runs: u64,
    requests: Option<&dyn Fn() -> u64>,
) -> Result<()> {
    let mut res: Vec<Vec<Usage>> = (0..cmds.len()).map(|_| Vec::new()).collect();
    let mut sent = vec![0; cmds.len()];
    for _ in 0..runs {
        for (k, (label, argv)) in cmds.iter().enumerate() {
            let before = requests.map(|r| r());
            let _ = fs::remove_file(segment);
            let _ = fs::remove_file(cwd.join("pg_wal/RECOVERYXLOG"));
            let mut u = thread::scope(|s| -> Result<Usage> {
                let placer = s.spawn(|| {
                    thread::sleep(Duration::from_secs(1));
                    place(segment)
                });
                let u = run_usage(Command::new(&argv[0]).args(&argv[1..]).current_dir(cwd));
                placer.join().map_err(|_| anyhow::anyhow!("placer"))??;
                u
            })?;
            sent[k] += requests.zip(before).map_or(0, |(r, b)| r() - b);
            ensure!(u.status == 0, "{label} exited with {}", u.status);
            u.wall_ms -= 1000.0;
            res[k].push(u);
        }
    }
    place(segment)?;
    usage_table(cmds, &res, requests.map(|_| (sent, runs)));
    Ok(())
}

/// `sent`: requests to the store per program over `runs` runs, if counted.
fn usage_table(cmds: &[(String, Vec<String>)], res: &[Vec<Usage>], sent: Option<(Vec<u64>, u64)>) {
    say("| program | wall p50 | wall p90 | CPU p50 | peak RSS max | requests per run |");
    say("|---|---|---|---|---|---|");
    for (k, (label, _)) in cmds.iter().enumerate() {
        let wall: Vec<f64> = res[k].iter().map(|u| u.wall_ms).collect();
        let cpu: Vec<f64> = res[k].iter().map(|u| u.cpu_ms).collect();
        let rss = res[k].iter().map(|u| u.maxrss_kib).max().unwrap_or(0);
        let requests = sent.as_ref().map_or("—".to_string(), |(s, runs)| {
            format!("{:.1}", s[k] as f64 / *runs as f64)
        });
        say(&format!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB | {requests} |",
            median(&wall),
            pct(&wall, 90.0),
            median(&cpu),
            rss as f64 / 1024.0
        ));
    }
}

/// One call with `--prefetch=4` in a data directory with recovery.signal
/// (a server's call): its peak RSS, and the fetcher's (VmHWM, read until
/// it exits), in KiB.
fn prefetch_memory(
    ours: &Path,
    env: &[String],
    url: &str,
    req: &str,
    data: &Path,
) -> Result<(i64, i64)> {
    let mut cmd = Command::new("env");
    cmd.args(env)
        .arg(ours)
        .args(["--prefetch=4", url, req, "pg_wal/RECOVERYXLOG"])
        .current_dir(data);
    let _ = fs::remove_file(data.join("pg_wal/RECOVERYXLOG"));
    let u = run_usage(&mut cmd)?;
    ensure!(u.status == 0, "the call exited with {}", u.status);
    let fetchers = || -> Vec<u32> {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline);
                (cmdline.contains("--prefetch-worker=")
                    && cmdline.contains(&*data.display().to_string()))
                .then_some(pid)
            })
            .collect()
    };
    let mut hwm = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids = fetchers();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            hwm = hwm.max(vm_hwm_kib(pid));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok((u.maxrss_kib, hwm))
}
