//! How an object store's answer is read, for every store: one pure
//! function from what came back (the HTTP status, the store's error code,
//! `Retry-After`, the content type) to what the caller does next. The
//! codes are those of the stores' own references: S3 (`<Error><Code>`),
//! Google Cloud Storage (its JSON/XML error reasons) and Azure Blob
//! Storage (`x-ms-error-code`).

use std::time::Duration;

/// One answer, as the store gave it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub status: u16,
    /// The store's error code (`NoSuchKey`, `BlobNotFound`, ...), if any.
    pub code: Option<&'a str>,
    /// `Retry-After`, as sent (seconds; an HTTP date is not honoured).
    pub retry_after: Option<&'a str>,
    /// `Content-Type`, as sent.
    pub content_type: Option<&'a str>,
}

/// What the caller does with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The answer is the one asked for.
    Ok,
    /// The object is not there (yet).
    Absent,
    /// Ask again later; the store says when, if it says.
    Wait { retry_after: Option<Duration> },
    /// The credentials expired: refresh them where they can be, and ask
    /// again; where they cannot, a configuration error.
    Refresh,
    /// Waiting will not help: exit 250.
    Fatal(Fatal),
}

/// Why waiting will not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// The bucket or container does not exist.
    NoBucket,
    /// Credentials refused, permission missing, the clock off.
    Denied,
    /// Redirected: the wrong region or endpoint.
    Redirected,
    /// The request itself is wrong for this store (a 4xx not listed).
    Rejected,
}

impl Fatal {
    /// What to check, for the operator.
    pub fn hint(self) -> &'static str {
        match self {
            Fatal::NoBucket => "the bucket or container does not exist: check the archive URL",
            Fatal::Denied => {
                "check the credentials, the clock and the permissions (without list \
                 permission a missing object answers 403)"
            }
            Fatal::Redirected => "redirected: wrong region or endpoint?",
            Fatal::Rejected => "the store refused the request: check the archive URL and endpoint",
        }
    }
}

/// Error codes that mean "no such bucket / container", whatever the status.
const NO_BUCKET: [&str; 3] = ["NoSuchBucket", "ContainerNotFound", "ContainerBeingDeleted"];
/// Codes of expired credentials (S3: `ExpiredToken`; STS-issued keys:
/// `TokenRefreshRequired`; Azure OAuth: 401 `InvalidAuthenticationInfo`,
/// "Lifetime validation failed. The token is expired."; Azure SAS:
/// `AuthenticationFailed` with an expiry is not told apart from a wrong
/// key, so it is not here). A store whose credentials cannot be renewed
/// turns Refresh into a refusal.
const EXPIRED: [&str; 4] = [
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidToken",
    "InvalidAuthenticationInfo",
];
/// Codes of a busy or failing store, whatever the status.
const BUSY: [&str; 6] = [
    "SlowDown",
    "ServerBusy",
    "InternalError",
    "OperationTimedOut",
    "RequestTimeout",
    "ServiceUnavailable",
];

/// Codes of a store redirecting to where the bucket really is.
const REDIRECTS: [&str; 3] = [
    "PermanentRedirect",
    "TemporaryRedirect",
    "AuthorizationHeaderMalformed",
];

/// Longest `Retry-After` honoured: beyond it the caller's own schedule
/// (the trigger is looked at regardless).
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(60);

