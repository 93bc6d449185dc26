//! The rules every store's archive URL shares, `SCHEME://NAME[/PREFIX]`:
//! how it splits, what a prefix may hold and how it is normalised, the
//! message of a malformed one. Each store checks its own naming rules for
//! the bucket (or container) between the two.

use super::Error;

/// The error of a malformed archive URL.
pub(crate) fn malformed(url: &str, why: &str) -> Error {
    Error::config(format!("malformed archive URL \"{url}\": {why}"))
}

/// `SCHEME://NAME[/PREFIX]` split into the bucket's (`noun`: "bucket",
/// "container") name, never empty, and the prefix as written.
pub(crate) fn split<'a>(
    url: &'a str,
    scheme: &str,
    noun: &str,
) -> Result<(&'a str, &'a str), Error> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| {
            let form = noun.to_ascii_uppercase();
            malformed(url, &format!("expected {scheme}://{form}[/PREFIX]"))
        })?;
    let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(malformed(url, &format!("the {noun} name is empty")));
    }
    Ok((name, prefix))
}

/// The prefix, checked (no control character, none of `forbidden`: a
/// query or fragment would change the requests) and normalised: no
/// leading slash, no empty segments, ending with `/` unless empty.
pub(crate) fn prefix(url: &str, prefix: &str, forbidden: &[char]) -> Result<String, Error> {
    if prefix
        .chars()
        .any(|c| c.is_control() || forbidden.contains(&c))
    {
        let quoted: Vec<String> = forbidden.iter().map(|c| format!("'{c}'")).collect();
        let (last, others) = quoted.split_last().expect("characters to forbid");
        return Err(malformed(
            url,
            &format!(
                "the prefix has a control character, {} or {last} (no query or fragment)",
                others.join(", ")
            ),
        ));
    }
    let mut norm = String::new();
    for seg in prefix.split('/').filter(|s| !s.is_empty()) {
        norm.push_str(seg);
        norm.push('/');
    }
    Ok(norm)
}

/// The characters of an S3 or Cloud Storage bucket name (their naming
/// rules agree on these; S3's relaxed for the underscores some
/// S3-compatible servers accept).
#[cfg(any(feature = "s3", feature = "gcs"))]
pub(crate) fn bucket_characters(url: &str, bucket: &str) -> Result<(), Error> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bucket
        .chars()
        .all(|c| ok(c) || matches!(c, '.' | '-' | '_'))
    {
        return Err(malformed(
            url,
            "a bucket name has only lowercase letters, digits, '.', '-' and '_'",
        ));
    }
    if !bucket.starts_with(ok) || !bucket.ends_with(ok) {
        return Err(malformed(
            url,
            "a bucket name starts and ends with a letter or digit",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(e: Error) -> String {
        match e {
            Error::Config { why, .. } => why,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn messages_and_normal_form() {
        assert_eq!(
            why(split("s3:/x", "s3", "bucket").unwrap_err()),
            "malformed archive URL \"s3:/x\": expected s3://BUCKET[/PREFIX]"
        );
        assert_eq!(
            why(split("azure:///p", "azure", "container").unwrap_err()),
            "malformed archive URL \"azure:///p\": the container name is empty"
        );
        assert_eq!(split("gs://b/p/q", "gs", "bucket").unwrap(), ("b", "p/q"));
        assert_eq!(
            why(prefix("u", "p?x", &['?', '#']).unwrap_err()),
            "malformed archive URL \"u\": the prefix has a control character, '?' or '#' \
             (no query or fragment)"
        );
        assert_eq!(
            why(prefix("u", "p\\x", &['\\', '?', '#']).unwrap_err()),
            "malformed archive URL \"u\": the prefix has a control character, '\\', '?' or \
             '#' (no query or fragment)"
        );
        assert_eq!(prefix("u", "/a//b", &['?']).unwrap(), "a/b/");
        assert_eq!(prefix("u", "", &['?']).unwrap(), "");
    }
}
