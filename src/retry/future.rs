use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::Attempts;
use super::layer::{ATTEMPTS_HEADER, Counters, Policy, Report};
use super::policy::retry_after;
use super::replay::{ReplayBody, ReplaySource};
use super::service::Head;
use crate::BoxError;
use crate::body::ResponseBody;
use crate::classify::Outcome;
use crate::error::{Rejection, RejectionKind};

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        attempt: Attempt<S::Future>,
        // Boxed and made on first use: most requests need no timer, and a
        // `Sleep` would more than double the size of this future.
        timer: Option<Pin<Box<Sleep>>>,
        retry: Option<Retrying<S, B>>,
        // Kept for the per-try timeout counter when the request is not retried.
        policy: Option<Arc<Policy>>,
        attempts: u32,
        report: Report,
        grpc: bool,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum Attempt<F> {
        Running { #[pin] future: F },
        BackingOff,
        Readying,
        Done,
    }
}

/// Arms `timer` for `at`, making it on first use.
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match timer {
        Some(sleep) => sleep.as_mut().reset(at),
        None => *timer = Some(Box::pin(sleep_until(at))),
    }
}

/// Ready once the armed time has passed; never when there is no timer.
fn poll_elapsed(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    match timer {
        Some(sleep) => sleep.as_mut().poll(cx),
        None => Poll::Pending,
    }
}

/// What a request that may be retried keeps for its retries.
pub(crate) struct Retrying<S, B> {
    service: S,
    /// The request's head, copied before the first attempt.
    head: Head,
    /// `None` when the body cannot be replayed (announced over the limit).
    pub(crate) source: Option<ReplaySource<B>>,
    policy: Arc<Policy>,
    /// The last backoff delay, for decorrelated jitter.
    previous_delay: Duration,
    /// The next attempt's body, made when a retry is decided.
    next_body: Option<ReplayBody<B>>,
    repeat_is_safe: bool,
    /// When the layer was called: a budget header counts from here.
    #[cfg_attr(not(feature = "timeout"), allow(dead_code))]
    called_at: Instant,
}

impl<S, B> Retrying<S, B> {
    #[inline(always)]
    pub(crate) fn new(
        service: S,
        head: Head,
        source: Option<ReplaySource<B>>,
        policy: Arc<Policy>,
        repeat_is_safe: bool,
        called_at: Instant,
    ) -> Self {
        Self {
            service,
            head,
            source,
            previous_delay: policy.backoff.base(),
            next_body: None,
            policy,
            repeat_is_safe,
            called_at,
        }
    }

    /// The request's deadline (see [`Deadline::of`](crate::timeout::Deadline::of)),
    /// read only when a retry is considered.
    fn deadline(&self) -> Option<Instant> {
        #[cfg(feature = "timeout")]
        {
            let none = http::HeaderMap::new();
            let headers = self.head.headers.as_ref().unwrap_or(&none);
            crate::timeout::Deadline::from_parts(headers, &self.head.extensions, self.called_at)
                .map(|deadline| deadline.instant())
        }
        #[cfg(not(feature = "timeout"))]
        {
            None
        }
    }

    /// Whether `result` is an answer to return as it is, judged without
    /// [`decide`](Self::decide)'s work: a success or a client error that is
    /// not a meshgate refusal, when no status codes or headers are retried.
    #[inline(always)]
    fn is_final<R, E>(&self, result: &Result<Response<R>, E>) -> bool {
        match result {
            Ok(response) => {
                response.status().as_u16() < 500
                    && response.extensions().get::<Rejection>().is_none()
                    && self.policy.retry_on.on_failures_only()
            }
            Err(_) => false,
        }
    }