/// Sorts one answer. Pure: the table test below is its specification.
pub fn classify(a: &Answer<'_>) -> Verdict {
    let code = a.code.unwrap_or("");
    let retry_after = a
        .retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CEILING));
    if NO_BUCKET.contains(&code) {
        return Verdict::Fatal(Fatal::NoBucket);
    }
    if BUSY.contains(&code) {
        return Verdict::Wait { retry_after };
    }
    match a.status {
        // A page from something in the way (a captive portal, a proxy's
        // error page) is not the store's answer: ask again.
        200..=299
            if a.content_type
                .is_some_and(|t| t.trim_start().starts_with("text/html")) =>
        {
            Verdict::Wait { retry_after }
        }
        200..=299 => Verdict::Ok,
        // GCS answers a missing object and a missing bucket alike; the
        // caller tells them apart by looking at the bucket once.
        404 => Verdict::Absent,
        // The store's own redirect (wrong region or endpoint) will not
        // change; one from something in the way, without the store's
        // code, is asked again.
        301 | 302 | 303 | 307 | 308 if REDIRECTS.contains(&code) => {
            Verdict::Fatal(Fatal::Redirected)
        }
        301 | 302 | 303 | 307 | 308 => Verdict::Wait { retry_after },
        400 if code == "ExpiredToken" => Verdict::Refresh,
        401 | 403 if EXPIRED.contains(&code) => Verdict::Refresh,
        401 | 403 => Verdict::Fatal(Fatal::Denied),
        // Not implemented (GCS's answer to a batch delete): never will be.
        501 => Verdict::Fatal(Fatal::Rejected),
        408 | 425 | 429 | 500..=599 => Verdict::Wait { retry_after },
        _ => Verdict::Fatal(Fatal::Rejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_sorted() {
        use super::Fatal::{Denied, NoBucket, Redirected, Rejected};
        use Verdict::*;
        let s = Duration::from_secs;
        // (status, code, Retry-After, content type, verdict)
        let table: &[(u16, &str, &str, &str, Verdict)] = &[
            (200, "", "", "application/octet-stream", Ok),
            (206, "", "", "", Ok),
            (200, "", "", "application/xml", Ok),
            (
                200,
                "",
                "",
                "text/html; charset=utf-8",
                Wait { retry_after: None },
            ),
            // Absent: the object, not the bucket.
            (404, "NoSuchKey", "", "", Absent),
            (404, "BlobNotFound", "", "", Absent),
            (404, "", "", "", Absent),
            (404, "NoSuchBucket", "", "", Fatal(NoBucket)),
            (404, "ContainerNotFound", "", "", Fatal(NoBucket)),
            (409, "ContainerBeingDeleted", "", "", Fatal(NoBucket)),
            // Denied.
            (403, "AccessDenied", "", "", Fatal(Denied)),
            (403, "SignatureDoesNotMatch", "", "", Fatal(Denied)),
            (403, "RequestTimeTooSkewed", "", "", Fatal(Denied)),
            (
                403,
                "AuthorizationPermissionMismatch",
                "",
                "",
                Fatal(Denied),
            ),
            (403, "AuthenticationFailed", "", "", Fatal(Denied)),
            (403, "AuthorizationFailure", "", "", Fatal(Denied)),
            (401, "", "", "", Fatal(Denied)),
            (403, "InvalidAccessKeyId", "", "", Fatal(Denied)),
            // Expired credentials: refresh.
            (400, "ExpiredToken", "", "", Refresh),
            (403, "ExpiredToken", "", "", Refresh),
            (401, "InvalidToken", "", "", Refresh),
            (403, "TokenRefreshRequired", "", "", Refresh),
            (401, "InvalidAuthenticationInfo", "", "", Refresh),
            // Redirects.
            (301, "PermanentRedirect", "", "", Fatal(Redirected)),
            (307, "TemporaryRedirect", "", "", Fatal(Redirected)),
            (302, "", "", "text/html", Wait { retry_after: None }),
            (301, "", "", "", Wait { retry_after: None }),
            // Busy or failing: wait, as long as the store asks (capped).
            (
                503,
                "SlowDown",
                "3",
                "",
                Wait {
                    retry_after: Some(s(3)),
                },
            ),
            (503, "ServerBusy", "", "", Wait { retry_after: None }),
            (
                429,
                "",
                "7",
                "",
                Wait {
                    retry_after: Some(s(7)),
                },
            ),
            (
                429,
                "",
                "86400",
                "",
                Wait {
                    retry_after: Some(RETRY_AFTER_CEILING),
                },
            ),
            (
                429,
                "",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                "",
                Wait { retry_after: None },
            ),
            (500, "InternalError", "", "", Wait { retry_after: None }),
            (502, "", "", "text/html", Wait { retry_after: None }),
            (504, "", "", "", Wait { retry_after: None }),
            (408, "", "", "", Wait { retry_after: None }),
            (400, "RequestTimeout", "", "", Wait { retry_after: None }),
            (500, "OperationTimedOut", "", "", Wait { retry_after: None }),
            // Cloud Storage's JSON API: its error reasons
            // (https://cloud.google.com/storage/docs/json_api/v1/status-codes)
            // are sorted by the status alone.
            (404, "notFound", "", "application/json", Absent),
            (401, "authError", "", "", Fatal(Denied)),
            (401, "required", "", "", Fatal(Denied)),
            (403, "forbidden", "", "", Fatal(Denied)),
            (403, "insufficientPermissions", "", "", Fatal(Denied)),
            (429, "rateLimitExceeded", "", "", Wait { retry_after: None }),
            (503, "backendError", "", "", Wait { retry_after: None }),
            (500, "internalError", "", "", Wait { retry_after: None }),
            (400, "invalid", "", "", Fatal(Rejected)),
            (400, "userProjectMissing", "", "", Fatal(Rejected)),
            (400, "NotImplemented", "", "", Fatal(Rejected)),
            // The request is wrong for this store.
            (400, "InvalidArgument", "", "", Fatal(Rejected)),
            (400, "InvalidHeaderValue", "", "", Fatal(Rejected)),
            (405, "", "", "", Fatal(Rejected)),
            (501, "NotImplemented", "", "", Fatal(Rejected)),
        ];
        for &(status, code, retry, ctype, want) in table {
            let opt = |v: &'static str| (!v.is_empty()).then_some(v);
            let a = Answer {
                status,
                code: opt(code),
                retry_after: opt(retry),
                content_type: opt(ctype),
            };
            assert_eq!(classify(&a), want, "{a:?}");
        }
    }
}
