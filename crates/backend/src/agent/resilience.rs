//! What stands between the chat and any provider: automatic retries of
//! transient failures before the first token (exponential backoff with
//! jitter, honouring a 429's `Retry-After`), and a circuit breaker so that a
//! dead provider fails fast instead of making every user wait out every
//! timeout, and recovers by itself (one probe request after a cool-down).
//!
//! It is a [`Provider`] wrapping a provider, so the chat domain and the
//! providers themselves know nothing of it. After the first token nothing is
//! retried: the user has seen text, and a second attempt would repeat it.

use super::{AgentInfo, ChatMessage, Provider, ProviderError, TokenStream};
use async_trait::async_trait;
use confab_core::{
    clock,
    config::{ConfigError, Env},
};
use futures::StreamExt;
use rand::Rng;
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

#[derive(Debug, Clone)]
pub struct Policy {
    /// Automatic retries after the first attempt (`CONFAB_LLM_RETRIES`).
    pub retries: u32,
    /// First backoff; doubled each retry, with jitter (`CONFAB_LLM_RETRY_BASE_MS`).
    pub base: Duration,
    /// The longest one automatic wait may be (`CONFAB_LLM_RETRY_MAX_WAIT_MS`):
    /// a `Retry-After` beyond it fails the reply at once and tells the user
    /// how long to wait instead of holding the reply hostage.
    pub max_wait: Duration,
    /// Consecutive outages that open the breaker (`CONFAB_LLM_BREAKER_FAILURES`,
    /// 0 turns it off).
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe (`CONFAB_LLM_BREAKER_COOLDOWN_MS`).
    pub breaker_cooldown: Duration,
}

impl Policy {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base: u64 = env.parse("CONFAB_LLM_RETRY_BASE_MS", 250)?;
        let cooldown: u64 = env.parse("CONFAB_LLM_BREAKER_COOLDOWN_MS", 30_000)?;
        if cooldown == 0 {
            return Err(env.invalid(
                "CONFAB_LLM_BREAKER_COOLDOWN_MS",
                "must be at least 1 (milliseconds)",
            ));
        }
        Ok(Self {
            retries: env.parse("CONFAB_LLM_RETRIES", 2)?,
            base: Duration::from_millis(base),
            max_wait: Duration::from_millis(env.parse("CONFAB_LLM_RETRY_MAX_WAIT_MS", 10_000)?),
            breaker_failures: env.parse("CONFAB_LLM_BREAKER_FAILURES", 5)?,
            breaker_cooldown: Duration::from_millis(cooldown),
        })
    }

    /// How long to wait before retry number `attempt` (0-based) after `e`,
    /// or `None` when waiting is not worth it (the provider asked for longer
    /// than we are willing to hold the reply).
    pub fn wait(&self, attempt: u32, e: &ProviderError, jitter: f64) -> Option<Duration> {
        if let ProviderError::RateLimited {
            retry_after: Some(after),
            ..
        } = e
        {
            // Never sooner than asked; a little later spreads the herd.
            let wait = after.mul_f64(1.0 + 0.1 * jitter);
            return (*after <= self.max_wait).then_some(wait);
        }
        // "Equal jitter": half fixed, half random, so waits never collapse
        // to zero and concurrent replies do not retry in lockstep.
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        Some(exp.mul_f64(0.5 + 0.5 * jitter).min(self.max_wait))
    }
}

/// Breaker states, as the `llm_breaker_state` gauge reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down passed: one probe is in flight, everyone else waits.
    HalfOpen,
}

