//! When and how long to wait before trying a request again: transient statuses (408, 429,
//! 500, 502, 503, 504) and connection failures are retried with exponential backoff and
//! jitter, a bounded number of attempts, within the run's deadline; `Retry-After` (seconds or
//! an HTTP date) is honoured up to a cap, beyond which the request fails.

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;

/// The run's retry settings.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (`--retries`).
    pub attempts: u32,
    /// The first backoff; doubled each attempt.
    pub base: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a registry asking for more fails the request.
    pub max_retry_after: Duration,
    /// No retry starts after this instant (the run's deadline).
    pub deadline: Option<Instant>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            deadline: None,
        }
    }
}

/// Statuses that say "try again later".
pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// What to do after attempt number `attempt` (1-based) failed transiently.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Wait(Duration),
    /// No attempts or time left.
    GiveUp,
    /// The registry asked to wait longer than we will.
    TooLong(Duration),
}

impl RetryPolicy {
    /// Decides the wait after a transient failure, given the server's `Retry-After`.
    pub fn next(&self, attempt: u32, retry_after: Option<&str>) -> Next {
        if attempt >= self.attempts {
            return Next::GiveUp;
        }
        let wait = match retry_after.and_then(parse_retry_after) {
            Some(asked) if asked > self.max_retry_after => return Next::TooLong(asked),
            Some(asked) => asked,
            None => self.backoff(attempt),
        };
        match self.deadline {
            Some(d) if Instant::now() + wait >= d => Next::GiveUp,
            _ => Next::Wait(wait),
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// Sends a request made by `make` (again for each attempt), retrying transient answers and
/// connection failures per `policy`; the last answer or error is returned.
pub async fn send_retrying(
    policy: &RetryPolicy,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = make().send().await;
        let retry_after = match &result {
            Ok(r) if is_transient(r.status()) => r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Ok(_) => return result,
            Err(_) => None,
        };
        match policy.next(attempt, retry_after.as_deref()) {
            Next::Wait(d) => tokio::time::sleep(d).await,
            Next::GiveUp | Next::TooLong(_) => return result,
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A number in [0, 1) that differs between calls and processes (no RNG dependency needed:
/// spreading retries is all it is for).
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ u64::from(std::process::id());
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (r >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 416] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(100));
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_is_bounded_and_attempts_run_out() {
        let p = RetryPolicy::default();
        let Next::Wait(first) = p.next(1, None) else {
            panic!()
        };
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let Next::Wait(late) = p.next(4, None) else {
            panic!()
        };
        assert!(late >= Duration::from_millis(800) && late <= Duration::from_millis(1600));
        assert_eq!(p.next(5, None), Next::GiveUp);
        let Next::Wait(w) = p.next(1, Some("2")) else {
            panic!()
        };
        assert_eq!(w, Duration::from_secs(2));
        assert_eq!(
            p.next(1, Some("600")),
            Next::TooLong(Duration::from_secs(600))
        );
    }

    #[test]
    fn no_retry_past_the_deadline() {
        let p = RetryPolicy {
            deadline: Some(Instant::now() + Duration::from_millis(50)),
            ..RetryPolicy::default()
        };
        assert_eq!(p.next(1, Some("1")), Next::GiveUp);
    }
}
