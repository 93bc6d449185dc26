//! Short-lived credentials held for the life of one process. A call may
//! wait for hours and the prefetch worker lives as long as the server's
//! catch-up, while credentials from an instance role, a web identity or a
//! token endpoint last an hour or less: they are fetched on first use,
//! kept, and fetched again a little before they expire. Shared by every
//! store whose credentials expire.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::Error;

/// Fetch new credentials this long before the old ones expire (the AWS
/// SDKs refresh 5 minutes ahead), or after half their lifetime when that
/// is shorter.
const MARGIN: Duration = Duration::from_secs(5 * 60);

/// A value and when it stops being valid (`None`: never).
#[derive(Clone)]
pub struct Expiring<T> {
    pub value: T,
    pub expires: Option<SystemTime>,
}

/// A secret that prints redacted: keys, tokens, client secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Whether credentials fetched at `fetched` and valid until `expires`
/// should be fetched again at `now`.
pub fn refresh_due(now: SystemTime, fetched: SystemTime, expires: Option<SystemTime>) -> bool {
    let Some(expires) = expires else {
        return false;
    };
    let lifetime = expires.duration_since(fetched).unwrap_or_default();
    let margin = MARGIN.min(lifetime / 2);
    now + margin >= expires
}

/// Whether credentials valid until `expires` may still sign at `now`.
fn still_valid(now: SystemTime, expires: Option<SystemTime>) -> bool {
    expires.is_none_or(|e| now < e)
}

/// Whether a request to a credential endpoint failed before anything
/// answered: refused, no route, no connection within the connect timeout.
/// On a machine without an instance metadata service that source does not
/// apply, rather than being down.
pub fn nothing_listens(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(t) => *t == ureq::Timeout::Connect,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

/// Credentials fetched when first needed and again when due.
pub struct Refreshing<T> {
    held: Mutex<Option<(Expiring<T>, SystemTime)>>,
    /// Whether the source ever answered: a failure to refresh is then
    /// waited out, not taken for a configuration error.
    answered: AtomicBool,
}

impl<T: Clone> Refreshing<T> {
    pub fn new() -> Self {
        Self {
            held: Mutex::new(None),
            answered: AtomicBool::new(false),
        }
    }

    /// The current credentials, fetched with `fetch` when there are none
    /// or they are due. A failed refresh keeps the old ones while they are
    /// still valid (the next use tries again); after that it is the
    /// caller's error, which its waiting loop retries.
    pub fn get<E>(&self, fetch: impl FnOnce() -> Result<Expiring<T>, E>) -> Result<T, E> {
        self.get_at(SystemTime::now(), fetch)
    }

    /// [`Refreshing::get`] for a store's requests: the source is logged
    /// the first time it answers (`store`, `source`: never a secret), and
    /// once it has answered, a refresh it refuses with a configuration
    /// error is waited out like the store itself (`what`: what is
    /// refreshed, for the message).
    pub fn get_for_store(
        &self,
        fetch: impl FnOnce() -> Result<Expiring<T>, Error>,
        what: &str,
        store: &str,
        source: &dyn Fn() -> String,
    ) -> Result<T, Error> {
        match self.get(fetch) {
            Ok(c) => {
                if !self.answered.swap(true, Ordering::Relaxed) {
                    tracing::debug!("{store} credentials from {}", source());
                }
                Ok(c)
            }
            Err(Error::Config { why, .. }) if self.answered.load(Ordering::Relaxed) => {
                Err(Error::Transient(format!("refreshing {what}: {why}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the credentials: the store said they expired before we
    /// thought they would (a clock off, a revoked session).
    pub fn invalidate(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn get_at<E>(
        &self,
        now: SystemTime,
        fetch: impl FnOnce() -> Result<Expiring<T>, E>,
    ) -> Result<T, E> {
        // One fetch at a time: lanes that need credentials together wait
        // for the same answer instead of asking the endpoint each.
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((c, fetched)) = held.as_ref()
            && !refresh_due(now, *fetched, c.expires)
        {
            return Ok(c.value.clone());
        }
        match fetch() {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *held = Some((fresh, now));
                Ok(value)
            }
            Err(e) => match held.as_ref() {
                Some((c, _)) if still_valid(now, c.expires) => Ok(c.value.clone()),
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_a_refresh_is_due() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        // (seconds since fetched, lifetime in seconds or none, due?)
        let table: &[(u64, Option<u64>, bool)] = &[
            (0, None, false),
            (1_000_000, None, false),
            // An hour's credentials: due 5 minutes before the end.
            (0, Some(3600), false),
            (3299, Some(3600), false),
            (3300, Some(3600), true),
            (4000, Some(3600), true),
            // Short-lived ones: due at half their life.
            (0, Some(4), false),
            (1, Some(4), false),
            (2, Some(4), true),
            // Already expired when fetched (a clock ahead): due at once.
            (0, Some(0), true),
        ];
        for &(after, lifetime, due) in table {
            let expires = lifetime.map(|l| t0 + s(l));
            assert_eq!(
                refresh_due(t0 + s(after), t0, expires),
                due,
                "after {after} s, lifetime {lifetime:?}"
            );
        }
    }

    #[test]
    fn fetches_once_until_due_and_keeps_valid_ones_when_a_refresh_fails() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ok = |value: u32, expires: Option<SystemTime>| {
            move || Ok::<_, &str>(Expiring { value, expires })
        };
        let cache = Refreshing::new();
        assert_eq!(cache.get_at(at(0), ok(1, Some(at(3_600_000)))), Ok(1));
        assert_eq!(
            cache.get_at(at(1000), || -> Result<_, &str> { panic!("not due") }),
            Ok(1)
        );

        // Fetched at 0, valid for 2 s: due from 1 s on; a failed refresh
        // keeps them until they expire, then the failure is the answer.
        let cache = Refreshing::new();
        assert_eq!(cache.get_at(at(0), ok(2, Some(at(2000)))), Ok(2));
        assert_eq!(
            cache.get_at(at(500), || -> Result<_, &str> { panic!("not due") }),
            Ok(2)
        );
        assert_eq!(cache.get_at(at(1200), || Err("endpoint down")), Ok(2));
        assert_eq!(
            cache.get_at(at(2000), || Err("endpoint down")),
            Err("endpoint down")
        );
        assert_eq!(cache.get_at(at(2100), ok(3, None)), Ok(3));
        assert_eq!(
            cache.get_at(at(9_999_999), || -> Result<_, &str> { panic!("never due") }),
            Ok(3)
        );
    }
}
