use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::wal::SegmentName;

const SYSID: u64 = 7_300_000_000_000_000_001;
const SEG: u32 = 16 << 20;

/// A fake data directory good enough for the checker: PG_VERSION, a
/// postgresql.conf, a signal file, a pg_control image, an archive with
/// segment headers, and an executable named pg_standby.
struct Fixture {
    dir: tempfile::TempDir,
    major: u32,
}

impl Fixture {
    fn new(major: u32) -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
            major,
        };
        fs::create_dir_all(f.data().join("global")).unwrap();
        fs::create_dir_all(f.archive()).unwrap();
        fs::create_dir_all(f.root().join("bin")).unwrap();
        fs::write(f.data().join("PG_VERSION"), format!("{major}\n")).unwrap();
        f.write_exe(&f.program());
        // Redo in segment 2 of timeline 1.
        f.control(SYSID, 2 * u64::from(SEG) + 0x28, SEG);
        for seg in 2..=4 {
            f.segment(seg, SYSID, SEG);
        }
        let rc = format!(
            "restore_command = '{} -t {} {} %f %p %r'\nrecovery_end_command = 'rm -f {}'\n",
            f.program().display(),
            f.trigger().display(),
            f.archive().display(),
            f.trigger().display()
        );
        let mut conf = "# test\nhot_standby = on\n".to_string();
        if major >= 15 {
            conf += "recovery_prefetch = off\n";
        }
        if major >= 12 {
            conf += &rc;
            fs::write(f.data().join("recovery.signal"), "").unwrap();
        } else {
            fs::write(f.data().join("recovery.conf"), &rc).unwrap();
        }
        fs::write(f.data().join("postgresql.conf"), conf).unwrap();
        f
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn data(&self) -> PathBuf {
        self.root().join("data")
    }
    fn archive(&self) -> PathBuf {
        self.root().join("archive")
    }
    fn trigger(&self) -> PathBuf {
        self.root().join("failover.trigger")
    }
    fn program(&self) -> PathBuf {
        self.root().join("bin/pg_standby")
    }

    fn write_exe(&self, p: &Path) {
        fs::write(p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn control(&self, sysid: u64, redo: u64, seg_size: u32) {
        let img = crate::server::control::tests::image(sysid, redo, 1, seg_size, self.major == 10);
        fs::write(self.data().join("global/pg_control"), img).unwrap();
    }

    fn segment(&self, segno: u64, sysid: u64, seg_size: u32) {
        let name = SegmentName::from_segno(1, segno, u64::from(seg_size));
        let h = LongPageHeader::for_segment(&name, seg_size, sysid).unwrap();
        fs::write(self.archive().join(name.to_string()), h.to_bytes()).unwrap();
    }

    /// Append settings to postgresql.conf (recovery.conf before 12 for the
    /// recovery settings).
    fn append(&self, text: &str, recovery: bool) {
        let file = if recovery && self.major < 12 {
            "recovery.conf"
        } else {
            "postgresql.conf"
        };
        let p = self.data().join(file);
        let mut s = fs::read_to_string(&p).unwrap();
        s += text;
        fs::write(p, s).unwrap();
    }

    fn restore_command(&self, rc: &str) {
        self.append(&format!("restore_command = '{rc}'\n"), true);
    }

    /// The findings, without the checks passed.
    fn findings(&self) -> Vec<Finding> {
        inspect(&self.data())
            .into_iter()
            .filter(|f| f.severity != Severity::Passed)
            .collect()
    }

    /// The codes of the checks passed.
    fn passed(&self) -> Vec<&'static str> {
        inspect(&self.data())
            .into_iter()
            .filter(|f| f.severity == Severity::Passed)
            .map(|f| f.code)
            .collect()
    }

    fn codes(&self) -> Vec<&'static str> {
        self.findings().iter().map(|f| f.code).collect()
    }

    #[track_caller]
    fn assert_only(&self, code: &str, severity: Severity) {
        let found = self.findings();
        assert!(
            found.len() == 1 && found[0].code == code && found[0].severity == severity,
            "expected only {code} ({severity:?}), got {found:#?}"
        );
    }
}

#[test]
fn a_correct_setup_has_no_findings() {
    for major in [10, 11, 12, 15, 18] {
        let f = Fixture::new(major);
        let found = f.findings();
        assert!(found.is_empty(), "{major}: {found:#?}");
        assert_eq!(exit_status(&found), 0);
    }
}

