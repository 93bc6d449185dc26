//! Prefetch from object storage: a standby catching up through
//! segments of rows stored as gzip objects in s3s-fs, against the same
//! segments from a local gzip archive, each with prefetch on (the default)
//! and off. The primary archives every segment to both at once, so every
//! standby replays the same WAL.

use super::*;

pub fn s3_gzip_catch_up(p: &Progs) -> Result<()> {
    let rounds = env_num("CATCHUP_ROUNDS", 3);
    let nseg = env_num("COMPRESSED_SEGMENTS", 30);
    let server = s3_server::S3Server::start();
    server.bucket("wal");
    let sb = Sandbox::new("s3gz")?;
    let arch = sb.archive();
    let upload = format!(
        "env -u LD_LIBRARY_PATH curl -sSf --aws-sigv4 aws:amz:{}:s3 --user {}:{} \
         -H x-amz-content-sha256:UNSIGNED-PAYLOAD -T {a}/%f.gz {}/wal/gz/%f.gz",
        s3_server::REGION,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY,
        server.endpoint,
        a = arch.display()
    );
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: format!(
                "max_wal_size = 8GB\ncheckpoint_timeout = 1h\n\
                 archive_command = 'gzip -c %p > {a}/%f.gz.tmp && mv {a}/%f.gz.tmp {a}/%f.gz && {upload}'\n",
                a = arch.display()
            ),
            ..Default::default()
        },
    )?;
    let backup = primary.cold_backup("base")?;
    let target = write_compressible_segments(&primary, nseg, Duration::from_secs(900))?;
    let segs = fs::read_dir(&arch)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".gz"))
        .count();
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let aws = format!(
        "env AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={}",
        server.endpoint,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY,
        s3_server::REGION
    );
    let s3 = |opts: &str| format!("{aws} {} {opts} s3://wal/gz %f %p", ours.display());
    let progs: Vec<(String, String, bool)> = vec![
        (
            "ours from the local gzip archive".into(),
            sb.restore_command(&ours, "", false),
            false,
        ),
        ("ours from gzip objects in s3s-fs".into(), s3(""), false),
        (
            "ours from the local gzip archive, `--prefetch=0`".into(),
            sb.restore_command(&ours, "--prefetch=0", false),
            false,
        ),
        (
            "ours from gzip objects in s3s-fs, `--prefetch=0`".into(),
            s3("--prefetch=0"),
            false,
        ),
    ];
    say(&format!(
        "\n### Prefetch: catch-up through {nseg} segments of rows from gzip objects ({rounds} rounds, programs rotated)\n\n\
         The primary archives each segment as `%f.gz` into a local directory and uploads the same file to \
         s3s-fs on 127.0.0.1 ({segs} segments in all); a fresh hot standby from the cold backup replays \
         everything, from `pg_ctl start` until `pg_last_wal_replay_lsn()` reaches the primary's last insert \
         position. The first row is the baseline of the × column.\n"
    ));
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    let mut server_cpu: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    for r in 0..rounds {
        for j in 0..progs.len() {
            let k = (j + r as usize) % progs.len();
            let (label, rc, standby_mode) = &progs[k];
            let cpu_before = proc_cpu_ms(server.pid())?;
            let name = format!("g{r}p{k}");
            let (dt, log) = time_catch_up(&sb, &backup, &name, rc, *standby_mode, &target)?;
            let cpu = proc_cpu_ms(server.pid())? - cpu_before;
            let hits = log.matches("from the prefetch spool").count();
            eprintln!("{label}: {dt:.0} ms, {hits} from the spool, s3s-fs used {cpu:.0} ms of CPU");
            totals[k].push(dt);
            server_cpu[k].push(cpu);
        }
    }
    catch_up_table(&progs, &totals, 0, segs);
    say(
        "\nCPU time s3s-fs itself spent serving each catch-up (median), on the same two cores as the replay:\n",
    );
    for (k, (label, _, _)) in progs.iter().enumerate() {
        if label.contains("s3s-fs") {
            say(&format!("- {label}: {:.0} ms", median(&server_cpu[k])));
        }
    }
    Ok(())
}
