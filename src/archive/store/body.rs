//! An object's body into the caller's sink, for every store: in bounded
//! memory, stoppable between chunks, never more than the caller's limit,
//! and checked against what the store says it stored (its length and, where
//! it gives one, a checksum), so that a byte changed on the way (a faulty
//! proxy, a plain-HTTP endpoint, a bit flip in a cache) is never delivered.

use std::io::{self, Read, Write};

use md5::{Digest as _, Md5};

use super::Error;

/// Bytes read at a time.
const CHUNK: usize = 128 * 1024;

/// A checksum the store gave for the whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Md5([u8; 16]),
    Crc32c(u32),
    Crc32(u32),
}

impl Checksum {
    /// The value as stores and their consoles show it: hex.
    fn value(self) -> String {
        match self {
            Checksum::Md5(d) => d.iter().map(|b| format!("{b:02x}")).collect(),
            Checksum::Crc32c(c) | Checksum::Crc32(c) => format!("{c:08x}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Checksum::Md5(_) => "MD5",
            Checksum::Crc32c(_) => "CRC32C",
            Checksum::Crc32(_) => "CRC32",
        }
    }

    /// S3's answer: `x-amz-checksum-crc32c` / `-crc32` (base64 of the
    /// big-endian value) when the object was uploaded with one, else an
    /// `ETag` that is the body's MD5 — a single-part upload (no `-N`
    /// suffix) without SSE-KMS or SSE-C, whose ETags are not MD5s
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html>,
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>).
    /// A full-object checksum only: a composite one (`-N`) is of the
    /// parts.
    pub fn from_s3(header: &dyn Fn(&str) -> Option<String>) -> Vec<Checksum> {
        // Cloud Storage's XML API (s3:// with HMAC keys) serves a
        // gzip-encoded object decompressed, its ETag the stored bytes' MD5.
        if transcoded(header) {
            return Vec::new();
        }
        let crc = |name: &str| {
            header(name)
                .filter(|v| !v.contains('-'))
                .and_then(|v| base64_decode(&v))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
        };
        let mut found = Vec::new();
        found.extend(crc("x-amz-checksum-crc32c").map(Checksum::Crc32c));
        found.extend(crc("x-amz-checksum-crc32").map(Checksum::Crc32));
        let encrypted = header("x-amz-server-side-encryption").is_some_and(|v| v == "aws:kms")
            || header("x-amz-server-side-encryption").is_some_and(|v| v == "aws:kms:dsse")
            || header("x-amz-server-side-encryption-customer-algorithm").is_some();
        if !encrypted
            && let Some(md5) = header("etag")
                .map(|v| v.trim().trim_matches('"').to_string())
                .and_then(|v| hex16(&v))
        {
            found.push(Checksum::Md5(md5));
        }
        found
    }

    /// Google Cloud Storage's `x-goog-hash: crc32c=…,md5=…` (base64; one
    /// header or several; no md5 for composite objects)
    /// (<https://cloud.google.com/storage/docs/xml-api/reference-headers#xgooghash>).
    pub fn from_goog_hash(values: &[String]) -> Vec<Checksum> {
        let mut found = Vec::new();
        for part in values.iter().flat_map(|v| v.split(',')) {
            let Some((kind, value)) = part.trim().split_once('=') else {
                continue;
            };
            let Some(bytes) = base64_decode(value.trim()) else {
                continue;
            };
            match kind.trim() {
                "crc32c" => found.extend(
                    <[u8; 4]>::try_from(bytes)
                        .ok()
                        .map(|b| Checksum::Crc32c(u32::from_be_bytes(b))),
                ),
                "md5" => found.extend(<[u8; 16]>::try_from(bytes).ok().map(Checksum::Md5)),
                _ => {}
            }
        }
        found
    }

    /// `Content-MD5` (base64), as Azure Blob Storage returns it for a
    /// blob uploaded with one
    /// (<https://learn.microsoft.com/en-us/rest/api/storageservices/get-blob#response-headers>).
    pub fn from_content_md5(value: Option<&str>) -> Vec<Checksum> {
        value
            .and_then(|v| base64_decode(v.trim()))
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Checksum::Md5)
            .into_iter()
            .collect()
    }
}

/// Whether Cloud Storage served a gzip-encoded object decompressed
/// ("decompressive transcoding"): the object's hashes (`x-goog-hash`, the
/// ETag) are then of the stored, compressed bytes and say nothing about
/// the body (<https://cloud.google.com/storage/docs/transcoding>), so none
/// is checked, as Google's own clients do not.
pub fn transcoded(header: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(stored) = header("x-goog-stored-content-encoding") else {
        return false;
    };
    let stored = stored.trim();
    !stored.is_empty()
        && !stored.eq_ignore_ascii_case("identity")
        && !header("content-encoding").is_some_and(|sent| sent.trim().eq_ignore_ascii_case(stored))
}