    /// How long to wait before retrying after `attempts` attempts ended in
    /// `result`, or `None` to answer with it.
    fn decide<R, E>(&mut self, result: &Result<Response<R>, E>, attempts: u32) -> Option<Duration>
    where
        B: http_body::Body,
    {
        let policy = &*self.policy;
        let stats = &policy.shared.stats;
        let (reason, wanted_wait) = match result {
            Ok(response) => {
                let outcome = Outcome::from_response(response);
                if !policy
                    .retry_on
                    .matches(response, outcome, self.repeat_is_safe)
                {
                    return None;
                }
                let reason = match outcome.failure() {
                    Some(failure) => failure.as_str(),
                    None => "retriable_response",
                };
                (reason, retry_after(response))
            }
            Err(_) => {
                if !(self.repeat_is_safe && policy.retry_on.covers_error()) {
                    return None;
                }
                ("service_error", None)
            }
        };
        let give_up = |counter, why: &str| {
            Counters::add(counter);
            tracing::debug!(attempts, reason, why, "not retrying");
            None
        };
        if attempts >= policy.max_attempts {
            return give_up(&stats.attempts_exhausted, "attempts exhausted");
        }
        if !self
            .source
            .as_ref()
            .is_some_and(ReplaySource::is_replayable)
        {
            return give_up(&stats.body_not_replayable, "body over the replay limit");
        }
        if wanted_wait.is_some_and(|wait| wait > policy.retry_after_cap) {
            return give_up(&stats.retry_after_too_long, "Retry-After over the cap");
        }
        let backoff =
            policy
                .backoff
                .delay(attempts, self.previous_delay, &mut fastrand::Rng::new());
        self.previous_delay = backoff;
        let wait = backoff.max(wanted_wait.unwrap_or_default());
        if let Some(deadline) = self.deadline() {
            let ready_at = Instant::now().checked_add(wait);
            if ready_at.is_none_or(|at| at >= deadline) {
                return give_up(&stats.deadline_too_close, "the deadline is too close");
            }
        }
        if !policy.shared.budget.withdraw() {
            return give_up(&stats.budget_exhausted, "retry budget exhausted");
        }
        // Supersede the failed attempt's body now, so it cannot read on
        // (and pass the limit) during the backoff.
        let last = attempts + 1 >= policy.max_attempts;
        self.next_body = self.source.as_ref().and_then(|s| s.next_body(last));
        if self.next_body.is_none() {
            // The failed attempt read past the limit since the check above.
            return give_up(&stats.body_not_replayable, "body over the replay limit");
        }
        Counters::add(&stats.retries);
        tracing::debug!(
            attempt = attempts + 1,
            reason,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "retrying request"
        );
        Some(wait)
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    /// A request that is not retried.
    #[inline]
    pub(crate) fn once(future: S::Future, policy: &Arc<Policy>, grpc: bool) -> Self {
        let mut this = Self::start(future, None, policy.per_try_timeout, policy.report, grpc);
        if policy.per_try_timeout.is_some() {
            this.policy = Some(Arc::clone(policy));
        }
        this
    }

    /// A request that may be retried, before its first attempt: `retrying`
    /// is put in its final place first, then [`first_attempt`]
    /// (Self::first_attempt) adds the inner service's future (measured: a
    /// copy of the whole `Retrying` less than building it beforehand).
    #[inline(always)]
    pub(crate) fn retrying(retrying: Retrying<S, B>, grpc: bool) -> Self {
        let report = retrying.policy.report;
        Self {
            attempt: Attempt::Done,
            timer: None,
            retry: Some(retrying),
            policy: None,
            attempts: 1,
            report,
            grpc,
        }
    }

    /// The body source of a request made with [`retrying`](Self::retrying).
    #[inline(always)]
    pub(crate) fn set_source(&mut self, source: ReplaySource<B>) {
        if let Some(retry) = self.retry.as_mut() {
            retry.source = Some(source);
        }
    }

    /// Starts the first attempt of a request made with
    /// [`retrying`](Self::retrying), and its per-try timer.
    #[inline(always)]
    pub(crate) fn first_attempt(&mut self, future: S::Future) {
        self.attempt = Attempt::Running { future };
        let per_try_timeout = self.retry.as_ref().and_then(|r| r.policy.per_try_timeout);
        // `checked_add`: a huge timeout is no timeout.
        if let Some(at) = per_try_timeout.and_then(|t| Instant::now().checked_add(t)) {
            arm(&mut self.timer, at);
        }
    }

    #[inline]
    fn start(
        future: S::Future,
        retry: Option<Retrying<S, B>>,
        per_try_timeout: Option<Duration>,
        report: Report,
        grpc: bool,
    ) -> Self {
        let mut timer = None;
        // `checked_add`: a huge timeout is no timeout.
        if let Some(at) = per_try_timeout.and_then(|t| Instant::now().checked_add(t)) {
            arm(&mut timer, at);
        }
        Self {
            attempt: Attempt::Running { future },
            timer,
            retry,
            policy: None,
            attempts: 1,
            report,
            grpc,
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    // Always inlined, with only the common case here: the first attempt
    // answers and the answer is final. The rest is out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let AttemptProj::Running { future } = this.attempt.as_mut().project() {
            let polled = future.poll(cx);
            let result = match polled {
                Poll::Ready(result) => result,
                // Without a timer (no per-try timeout) there is nothing
                // else to wait for.
                Poll::Pending if this.timer.is_none() => return Poll::Pending,
                Poll::Pending => return poll_on(this, cx, Polled::Pending),
            };
            if this
                .retry
                .as_ref()
                .is_some_and(|retry| !retry.is_final(&result))
            {
                return poll_on(this, cx, Polled::Ready(result));
            }
            this.attempt.set(Attempt::Done);
            let (attempts, report) = (*this.attempts, *this.report);
            return Poll::Ready(result.map(|response| {
                let mut response = response.map(ResponseBody::inner);
                finish(&mut response, attempts, report);
                response
            }));
        }
        poll_on(this, cx, Polled::No)
    }
}

/// What the inlined part of `poll` already got from the running attempt.
enum Polled<T> {
    /// The attempt was not polled.
    No,
    /// It was, and is still pending.
    Pending,
    /// It answered this, which may be retried.
    Ready(T),
}

/// The rest of `poll`: judging an answer, backing off, retrying.
#[inline(never)]
fn poll_on<S, B, ResBody>(
    mut this: ResponseFutureProj<'_, S, B>,
    cx: &mut Context<'_>,
    mut polled: Polled<Result<Response<ResBody>, S::Error>>,
) -> Poll<Result<Response<ResponseBody<ResBody>>, S::Error>>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    loop {
        match this.attempt.as_mut().project() {
            AttemptProj::Running { future } => {
                // The upstream's response is judged as it came, and
                // wrapped once: each step that moved it was a copy of
                // the whole response head (measured).
                let poll = match std::mem::replace(&mut polled, Polled::No) {
                    Polled::No => future.poll(cx),
                    Polled::Pending => Poll::Pending,
                    Polled::Ready(result) => Poll::Ready(result),
                };
                let wait = match poll {
                    Poll::Ready(result) => {
                        let wait = this
                            .retry
                            .as_mut()
                            .and_then(|retry| retry.decide(&result, *this.attempts));
                        let Some(wait) = wait else {
                            this.attempt.set(Attempt::Done);
                            let (attempts, report) = (*this.attempts, *this.report);
                            return Poll::Ready(result.map(|response| {
                                let mut response = response.map(ResponseBody::inner);
                                finish(&mut response, attempts, report);
                                response
                            }));
                        };
                        wait
                    }
                    Poll::Pending => {
                        ready!(poll_elapsed(this.timer, cx));
                        // Only a per-try timeout arms the timer while running.
                        let policy = match this.retry.as_ref() {
                            Some(retry) => Some(&*retry.policy),
                            None => this.policy.as_deref(),
                        };
                        let result: Result<_, S::Error> =
                            Ok(per_try_timeout::<ResBody>(policy, *this.grpc));
                        let wait = this
                            .retry
                            .as_mut()
                            .and_then(|retry| retry.decide(&result, *this.attempts));
                        let Some(wait) = wait else {
                            this.attempt.set(Attempt::Done);
                            let (attempts, report) = (*this.attempts, *this.report);
                            return Poll::Ready(result.map(|mut response| {
                                finish(&mut response, attempts, report);
                                response
                            }));
                        };
                        wait
                    }
                };
                // Drops the failed attempt (and its response).
                this.attempt.set(Attempt::BackingOff);
                match Instant::now().checked_add(wait) {
                    Some(at) => arm(this.timer, at),
                    None => this.attempt.set(Attempt::Readying),
                }
            }
            AttemptProj::BackingOff => {
                ready!(poll_elapsed(this.timer, cx));
                this.attempt.set(Attempt::Readying);
            }
            AttemptProj::Readying => {
                let Some(retry) = this.retry.as_mut() else {
                    // Only a retrying request gets here.
                    this.attempt.set(Attempt::Done);
                    return Poll::Pending;
                };
                if let Err(error) = ready!(retry.service.poll_ready(cx)) {
                    this.attempt.set(Attempt::Done);
                    return Poll::Ready(Err(error));
                }
                *this.attempts += 1;
                // `decide` made the body before choosing to retry, so
                // the fallback is not reached.
                let body = retry.next_body.take().unwrap_or_else(ReplayBody::empty);
                let request = retry.head.request(body);
                let future = retry.service.call(request);
                this.attempt.set(Attempt::Running { future });
                match retry
                    .policy
                    .per_try_timeout
                    .and_then(|t| Instant::now().checked_add(t))
                {
                    Some(at) => arm(this.timer, at),
                    None => *this.timer = None,
                }
            }
            // Polled after completion.
            AttemptProj::Done => return Poll::Pending,
        }
    }
}

