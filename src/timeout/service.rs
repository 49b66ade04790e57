use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_TYPE, Entry, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::time::{Instant, sleep_until};
use tower_service::Service;

use super::budget::{self, Deadline, GRPC_TIMEOUT};
use super::future::{ResponseFuture, Timer};
use super::reused::ReusedSleep;
use crate::body::ResponseBody;

/// Ends requests that run past their budget with a 504 problem response.
///
/// Built by [`TimeoutLayer`](super::TimeoutLayer); see the
/// [module docs](crate::timeout).
///
/// Each clone times its requests with a tokio sleep of its own, reused from
/// one request to the next (from its second request on, and for one
/// request at a time; a request that finds it in use has a sleep of its
/// own, as the first does). A keep-alive connection's requests, served one
/// after another by one clone, then keep one entry in the runtime's timer
/// wheel instead of adding and removing one each.
#[derive(Debug)]
pub struct Timeout<S> {
    inner: S,
    /// Shared by clones: a gateway clones its route's stack per request,
    /// and one reference count costs less than cloning a header name and
    /// two values.
    settings: Arc<Settings>,
    /// This clone's reused sleep; a clone starts without one.
    reuse: Reuse,
}

impl<S: Clone> Clone for Timeout<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
            reuse: Reuse::default(),
        }
    }
}

/// A [`Timeout`] clone's reused sleep. It is made at the clone's second
/// request, so that a clone made for a single request (as axum and
/// `Oneshot` make them) allocates nothing.
#[derive(Debug, Default)]
enum Reuse {
    /// The clone has served no request.
    #[default]
    Unused,
    /// One request, with a sleep of its own.
    Called,
    Slot(Arc<Slot>),
}

impl Reuse {
    /// The reused sleep for a request, unless this is the clone's first
    /// request or an earlier one still holds it.
    #[inline]
    fn take(&mut self) -> Option<SlotGuard> {
        match self {
            Self::Slot(slot) => {
                (!slot.busy.swap(true, Ordering::Acquire)).then(|| SlotGuard(Arc::clone(slot)))
            }
            Self::Called => {
                let slot = Arc::new(Slot {
                    busy: AtomicBool::new(true),
                    sleep: ReusedSleep::default(),
                });
                *self = Self::Slot(Arc::clone(&slot));
                Some(SlotGuard(slot))
            }
            Self::Unused => {
                *self = Self::Called;
                None
            }
        }
    }
}

/// A reused sleep, and whether a request holds it.
#[derive(Debug)]
struct Slot {
    busy: AtomicBool,
    /// Only the request holding the slot polls it.
    sleep: ReusedSleep,
}

/// A request's hold on its clone's reused sleep; dropped with the request's
/// future, which frees the slot for the clone's next request.
#[derive(Debug)]
pub(super) struct SlotGuard(Arc<Slot>);