#[test]
fn standby_mode_with_a_trigger_file() {
    let f = Fixture::new(15);
    fs::write(f.data().join("standby.signal"), "").unwrap();
    f.assert_only("trigger-in-standby-mode", Severity::Error);
    // recovery.signal is there too: remove standby.signal, nothing to replace.
    assert!(
        f.findings()[0]
            .fix
            .starts_with(&format!("rm {}", f.data().join("standby.signal").display())),
        "{}",
        f.findings()[0].fix
    );
    fs::remove_file(f.data().join("recovery.signal")).unwrap();
    assert!(f.findings()[0].fix.starts_with("replace standby.signal"));

    let f = Fixture::new(10);
    f.append("standby_mode = 'on'\n", true);
    f.assert_only("trigger-in-standby-mode", Severity::Error);
    assert_eq!(exit_status(&f.findings()), 1);
}

#[test]
fn a_clean_run_lists_what_was_checked() {
    for major in [10, 15] {
        let f = Fixture::new(major);
        let mut want = vec![
            "data-directory",
            "configuration",
            "recovery-mode",
            "program",
            "restore-command",
            "trigger",
            "archive",
            "archiving",
        ];
        if major >= 15 {
            want.push("recovery-prefetch");
        }
        let mut got = f.passed();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{major}");
        let all = inspect(&f.data());
        let text = to_text(&f.data(), &all);
        assert!(
            text.contains("\nok: restore_command parsed as pg_standby would"),
            "{text}"
        );
        assert!(text.contains("0 error(s), 0 warning(s), "), "{text}");
        assert!(to_json(&all).contains("{\"severity\":\"ok\",\"code\":\"archive\","));
    }
    // A check with a finding is not listed as passed.
    let f = Fixture::new(15);
    fs::write(f.trigger(), "").unwrap();
    assert!(!f.passed().contains(&"trigger"));
}

#[test]
fn recovery_prefetch_values() {
    for (major, value, ahead) in [
        (14, None, false),
        (14, Some("on"), false),
        (15, None, true),
        (15, Some("try"), true),
        (16, Some("on"), true),
        (18, Some("TRUE"), true),
        (15, Some("off"), false),
        (15, Some("Off"), false),
        (17, Some("false"), false),
        (15, Some("no"), false),
        (15, Some("0"), false),
        // An enum, not a boolean: no prefixes.
        (15, Some("of"), true),
    ] {
        assert_eq!(
            prefetch_reads_ahead(major, value),
            ahead,
            "{major} {value:?}"
        );
    }
}

#[test]
fn recovery_prefetch_on_15_and_later() {
    let f = Fixture::new(16);
    f.append("recovery_prefetch = try\n", false);
    f.assert_only("recovery-prefetch", Severity::Error);
    assert_eq!(exit_status(&f.findings()), 1, "the standby would stall");
    assert!(f.findings()[0].fix.starts_with("recovery_prefetch = off"));
    // Unset means the default, try.
    let f = Fixture::new(15);
    let p = f.data().join("postgresql.conf");
    let conf = fs::read_to_string(&p)
        .unwrap()
        .replace("recovery_prefetch = off\n", "");
    fs::write(&p, conf).unwrap();
    f.assert_only("recovery-prefetch", Severity::Error);
    // postgresql.auto.conf wins over postgresql.conf.
    fs::write(
        f.data().join("postgresql.auto.conf"),
        "recovery_prefetch = 'off'\n",
    )
    .unwrap();
    assert!(f.findings().is_empty());
}

#[test]
fn trigger_file_present_and_not_removed() {
    let f = Fixture::new(15);
    fs::write(f.trigger(), "").unwrap();
    // No server runs: the file will predate its next start, so the
    // restore will call it stale and not fail over.
    f.assert_only("trigger-present", Severity::Warning);
    assert!(f.findings()[0].message.contains("stale"));
    f.append("recovery_end_command = ''\n", true);
    let codes = f.codes();
    assert_eq!(codes, ["trigger-present", "trigger-not-removed"]);
}