/// A consecutive-failure circuit breaker. Time is passed in, so its rules
/// are tested without waiting.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// What [`Breaker::admit`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (`probe`: this request decides whether the breaker closes).
    Go { probe: bool },
    /// Fail fast; the breaker lets a request through again in this long.
    Refuse(Duration),
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::HalfOpen => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
        }
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Admission::Go { probe: false },
            State::Open { until } if now >= until => {
                *s = State::HalfOpen;
                Admission::Go { probe: true }
            }
            State::Open { until } => Admission::Refuse(until - now),
            // The probe has not answered yet; it is bounded by the
            // first-token timeout, so "about a second" is honest enough.
            State::HalfOpen => Admission::Refuse(Duration::from_secs(1)),
        }
    }

    /// The outcome of an admitted request: `outage` when it failed in a way
    /// that says the provider is down.
    pub fn record(&self, outage: bool, now: Instant) {
        let mut s = self.lock();
        *s = match (&*s, outage) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, true) => State::Open {
                until: now + self.cooldown,
            },
        };
    }

    /// An admitted probe that never reported (its reply was stopped): let
    /// the next request probe instead.
    pub fn abandon_probe(&self, now: Instant) {
        let mut s = self.lock();
        if matches!(*s, State::HalfOpen) {
            *s = State::Open { until: now };
        }
    }
}

pub struct Resilient {
    inner: Arc<dyn Provider>,
    policy: Policy,
    breaker: Option<Breaker>,
}

impl Resilient {
    pub fn new(inner: Arc<dyn Provider>, policy: Policy) -> Self {
        let breaker = (policy.breaker_failures > 0)
            .then(|| Breaker::new(policy.breaker_failures, policy.breaker_cooldown));
        Self {
            inner,
            policy,
            breaker,
        }
    }

    fn report_breaker(&self) {
        let state = self
            .breaker
            .as_ref()
            .map_or(BreakerState::Closed, Breaker::state);
        metrics::gauge!("llm_breaker_state", "provider" => self.inner.info().kind)
            .set(state as u8 as f64);
    }

    /// One attempt, up to its first token.
    async fn attempt(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let mut stream = self.inner.stream(messages).await?;
        match stream.next().await {
            Some(Ok(first)) => Ok(futures::stream::once(async { Ok(first) })
                .chain(stream)
                .boxed()),
            Some(Err(e)) => Err(e),
            None => Ok(futures::stream::empty().boxed()),
        }
    }
}

/// Clears a half-open probe that is dropped before it reports.
struct ProbeGuard<'a> {
    breaker: Option<&'a Breaker>,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker {
            b.abandon_probe(clock::instant());
        }
    }
}

#[async_trait]
impl Provider for Resilient {
    fn info(&self) -> AgentInfo {
        self.inner.info()
    }