/// Running checksums of what was read.
struct Hashers {
    md5: Option<Md5>,
    crc32c: Option<u32>,
    crc32: Option<u32>,
}

impl Hashers {
    fn for_(expected: &[Checksum]) -> Self {
        let wants = |f: fn(&Checksum) -> bool| expected.iter().any(f);
        Hashers {
            md5: wants(|c| matches!(c, Checksum::Md5(_))).then(Md5::new),
            crc32c: wants(|c| matches!(c, Checksum::Crc32c(_))).then_some(!0),
            crc32: wants(|c| matches!(c, Checksum::Crc32(_))).then_some(!0),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(bytes);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc_update(&CRC32C_TABLE, *c, bytes);
        }
        if let Some(c) = &mut self.crc32 {
            *c = crc_update(&CRC32_TABLE, *c, bytes);
        }
    }

    /// The first checksum that does not match, with what was computed.
    fn mismatch(self, expected: &[Checksum]) -> Option<(Checksum, String)> {
        let md5 = self.md5.map(|h| <[u8; 16]>::from(h.finalize()));
        let crc32c = self.crc32c.map(|c| !c);
        let crc32 = self.crc32.map(|c| !c);
        expected.iter().find_map(|want| {
            let got = match want {
                Checksum::Md5(_) => md5.map(Checksum::Md5),
                Checksum::Crc32c(_) => crc32c.map(Checksum::Crc32c),
                Checksum::Crc32(_) => crc32.map(Checksum::Crc32),
            };
            (got != Some(*want)).then(|| (*want, got.map_or("none".into(), Checksum::value)))
        })
    }
}

/// Copies an answer's body into `dst`: at most `limit` bytes, exactly
/// `length` if the store said how long it is, matching every checksum in
/// `expected`; `should_stop` is asked between chunks. A body cut short is
/// [`Error::Transient`] (asked again); a checksum that does not match is
/// [`Error::Corrupt`] (a bad file: never delivered, downloaded again).
pub fn copy(
    body: &mut dyn Read,
    dst: &mut dyn Write,
    limit: u64,
    length: Option<u64>,
    expected: &[Checksum],
    should_stop: &dyn Fn() -> bool,
    what: &str,
) -> Result<u64, Error> {
    if let Some(size) = length
        && size > limit
    {
        return Err(Error::TooLarge { size, limit });
    }
    let mut hashers = Hashers::for_(expected);
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    loop {
        if should_stop() {
            return Err(Error::Interrupted);
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Transient(format!(
                    "{what}: reading the body after {done} bytes: {e}"
                )));
            }
        };
        if done + n as u64 > limit {
            return Err(Error::TooLarge {
                size: done + n as u64,
                limit,
            });
        }
        hashers.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(Error::Io)?;
        done += n as u64;
    }
    if let Some(size) = length
        && size != done
    {
        return Err(Error::Transient(format!(
            "{what}: body cut short at {done} of {size} bytes"
        )));
    }
    if let Some((want, got)) = hashers.mismatch(expected) {
        return Err(Error::Corrupt(format!(
            "{what}: the {} the store gives for the object ({}) does not match the {done} \
             bytes received ({got}): changed on the way",
            want.name(),
            want.value()
        )));
    }
    Ok(done)
}

/// CRC-32C (Castagnoli, reflected 0x82F63B78) and CRC-32 (IEEE, reflected
/// 0xEDB88320), a table each, built at compile time.
const CRC32C_TABLE: [u32; 256] = crc_table(0x82F6_3B78);
const CRC32_TABLE: [u32; 256] = crc_table(0xEDB8_8320);

const fn crc_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

