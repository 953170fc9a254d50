//! The writer's queue: bounded, many senders, one receiver, and no system call on either side
//! unless the other side is asleep.
//!
//! `std::sync::mpsc::sync_channel` did the same job, but at batch 1 its sleeping receiver made
//! the senders pay twice: a sender woke the writer while holding the lock on the channel's list
//! of sleepers, so the writer, woken, often found that lock taken and went to sleep on it, and
//! the sender then had a second wake to make when it let go (`perf record -e
//! syscalls:sys_enter_futex` at 1 × 1,000: a third of the futex calls of the HTTP worker and the
//! writer were that lock's). Each wake of a sleeping thread is a system call and, on a virtual
//! machine, an interrupt to the other CPU. Here the queue and the "receiver is asleep" flag share
//! one mutex, a sender wakes the receiver only when it was asleep and only after letting go of
//! the lock, and one wake serves all senders until the receiver sleeps again.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::mpsc::TryRecvError;
use std::sync::mpsc::{RecvTimeoutError, SendError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct State<T> {
    queue: VecDeque<T>,
    /// Senders alive; at 0 the receiver, once the queue is empty, is told `Disconnected`.
    senders: usize,
    receiver_alive: bool,
    /// The receiver's thread while it sleeps (or is about to) and nobody has woken it yet.
    asleep: Option<Thread>,
    /// How many queued items wake the sleeping receiver: 1, or what it gathers for.
    wake_at: usize,
    /// Wakes sent, for the tests.
    #[cfg(test)]
    wakes: usize,
    /// Senders waiting on `not_full` in [`Sender::send`].
    senders_waiting: usize,
    /// Items ever queued: tells a receiver that looks now and then whether anything came
    /// (and was taken by someone else) in between.
    pushes: u64,
    /// When the oldest queued item came (at the latest); `None` while the queue is empty.
    since: Option<Instant>,
    /// When the oldest item taken with [`Receiver::take_held`] and not yet
    /// [`Receiver::settle`]d came: a waiting receiver ages it as if it were still queued.
    held_since: Option<Instant>,
    /// An urgent item is queued: the receiver takes the queue now, whatever its age.
    urgent: bool,
    /// [`Receiver::wake`] was called: the next [`Receiver::wait`] returns at once.
    woken: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    not_full: Condvar,
}

impl<T> Shared<T> {
    /// The lock, even if a thread panicked holding it: the queue's fields are each left
    /// consistent by every critical section, none of which can panic halfway.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue of at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(4096)),
            senders: 1,
            receiver_alive: true,
            asleep: None,
            wake_at: 1,
            #[cfg(test)]
            wakes: 0,
            senders_waiting: 0,
            pushes: 0,
            since: None,
            held_since: None,
            urgent: false,
            woken: false,
        }),
        capacity,
        not_full: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queue `item` unless the queue is full or the receiver is gone.
    #[cfg(test)]
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.try_send_urgent(item, false)
    }

    /// [`Sender::try_send`]; an `urgent` item also wakes a receiver that waits for the queue to
    /// age ([`Receiver::wait`]), and makes it take the queue at once.
    pub fn try_send_urgent(&self, item: T, urgent: bool) -> Result<(), TrySendError<T>> {
        let state = self.shared.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Disconnected(item));
        }
        if state.queue.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        self.push(state, item, urgent);
        Ok(())
    }

    /// Queue `item`, waiting for room; fails only when the receiver is gone.
    pub fn send(&self, item: T, urgent: bool) -> Result<(), SendError<T>> {
        let mut state = self.shared.lock();
        loop {
            if !state.receiver_alive {
                return Err(SendError(item));
            }
            if state.queue.len() < self.shared.capacity {
                break;
            }
            state.senders_waiting += 1;
            state = self
                .shared
                .not_full
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            state.senders_waiting -= 1;
        }
        self.push(state, item, urgent);
        Ok(())
    }

    fn push(&self, mut state: MutexGuard<'_, State<T>>, item: T, urgent: bool) {
        if state.queue.is_empty() {
            state.since = Some(Instant::now());
        }
        state.queue.push_back(item);
        state.pushes += 1;
        state.urgent |= urgent;
        // An urgent item wakes a receiver waiting for the queue to age (`wake_at` is then
        // `usize::MAX`), not one gathering a number of items.
        let aging = state.wake_at == usize::MAX;
        let asleep = if state.queue.len() >= state.wake_at || (urgent && aging) {
            state.asleep.take()
        } else {
            None
        };
        #[cfg(test)]
        {
            state.wakes += usize::from(asleep.is_some());
        }
        drop(state);
        if let Some(receiver) = asleep {
            receiver.unpark();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let asleep = if state.senders == 0 {
            state.asleep.take()
        } else {
            None
        };
        drop(state);
        if let Some(receiver) = asleep {
            receiver.unpark();
        }
    }
}