#[test]
fn placeholders() {
    let f = Fixture::new(15);
    let (p, a) = (f.program(), f.archive());
    let (p, a) = (p.display(), a.display());
    f.restore_command(&format!("{p} {a} %p %f"));
    assert_eq!(
        f.codes(),
        ["placeholder-misplaced", "placeholder-misplaced"]
    );
    f.restore_command(&format!("{p} {a} %f"));
    f.assert_only("placeholder-missing", Severity::Error);
    // %p left out: %r moves into its place, and that is no second error.
    f.restore_command(&format!("{p} -t {} {a} %f %r", f.trigger().display()));
    f.assert_only("placeholder-missing", Severity::Error);
    assert!(f.findings()[0].message.starts_with("%p is missing"));
    f.restore_command(&format!("{p} {a} %f %p /tmp/x"));
    assert!(f.codes().contains(&"placeholder-misplaced"));
    f.restore_command(&format!(
        "{p} -t {} {a} %f %p %r extra",
        f.trigger().display()
    ));
    f.assert_only("extra-arguments", Severity::Warning);
    // Quoting as sh does it, and %% is a literal percent sign.
    f.restore_command(&format!(
        "\"{p}\" -t ''{}'' {a} \"%f\" %p %r",
        f.trigger().display()
    ));
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    // pg_standby 13's documented form, logging to a file.
    f.restore_command(&format!(
        "{p} -d -t {} {a} %f %p %r 2>>standby.log",
        f.trigger().display()
    ));
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    f.restore_command(&format!(
        "{p} -t {} {a} %f %p %r; echo done",
        f.trigger().display()
    ));
    f.assert_only("complex-restore-command", Severity::Warning);
}

#[test]
fn percent_substitution() {
    assert_eq!(
        substitute("a %f %p %r %% %x"),
        format!("a {SENT_F} {SENT_P} {SENT_R} % %x")
    );
    assert_eq!(substitute("%%f"), "%f");
}

#[test]
fn two_cleaners() {
    let f = Fixture::new(15);
    f.append(
        "archive_cleanup_command = 'pg_archivecleanup /arch %r'\n",
        true,
    );
    f.assert_only("two-cleaners", Severity::Warning);
    let f = Fixture::new(11);
    f.append(
        "archive_cleanup_command = 'pg_archivecleanup /arch %r'\n",
        true,
    );
    f.assert_only("two-cleaners", Severity::Warning);
}

#[test]
fn program_path_problems() {
    let f = Fixture::new(15);
    let tail = format!(
        "-t {} {} %f %p %r",
        f.trigger().display(),
        f.archive().display()
    );
    f.restore_command(&format!("../bin/pg_standby {tail}"));
    f.assert_only("relative-program", Severity::Warning);
    f.restore_command(&format!("{}/nothere/pg_standby {tail}", f.root().display()));
    f.assert_only("program-missing", Severity::Error);
    f.restore_command(&format!("pg_standby_does_not_exist_anywhere {tail}"));
    f.assert_only("program-not-in-path", Severity::Warning);
    f.restore_command(&format!("/bin/cp {tail}"));
    f.assert_only("not-pg-standby", Severity::Note);
    assert_eq!(exit_status(&f.findings()), 0);
}

#[test]
fn a_program_by_name_is_looked_up_as_the_server_would() {
    let f = Fixture::new(15);
    let tail = format!(
        "-t {} {} %f %p %r",
        f.trigger().display(),
        f.archive().display()
    );
    // No server runs: its PATH is assumed, never this process's.
    let name = "pg_standby_check_test_only_here";
    f.restore_command(&format!("{name} {tail}"));
    let found = f.findings();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].code, "program-not-in-path");
    assert_eq!(found[0].severity, Severity::Warning, "the PATH was assumed");
    assert!(found[0].message.contains(server::ASSUMED_PATH));
    assert!(found[0].message.contains("assumed"));
    assert!(found[0].fix.contains("/usr/local/bin/"), "{}", found[0].fix);
    assert!(!found[0].fix.contains("chmod"));
    // In the assumed PATH (sh is there): found, with a note saying so.
    f.restore_command(&format!("sh {tail}"));
    assert!(f.codes().contains(&"not-pg-standby"));
}

#[test]
fn a_program_the_owner_cannot_execute() {
    let f = Fixture::new(15);
    fs::set_permissions(f.program(), fs::Permissions::from_mode(0o644)).unwrap();
    f.assert_only("program-not-executable", Severity::Error);
    let fix = &f.findings()[0].fix;
    assert!(fix.contains("install -m 0755 "), "{fix}");
}