/// The answer for an attempt that ran past its per-try timeout.
fn per_try_timeout<R>(policy: Option<&Policy>, grpc: bool) -> Response<ResponseBody<R>> {
    let millis = policy
        .and_then(|p| p.per_try_timeout)
        .map_or(0, |t| t.as_millis());
    if let Some(policy) = policy {
        Counters::add(&policy.shared.stats.per_try_timeouts);
    }
    Rejection::new(RejectionKind::Timeout)
        .with_detail(format!(
            "the attempt did not complete within its {millis} ms per-try timeout"
        ))
        .into_layer_response_for(grpc)
}

/// Records the attempts on the final response, as configured.
#[inline(always)]
fn finish<R>(response: &mut Response<R>, attempts: u32, report: Report) {
    // Nothing to do on the happy path by default: only the test is inlined.
    if report.header || report.always_extension || attempts > 1 {
        record_attempts(response, attempts, report);
    }
}

#[inline(never)]
fn record_attempts<R>(response: &mut Response<R>, attempts: u32, report: Report) {
    if report.header {
        response
            .headers_mut()
            .insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
    }
    // By default a first-attempt answer gets no extension: inserting one
    // allocates the extensions map and a box, about as much again as the
    // rest of the layer on the happy path (measured). `Attempts::of` reads
    // the absence as 1.
    if attempts > 1 || report.always_extension {
        response.extensions_mut().insert(Attempts(attempts));
    }
}
