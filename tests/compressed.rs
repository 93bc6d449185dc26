//! Compressed archives through the binary, with the real compressors'
//! output (gzip, zstd, lz4, bzip2, xz from the distribution): every form
//! restores byte for byte, and every fault of a compressed file follows
//! the rules of a plain one.

mod support;

use std::fs;
use std::io::Write;
use std::time::Duration;

use support::*;

const NAME: &str = "000000010000000000000005";

/// (suffix, tool, arguments compressing stdin to stdout)
const TOOLS: &[(&str, &str, &[&str])] = &[
    (".gz", "gzip", &["-c"]),
    (".zst", "zstd", &["-q", "-c"]),
    (".lz4", "lz4", &["-q", "-c"]),
    (".bz2", "bzip2", &["-c"]),
    (".xz", "xz", &["-c"]),
];

/// A segment with more than a header in it, so that compressing it is
/// real work and corrupting the middle hits data.
fn segment_with_records(name: &str) -> Vec<u8> {
    let mut bytes = segment(name);
    let mut x: u32 = 12345;
    for chunk in bytes[8192..].chunks_mut(97).step_by(3) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        chunk[0] = (x >> 16) as u8;
        chunk[1] = (x >> 8) as u8;
    }
    bytes
}

fn quick<'a>(opts: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["-d", "-s", "1", "--bad-file-timeout", "1"];
    all.extend_from_slice(opts);
    all
}

fn start(env: &Env, opts: &[&str], name: &str) -> Job {
    env.spawn(&quick(opts), name, &[])
}

#[track_caller]
fn assert_nothing_delivered(env: &Env) {
    assert!(!env.restored().exists(), "something reached %p");
    assert_eq!(
        env.stray_files(),
        Vec::<String>::new(),
        "stray files in pg_wal"
    );
}

#[test]
fn every_tools_output_restores_byte_for_byte() {
    let bytes = segment_with_records(NAME);
    for (suffix, tool, args) in TOOLS {
        let packed = compress(tool, args, &bytes);
        let env = Env::new();
        let file = format!("{NAME}{suffix}");
        env.archive_atomically(&file, &packed);
        start(&env, &[], NAME)
            .finish_within(Duration::from_secs(10))
            .exited(0)
            .logged(&format!("restored {NAME} from {file}"));
        assert_delivered(&env, &bytes);
    }
}

#[test]
fn plain_wins_over_compressed() {
    let env = Env::new();
    let bytes = segment_with_records(NAME);
    env.archive_atomically(NAME, &bytes);
    // A compressed file of another cluster: never looked at.
    env.archive_atomically(
        &format!("{NAME}.gz"),
        &gzip(&segment_bytes(NAME, SEG, SYSID + 1, SEG)),
    );
    let done = start(&env, &[], NAME).finish_within(Duration::from_secs(5));
    done.exited(0);
    assert!(!done.log.contains(".gz"), "{}", done.log);
    assert_delivered(&env, &bytes);
}

#[test]
fn a_compressed_file_still_being_written_is_waited_for() {
    let env = Env::new();
    let bytes = segment_with_records(NAME);
    let packed = gzip(&bytes);
    let path = env.archive_file(&format!("{NAME}.gz"));
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(&packed[..packed.len() / 2]).unwrap();
    let mut job = start(&env, &["--bad-file-timeout", "60"], NAME);
    job.wait_log("stream ends early");
    assert!(job.is_running());
    assert!(!env.restored().exists());
    f.write_all(&packed[packed.len() / 2..]).unwrap();
    drop(f);
    job.finish_within(Duration::from_secs(5)).exited(0);
    assert_delivered(&env, &bytes);
}

#[test]
fn a_corrupt_compressed_file_stops_recovery() {
    let env = Env::new();
    let mut packed = gzip(&segment_with_records(NAME));
    let middle = packed.len() / 2;
    packed[middle] ^= 0x55;
    env.archive_atomically(&format!("{NAME}.gz"), &packed);
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged(&format!("not restoring {NAME}: {NAME}.gz"));
    assert_nothing_delivered(&env);
}

