//! Catching up from object storage against the peer that does the same:
//! pg_standby reading gzip objects from `s3://` against pgBackRest 2.45's
//! asynchronous `archive-get` from an S3 repository it filled itself with
//! `archive-push`, both in the same s3s-fs. pgBackRest speaks only TLS to
//! S3, so its requests go through stunnel (a self-signed certificate, not
//! verified); both go through the counting proxy, so each one's requests
//! are counted. Needs `apt-get install pgbackrest stunnel4`.

use super::*;

/// stunnel on 127.0.0.1, terminating TLS for `upstream`; stopped on drop.
struct Stunnel {
    child: Child,
    port: u16,
}

impl Stunnel {
    fn start(sb: &Sandbox, upstream: u16) -> Result<Self> {
        let dir = sb.path().join("stunnel");
        fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("openssl")?;
        ensure!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("stunnel.conf");
        fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\ndebug = 3\n[s3]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{upstream}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )?;
        let log = fs::File::create(dir.join("stunnel.log"))?;
        let child = Command::new("stunnel")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("stunnel (apt-get install stunnel4)")?;
        let mut s = Self { child, port };
        wait_until(Duration::from_secs(20), "stunnel listening", || {
            if let Some(status) = s.child.try_wait()? {
                bail!(
                    "stunnel exited with {status}: {}",
                    fs::read_to_string(dir.join("stunnel.log")).unwrap_or_default()
                );
            }
            Ok(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok())
        })?;
        Ok(s)
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pgbackrest_s3(p: &Progs) -> Result<()> {
    let rounds = env_num("CATCHUP_ROUNDS", 3);
    let nseg = env_num("PGBRS3_SEGMENTS", 100);
    let server = s3_server::S3Server::start();
    server.bucket("wal");
    server.bucket("pgbr");
    let proxy = CountingProxy::start(server.port)?;
    let sb = Sandbox::new("pgbrs3")?;
    let tls = Stunnel::start(&sb, proxy.port)?;
    let Some(pgbr) = pgbackrest::PgBackRest::set_up_s3(&sb, tls.port, "pgbr")? else {
        return Ok(());
    };
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
    let push = pgbr.push_command(&sb.path().join("primary/data"));
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            extra_conf: format!(
                "max_wal_size = 8GB\ncheckpoint_timeout = 1h\n\
                 archive_command = 'gzip -c %p > {a}/%f.gz.tmp && mv {a}/%f.gz.tmp {a}/%f.gz && {upload} && {push}'\n",
                a = arch.display()
            ),
            ..Default::default()
        },
    )?;
    pgbr.create_stanza(&primary)?;
    let backup = primary.cold_backup("base")?;
    // Rows of random text: WAL that compresses as real WAL does.
    primary.psql(&format!(
        "DO $$BEGIN FOR i IN 1..{nseg} LOOP \
           INSERT INTO t SELECT i * 100000 + g, md5(random()::text) || md5(g::text) \
             FROM generate_series(1, 60000) g; \
           PERFORM pg_switch_wal(); END LOOP; END$$"
    ))?;
    let target = primary.psql("SELECT pg_current_wal_insert_lsn()")?;
    let last = primary.switch_wal()?;
    primary.wait_archived(&last, Duration::from_secs(1800))?;
    let segs = fs::read_dir(&arch)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".gz"))
        .count();
    let pushed = walk_files(&server.root().join("pgbr"))
        .iter()
        .filter(|n| n.ends_with(".gz") && n.len() > 24)
        .count();
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    let aws = format!(
        "env AWS_ENDPOINT_URL=http://127.0.0.1:{} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={}",
        proxy.port,
        s3_server::ACCESS_KEY,
        s3_server::SECRET_KEY,
        s3_server::REGION
    );
    // The proxy's class of each program's requests.
    let mut progs: Vec<(String, String, bool)> = vec![(
        "ours, `s3://` gzip objects (prefetch on, the default)".into(),
        format!("{aws} {} s3://wal/gz %f %p", ours.display()),
        false,
    )];
    let mut class = vec![0usize];
    for process_max in [1, 2] {
        progs.push((
            format!(
                "pgBackRest 2.45 `archive-get`, async, process-max={process_max} (standby.signal)"
            ),
            pgbr.get_command(&sb, process_max),
            true,
        ));
        class.push(2);
    }
    say(&format!(
        "\n### Object storage against pgBackRest: catch-up through {nseg} segments of rows ({rounds} rounds, programs rotated)\n\n\
         One s3s-fs on 127.0.0.1 behind a counting proxy; the primary's archive_command gzips each segment, \
         uploads it with `curl --aws-sigv4` as `wal/gz/%f.gz` and runs `pgbackrest archive-push` into an S3 \
         repository in bucket `pgbr` (`compress-type=gz`), through stunnel ({segs} segments; {pushed} in \
         pgBackRest's repository). A fresh hot standby from the cold backup replays everything, from `pg_ctl \
         start` until `pg_last_wal_replay_lsn()` reaches the primary's last insert position; pgBackRest runs \
         with standby.signal, as a restore_command that does not wait must. Requests: what each standby sent \
         through the proxy during its catch-up. The first row is the baseline of the × column.\n"
    ));
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    let mut requests: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    for r in 0..rounds {
        for j in 0..progs.len() {
            let k = (j + r as usize) % progs.len();
            let (label, rc, standby_mode) = &progs[k];
            let name = format!("b{r}p{k}");
            let rc = rc.replace("{NAME}", &name);
            let before = proxy.counts()[class[k]];
            let (dt, log) = time_catch_up(&sb, &backup, &name, &rc, *standby_mode, &target)?;
            // A fetcher may still be finishing: its requests belong to
            // this round.
            thread::sleep(Duration::from_millis(500));
            let n = proxy.counts()[class[k]] - before;
            let hits = log.matches("from the prefetch spool after").count();
            eprintln!("{label}: {dt:.0} ms, {n} requests ({hits} from our spool)");
            totals[k].push(dt);
            requests[k].push(n as f64);
        }
    }
    catch_up_table(&progs, &totals, 0, segs);
    say("\nRequests per catch-up (median of the rounds):\n");
    for (k, (label, _, _)) in progs.iter().enumerate() {
        say(&format!(
            "- {label}: {:.0} ({:.2} per segment)",
            median(&requests[k]),
            median(&requests[k]) / segs as f64
        ));
    }
    Ok(())
}

/// The names of the files under `dir`, at any depth.
fn walk_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else if let Some(n) = path.file_name().and_then(|n| n.to_str()) {
            out.push(n.to_string());
        }
    }
    out
}
