//! hyper's timer for one HTTP/1 connection's header read timeout.
//!
//! hyper asks its timer for a fresh sleep every time it starts reading a
//! request head and drops it once the head is parsed. With hyper-util's
//! `TokioTimer` each of those is a tokio `Sleep` of its own: an entry put
//! into the runtime's timer wheel at its first poll and taken out again at
//! the drop, twice per request (≈ 1 000 instructions, callgrind).
//!
//! [`HeadTimer`] keeps one tokio `Sleep` per connection instead, a
//! [`ReusedSleep`]. The sleep it hands to hyper only records its deadline;
//! the connection's shared tokio sleep stays in the wheel across requests,
//! armed for a deadline no later than the current head's, and fires at an
//! older head's deadline about once per timeout period, to be re-armed for
//! the current one. A head that is not complete by its deadline still gets
//! its connection closed at that deadline, as with `TokioTimer`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Sleep, Timer};
use tokio::time::Instant;

use crate::timeout::reused::ReusedSleep;

/// A [`Timer`] for the header read timeout of ONE HTTP/1 connection; set a
/// new one on each connection's builder.
///
/// Its sleeps share a single [`ReusedSleep`], which holds the waker of the
/// task that polled last: all of them are polled from one task, the
/// connection's, which is how hyper's HTTP/1 connection uses its timer.
#[derive(Debug, Clone, Default)]
pub(super) struct HeadTimer {
    shared: Arc<ReusedSleep>,
}

impl HeadTimer {
    fn head_sleep(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            shared: Arc::clone(&self.shared),
            deadline,
        })
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.head_sleep(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        self.head_sleep(Instant::from_std(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(sleep) => sleep.get_mut().deadline = Instant::from_std(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    /// tokio's clock, as `TokioTimer`'s, so that paused test time applies.
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// The sleep [`HeadTimer`] hands to hyper: a deadline, served by the
/// connection's shared tokio sleep.
#[derive(Debug)]
struct HeadSleep {
    shared: Arc<ReusedSleep>,
    deadline: Instant,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.poll_deadline(self.deadline, cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    /// Counts its wake-ups (also for the server's tests).
    #[derive(Default)]
    pub(in crate::gateway) struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountingWaker {
        pub(in crate::gateway) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn poll(sleep: &mut Pin<Box<dyn Sleep>>, waker: &Waker) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(waker))
    }

    /// The deadline the shared tokio sleep is armed for.
    fn armed(timer: &HeadTimer) -> Option<Instant> {
        timer.shared.armed()
    }

    /// Lets the runtime's timer fire what is due.
    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_is_ready_at_its_deadline_and_not_before() {
        let timer = HeadTimer::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let start = Instant::now();
        assert_eq!(timer.now(), start.into_std());
        let mut sleep = timer.sleep(Duration::from_secs(10));
        assert!(poll(&mut sleep, &waker).is_pending());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        settle().await;
        assert_eq!(counter.count(), 0);
        assert!(poll(&mut sleep, &waker).is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(counter.count(), 1, "woken at the deadline");
        assert!(poll(&mut sleep, &waker).is_ready());
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    /// The wheel entry is kept across heads; when it fires for an older
    /// head's deadline, the current head's sleep re-arms it for its own
    /// deadline instead of completing.
    #[tokio::test(start_paused = true)]
    async fn the_shared_sleep_re_arms_when_it_fires_before_the_current_deadline() {
        let timer = HeadTimer::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let start = Instant::now();
        let timeout = Duration::from_secs(10);

        // First head: the shared sleep is armed for its deadline.
        let mut first = timer.sleep_until((start + timeout).into_std());
        assert!(poll(&mut first, &waker).is_pending());
        assert_eq!(armed(&timer), Some(start + timeout));
        drop(first);

        // Later heads, 4 s and 8 s on: their deadlines are later, and the
        // shared sleep stays armed for the first one (no wheel update).
        let mut head = None;
        for at in [4, 8] {
            tokio::time::advance(Duration::from_secs(4)).await;
            let mut sleep = timer.sleep_until((Instant::now() + timeout).into_std());
            assert!(poll(&mut sleep, &waker).is_pending());
            assert_eq!(armed(&timer), Some(start + timeout), "at {at} s");
            head = Some(sleep);
        }
        let mut head = head.unwrap();

        // At 10 s the shared sleep fires for the first deadline: a wake-up,
        // and the current head (deadline 18 s) re-arms it rather than ending.
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(counter.count(), 1);
        assert!(poll(&mut head, &waker).is_pending());
        assert_eq!(armed(&timer), Some(start + Duration::from_secs(18)));

        // Nothing more until 18 s, then the head's deadline passes.
        tokio::time::advance(Duration::from_millis(7_999)).await;
        settle().await;
        assert_eq!(counter.count(), 1);
        assert!(poll(&mut head, &waker).is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(counter.count(), 2);
        assert!(poll(&mut head, &waker).is_ready());
        assert!(poll(&mut head, &waker).is_ready(), "stays ready");
        assert_eq!(Instant::now() - start, Duration::from_secs(18));
    }

    /// A sleep polled with another waker moves the registration to it.
    #[tokio::test(start_paused = true)]
    async fn a_new_waker_is_registered() {
        let timer = HeadTimer::default();
        let (first, second) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        let mut sleep = timer.sleep(Duration::from_secs(1));
        assert!(poll(&mut sleep, &Waker::from(Arc::clone(&first))).is_pending());
        assert!(poll(&mut sleep, &Waker::from(Arc::clone(&second))).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!((first.count(), second.count()), (0, 1));
        assert!(poll(&mut sleep, &Waker::from(second)).is_ready());
    }

    /// An earlier deadline than the armed one moves the shared sleep
    /// earlier; `reset` moves a sleep's deadline; a passed deadline is ready.
    #[tokio::test(start_paused = true)]
    async fn earlier_deadlines_and_reset_are_honoured() {
        let timer = HeadTimer::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let start = Instant::now();

        let mut late = timer.sleep(Duration::from_secs(10));
        assert!(poll(&mut late, &waker).is_pending());
        let mut early = timer.sleep(Duration::from_secs(3));
        assert!(poll(&mut early, &waker).is_pending());
        assert_eq!(armed(&timer), Some(start + Duration::from_secs(3)));

        timer.reset(&mut early, (start + Duration::from_secs(5)).into_std());
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        assert!(poll(&mut early, &waker).is_pending(), "moved to 5 s");
        assert_eq!(armed(&timer), Some(start + Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert!(poll(&mut early, &waker).is_ready());
        assert!(poll(&mut late, &waker).is_pending());
        assert_eq!(armed(&timer), Some(start + Duration::from_secs(10)));

        // A deadline that passed while nobody polled is ready at once.
        let mut past = timer.sleep_until(start.into_std());
        assert!(poll(&mut past, &waker).is_ready());
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert!(poll(&mut late, &waker).is_ready());
    }
}
