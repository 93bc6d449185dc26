//! A store in trouble: s3s-fs behind the fault proxy of tests/support,
//! answering every request with 503 SlowDown, with and without a
//! `Retry-After`, while one call waits for a segment that is there. Counts
//! the requests each program sends in the period, against docs/guide.md's
//! promise (at most 3 in the first 4 s, 7 in the first minute, then about
//! 2 a minute) and an earlier build ($PG_STANDBY_BASE).

use super::*;

pub fn slowdown(p: &Progs) -> Result<()> {
    let secs = env_num("SLOWDOWN_SECS", 60);
    let server = s3_server::S3Server::start();
    let bucket = server.bucket("wal");
    let seg = seg_name(5);
    fs::create_dir_all(bucket.join("a"))?;
    fs::write(
        bucket.join("a").join(&seg),
        segment_bytes(&seg, 16 * MIB, SYSID, 16 * MIB),
    )?;
    let sc = Scratch::new("slowdown", SYSID)?;
    let mut progs = vec![("ours".to_string(), p.ours.clone())];
    if let Some(base) = std::env::var_os("PG_STANDBY_BASE") {
        progs.push(("ours, earlier build ($PG_STANDBY_BASE)".into(), base.into()));
    }
    say(&format!(
        "### A store answering 503 SlowDown for {secs} s: requests sent by one waiting call\n\n\
         s3s-fs on 127.0.0.1 behind a proxy that answers every request 503 SlowDown; the \
         segment is in the bucket; `-s 5 --prefetch=0`.\n\n\
         | program | Retry-After | requests in the first 4 s | in the first minute | in {secs} s | per minute |\n\
         |---|---|---|---|---|---|"
    ));
    for retry_after in [None, Some(5)] {
        for (label, bin) in &progs {
            let proxy = fault_proxy::FaultProxy::start(&server.endpoint);
            proxy.always(fault_proxy::Action::Status {
                status: 503,
                code: "SlowDown",
                retry_after,
            });
            let mut child = Command::new(bin)
                .current_dir(&sc.data)
                .args(["-s", "5", "--prefetch=0", "s3://wal/a", &seg])
                .arg("pg_wal/RECOVERYXLOG")
                .env("AWS_ENDPOINT_URL", &proxy.endpoint)
                .env("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY)
                .env("AWS_REGION", s3_server::REGION)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            thread::sleep(Duration::from_secs(secs));
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait()?;
            let seen = proxy.seen();
            let first = seen.first().map(|s| s.at);
            let within = |limit: Duration| {
                seen.iter()
                    .filter(|s| first.is_some_and(|f| s.at - f < limit))
                    .count()
            };
            say(&format!(
                "| {label} | {} | {} | {} | {} | {:.1} |",
                retry_after.map_or("none".into(), |r| format!("{r} s")),
                within(Duration::from_secs(4)),
                within(Duration::from_secs(60)),
                seen.len(),
                seen.len() as f64 * 60.0 / secs as f64
            ));
        }
    }
    say("");
    Ok(())
}