fn crc_update(table: &[u32; 256], mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Standard base64 with padding, as the stores send checksums.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(pairs: &[(&str, &str)]) -> Vec<Checksum> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Checksum::from_s3(&|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn crc_check_values() {
        // The catalogue's check value: the CRC of "123456789".
        let crc = |table, bytes| !crc_update(table, !0, bytes);
        assert_eq!(crc(&CRC32C_TABLE, b"123456789"), 0xE306_9283);
        assert_eq!(crc(&CRC32_TABLE, b"123456789"), 0xCBF4_3926);
        // Split anywhere, the same.
        let c = crc_update(&CRC32C_TABLE, !0, b"1234");
        assert_eq!(!crc_update(&CRC32C_TABLE, c, b"56789"), 0xE306_9283);
    }

    #[test]
    fn what_each_store_says_it_stored() {
        let md5_hello = hex16("5d41402abc4b2a76b9719d911017c592").unwrap();
        let table: Vec<(Vec<Checksum>, Vec<Checksum>)> = vec![
            // A plain single-part ETag is an MD5.
            (
                s3(&[("etag", "\"5d41402abc4b2a76b9719d911017c592\"")]),
                vec![Checksum::Md5(md5_hello)],
            ),
            // Multipart, SSE-KMS, SSE-C: not an MD5 of the body.
            (
                s3(&[("etag", "\"5d41402abc4b2a76b9719d911017c592-3\"")]),
                vec![],
            ),
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-amz-server-side-encryption", "aws:kms"),
                ]),
                vec![],
            ),
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
                ]),
                vec![],
            ),
            // SSE-S3 keeps MD5 ETags.
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-amz-server-side-encryption", "AES256"),
                ]),
                vec![Checksum::Md5(md5_hello)],
            ),
            (s3(&[("etag", "\"not-a-digest\"")]), vec![]),
            (s3(&[]), vec![]),
            // Checksums uploaded with the object; a composite one is not
            // the body's.
            (
                s3(&[("x-amz-checksum-crc32c", "4waSgw==")]),
                vec![Checksum::Crc32c(0xE306_9283)],
            ),
            (
                s3(&[("x-amz-checksum-crc32", "y/Q5Jg==")]),
                vec![Checksum::Crc32(0xCBF4_3926)],
            ),
            (s3(&[("x-amz-checksum-crc32c", "4waSgw==-3")]), vec![]),
            (s3(&[("x-amz-checksum-crc32c", "!!!")]), vec![]),
            // Cloud Storage's XML API serving a gzip-encoded object
            // decompressed: the ETag is the compressed bytes' MD5.
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-goog-stored-content-encoding", "gzip"),
                ]),
                vec![],
            ),
            // Served as stored (asked with Accept-Encoding: gzip): checked.
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-goog-stored-content-encoding", "gzip"),
                    ("content-encoding", "gzip"),
                ]),
                vec![Checksum::Md5(md5_hello)],
            ),
            (
                s3(&[
                    ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
                    ("x-goog-stored-content-encoding", "identity"),
                ]),
                vec![Checksum::Md5(md5_hello)],
            ),
            (
                Checksum::from_goog_hash(&["crc32c=4waSgw==,md5=XUFAKrxLKna5cZ2REBfFkg==".into()]),
                vec![Checksum::Crc32c(0xE306_9283), Checksum::Md5(md5_hello)],
            ),
            (
                Checksum::from_goog_hash(&[
                    "crc32c=4waSgw==".into(),
                    "md5=XUFAKrxLKna5cZ2REBfFkg==".into(),
                ]),
                vec![Checksum::Crc32c(0xE306_9283), Checksum::Md5(md5_hello)],
            ),
            (Checksum::from_goog_hash(&["sha1=x".into()]), vec![]),
            (
                Checksum::from_content_md5(Some("XUFAKrxLKna5cZ2REBfFkg==")),
                vec![Checksum::Md5(md5_hello)],
            ),
            (Checksum::from_content_md5(Some("short")), vec![]),
            (Checksum::from_content_md5(None), vec![]),
        ];
        for (i, (got, want)) in table.into_iter().enumerate() {
            assert_eq!(got, want, "row {i}");
        }
    }

    fn run(body: &[u8], length: Option<u64>, expected: &[Checksum]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        copy(
            &mut &body[..],
            &mut out,
            1 << 20,
            length,
            expected,
            &|| false,
            "GET x",
        )
        .map(|_| out)
    }

    #[test]
    fn bodies_are_delivered_only_as_stored() {
        let md5 = Checksum::Md5(hex16("5d41402abc4b2a76b9719d911017c592").unwrap());
        let crc = Checksum::Crc32c(!crc_update(&CRC32C_TABLE, !0, b"hello"));
        assert_eq!(run(b"hello", Some(5), &[md5, crc]).unwrap(), b"hello");
        assert_eq!(run(b"hello", None, &[]).unwrap(), b"hello");
        assert!(matches!(
            run(b"hellO", Some(5), &[md5]),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            run(b"hellO", Some(5), &[crc]),
            Err(Error::Corrupt(_))
        ));
        // The values as an operator compares them with the store's
        // console: hex, no Rust in the log.
        let Err(Error::Corrupt(why)) = run(b"hellO", Some(5), &[md5]) else {
            panic!("not corrupt");
        };
        assert!(
            why.contains(
                "the MD5 the store gives for the object (5d41402abc4b2a76b9719d911017c592)"
            ),
            "{why}"
        );
        assert!(!why.contains("Some(") && !why.contains("Md5("), "{why}");
        assert!(matches!(
            run(b"hell", Some(5), &[md5]),
            Err(Error::Transient(_))
        ));
        assert!(matches!(
            run(b"hello", Some(2 << 20), &[]),
            Err(Error::TooLarge { .. })
        ));
        let mut out = Vec::new();
        let stopped = copy(
            &mut &b"hello"[..],
            &mut out,
            10,
            None,
            &[],
            &|| true,
            "GET x",
        );
        assert!(matches!(stopped, Err(Error::Interrupted)));
    }
}
