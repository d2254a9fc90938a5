//! The retry policy of every call (spec §5.1): go-retryablehttp's defaults as ARC configures them.
//!
//! The decisions are pure functions ([`should_retry`], [`RetryPolicy::backoff`],
//! [`retry_after`]); [`run`] is the loop that sleeps between attempts.

use std::future::Future;
use std::time::{Duration, SystemTime};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (4 ⇒ at most 5 attempts).
    pub max_retries: u32,
    /// Wait before the first retry; doubles for each further one.
    pub wait_min: Duration,
    /// Cap of the computed wait (a `Retry-After` header is not capped).
    pub wait_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            wait_min: Duration::from_secs(1),
            wait_max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry `retry` (0-based): `wait_min × 2^retry`, capped at `wait_max`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.wait_min
            .checked_mul(factor)
            .unwrap_or(self.wait_max)
            .min(self.wait_max)
    }
}

/// Why an attempt got no response, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// "stopped after N redirects".
    TooManyRedirects,
    /// The request could not even be built: unsupported scheme, invalid header, bad URL.
    InvalidRequest,
    /// The server's certificate failed verification.
    CertificateVerification,
    /// Anything else: refused, reset, timeout, EOF...
    Other,
}

impl TransportFailure {
    /// Classifies a reqwest error.
    pub fn classify(error: &reqwest::Error) -> Self {
        if error.is_redirect() {
            return Self::TooManyRedirects;
        }
        if error.is_builder() {
            return Self::InvalidRequest;
        }
        if is_certificate_error(error) {
            return Self::CertificateVerification;
        }
        Self::Other
    }
}

/// Walks the source chain looking for a rustls certificate error (io::Error hides its inner error
/// from `source()`, so look inside those too).
fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if is_rustls_certificate_error(e) {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && is_certificate_error(inner)
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn is_rustls_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

/// What one attempt produced, reduced to what the retry decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Status(u16),
    Transport(TransportFailure),
}

/// Whether an attempt is retried (§5.1). `retry_auth` adds 401 and 403 (runner-registration only).
pub fn should_retry(outcome: AttemptOutcome, retry_auth: bool) -> bool {
    match outcome {
        AttemptOutcome::Transport(TransportFailure::Other) => true,
        AttemptOutcome::Transport(_) => false,
        AttemptOutcome::Status(429) => true,
        AttemptOutcome::Status(401 | 403) => retry_auth,
        AttemptOutcome::Status(501) => false,
        AttemptOutcome::Status(status) => status == 0 || status >= 500,
    }
}