impl SlotGuard {
    /// Ready once `deadline` has passed; otherwise the task is woken at or
    /// before it.
    pub(super) fn poll_deadline(&self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        self.0.sleep.poll_deadline(deadline, cx)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// What a [`Timeout`] and its clones apply.
#[derive(Debug)]
struct Settings {
    timeout: Duration,
    header: HeaderName,
    /// `timeout` already formatted for both headers: most requests carry no
    /// budget of their own, and then the remaining budget is exactly
    /// `timeout`, so the hot path clones these instead of formatting.
    own_millis: HeaderValue,
    own_grpc: HeaderValue,
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration, header: HeaderName) -> Self {
        Self {
            inner,
            settings: Arc::new(Settings {
                timeout,
                header,
                own_millis: budget::format_millis(timeout),
                own_grpc: budget::format_grpc_timeout(timeout),
            }),
            reuse: Reuse::default(),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The remaining budget as a millisecond header value.
    #[inline]
    fn millis_value(&self, budget: Duration) -> HeaderValue {
        if budget == self.settings.timeout {
            self.settings.own_millis.clone()
        } else {
            budget::format_millis(budget)
        }
    }

    /// Writes the remaining budget into `grpc-timeout`, for a caller that
    /// sent one.
    #[cold]
    #[inline(never)]
    fn write_grpc(&self, headers: &mut HeaderMap, budget: Duration) {
        let value = if budget == self.settings.timeout {
            self.settings.own_grpc.clone()
        } else {
            budget::format_grpc_timeout(budget)
        };
        headers.insert(GRPC_TIMEOUT, value);
    }
}

/// What [`Timeout::prepare`] decided for a request.
enum Prepared {
    /// The budget is already spent: answer at once.
    Spent { grpc: bool },
    /// Call the inner service, until `deadline`.
    Go {
        deadline: Instant,
        budget: Duration,
        grpc: bool,
    },
}

impl<S> Timeout<S> {
    /// Works out the request's budget and writes what remains of it into
    /// the budget headers for the next hop.
    ///
    /// The budget is the smallest of this layer's own timeout, a deadline
    /// already known in this process (see [`Deadline::of`]) and the budgets
    /// in the request headers.
    #[inline(never)]
    fn prepare<B>(&self, request: &mut Request<B>, now: Instant) -> Prepared {
        let mut budget = self.settings.timeout;
        if let Some(known) = Deadline::known(request.extensions()) {
            budget = budget.min(known.instant().saturating_duration_since(now));
        }
        let headers = request.headers_mut();
        // A request without headers has no budget and no content type:
        // skip the lookups.
        let scan = if headers.is_empty() {
            Scan::default()
        } else {
            scan(headers, &self.settings.header)
        };
        // gRPC callers are answered with a gRPC status, not a problem
        // document.
        let grpc_timeout = if scan.maybe_grpc_timeout {
            headers.get(GRPC_TIMEOUT)
        } else {
            None
        };
        let has_grpc_timeout = grpc_timeout.is_some();
        let is_grpc =
            has_grpc_timeout || (scan.maybe_content_type && crate::error::is_grpc(headers));
        if let Some(incoming) = grpc_timeout.and_then(budget::parse_grpc_timeout) {
            budget = budget.min(incoming);
        }
        if scan.maybe_budget {
            // Read the caller's budget, then overwrite it with the remaining
            // budget for the next hop, through one entry: one lookup.
            match headers.entry(&self.settings.header) {
                Entry::Occupied(mut entry) => {
                    if let Some(millis) = budget::parse_millis(entry.get()) {
                        budget = budget.min(millis);
                    }
                    if !budget.is_zero() {
                        entry.insert(self.millis_value(budget));
                    }
                }
                Entry::Vacant(entry) => {
                    if !budget.is_zero() {
                        entry.insert(self.millis_value(budget));
                    }
                }
            }
        } else if !budget.is_zero() {
            // Most requests carry no budget header: a plain insert costs
            // the same one lookup as an entry, and less for the rest
            // (measured).
            headers.insert(&self.settings.header, self.millis_value(budget));
        }
        if budget.is_zero() {
            return Prepared::Spent { grpc: is_grpc };
        }
        if has_grpc_timeout {
            self.write_grpc(headers, budget);
        }
        Prepared::Go {
            // `checked_add` because a configured `Duration::MAX` must not panic.
            deadline: now.checked_add(budget).unwrap_or_else(|| far_future(now)),
            budget,
            grpc: is_grpc,
        }
    }
}

/// Up to this many header names, one scan that finds none of
/// `grpc-timeout`, `content-type` and the budget header costs less than
/// hashing the names for the lookups (measured), and most requests carry
/// none of them.
const SCAN_NAMES: usize = 8;

/// Which of the headers this layer reads a request may carry: `false`
/// means it certainly does not.
#[derive(Default)]
struct Scan {
    maybe_grpc_timeout: bool,
    maybe_content_type: bool,
    maybe_budget: bool,
}

#[inline]
fn scan(headers: &HeaderMap, budget_header: &HeaderName) -> Scan {
    if headers.keys_len() > SCAN_NAMES {
        return Scan {
            maybe_grpc_timeout: true,
            maybe_content_type: true,
            maybe_budget: true,
        };
    }
    headers.keys().fold(Scan::default(), |found, name| Scan {
        maybe_grpc_timeout: found.maybe_grpc_timeout || *name == GRPC_TIMEOUT,
        maybe_content_type: found.maybe_content_type || *name == CONTENT_TYPE,
        maybe_budget: found.maybe_budget || name == budget_header,
    })
}

/// About thirty years on: far enough to never fire, near enough to not
/// overflow the timer.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Inlined, with the header work out of line in `prepare`: the request
    // then moves into the inner service's future, and that into this
    // layer's, without extra copies (measured).
    #[inline(always)]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.prepare(&mut request, Instant::now()) {
            Prepared::Spent { grpc } => ResponseFuture::spent(grpc),
            Prepared::Go {
                deadline,
                budget,
                grpc,
            } => {
                // Layers further in that the inner service calls now find
                // the deadline with `Deadline::of`; the response future
                // does the same for those it polls.
                let timer = match self.reuse.take() {
                    Some(slot) => Timer::Reused { slot, deadline },
                    None => Timer::Own {
                        sleep: sleep_until(deadline),
                    },
                };
                let scope = budget::Scope::enter(deadline);
                let future = self.inner.call(request);
                drop(scope);
                ResponseFuture::new(future, timer, budget, grpc)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::service_fn;

    use super::*;

    fn slot<S>(timeout: &Timeout<S>) -> Option<&Slot> {
        match &timeout.reuse {
            Reuse::Slot(slot) => Some(slot),
            Reuse::Unused | Reuse::Called => None,
        }
    }

    /// The deadline the reused sleep's wheel entry is armed for.
    fn armed<S>(timeout: &Timeout<S>) -> Option<Instant> {
        slot(timeout)?.sleep.armed()
    }

    fn is_busy<S>(timeout: &Timeout<S>) -> bool {
        slot(timeout).unwrap().busy.load(Ordering::Acquire)
    }

    /// A clone's first request has a sleep of its own; its second makes the
    /// reused one, which later requests keep armed for the second's
    /// deadline (no wheel update) until it fires; a clone starts afresh.
    #[tokio::test(start_paused = true)]
    async fn a_clone_reuses_one_sleep_from_its_second_request_on() {
        let budget = Duration::from_secs(10);
        let inner = service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>(Response::new(()))
        });
        let mut timeout = Timeout::new(inner, budget, HeaderName::from_static("x-budget"));
        let start = Instant::now();
        // The inner `service_fn` is always ready.
        timeout.call(Request::new(())).await.unwrap();
        assert!(
            matches!(timeout.reuse, Reuse::Called),
            "the first request's own sleep"
        );

        let second = timeout.call(Request::new(()));
        assert!(is_busy(&timeout));
        second.await.unwrap();
        assert!(!is_busy(&timeout), "freed with the request's future");
        let first_armed = start + Duration::from_secs(1) + budget;
        assert_eq!(armed(&timeout), Some(first_armed));

        for _ in 0..3 {
            timeout.call(Request::new(())).await.unwrap();
            assert_eq!(armed(&timeout), Some(first_armed));
        }

        // While one request holds the sleep, another has its own: the
        // slot is free again once the holder is gone, the other still
        // running.
        let holding = timeout.call(Request::new(()));
        let other = timeout.call(Request::new(()));
        assert!(is_busy(&timeout));
        drop(holding);
        assert!(!is_busy(&timeout));
        other.await.unwrap();
        assert!(!is_busy(&timeout));

        let clone = timeout.clone();
        assert!(matches!(clone.reuse, Reuse::Unused));
    }
}