    async fn stream(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let provider = self.inner.info().kind;
        // Reported on every request (cheap), so the gauge exists from the
        // first one whatever the breaker did.
        self.report_breaker();
        let started = clock::instant();
        let mut attempt = 0;
        loop {
            let mut guard = ProbeGuard { breaker: None };
            if let Some(b) = &self.breaker {
                match b.admit(clock::instant()) {
                    Admission::Go { probe } => {
                        if probe {
                            guard.breaker = Some(b);
                            self.report_breaker();
                            tracing::info!(
                                provider,
                                "circuit breaker half-open: probing the provider"
                            );
                        }
                    }
                    Admission::Refuse(retry_in) => {
                        return Err(ProviderError::CircuitOpen { retry_in });
                    }
                }
            }
            let attempt_started = clock::instant();
            let result = self.attempt(messages.clone()).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            };
            metrics::histogram!("llm_request_seconds", "provider" => provider, "outcome" => outcome)
                .record(attempt_started.elapsed().as_secs_f64());
            if let Some(b) = &self.breaker {
                let before = b.state();
                let outage = result.as_ref().err().is_some_and(ProviderError::is_outage);
                b.record(outage, clock::instant());
                guard.breaker = None;
                let after = b.state();
                if before != after {
                    self.report_breaker();
                    match after {
                        BreakerState::Open => {
                            metrics::counter!("llm_breaker_opened_total", "provider" => provider)
                                .increment(1);
                            tracing::warn!(
                                provider,
                                "circuit breaker open: failing fast for {:?}",
                                self.policy.breaker_cooldown
                            );
                        }
                        _ => tracing::info!(
                            provider,
                            "circuit breaker closed: the provider answers again"
                        ),
                    }
                }
            }
            let e = match result {
                Ok(stream) => {
                    metrics::histogram!("llm_time_to_first_token_seconds", "provider" => provider)
                        .record(started.elapsed().as_secs_f64());
                    return Ok(stream);
                }
                Err(e) => e,
            };
            if !e.is_transient() || attempt >= self.policy.retries {
                return Err(e);
            }
            let jitter: f64 = rand::thread_rng().gen();
            let Some(wait) = self.policy.wait(attempt, &e, jitter) else {
                return Err(e);
            };
            metrics::counter!("llm_retries_total", "provider" => provider, "kind" => e.kind().as_str())
                .increment(1);
            tracing::info!(
                provider,
                kind = e.kind().as_str(),
                error = %e,
                attempt = attempt + 1,
                wait_ms = wait.as_millis() as u64,
                "provider attempt failed before the first token; retrying"
            );
            clock::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            retries: 2,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = policy();
        let e = ProviderError::Timeout;
        assert_eq!(p.wait(0, &e, 0.0), Some(Duration::from_millis(50)));
        assert_eq!(p.wait(0, &e, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.wait(1, &e, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.wait(10, &e, 1.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn retry_after_is_honoured_or_given_up_on() {
        let p = policy();
        let soon = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            detail: String::new(),
        };
        let w = p.wait(0, &soon, 0.5).unwrap();
        assert!(
            w >= Duration::from_secs(2) && w <= Duration::from_millis(2200),
            "{w:?}"
        );
        let late = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
            detail: String::new(),
        };
        assert_eq!(p.wait(0, &late, 0.5), None);
    }

    #[test]
    fn the_breaker_opens_after_consecutive_outages_and_probes_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = clock::instant();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admission::Go { probe: false });
            b.record(true, t0);
        }
        // A success in between resets the count.
        b.record(false, t0);
        for _ in 0..3 {
            assert_eq!(b.admit(t0), Admission::Go { probe: false });
            b.record(true, t0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Admission::Refuse(Duration::from_secs(20))
        );
        // After the cool-down one probe goes, the rest still fail fast.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(t1), Admission::Go { probe: true });
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(matches!(b.admit(t1), Admission::Refuse(_)));
        // A failed probe opens it again for a whole cool-down …
        b.record(true, t1);
        assert_eq!(
            b.admit(t1 + Duration::from_secs(1)),
            Admission::Refuse(Duration::from_secs(29))
        );
        // … a good one closes it.
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(b.admit(t2), Admission::Go { probe: true });
        b.record(false, t2);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(t2), Admission::Go { probe: false });
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let b = Breaker::new(1, Duration::from_secs(5));
        let t0 = clock::instant();
        b.record(true, t0);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(t1), Admission::Go { probe: true });
        b.abandon_probe(t1);
        assert_eq!(b.admit(t1), Admission::Go { probe: true });
    }

    #[test]
    fn what_is_retried_and_what_is_not() {
        let status = |s| ProviderError::Status {
            status: s,
            detail: String::new(),
        };
        for s in [500, 502, 503, 429] {
            assert!(status(s).is_transient() && status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(
                !status(s).is_transient() && !status(s).is_retryable(),
                "{s}"
            );
        }
        assert_eq!(status(401).code(), "agent_auth_failed");
        assert_eq!(status(404).code(), "agent_model_not_found");
        assert!(!ProviderError::Cut.is_transient() && ProviderError::Cut.is_retryable());
        assert!(!ProviderError::ContentFiltered.is_retryable());
        assert!(!status(429).is_outage() && status(503).is_outage());
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
            detail: String::new(),
        };
        assert!(
            limited.user_message().contains("30 seconds"),
            "{}",
            limited.user_message()
        );
    }
}