#[test]
fn options_the_parser_rejects() {
    let f = Fixture::new(15);
    f.restore_command(&format!(
        "{} -s 0 {} %f %p",
        f.program().display(),
        f.archive().display()
    ));
    let found = f.findings();
    assert_eq!(found[0].code, "bad-options", "{found:#?}");
    assert!(
        found[0].message.contains("-s sleeptime"),
        "{}",
        found[0].message
    );
    f.restore_command(&format!(
        "{} --nope {} %f %p",
        f.program().display(),
        f.archive().display()
    ));
    assert_eq!(f.findings()[0].code, "bad-options");
    f.restore_command(&format!(
        "{} ''open {} %f %p",
        f.program().display(),
        f.archive().display()
    ));
    assert_eq!(f.findings()[0].code, "restore-command-syntax");
}

#[test]
fn archive_problems() {
    let f = Fixture::new(15);
    fs::remove_dir_all(f.archive()).unwrap();
    f.assert_only("archive-missing", Severity::Error);
    fs::write(f.archive(), "").unwrap();
    f.assert_only("archive-not-a-directory", Severity::Error);
    fs::remove_file(f.archive()).unwrap();
    fs::create_dir(f.archive()).unwrap();
    f.assert_only("archive-empty", Severity::Warning);
}

#[test]
fn archived_segments_the_owner_cannot_read() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can make a data directory owned by someone else
    }
    let f = Fixture::new(15);
    fs::set_permissions(f.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // The data directory's owner: a uid without a passwd entry.
    std::os::unix::fs::chown(f.data(), Some(4_000_000_001), Some(4_000_000_001)).unwrap();
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    let seg = f.archive().join("000000010000000000000004");
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o600)).unwrap();
    f.assert_only("archive-segment-not-readable", Severity::Error);
}

#[test]
fn archive_from_another_cluster_or_segment_size() {
    let f = Fixture::new(15);
    f.segment(5, SYSID + 1, SEG);
    f.assert_only("archive-foreign-cluster", Severity::Error);
    let f = Fixture::new(15);
    f.control(SYSID, 2 * u64::from(SEG), 64 << 20);
    f.assert_only("archive-segment-size", Severity::Error);
}

#[test]
fn gaps_between_the_redo_point_and_the_newest_segment() {
    let f = Fixture::new(15);
    f.segment(7, SYSID, SEG);
    let found = f.findings();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].code, "archive-gap");
    assert!(
        found[0].message.starts_with("2 segment(s)"),
        "{}",
        found[0].message
    );
    assert!(found[0].message.contains("000000010000000000000005"));
    // The redo segment itself missing is a gap too.
    fs::remove_file(f.archive().join("000000010000000000000002")).unwrap();
    assert!(f.findings()[0].message.contains("000000010000000000000002"));
    // Segments older than the redo point do not matter; an archive behind
    // the standby is no gap (it waits).
    let f = Fixture::new(15);
    f.control(SYSID, 9 * u64::from(SEG), SEG);
    assert!(f.findings().is_empty());
}

#[test]
fn version_and_recovery_files() {
    let f = Fixture::new(15);
    fs::write(f.data().join("PG_VERSION"), "9.6\n").unwrap();
    assert!(f.codes().contains(&"unsupported-version"));
    let f = Fixture::new(15);
    fs::write(f.data().join("PG_VERSION"), "19\n").unwrap();
    assert!(f.codes().contains(&"unsupported-version"));
    let f = Fixture::new(15);
    fs::remove_file(f.data().join("recovery.signal")).unwrap();
    f.assert_only("no-recovery", Severity::Error);
    let f = Fixture::new(15);
    fs::write(f.data().join("recovery.conf"), "").unwrap();
    f.assert_only("recovery-conf", Severity::Error);
    let f = Fixture::new(11);
    fs::remove_file(f.data().join("recovery.conf")).unwrap();
    f.assert_only("no-recovery", Severity::Error);
    // On 11, restore_command in postgresql.conf means nothing.
    let f = Fixture::new(11);
    let rc = fs::read_to_string(f.data().join("recovery.conf")).unwrap();
    fs::write(f.data().join("recovery.conf"), "").unwrap();
    f.assert_only("no-restore-command", Severity::Error);
    f.append(&rc, false);
    assert_eq!(
        f.codes(),
        [
            "no-restore-command",
            "recovery-setting-in-postgresql-conf",
            "recovery-setting-in-postgresql-conf"
        ]
    );
    let f = Fixture::new(15);
    f.append("include 'missing.conf'\n", false);
    f.assert_only("config-error", Severity::Error);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(inspect(dir.path())[0].code, "not-a-data-directory");
}

