//! Reading the small, flat XML documents of S3 and Azure (error bodies,
//! listing pages, STS answers): by tag, not with a parser, because servers
//! differ in the fields they send and only a few are read.

/// The text of the first `<tag>…</tag>`, unescaped; `None` if missing or
/// empty.
pub(crate) fn field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    let v = body[start..end].trim();
    (!v.is_empty()).then(|| {
        v.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

/// The inside of each `<tag>…</tag>` in turn; `None` if one is not closed
/// (a cut document must not read as a shorter one).
pub(crate) fn elements<'a>(body: &'a str, tag: &str) -> Option<Vec<&'a str>> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close)?;
        out.push(&after[..end]);
        rest = &after[end..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                    <Message>a &amp; b</Message></Error>";
        assert_eq!(field(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(field(body, "Message").as_deref(), Some("a & b"));
        assert_eq!(field("", "Code"), None);
    }

    #[test]
    fn repeated_elements() {
        let body = "<R><Blob><Name>a</Name></Blob><BlobPrefix/><Blob><Name>b</Name></Blob></R>";
        assert_eq!(
            elements(body, "Blob").unwrap(),
            vec!["<Name>a</Name>", "<Name>b</Name>"]
        );
        assert_eq!(elements("<R/>", "Blob").unwrap(), Vec::<&str>::new());
        assert!(elements("<Blob><Name>a</Name>", "Blob").is_none());
    }
}
