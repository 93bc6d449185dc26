//! Catching up from object storage against the peer that does the same:
//! pg_standby reading gzip objects from `s3://`, `gs://` and `azure://`
//! against pgBackRest 2.45's asynchronous `archive-get` from a repository
//! it filled itself with `archive-push`, in the same emulator (s3s-fs,
//! fake-gcs-server, Azurite). pgBackRest speaks only TLS to object storage,
//! so its requests go through stunnel (a self-signed certificate, not
//! verified); every standby's requests go through a counting proxy in
//! front of the emulator. Needs `apt-get install pgbackrest stunnel4`;
//! `PGBRS3_STORES` (default `s3,gcs,azure`) picks the stores.

use super::*;

/// stunnel on 127.0.0.1, terminating TLS for `upstream`; stopped on drop.
struct Stunnel {
    child: Child,
    port: u16,
}

impl Stunnel {
    fn start(sb: &Sandbox, name: &str, upstream: u16) -> Result<Self> {
        let dir = sb.path().join(format!("stunnel-{name}"));
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
        let port = free_port()?;
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

/// A running emulator, kept alive while its store is used.
#[allow(dead_code)]
enum Emulator {
    S3(s3_server::S3Server),
    Gcs(gcs_server::GcsServer),
    Azure(azure_server::AzureServer),
}

/// One store: the emulator, the counting proxy and TLS terminator in front
/// of it, pgBackRest's repository in it, and how ours and the primary
/// reach it. Ours reads `{url}` (the gzip objects), pgBackRest its
/// repository in the bucket or container `pgbr`.
struct Store {
    label: &'static str,
    _emulator: Emulator,
    proxy: CountingProxy,
    _tls: Stunnel,
    pgbr: pgbackrest::PgBackRest,
    /// archive_command's upload of `ARCHIVE/%f.gz`.
    upload: String,
    /// Ours: the environment and the archive location.
    ours: String,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn set_up_store(sb: &Sandbox, kind: &str) -> Result<Option<Store>> {
    let arch = sb.archive();
    let gz = format!("{}/%f.gz", arch.display());
    let (label, emulator, port) = match kind {
        "s3" => {
            let server = s3_server::S3Server::start();
            server.bucket("wal");
            server.bucket("pgbr");
            let port = server.port;
            ("S3 (s3s-fs)", Emulator::S3(server), port)
        }
        "gcs" => {
            let server = gcs_server::GcsServer::start();
            server.bucket("wal");
            server.bucket("pgbr");
            let port = server.port;
            (
                "Cloud Storage (fake-gcs-server)",
                Emulator::Gcs(server),
                port,
            )
        }
        "azure" => {
            let server = azure_server::AzureServer::start();
            server.container("wal");
            server.container("pgbr");
            let port = server.port;
            ("Azure (Azurite)", Emulator::Azure(server), port)
        }
        other => bail!("unknown store {other} in PGBRS3_STORES (s3, gcs, azure)"),
    };
    let proxy = CountingProxy::start(port)?;
    let tls = Stunnel::start(sb, kind, proxy.port)?;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let direct = format!("http://127.0.0.1:{port}");
    let (upload, ours, repo) = match &emulator {
        Emulator::S3(_) => (
            format!(
                "curl -sSf --aws-sigv4 aws:amz:{}:s3 --user {}:{} \
                 -H x-amz-content-sha256:UNSIGNED-PAYLOAD -T {gz} {direct}/wal/gz/%f.gz",
                s3_server::REGION,
                s3_server::ACCESS_KEY,
                s3_server::SECRET_KEY,
            ),
            format!(
                "env AWS_ENDPOINT_URL={via} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} \
                 AWS_REGION={} {{BIN}} s3://wal/gz",
                s3_server::ACCESS_KEY,
                s3_server::SECRET_KEY,
                s3_server::REGION
            ),
            format!(
                "repo1-type=s3\nrepo1-s3-bucket=pgbr\nrepo1-s3-endpoint=127.0.0.1\n\
                 repo1-s3-uri-style=path\nrepo1-s3-region={}\nrepo1-s3-key={}\nrepo1-s3-key-secret={}\n",
                s3_server::REGION,
                s3_server::ACCESS_KEY,
                s3_server::SECRET_KEY
            ),
        ),
        Emulator::Gcs(_) => (
            format!(
                "curl -sSf -o /dev/null -X POST --data-binary @{gz} -H Content-Type:application/octet-stream \
                 \"{direct}/upload/storage/v1/b/wal/o?uploadType=media&name=gz/%f.gz\""
            ),
            format!("env STORAGE_EMULATOR_HOST={via} {{BIN}} gs://wal/gz"),
            // The emulator checks no token; a 16 MiB chunk keeps every
            // segment a single upload.
            format!(
                "repo1-type=gcs\nrepo1-gcs-bucket=pgbr\nrepo1-gcs-endpoint=127.0.0.1:{}\n\
                 repo1-gcs-key-type=token\nrepo1-gcs-key=emulator\nrepo1-storage-upload-chunk-size=16MiB\n",
                tls.port
            ),
        ),
        Emulator::Azure(server) => {
            // archive_command expands %-escapes: the SAS's own are doubled.
            let sas = server.account_sas("rwlc").replace('%', "%%");
            (
                format!(
                    "curl -sSf -X PUT -H x-ms-blob-type:BlockBlob --upload-file {gz} \
                     \"{direct}/{}/wal/gz/%f.gz?{sas}\"",
                    azure_server::ACCOUNT
                ),
                format!(
                    "env AZURE_STORAGE_ACCOUNT={} AZURE_STORAGE_KEY={} \
                     AZURE_STORAGE_BLOB_ENDPOINT={via}/{} {{BIN}} azure://wal/gz",
                    azure_server::ACCOUNT,
                    azure_server::KEY,
                    azure_server::ACCOUNT
                ),
                format!(
                    "repo1-type=azure\nrepo1-azure-container=pgbr\nrepo1-azure-account={}\n\
                     repo1-azure-key={}\nrepo1-azure-endpoint=127.0.0.1\nrepo1-azure-uri-style=path\n",
                    azure_server::ACCOUNT,
                    azure_server::KEY
                ),
            )
        }
    };
    let repo = format!(
        "{repo}repo1-path=/repo\nrepo1-storage-port={}\nrepo1-storage-verify-tls=n\n",
        tls.port
    );
    let Some(pgbr) =
        pgbackrest::PgBackRest::set_up_remote(sb, &format!("pgbackrest-{kind}"), &repo)?
    else {
        return Ok(None);
    };
    Ok(Some(Store {
        label,
        _emulator: emulator,
        proxy,
        _tls: tls,
        pgbr,
        upload: format!("env -u LD_LIBRARY_PATH {upload}"),
        ours,
    }))
}

pub fn pgbackrest_s3(p: &Progs) -> Result<()> {
    let rounds = env_num("CATCHUP_ROUNDS", 3);
    let nseg = env_num("PGBRS3_SEGMENTS", 100);
    let kinds = std::env::var("PGBRS3_STORES").unwrap_or_else(|_| "s3,gcs,azure".into());
    let sb = Sandbox::new("pgbrs3")?;
    let mut stores = Vec::new();
    for kind in kinds.split(',').filter(|k| !k.is_empty()) {
        match set_up_store(&sb, kind)? {
            Some(store) => stores.push(store),
            None => return Ok(()),
        }
    }
    let arch = sb.archive();
    let primary_data = sb.path().join("primary/data");
    let mut archive_command = format!(
        "gzip -c %p > {a}/%f.gz.tmp && mv {a}/%f.gz.tmp {a}/%f.gz",
        a = arch.display()
    );
    for st in &stores {
        archive_command += &format!(
            " && {} && {}",
            st.upload,
            st.pgbr.push_command(&primary_data)
        );
    }
    let primary = sb.primary(
        "primary",
        &PrimaryOptions {
            // Nothing is archived until every stanza exists: a failing
            // archive_command would put the archiver to sleep for a minute.
            extra_conf: "max_wal_size = 8GB\ncheckpoint_timeout = 1h\narchive_command = ''\n"
                .into(),
            ..Default::default()
        },
    )?;
    for st in &stores {
        st.pgbr.create_stanza(&primary)?;
    }
    // PostgreSQL 15 cuts an expanded archive_command at 1,023 bytes: the
    // commands go into a script, %p and %f as its arguments.
    let script = sb.path().join("archive.sh");
    let body = archive_command
        .replace("%p", "\"$1\"")
        .replace("%f", "$2")
        .replace("%%", "%");
    sb.write_file(&script, format!("#!/bin/sh\nset -e\n{body}\n").as_bytes())?;
    primary.psql(&format!(
        "ALTER SYSTEM SET archive_command = 'sh {} %p %f'",
        script.display()
    ))?;
    primary.psql("SELECT pg_reload_conf()")?;
    let backup = primary.cold_backup("base")?;
    let target = write_compressible_segments(&primary, nseg, Duration::from_secs(3600))?;
    let segs = fs::read_dir(&arch)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".gz"))
        .count();
    let ours = install_as(&sb, &p.ours, "pg_standby")?;
    // (store, label, restore_command, standby mode, proxy class)
    let mut progs: Vec<(usize, String, String, bool, usize)> = Vec::new();
    for (i, st) in stores.iter().enumerate() {
        let rc = format!(
            "{} %f %p",
            st.ours.replace("{BIN}", &ours.display().to_string())
        );
        progs.push((
            i,
            format!("{}: ours (prefetch on, the default)", st.label),
            rc,
            false,
            0,
        ));
        for process_max in [1, 2] {
            progs.push((
                i,
                format!(
                    "{}: pgBackRest 2.45 `archive-get`, async, process-max={process_max}",
                    st.label
                ),
                st.pgbr.get_command(&sb, process_max),
                true,
                2,
            ));
        }
    }
    // What no restore_command from anywhere beats: the same segments from
    // the local gzip archive, prefetched, i.e. the server's own replay.
    progs.push((
        0,
        "no store: ours from the local gzip archive (the replay's pace)".into(),
        sb.restore_command(&ours, "", false),
        false,
        0,
    ));
    say(&format!(
        "\n### Object storage against pgBackRest: catch-up through {nseg} segments of rows ({rounds} rounds, programs rotated)\n\n\
         The primary's archive_command gzips each segment ({segs} in all) and, for each store, uploads it with \
         curl as `gz/%f.gz` into bucket or container `wal` and runs `pgbackrest archive-push` into a repository \
         of its own in `pgbr` (`compress-type=gz`). Each emulator runs on 127.0.0.1 behind a counting proxy; \
         pgBackRest reaches the proxy through stunnel (TLS, `repo1-storage-verify-tls=n`, path-style). A fresh hot \
         standby from the cold backup replays everything, from `pg_ctl start` until `pg_last_wal_replay_lsn()` \
         reaches the primary's last insert position; pgBackRest runs with standby.signal, as a restore_command \
         that does not wait must. Requests: what the standby sent through the proxy during its catch-up. \
         The row \"no store\" replays the same segments from the local gzip archive: the pace of the \
         server's own replay here.\n"
    ));
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    let mut requests: Vec<Vec<f64>> = vec![Vec::new(); progs.len()];
    for r in 0..rounds {
        for j in 0..progs.len() {
            let k = (j + r as usize) % progs.len();
            let (i, label, rc, standby_mode, class) = &progs[k];
            let proxy = &stores[*i].proxy;
            let name = format!("b{r}p{k}");
            let rc = rc.replace("{NAME}", &name);
            let before = proxy.counts()[*class];
            let (dt, log) = time_catch_up(&sb, &backup, &name, &rc, *standby_mode, &target)?;
            // A fetcher may still be finishing: its requests belong to
            // this round.
            thread::sleep(Duration::from_millis(500));
            let n = proxy.counts()[*class] - before;
            let hits = log.matches("from the prefetch spool").count();
            eprintln!("{label}: {dt:.0} ms, {n} requests ({hits} from our spool)");
            totals[k].push(dt);
            requests[k].push(n as f64);
        }
    }
    for (i, st) in stores.iter().enumerate() {
        let mine: Vec<usize> = (0..progs.len()).filter(|k| progs[*k].0 == i).collect();
        let table: Vec<(String, String, bool)> = mine
            .iter()
            .map(|k| (progs[*k].1.clone(), progs[*k].2.clone(), progs[*k].3))
            .collect();
        let t: Vec<Vec<f64>> = mine.iter().map(|k| totals[*k].clone()).collect();
        say(&format!("\n{}:\n", st.label));
        catch_up_table(&table, &t, 0, segs);
        say("\nRequests per catch-up (median of the rounds):\n");
        for k in &mine {
            say(&format!(
                "- {}: {:.0} ({:.2} per segment)",
                progs[*k].1,
                median(&requests[*k]),
                median(&requests[*k]) / segs as f64
            ));
        }
    }
    Ok(())
}