/// The queue seen at one moment ([`Receiver::look`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Items ever queued.
    pub pushes: u64,
    /// Items queued now.
    pub queued: usize,
    /// An urgent item is queued.
    pub urgent: bool,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item if one is queued. For tests.
    #[cfg(test)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_timeout(Duration::ZERO).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// The next item, waiting up to `timeout` for one. For tests.
    #[cfg(test)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                Self::taken(&mut state);
                self.freed(&state, 1);
                return Ok(item);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = match deadline {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            state = self.sleep(state, 1, left);
        }
    }

    /// Move what is queued into `into` (no further than `max` items in all), then, while `into`
    /// holds fewer than `want`, wait for more until `until`. The sleeping receiver is woken once,
    /// when as many as it still wants are queued (or every sender is gone), not for each.
    pub fn gather(&self, into: &mut Vec<T>, want: usize, max: usize, until: Instant) {
        let want = want.min(max);
        let mut state = self.shared.lock();
        loop {
            self.take(&mut state, into, max);
            if into.len() >= want || state.senders == 0 {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self.sleep(state, want - into.len(), left);
        }
    }

    /// Wait, taking nothing, until the oldest queued item has waited `age` (at once when it is
    /// zero) or an urgent item is queued: `Ok(true)` if one is. `Timeout` after `timeout`, or
    /// at [`Receiver::wake`]; `Disconnected` once every sender is gone and the queue is empty.
    /// Items may meanwhile be taken by another thread ([`Receiver::take_unless_urgent`], under
    /// a lock of the caller's that this thread takes too). While items come and go like that,
    /// only urgent sends wake this thread, which looks again every `age`; only after a look
    /// that finds nothing sent since the last one does it sleep until any send wakes it.
    pub fn wait(&self, age: Duration, timeout: Duration) -> Result<bool, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.shared.lock();
        let mut seen = state.pushes;
        loop {
            if std::mem::take(&mut state.woken) {
                return Err(RecvTimeoutError::Timeout);
            }
            let now = Instant::now();
            let left = deadline.map_or(Duration::MAX, |at| at.saturating_duration_since(now));
            let oldest = match (state.since, state.held_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(since) = oldest {
                let waited = now.saturating_duration_since(since);
                if waited >= age || state.urgent {
                    return Ok(state.urgent);
                }
                if left.is_zero() {
                    return Err(RecvTimeoutError::Timeout);
                }
                state = self.sleep(state, usize::MAX, (age - waited).min(left));
                continue;
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            if state.pushes != seen && !age.is_zero() {
                seen = state.pushes;
                state = self.sleep(state, usize::MAX, age.min(left));
            } else {
                state = self.sleep(state, 1, left);
            }
        }
    }

    /// What the queue holds and has held.
    pub fn look(&self) -> Look {
        let state = self.shared.lock();
        Look {
            pushes: state.pushes,
            queued: state.queue.len(),
            urgent: state.urgent,
        }
    }

    /// Move what is queued into `into` (at most `max` items), unless an urgent item is queued;
    /// true when something was moved.
    pub fn take_unless_urgent(&self, into: &mut Vec<T>, max: usize) -> bool {
        let mut state = self.shared.lock();
        !state.urgent && self.take(&mut state, into, max) > 0
    }

    /// [`Receiver::take_unless_urgent`], for items that stay pending after they are taken (the
    /// writer applies them now and commits them later): until [`Receiver::settle`],
    /// [`Receiver::wait`] ages them from when the oldest of them came, as if still queued, so
    /// that a receiver waiting for items to age still comes for them.
    pub fn take_held(&self, into: &mut Vec<T>, max: usize) -> bool {
        let mut state = self.shared.lock();
        if state.urgent {
            return false;
        }
        let since = state.since;
        let taken = self.take(&mut state, into, max) > 0;
        if taken && state.held_since.is_none() {
            state.held_since = since;
        }
        taken
    }

    /// What [`Receiver::take_held`] took is committed: no longer pending.
    pub fn settle(&self) {
        self.shared.lock().held_since = None;
    }

    /// Make the receiver's [`Receiver::wait`] return now (or the next one at once), as if it
    /// had timed out: the caller has something to look at again.
    pub fn wake(&self) {
        let mut state = self.shared.lock();
        state.woken = true;
        let asleep = state.asleep.take();
        drop(state);
        if let Some(receiver) = asleep {
            receiver.unpark();
        }
    }

    /// Move what is queued into `into`, no further than `max` items in all; how many moved.
    fn take(&self, state: &mut State<T>, into: &mut Vec<T>, max: usize) -> usize {
        let n = state.queue.len().min(max.saturating_sub(into.len()));
        if n > 0 {
            into.extend(state.queue.drain(..n));
            Self::taken(state);
            self.freed(state, n);
        }
        n
    }

    /// Items were taken from the front: what is left came no later than now.
    fn taken(state: &mut State<T>) {
        if state.queue.is_empty() {
            state.since = None;
            state.urgent = false;
        } else {
            state.since = Some(Instant::now());
        }
    }

    /// Sleep until `wake_at` items are queued (or, with `usize::MAX`, an urgent one), every
    /// sender is gone, or `left` has passed (or sooner: the caller looks again). A sender takes
    /// the thread's handle and unparks it after letting go of the lock; one that comes before
    /// the park makes the park return at once.
    fn sleep<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        wake_at: usize,
        left: Duration,
    ) -> MutexGuard<'a, State<T>> {
        state.wake_at = wake_at;
        state.asleep = Some(thread::current());
        drop(state);
        thread::park_timeout(left);
        let mut state = self.shared.lock();
        state.asleep = None;
        state
    }

    /// The next item, waiting as long as it takes; `None` once every sender is gone and the
    /// queue is empty. For tests.
    #[cfg(test)]
    pub fn recv(&self) -> Option<T> {
        loop {
            match self.recv_timeout(Duration::from_secs(3600)) {
                Ok(item) => return Some(item),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// `n` items were taken: let senders waiting for room know (rare: only a shutdown blocks).
    fn freed(&self, state: &State<T>, n: usize) {
        if n > 0 && state.senders_waiting > 0 {
            self.shared.not_full.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        let wake = state.senders_waiting > 0;
        // What is still queued is dropped here, as std's channel does, so that replies inside
        // are dropped and their waiters told.
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        drop(queued);
        if wake {
            self.shared.not_full.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_refuses_and_frees_room_as_items_are_taken() {
        let (tx, rx) = bounded::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Ok(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    /// Wait until the receiver sleeps, so that a send's wake is what it waits for.
    fn until_asleep(tx: &Sender<u32>) {
        while tx.shared.lock().asleep.is_none() {
            thread::yield_now();
        }
    }

    #[test]
    fn a_sleeping_receiver_is_woken_by_a_send() {
        let (tx, rx) = bounded::<u32>(4);
        let sender = thread::spawn(move || {
            until_asleep(&tx);
            tx.try_send(7).unwrap();
            tx
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(7));
        drop(sender.join().unwrap());
        assert_eq!(rx.recv(), None, "every sender is gone");
    }

    #[test]
    fn a_gathering_receiver_is_woken_once_when_all_it_wants_are_queued() {
        let (tx, rx) = bounded::<u32>(8);
        tx.try_send(0).unwrap();
        let sender = thread::spawn(move || {
            for i in 1..4 {
                until_asleep(&tx);
                tx.try_send(i).unwrap();
            }
            tx
        });
        let mut got = Vec::new();
        rx.gather(&mut got, 4, 8, Instant::now() + Duration::from_secs(60));
        let tx = sender.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(tx.shared.lock().wakes, 1, "woken by the fourth only");

        // Never more than `max`; the rest stays queued.
        for i in 4..8 {
            tx.try_send(i).unwrap();
        }
        let mut got = vec![9];
        rx.gather(&mut got, 8, 3, Instant::now() + Duration::from_secs(60));
        assert_eq!(got, [9, 4, 5]);
        assert_eq!(rx.try_recv(), Ok(6));

        // The deadline ends the wait for what never comes.
        let mut got = Vec::new();
        rx.gather(&mut got, 5, 8, Instant::now() + Duration::from_millis(20));
        assert_eq!(got, [7]);
    }

    #[test]
    fn recv_timeout_gives_up_at_its_timeout() {
        let (_tx, rx) = bounded::<u32>(1);
        let started = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    type Blocked = thread::JoinHandle<Result<(), SendError<u32>>>;

    /// A queue of one, full (1), and a thread blocked in `send(2)`.
    fn full_with_a_waiting_sender() -> (Sender<u32>, Receiver<u32>, Blocked) {
        let (tx, rx) = bounded::<u32>(1);
        tx.try_send(1).unwrap();
        let sender = {
            let tx = tx.clone();
            thread::spawn(move || tx.send(2, false))
        };
        while tx.shared.lock().senders_waiting == 0 {
            thread::yield_now();
        }
        (tx, rx, sender)
    }

    #[test]
    fn blocking_send_waits_for_room() {
        let (_tx, rx, sender) = full_with_a_waiting_sender();
        assert_eq!(rx.try_recv(), Ok(1));
        sender.join().unwrap().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
    }

    #[test]
    fn senders_learn_the_receiver_is_gone_even_while_waiting_for_room() {
        let (tx, rx, sender) = full_with_a_waiting_sender();
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(SendError(2)));
        assert!(matches!(tx.try_send(3), Err(TrySendError::Disconnected(3))));
    }

    #[test]
    fn the_receiver_drains_what_is_queued_before_it_hears_the_senders_are_gone() {
        let (tx, rx) = bounded::<u32>(4);
        let other = tx.clone();
        tx.try_send(1).unwrap();
        other.try_send(2).unwrap();
        drop(tx);
        drop(other);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(60)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn many_senders_lose_nothing() {
        let (tx, rx) = bounded::<u64>(8);
        let senders: Vec<_> = (0..4u64)
            .map(|s| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..10_000 {
                        tx.send(s * 1_000_000 + i, false).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; 4];
        let mut count = 0;
        while let Some(v) = rx.recv() {
            let (s, i) = ((v / 1_000_000) as usize, v % 1_000_000);
            assert_eq!(i, next[s], "each sender's items arrive in order, none lost");
            next[s] += 1;
            count += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(count, 40_000);
    }

    #[test]
    fn wait_leaves_a_young_item_until_it_has_aged_and_takes_nothing() {
        let (tx, rx) = bounded::<u32>(4);
        let sent = Instant::now();
        tx.try_send(1).unwrap();
        let age = Duration::from_millis(20);
        assert_eq!(rx.wait(age, Duration::from_secs(60)), Ok(false));
        assert!(sent.elapsed() >= age, "returned before the item had aged");
        assert_eq!(rx.look().queued, 1);
        assert_eq!(rx.try_recv(), Ok(1));
        // Empty again: without a send, the wait ends at its timeout.
        assert_eq!(
            rx.wait(age, Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn held_items_age_as_if_queued_until_settled() {
        let (tx, rx) = bounded::<u32>(4);
        let sent = Instant::now();
        tx.try_send(1).unwrap();
        let mut held = Vec::new();
        assert!(rx.take_held(&mut held, 4));
        assert_eq!((held.as_slice(), rx.look().queued), (&[1][..], 0));
        let age = Duration::from_millis(20);
        assert_eq!(rx.wait(age, Duration::from_secs(60)), Ok(false));
        assert!(
            sent.elapsed() >= age,
            "returned before the held item had aged"
        );
        // Settled (committed): nothing is pending, and the wait ends at its timeout.
        rx.settle();
        assert_eq!(
            rx.wait(age, Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
        // Something urgent is the receiver's thread's: nothing is taken held.
        tx.send(2, true).unwrap();
        assert!(!rx.take_held(&mut held, 4));
        assert_eq!(rx.look().queued, 1);
    }

    #[test]
    fn an_urgent_send_ends_a_wait_for_age_at_once() {
        let (tx, rx) = bounded::<u32>(4);
        tx.try_send(1).unwrap();
        let sender = thread::spawn(move || {
            until_asleep(&tx);
            tx.try_send_urgent(2, true).unwrap();
            tx
        });
        // An hour of age and of timeout: only the urgent send can end this wait.
        let hour = Duration::from_secs(3600);
        assert_eq!(rx.wait(hour, hour), Ok(true));
        let _tx = sender.join().unwrap();
        let mut taken = Vec::new();
        rx.gather(&mut taken, 0, 8, Instant::now());
        assert_eq!(taken, [1, 2]);
        assert!(!rx.look().urgent, "taking the queue clears the urgency");
    }

    #[test]
    fn wake_ends_a_wait_as_a_timeout() {
        let (tx, rx) = bounded::<u32>(4);
        let rx = Arc::new(rx);
        let waker = thread::spawn({
            let rx = rx.clone();
            move || {
                until_asleep(&tx);
                rx.wake();
                tx
            }
        });
        let hour = Duration::from_secs(3600);
        assert_eq!(
            rx.wait(Duration::ZERO, hour),
            Err(RecvTimeoutError::Timeout)
        );
        let tx = waker.join().unwrap();
        // Once only: the next wait sees the send.
        tx.try_send(5).unwrap();
        assert_eq!(rx.wait(Duration::ZERO, hour), Ok(false));
    }

    #[test]
    fn the_receivers_own_thread_keeps_what_is_urgent() {
        let (tx, rx) = bounded::<u32>(4);
        let mut taken = Vec::new();
        assert!(!rx.take_unless_urgent(&mut taken, 8), "nothing queued");
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(rx.take_unless_urgent(&mut taken, 1));
        assert_eq!(taken, [1]);
        tx.try_send_urgent(3, true).unwrap();
        assert!(!rx.take_unless_urgent(&mut taken, 8));
        assert_eq!(taken, [1]);
        let look = rx.look();
        assert_eq!((look.pushes, look.queued, look.urgent), (3, 2, true));
    }
}