#[test]
fn output_formats() {
    let found = vec![
        finding(
            Severity::Error,
            "x",
            "a \"quoted\" \\ line\nand\ttab \u{1}".into(),
            "do it".into(),
        ),
        finding(Severity::Warning, "y", "w".into(), String::new()),
    ];
    let json = to_json(&found);
    assert_eq!(
        json,
        "[{\"severity\":\"error\",\"code\":\"x\",\"message\":\"a \\\"quoted\\\" \\\\ line\\nand\\ttab \\u0001\",\"fix\":\"do it\"},\n \
         {\"severity\":\"warning\",\"code\":\"y\",\"message\":\"w\",\"fix\":\"\"}]\n"
    );
    assert_eq!(to_json(&[]), "[]\n");
    let text = to_text(Path::new("/d"), &found);
    assert!(text.starts_with("ERROR: a \"quoted\""), "{text}");
    assert!(
        text.contains("\n    fix: do it\nWARNING: w [y]\n"),
        "{text}"
    );
    assert!(text.ends_with(
        "/d: 1 error(s), 1 warning(s), 0 check(s) passed: recovery or failover would fail\n"
    ));
}

#[test]
fn check_is_an_option_never_a_subcommand() {
    let cli = Cli::try_parse_from(["pg_standby", "check", "F", "P"]).unwrap();
    assert!(!cli.check);
    assert_eq!(cli.archive, Some(PathBuf::from("check")));
    let cli = Cli::try_parse_from(["pg_standby", "--check", "-D", "/d", "--json"]).unwrap();
    assert!(cli.check && cli.json);
    assert_eq!(cli.pgdata, Some(PathBuf::from("/d")));
    assert_eq!(datadir_from(Some(PathBuf::from("/x"))), PathBuf::from("/x"));
}

#[cfg(feature = "gzip")]
#[test]
fn compressed_segments_count_and_are_read() {
    use std::io::Write;
    let f = Fixture::new(15);
    let gz = |segno: u64, sysid: u64| {
        let name = SegmentName::from_segno(1, segno, u64::from(SEG));
        let h = LongPageHeader::for_segment(&name, SEG, sysid).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&h.to_bytes()).unwrap();
        enc.write_all(&vec![0u8; 100_000]).unwrap();
        fs::write(
            f.archive().join(format!("{name}.gz")),
            enc.finish().unwrap(),
        )
        .unwrap();
    };
    gz(5, SYSID);
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    gz(7, SYSID);
    f.assert_only("archive-gap", Severity::Error);
    gz(6, SYSID + 1);
    f.assert_only("archive-foreign-cluster", Severity::Error);
}

#[test]
fn debian_keeps_the_configuration_in_etc() {
    let f = Fixture::new(15);
    let conf = fs::read_to_string(f.data().join("postgresql.conf")).unwrap();
    fs::remove_file(f.data().join("postgresql.conf")).unwrap();
    let etc = f.root().join("etc");
    for (cluster, data) in [("main", f.root().join("elsewhere")), ("standby", f.data())] {
        fs::create_dir_all(etc.join("15").join(cluster)).unwrap();
        fs::write(
            etc.join("15").join(cluster).join("postgresql.conf"),
            format!("data_directory = '{}'\n{conf}", data.display()),
        )
        .unwrap();
    }
    assert_eq!(
        cluster_conf(&etc, 15, &f.data()),
        Some(etc.join("15/standby/postgresql.conf"))
    );
    assert_eq!(cluster_conf(&etc, 14, &f.data()), None);
    // Not found: a warning, and no claim that restore_command is unset.
    f.assert_only("no-postgresql-conf", Severity::Warning);
}

#[test]
#[cfg(feature = "gzip")]
fn the_prefetch_spool() {
    let f = Fixture::new(15);
    // A compressed archive turns prefetch on.
    let name = SegmentName::from_segno(1, 5, u64::from(SEG));
    fs::write(f.archive().join(format!("{name}.gz")), b"").unwrap();
    let rc = |opts: &str| {
        format!(
            "{} -t {} {opts} {} %f %p %r",
            f.program().display(),
            f.trigger().display(),
            f.archive().display()
        )
    };
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    f.restore_command(&rc("--spool-dir=pg_wal/spool"));
    f.assert_only("spool-in-datadir", Severity::Warning);
    f.restore_command(&rc("--prefetch=0 --spool-dir=pg_wal/spool"));
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    let blocker = f.root().join("file");
    fs::write(&blocker, "").unwrap();
    f.restore_command(&rc(&format!("--spool-dir={}/spool", blocker.display())));
    f.assert_only("spool-unusable", Severity::Warning);
}

