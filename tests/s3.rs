//! The object storage client against a real S3-compatible server (s3s-fs,
//! which checks SigV4 signatures), never a mock. Skipped loudly when s3s-fs
//! is not installed, failed when it is missing under CI.
#![cfg(feature = "s3")]

#[path = "support/s3_server.rs"]
mod s3_server;

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use pg_standby::store::Error;
use pg_standby::store::s3::{Store, Timeouts};
use s3_server::S3Server;

const SEG: &str = "000000010000000000000001";

fn store_with(server: &S3Server, url: &str, overrides: &[(&str, &str)], t: Timeouts) -> Store {
    let mut env: HashMap<String, String> = server
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.insert("HOME".into(), "/nonexistent".into());
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    Store::from_url_with(url, &|k| env.get(k).cloned(), t).unwrap()
}

fn store(server: &S3Server, url: &str) -> Store {
    store_with(server, url, &[], Timeouts::default())
}

fn get(store: &Store, name: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    store.get_to(name, &mut out, limit, &|| false).map(|n| {
        assert_eq!(n, out.len() as u64);
        out
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn present_object_head_and_get() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    fs::create_dir(bucket.join("wal")).unwrap();
    let data = pattern(1024 * 1024 + 17);
    // Written by the archive side as a file of the server's root.
    fs::write(bucket.join("wal").join(SEG), &data).unwrap();
    let s = store(&server, "s3://archive/wal");
    let meta = s.head(SEG).unwrap().expect("present");
    assert_eq!(meta.size, data.len() as u64);
    assert!(
        meta.etag.is_some() || meta.last_modified.is_some(),
        "{meta:?}"
    );
    assert_eq!(get(&s, SEG, 16 << 20).unwrap(), data);

    // And through the API's own upload, with a file-backed destination.
    let other = "000000010000000000000002";
    s.put(other, &data[..4096]).unwrap();
    assert_eq!(
        fs::read(bucket.join("wal").join(other)).unwrap(),
        &data[..4096]
    );
    let mut f = tempfile::tempfile().unwrap();
    assert_eq!(s.get_to(other, &mut f, 4096, &|| false).unwrap(), 4096);
    assert_eq!(f.metadata().unwrap().len(), 4096);
}

#[test]
fn missing_object_is_not_found() {
    let server = S3Server::start();
    server.bucket("archive");
    let s = store(&server, "s3://archive/wal/");
    assert_eq!(s.head(SEG).unwrap(), None);
    assert!(matches!(get(&s, SEG, 100), Err(Error::NotFound)));
    assert!(matches!(
        get(&s, "00000002.history", 100),
        Err(Error::NotFound)
    ));
}

#[test]
fn missing_bucket_is_a_configuration_error() {
    let server = S3Server::start();
    server.bucket("archive");
    let s = store(&server, "s3://nosuchbucket/wal");
    let head = s.head(SEG);
    assert!(
        matches!(&head, Err(Error::Config { why: m, .. }) if m.contains("nosuchbucket")),
        "{head:?}"
    );
    assert!(matches!(
        get(&s, SEG, 100),
        Err(Error::Config { why: _, .. })
    ));
    assert!(matches!(s.list(""), Err(Error::Config { why: _, .. })));
    assert!(matches!(s.verify(), Err(Error::Config { why: _, .. })));
}

#[test]
fn wrong_credentials_are_configuration_errors() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    fs::write(bucket.join(SEG), b"x").unwrap();
    let wrong_secret = store_with(
        &server,
        "s3://archive",
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        Timeouts::default(),
    );
    let wrong_key = store_with(
        &server,
        "s3://archive",
        &[("AWS_ACCESS_KEY_ID", "someoneelse")],
        Timeouts::default(),
    );
    for s in [&wrong_secret, &wrong_key] {
        // A present and an absent name: neither may look like "not there".
        for name in [SEG, "000000010000000000000009"] {
            let r = s.head(name);
            assert!(
                matches!(&r, Err(Error::Config { why: _, .. })),
                "head {name}: {r:?}"
            );
            let r = get(s, name, 100);
            assert!(
                matches!(&r, Err(Error::Config { why: _, .. })),
                "get {name}: {r:?}"
            );
        }
        let r = s.list("");
        assert!(
            matches!(&r, Err(Error::Config { why: m, .. }) if m.contains("403")),
            "{r:?}"
        );
        let r = s.delete_many(&[SEG.to_string()]);
        assert!(matches!(&r, Err(Error::Config { why: _, .. })), "{r:?}");
    }
    assert!(bucket.join(SEG).exists());
}

#[test]
fn endpoint_down_is_transient_and_quick() {
    let server = S3Server::start();
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let s = store_with(
        &server,
        "s3://archive",
        &[("AWS_ENDPOINT_URL", &endpoint)],
        Timeouts::default(),
    );
    let started = Instant::now();
    let r = s.head(SEG);
    assert!(matches!(&r, Err(Error::Transient(_))), "{r:?}");
    assert!(matches!(get(&s, SEG, 10), Err(Error::Transient(_))));
    assert!(matches!(s.list(""), Err(Error::Transient(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn hung_endpoint_times_out_as_transient() {
    // Accepts connections and never answers: a server that hangs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let env: HashMap<&str, String> = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "ak".into()),
        ("AWS_SECRET_ACCESS_KEY", "sk".into()),
    ]
    .into_iter()
    .collect();
    let t = Timeouts {
        connect: Duration::from_millis(500),
        response: Duration::from_millis(300),
        read: Duration::from_millis(300),
    };
    let s = Store::from_url_with("s3://archive", &|k| env.get(k).cloned(), t).unwrap();
    let started = Instant::now();
    let r = s.head(SEG);
    assert!(
        matches!(&r, Err(Error::Transient(m)) if m.contains("timed out")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn list_follows_every_page() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    let wal = bucket.join("wal");
    fs::create_dir_all(wal.join("sub")).unwrap();
    // More than one page of the default 1000 keys.
    let n = 1234;
    for i in 0..n {
        fs::write(wal.join(format!("00000001{:016X}", i)), i.to_string()).unwrap();
    }
    fs::write(wal.join("00000002.history"), "1\t0/0\tx\n").unwrap();
    // Neither a deeper key nor one beside the prefix is listed.
    fs::write(wal.join("sub").join("000000010000000000000001"), "x").unwrap();
    fs::write(bucket.join("000000010000000000000001"), "x").unwrap();

    let mut s = store(&server, "s3://archive/wal");
    let all = s.list("").unwrap();
    assert_eq!(all.len(), n + 1, "{:?}", &all[..3]);
    assert!(all.iter().all(|(name, _)| !name.contains('/')));
    let segs = s.list("00000001").unwrap();
    assert_eq!(segs.len(), n);
    let (name, size) = &segs[10];
    assert_eq!(*size, fs::metadata(wal.join(name)).unwrap().len());

    // Small pages, so that many continuation tokens are followed.
    s.set_list_page(7);
    let mut paged: Vec<String> = s
        .list("0000000100000000000000")
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    paged.sort();
    let expected: Vec<String> = (0..256).map(|i| format!("00000001{:016X}", i)).collect();
    assert_eq!(paged, expected);
    assert_eq!(s.list("nothing-here").unwrap(), vec![]);
}

#[test]
fn delete_many_in_batches() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    let wal = bucket.join("wal");
    fs::create_dir(&wal).unwrap();
    let names: Vec<String> = (0..1100).map(|i| format!("00000001{:016X}", i)).collect();
    for name in &names {
        fs::write(wal.join(name), b"x").unwrap();
    }
    fs::write(wal.join("00000002.history"), b"h").unwrap();
    let s = store(&server, "s3://archive/wal");
    let mut victims = names[..1050].to_vec();
    // Deleting a key that is not there succeeds, as in S3.
    victims.push("000000010000000000FFFFFF".into());
    let report = s.delete_many(&victims).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.deleted, victims.len());
    let mut left: Vec<String> = s.list("").unwrap().into_iter().map(|e| e.0).collect();
    left.sort();
    let mut expected = names[1050..].to_vec();
    expected.push("00000002.history".into());
    assert_eq!(left, expected);
    assert!(!wal.join(&names[0]).exists());
    assert_eq!(s.delete_many(&[]).unwrap().deleted, 0);
}

#[test]
fn download_limit_and_interruption() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    let data = pattern(3 * 1024 * 1024);
    fs::write(bucket.join(SEG), &data).unwrap();
    let s = store(&server, "s3://archive");
    let r = get(&s, SEG, data.len() as u64 - 1);
    assert!(
        matches!(r, Err(Error::TooLarge { size, limit }) if size == data.len() as u64 && limit == size - 1),
        "{r:?}"
    );
    assert_eq!(get(&s, SEG, data.len() as u64).unwrap().len(), data.len());

    // Asked between chunks: stops after the first one.
    let calls = std::cell::Cell::new(0);
    let mut out = Vec::new();
    let r = s.get_to(SEG, &mut out, u64::MAX, &|| {
        calls.set(calls.get() + 1);
        calls.get() > 1
    });
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    assert!(out.len() < data.len());
}

#[test]
fn credentials_from_a_profile_file() {
    let server = S3Server::start();
    let bucket = server.bucket("archive");
    fs::write(bucket.join(SEG), b"seg").unwrap();
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join(".aws")).unwrap();
    fs::write(
        home.path().join(".aws/config"),
        format!(
            "[profile standby]\nendpoint_url = {}\nregion = us-east-1\n",
            server.endpoint
        ),
    )
    .unwrap();
    fs::write(
        home.path().join(".aws/credentials"),
        format!(
            "[standby]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3_server::ACCESS_KEY,
            s3_server::SECRET_KEY
        ),
    )
    .unwrap();
    let env: HashMap<&str, String> = [
        ("HOME", home.path().to_str().unwrap().to_string()),
        ("AWS_PROFILE", "standby".into()),
    ]
    .into_iter()
    .collect();
    let s = Store::from_url_with(
        "s3://archive",
        &|k| env.get(k).cloned(),
        Timeouts::default(),
    )
    .unwrap();
    assert_eq!(s.head(SEG).unwrap().map(|m| m.size), Some(3));
}
