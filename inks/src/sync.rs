//! Locks for state a domain's threads share, under a strict-priority
//! scheduler.
//!
//! A domain's threads run at different priorities (a server's pool
//! activations at their callers', its own threads at theirs), and the
//! kernel preempts them at any timer tick, lock held or not. A thread that
//! *spins* for a lock held by a less urgent thread it preempted keeps the
//! processor, so the holder never runs again and the lock is never
//! released: a livelock, seen twice (the console server's state, every
//! domain's heap). [`Mutex`] takes its lock the patient way: try, and
//! while another thread holds it, [`give_way`] — sleep to the next timer
//! tick, which lets threads of every priority run (a yield only lets equal
//! or more urgent ones), so the holder finishes and lets go.
//!
//! The cost: nothing while the lock is free (one `try_lock`); a contended
//! taker waits a tick (10 ms) rather than spinning, which is slower than a
//! spin only when the holder would have let go within the tick on another
//! core — there is none yet. Rejected: a kernel blocking lock with
//! priority inheritance (the right one, and a kernel object and two calls
//! the kernel does not have yet); disabling preemption around the lock
//! (a domain cannot, and must not, mask interrupts).
//!
//! Host tests never contend (one thread), so [`Mutex::lock`] never calls
//! the gate there; [`lock_with`] takes the wait as an argument so that the
//! waiting itself is tested.

use crate::gate;
use spin::MutexGuard;

/// Give the processor away until the next timer tick: a sleep of one
/// tick, with alerts blocked meanwhile so that an alert meant for a wait
/// of the domain's own stays pending for that wait (and does not end this
/// one instead).
pub fn give_way() {
    let was_blocked = gate::alerts_block(true);
    let _ = gate::sleep(1);
    if was_blocked == Ok(false) {
        let _ = gate::alerts_block(false);
    }
}

/// Take `lock`, calling `wait` each time another thread holds it.
pub fn lock_with<T>(lock: &spin::Mutex<T>, mut wait: impl FnMut()) -> MutexGuard<'_, T> {
    loop {
        if let Some(guard) = lock.try_lock() {
            return guard;
        }
        wait();
    }
}

/// A lock whose taker gives way while it is held (see the module).
#[derive(Debug, Default)]
pub struct Mutex<T> {
    inner: spin::Mutex<T>,
}

impl<T> Mutex<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Self {
        Mutex { inner: spin::Mutex::new(value) }
    }

    /// The value, once no other thread holds it ([`give_way`] meanwhile).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock_with(&self.inner, give_way)
    }

    /// The value if no other thread holds it now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_lock_is_taken_at_once_and_a_held_one_waits() {
        let lock = spin::Mutex::new(1);
        let mut waits = 0;
        *lock_with(&lock, || waits += 1) += 1;
        assert_eq!((*lock.lock(), waits), (2, 0));

        // Held: each look that finds it held waits once; the holder lets
        // go during the third wait.
        let held = core::cell::RefCell::new(Some(lock.lock()));
        let guard = lock_with(&lock, || {
            waits += 1;
            if waits == 3 {
                held.borrow_mut().take();
            }
        });
        assert_eq!((*guard, waits), (2, 3));
    }

    #[test]
    fn the_mutex_hands_out_its_value_and_refuses_a_second_taker() {
        let mutex = Mutex::new(alloc::vec![1, 2]);
        mutex.lock().push(3);
        let guard = mutex.lock();
        assert!(mutex.try_lock().is_none());
        assert_eq!(*guard, [1, 2, 3]);
    }
}
