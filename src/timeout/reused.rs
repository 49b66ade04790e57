//! One tokio sleep reused for a sequence of deadlines, for a task that waits
//! on one deadline at a time and whose deadlines come in order: the
//! gateway's header read timeout (one per request head of a connection)
//! and a [`Timeout`](super::Timeout) clone's requests (one after another on
//! a keep-alive connection).
//!
//! A fresh tokio `Sleep` per deadline is an entry put into the runtime's
//! timer wheel at its first poll and taken out again when it is dropped,
//! under the wheel's lock each time (≈ 500 instructions, callgrind).
//! [`ReusedSleep`] keeps its entry in the wheel across deadlines instead,
//! armed for a deadline no later than the current one. Since each deadline
//! is "now + a fixed time", deadlines only move later: the entry fires at
//! an older (earlier) deadline about once per period, wakes the task, and
//! is then re-armed for the current one. A deadline that passes still
//! completes at that deadline, never earlier.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

/// A tokio sleep reused for deadline after deadline; see the
/// [module docs](self). Behind a lock, so that the futures waiting on its
/// deadlines can share it; they are polled from one task at a time, so it
/// is never contended.
#[derive(Debug, Default)]
pub(crate) struct ReusedSleep(Mutex<State>);

impl ReusedSleep {
    /// Ready once `deadline` has passed; otherwise makes sure the task of
    /// `cx` is woken at or before `deadline`.
    pub(crate) fn poll_deadline(&self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        // A poisoned lock means tokio panicked inside `poll_deadline`; every
        // field is still a valid state to go on from.
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.poll_deadline(deadline, cx)
    }

    /// The deadline the wheel entry is armed for, if there is one.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> Option<Instant> {
        let state = self.0.lock().unwrap();
        state.sleep.as_ref().map(|sleep| sleep.deadline())
    }
}

/// The tokio sleep and what is known about it.
#[derive(Debug, Default)]
struct State {
    /// Created at the first poll, then reset in place.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The waker `sleep` holds, while it is armed and has not fired.
    armed_for: Option<Waker>,
    /// Every deadline up to this one has passed: the latest deadline at
    /// which `sleep` fired.
    passed: Option<Instant>,
}

impl State {
    fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.passed.is_some_and(|passed| deadline <= passed) {
            return Poll::Ready(());
        }
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                // The usual case, once per deadline: armed for this deadline
                // or an earlier one, not fired, holding this task's waker.
                // The task is woken at or before the deadline; nothing to do.
                if sleep.deadline() <= deadline
                    && !sleep.is_elapsed()
                    && self
                        .armed_for
                        .as_ref()
                        .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    return Poll::Pending;
                }
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        loop {
            // Unconstrained by tokio's cooperative budget: a `Pending` must
            // mean that the sleep is in the wheel with this waker, or the
            // fast path above would wait on a sleep nobody armed.
            let polled = Pin::new(&mut tokio::task::unconstrained(sleep.as_mut())).poll(cx);
            match polled {
                Poll::Pending => {
                    hold_waker(&mut self.armed_for, cx.waker());
                    return Poll::Pending;
                }
                Poll::Ready(()) => {
                    let fired = sleep.deadline();
                    self.passed = Some(self.passed.map_or(fired, |passed| passed.max(fired)));
                    self.armed_for = None;
                    if deadline <= fired {
                        return Poll::Ready(());
                    }
                    // Fired for an older deadline: re-arm for this one (a
                    // deadline already past fires at the next poll).
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// Keeps `waker` in `slot`, reusing the slot's allocation when it holds
/// one: the waker a registration was made with, for a later
/// [`Waker::will_wake`] check that skips registering again.
pub(crate) fn hold_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(held) => held.clone_from(waker),
        None => *slot = Some(waker.clone()),
    }
}