/// The `Retry-After` override of the wait: only on 429 and 503, as whole seconds or an HTTP date
/// (a date in the past means no wait). Unparseable or negative values give no override.
pub fn retry_after(status: u16, header: Option<&str>, now: SystemTime) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let value = header?.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(seconds) = value.parse::<i64>() {
        return u64::try_from(seconds).ok().map(Duration::from_secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the result to the caller.
    Done,
    /// Try again, after `after` if given (a `Retry-After`), else after the policy's backoff.
    Retry { after: Option<Duration> },
}

/// The result of [`run`].
#[derive(Debug)]
pub struct Finished<T> {
    /// The last attempt's result.
    pub result: T,
    /// How many attempts were made.
    pub attempts: u32,
    /// True when the last attempt still asked for a retry.
    pub exhausted: bool,
}

/// Runs `attempt` (given the 0-based attempt number) until `judge` says done or the policy is
/// exhausted, sleeping the policy's backoff between attempts. Dropping the future cancels it.
pub async fn run<T, F, Fut, J>(policy: &RetryPolicy, mut attempt: F, mut judge: J) -> Finished<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = T>,
    J: FnMut(&T) -> Verdict,
{
    let mut number = 0u32;
    loop {
        let result = attempt(number).await;
        let after = match judge(&result) {
            Verdict::Done => {
                return Finished {
                    result,
                    attempts: number + 1,
                    exhausted: false,
                };
            }
            Verdict::Retry { after } => after,
        };
        if number >= policy.max_retries {
            return Finished {
                result,
                attempts: number + 1,
                exhausted: true,
            };
        }
        let wait = after.unwrap_or_else(|| policy.backoff(number));
        tracing::debug!(
            attempt = number + 1,
            wait_ms = wait.as_millis() as u64,
            "retrying after backoff"
        );
        tokio::time::sleep(wait).await;
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn retry_decisions_follow_5_1() {
        use AttemptOutcome::{Status, Transport};
        use TransportFailure::*;
        let cases = [
            (Transport(Other), false, true),
            (Transport(TooManyRedirects), false, false),
            (Transport(InvalidRequest), false, false),
            (Transport(CertificateVerification), false, false),
            (Status(0), false, true),
            (Status(200), false, false),
            (Status(202), false, false),
            (Status(400), false, false),
            (Status(401), false, false),
            (Status(401), true, true),
            (Status(403), false, false),
            (Status(403), true, true),
            (Status(404), true, false),
            (Status(409), false, false),
            (Status(429), false, true),
            (Status(500), false, true),
            (Status(501), false, false),
            (Status(501), true, false),
            (Status(502), false, true),
            (Status(503), false, true),
            (Status(504), false, true),
            (Status(599), false, true),
        ];
        for (outcome, auth, want) in cases {
            assert_eq!(should_retry(outcome, auth), want, "{outcome:?} retry_auth={auth}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (0..8).map(|i| p.backoff(i).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
        let scaled = RetryPolicy {
            wait_min: Duration::from_millis(10),
            ..p
        };
        assert_eq!(scaled.backoff(3), Duration::from_millis(80));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates_on_429_and_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(429, Some("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(503, Some(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(retry_after(503, Some(&in_90s), now), Some(Duration::from_secs(90)));
        assert_eq!(retry_after(429, Some(&past), now), Some(Duration::ZERO));
        assert_eq!(retry_after(429, Some("-3"), now), None);
        assert_eq!(retry_after(429, Some("soon"), now), None);
        assert_eq!(retry_after(429, None, now), None);
        assert_eq!(retry_after(500, Some("7"), now), None);
        assert_eq!(retry_after(502, Some("7"), now), None);
    }

    /// Records the (virtual) instant of every attempt.
    fn recorder() -> (Arc<Mutex<Vec<tokio::time::Instant>>>, tokio::time::Instant) {
        (Arc::new(Mutex::new(Vec::new())), tokio::time::Instant::now())
    }

    fn gaps(times: &[tokio::time::Instant], start: tokio::time::Instant) -> Vec<u64> {
        let mut prev = start;
        times
            .iter()
            .map(|t| {
                let gap = t.duration_since(prev).as_secs();
                prev = *t;
                gap
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_1_2_4_8_seconds_then_gives_up() {
        let (times, start) = recorder();
        let finished = run(
            &RetryPolicy::default(),
            |_| {
                let times = times.clone();
                async move {
                    times.lock().unwrap().push(tokio::time::Instant::now());
                    503u16
                }
            },
            |_| Verdict::Retry { after: None },
        )
        .await;
        assert!(finished.exhausted);
        assert_eq!(finished.attempts, 5);
        assert_eq!(gaps(&times.lock().unwrap(), start), vec![0, 1, 2, 4, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_first_success_and_honours_retry_after() {
        let (times, start) = recorder();
        let finished = run(
            &RetryPolicy::default(),
            |n| {
                let times = times.clone();
                async move {
                    times.lock().unwrap().push(tokio::time::Instant::now());
                    n
                }
            },
            |n| match n {
                0 => Verdict::Retry {
                    after: Some(Duration::from_secs(7)),
                },
                1 => Verdict::Retry { after: None },
                _ => Verdict::Done,
            },
        )
        .await;
        assert!(!finished.exhausted);
        assert_eq!(finished.result, 2);
        assert_eq!(finished.attempts, 3);
        assert_eq!(gaps(&times.lock().unwrap(), start), vec![0, 7, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retries_policy_makes_one_attempt() {
        let finished = run(&RetryPolicy::none(), |_| async {}, |_| Verdict::Retry { after: None }).await;
        assert_eq!(finished.attempts, 1);
        assert!(finished.exhausted);
    }
}
