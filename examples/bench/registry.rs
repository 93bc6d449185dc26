//! Many standbys, one archive: what the registry costs a cleanup. The
//! cleanup process alone (`--cleanup-before`, as a restore call starts
//! it), with 10 other standbys registered: publishing this standby's
//! entry and reading the others', against the previous build's cleanup
//! ($PG_STANDBY_BASE, no registry), on archives of 1,000 and 100,000
//! segments (nothing to remove: the listing and the registry are the
//! cost) and on S3 (s3s-fs, 1,000 objects).

use super::*;

const STANDBYS: u32 = 10;

pub fn registry(p: &Progs) -> Result<()> {
    let runs = env_num("REGISTRY_RUNS", 20);
    let base = std::env::var_os("PG_STANDBY_BASE").map(PathBuf::from);
    say(&format!(
        "### The registry of standbys: one cleanup with {STANDBYS} other standbys registered ({runs} rounds, programs alternated)\n\n\
         `pg_standby --cleanup-before=R ARCHIVE` (the process a restore call starts), nothing to \
         remove; ours also writes its entry and reads the {STANDBYS} others. The first row is the \
         previous build, without a registry.\n"
    ));
    for n in [1_000u64, 100_000] {
        let sc = Scratch::new("registry", SYSID)?;
        for i in 1..=n {
            fs::File::create(sc.archive.join(seg_name(i)))?;
        }
        register_others(&p.ours, &sc, &sc.archive.display().to_string(), &[])?;
        say(&format!("\n{n} segments in a local archive:\n"));
        let archive = sc.archive.display().to_string();
        alternate(
            &sc.data,
            &cleanup_cmds(p, base.as_deref(), &archive, &[]),
            runs,
        )?;
    }
    let server = s3_server::S3Server::start();
    let bucket = server.bucket("wal");
    fs::create_dir_all(bucket.join("a"))?;
    for i in 1..=1_000 {
        fs::File::create(bucket.join("a").join(seg_name(i)))?;
    }
    let keys = vec![
        format!("AWS_ENDPOINT_URL={}", server.endpoint),
        format!("AWS_ACCESS_KEY_ID={}", s3_server::ACCESS_KEY),
        format!("AWS_SECRET_ACCESS_KEY={}", s3_server::SECRET_KEY),
        format!("AWS_REGION={}", s3_server::REGION),
    ];
    let sc = Scratch::new("registry-s3", SYSID)?;
    register_others(&p.ours, &sc, "s3://wal/a", &keys)?;
    say("\n1,000 objects on S3 (s3s-fs on 127.0.0.1):\n");
    alternate(
        &sc.data,
        &cleanup_cmds(p, base.as_deref(), "s3://wal/a", &keys),
        runs,
    )?;
    Ok(())
}

/// The cleanup process of each program, removing nothing (before segment 1).
fn cleanup_cmds(
    p: &Progs,
    base: Option<&Path>,
    archive: &str,
    env: &[String],
) -> Vec<(String, Vec<String>)> {
    let cmd = |bin: &Path, cutoff: u64, extra: &[String]| {
        let mut v = vec!["env".to_string()];
        v.extend(env.iter().cloned());
        v.push(bin.display().to_string());
        v.push(format!("--cleanup-before={}", seg_name(cutoff)));
        v.extend(extra.iter().cloned());
        v.push(archive.into());
        v
    };
    let registered = |name: &str| {
        vec![
            format!("--cleanup-cluster={SYSID}:{}", 16 * MIB),
            format!("--standby-name={name}"),
        ]
    };
    let mut cmds = Vec::new();
    if let Some(base) = base {
        cmds.push((
            "previous build (no registry)".to_string(),
            cmd(base, 1, &[]),
        ));
    }
    // Two rows of one standby whose position alternates: each of their
    // runs writes its entry and reads the others'.
    for cutoff in [1, 2] {
        cmds.push((
            format!("ours, position moved (writes, lists, reads {STANDBYS})"),
            cmd(&p.ours, cutoff, &registered("moving")),
        ));
    }
    cmds.push((
        "ours, position unchanged (reads its own entry)".to_string(),
        cmd(&p.ours, 1, &registered("steady")),
    ));
    cmds
}

/// Ten other standbys' entries, written as theirs are: by their own
/// cleanup processes.
fn register_others(ours: &Path, sc: &Scratch, archive: &str, env: &[String]) -> Result<()> {
    for k in 0..STANDBYS {
        let data = sc.data_for(&format!("standby{k}"))?;
        let status = Command::new("env")
            .args(env)
            .arg(ours)
            .arg(format!("--cleanup-before={}", seg_name(1)))
            .arg(format!("--cleanup-cluster={SYSID}:{}", 16 * MIB))
            .arg(format!("--standby-name=standby{k}"))
            .arg(archive)
            .current_dir(&data)
            .status()?;
        ensure!(status.success(), "registering standby{k}");
    }
    Ok(())
}