#[test]
fn a_standby_archiving_into_its_own_archive() {
    let f = Fixture::new(15);
    let a = f.archive().display().to_string();
    f.append(
        &format!("archive_mode = on\narchive_command = 'test ! -f {a}/%f && cp %p {a}/%f'\n"),
        false,
    );
    f.assert_only("archives-into-own-archive", Severity::Warning);
    assert!(f.findings()[0].message.contains("once promoted"));
    f.append("archive_mode = always\n", false);
    f.assert_only("archives-into-own-archive", Severity::Warning);
    assert!(f.findings()[0].message.contains("archived again"));
    // Another archive, or archiving off: fine.
    f.append(
        &format!("archive_command = 'cp %p {a}-after-failover/%f'\n"),
        false,
    );
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    f.append(
        &format!("archive_mode = off\narchive_command = 'cp %p {a}/%f'\n"),
        false,
    );
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
}

#[cfg(feature = "remote")]
#[test]
fn object_storage_failures_have_their_codes() {
    use crate::archive::store::{Error, Fatal};
    for (e, code) in [
        (
            Error::refused(
                Fatal::NoBucket,
                "listing s3://b/p/: 404 NoSuchBucket".into(),
            ),
            "archive-bucket-missing",
        ),
        (
            Error::refused(
                Fatal::Denied,
                "listing s3://b/p/: 403 SignatureDoesNotMatch".into(),
            ),
            "archive-credentials-refused",
        ),
        (
            Error::refused(Fatal::Redirected, "listing s3://b/p/: 301".into()),
            "archive-remote-config",
        ),
        (
            Error::Transient("listing s3://b/p/: Connection refused".into()),
            "archive-unreachable",
        ),
        (
            Error::config("no region: set AWS_REGION".into()),
            "archive-remote-config",
        ),
    ] {
        assert_eq!(remote_failure(&e, "s3://b/p").0, code, "{e}");
        // The same finding for azure://, with Azure's words for the fix.
        let (azure_code, azure_fix) = remote_failure(&e, "azure://c/p");
        assert_eq!(azure_code, code, "{e}");
        assert!(
            !azure_fix.contains("s3:") && !azure_fix.contains("AWS_"),
            "{azure_fix}"
        );
    }
    // The same codes for Cloud Storage, with its own fixes.
    let denied = Error::refused(Fatal::Denied, "listing gs://b/p/: 403 forbidden".into());
    let (code, fix) = remote_failure(&denied, "gs://b/p");
    assert_eq!(code, "archive-credentials-refused");
    assert!(fix.contains("storage.objects.list"), "{fix}");
    let none = Error::config("no Google Cloud credentials found".into());
    let (code, fix) = remote_failure(&none, "gs://b/p");
    assert_eq!(code, "archive-remote-config");
    assert!(fix.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{fix}");
}

#[cfg(feature = "s3")]
#[test]
fn a_remote_archive_is_not_a_path_in_the_data_directory() {
    let f = Fixture::new(15);
    // Nothing listens on port 9 of 127.0.0.1: the store is unreachable,
    // and the archive is never looked for as DATADIR/s3:/...
    f.restore_command(&format!(
        "AWS_ENDPOINT_URL=http://127.0.0.1:9 AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s \
         {} -t {} s3://bucket/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    let codes = f.codes();
    assert!(codes.contains(&"archive-unreachable"), "{codes:?}");
    // The same through env(1), as a restore_command may set them.
    f.restore_command(&format!(
        "env -u AWS_PROFILE AWS_ENDPOINT_URL=http://127.0.0.1:9 AWS_ACCESS_KEY_ID=k \
         AWS_SECRET_ACCESS_KEY=s {} -t {} s3://bucket/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    assert!(
        f.codes().contains(&"archive-unreachable"),
        "{:?}",
        f.codes()
    );
    assert!(!codes.contains(&"archive-missing"), "{codes:?}");
    assert!(codes.contains(&"server-environment-unknown"), "{codes:?}");
}

#[cfg(feature = "gcs")]
#[test]
fn a_cloud_storage_archive_is_checked_with_the_commands_variables() {
    let f = Fixture::new(15);
    // An emulator address where nothing listens: unreachable, with the
    // Cloud Storage fix.
    f.restore_command(&format!(
        "STORAGE_EMULATOR_HOST=127.0.0.1:9 {} -t {} gs://bucket/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    let found = f.findings();
    let unreachable = found
        .iter()
        .find(|x| x.code == "archive-unreachable")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        format!("{unreachable:?}").contains("STORAGE_EMULATOR_HOST"),
        "{unreachable:?}"
    );
    assert!(!f.codes().contains(&"archive-missing"), "{:?}", f.codes());
    // A malformed bucket name.
    f.restore_command(&format!(
        "{} -t {} gs://B/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    assert!(f.codes().contains(&"archive-url"), "{:?}", f.codes());
}

#[cfg(feature = "azure")]
#[test]
fn an_azure_archive_is_checked_with_azures_words() {
    let f = Fixture::new(15);
    // Nothing listens on port 9 of 127.0.0.1: the service is unreachable.
    f.restore_command(&format!(
        "AZURE_STORAGE_ACCOUNT=devstoreaccount1 AZURE_STORAGE_KEY=a2V5 \
         AZURE_STORAGE_BLOB_ENDPOINT=http://127.0.0.1:9/devstoreaccount1 \
         {} -t {} azure://wal/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    let found = f.findings();
    let unreachable = found
        .iter()
        .find(|x| x.code == "archive-unreachable")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        unreachable.fix.contains("AZURE_STORAGE_BLOB_ENDPOINT"),
        "{unreachable:?}"
    );
    assert!(
        !found.iter().any(|x| x.code == "archive-missing"),
        "{found:#?}"
    );
    // A malformed URL: the hint shows the azure:// form.
    f.restore_command(&format!(
        "{} -t {} azure://Wal/prefix %f %p %r",
        f.program().display(),
        f.trigger().display()
    ));
    let found = f.findings();
    let bad = found
        .iter()
        .find(|x| x.code == "archive-url")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(bad.fix.contains("azure://CONTAINER/PREFIX"), "{bad:?}");
}

#[test]
fn the_servers_own_command_line() {
    assert_eq!(
        parse_postmaster_opts(
            "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/var/lib/postgresql/15/main\" \"-c\" \
             \"config_file=/etc/postgresql/15/main/postgresql.conf\" \"--recovery-prefetch=off\"\n"
        ),
        [
            (
                "config_file".to_string(),
                "/etc/postgresql/15/main/postgresql.conf".to_string()
            ),
            ("recovery_prefetch".into(), "off".into()),
        ]
    );
    // A setting on the command line outranks the files; its config_file is
    // the configuration.
    let f = Fixture::new(15);
    let p = f.data().join("postgresql.conf");
    let conf = fs::read_to_string(&p).unwrap();
    fs::write(&p, conf.replace("recovery_prefetch = off\n", "")).unwrap();
    f.assert_only("recovery-prefetch", Severity::Error);
    let opts = f.data().join("postmaster.opts");
    fs::write(&opts, "/bin/postgres \"-c\" \"recovery_prefetch=off\"\n").unwrap();
    assert!(f.findings().is_empty(), "{:#?}", f.findings());
    let elsewhere = f.root().join("elsewhere.conf");
    fs::rename(&p, &elsewhere).unwrap();
    f.assert_only("no-postgresql-conf", Severity::Warning);
    fs::write(
        &opts,
        format!(
            "/bin/postgres \"-c\" \"config_file={}\"\n",
            elsewhere.display()
        ),
    )
    .unwrap();
    f.assert_only("recovery-prefetch", Severity::Error);
}

#[test]
fn the_restore_asks_the_same_question_about_prefetch() {
    let f = Fixture::new(15);
    assert_eq!(prefetch_stall(&f.data()), None);
    f.append("recovery_prefetch = try\n", false);
    let line = prefetch_stall(&f.data()).unwrap();
    assert!(
        line.contains("[recovery-prefetch]; fix: recovery_prefetch = off"),
        "{line}"
    );
    let f = Fixture::new(14);
    assert_eq!(prefetch_stall(&f.data()), None);
    assert_eq!(prefetch_stall(&f.root().join("nothing")), None);
}