#[test]
fn a_compressed_segment_of_another_cluster_stops_recovery() {
    let env = Env::new();
    let foreign = segment_bytes(NAME, SEG, SYSID + 1, SEG);
    env.archive_atomically(&format!("{NAME}.gz"), &gzip(&foreign));
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("decompresses to a wrong segment")
        .logged("another cluster");
    assert_nothing_delivered(&env);
}

/// 64 MiB from a few KiB: decompression stops at the segment size, and
/// pg_wal never holds more than that.
#[test]
fn a_decompression_bomb_never_fills_pg_wal() {
    let env = Env::new();
    let mut bomb = segment(NAME);
    bomb.resize(64 << 20, 0);
    env.archive_atomically(&format!("{NAME}.gz"), &gzip(&bomb));
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(10))
        .exited(FATAL)
        .logged("decompresses to more than a segment");
    assert_nothing_delivered(&env);
}

#[test]
fn a_file_that_is_not_what_its_suffix_says_stops_recovery() {
    let env = Env::new();
    env.archive_atomically(&format!("{NAME}.gz"), &segment(NAME));
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("not a gzip file");
    assert_nothing_delivered(&env);
}

#[test]
fn a_short_segment_compressed_whole_stops_recovery() {
    let env = Env::new();
    let half = segment(NAME)[..(SEG / 2) as usize].to_vec();
    env.archive_atomically(&format!("{NAME}.gz"), &gzip(&half));
    start(&env, &[], NAME)
        .finish_within(Duration::from_secs(5))
        .exited(FATAL)
        .logged("not a whole segment");
    assert_nothing_delivered(&env);
}

#[test]
fn compressed_history_files_are_restored() {
    let env = Env::new();
    let history = b"1\t0/5000000\tno recovery target specified\n";
    env.archive_atomically("00000002.history.gz", &gzip(history));
    let out = env.run(&[], "00000002.history", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(env.datadir.join("pg_wal/RECOVERYHISTORY")).unwrap(),
        history
    );
}

#[test]
fn cleanup_removes_compressed_segments_too() {
    let env = Env::new();
    let older = ["000000010000000000000002", "000000010000000000000003"];
    for n in older {
        env.archive_atomically(&format!("{n}.gz"), b"old");
    }
    env.archive_atomically("000000010000000000000003.backup.gz", b"keep");
    env.archive_atomically("00000002.history.gz", b"keep");
    env.archive_atomically(&format!("{NAME}.gz"), &gzip(&segment(NAME)));
    let out = env.run(&[], NAME, &["000000010000000000000004"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left: Vec<String> = fs::read_dir(&env.archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".pg_standby")
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "000000010000000000000003.backup.gz",
            &format!("{NAME}.gz"),
            "00000002.history.gz"
        ]
    );
}

#[test]
fn smart_failover_waits_for_a_compressed_segment_in_flight() {
    let env = Env::new();
    let bytes = segment_with_records(NAME);
    let packed = gzip(&bytes);
    let trigger = env.path("trigger");
    let trigger_arg = trigger.display().to_string();
    let tmp = env.archive_file(&format!("{NAME}.gz.tmp"));
    let mut f = fs::File::create(&tmp).unwrap();
    f.write_all(&packed[..packed.len() / 3]).unwrap();
    fs::write(&trigger, "").unwrap();
    let mut job = start(&env, &["-t", &trigger_arg, "-s", "3"], NAME);
    job.wait_log("smart failover");
    f.write_all(&packed[packed.len() / 3..]).unwrap();
    drop(f);
    fs::rename(&tmp, env.archive_file(&format!("{NAME}.gz"))).unwrap();
    job.finish_within(Duration::from_secs(6)).exited(0);
    assert_delivered(&env, &bytes);
}
