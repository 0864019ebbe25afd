//! Threads that share state, in safe code.
//!
//! A kernel thread starts with one word for an argument
//! ([`gate::thread_create`]), and a server crate has no `unsafe` with which
//! to turn a word back into a reference. [`spawn`] does it for them, the
//! way `std::thread::spawn` hands a closure its captures: it leaks a small
//! start record (the entry and a `&'static` reference to the shared state)
//! and passes the record's address as the argument to a start function
//! private to this module, which takes the record back (freeing it) and
//! calls the entry with the reference.
//!
//! The shared state is the caller's to make `'static` (`Box::leak`, in the
//! domain's heap) and `Sync` (atomics, `spin::Mutex`): every thread of the
//! domain may touch it at once.

use crate::gate;
use alloc::boxed::Box;
use tern_core::abi::Error;

/// What a thread made by [`spawn`] starts with.
struct Start<T: Sync + 'static> {
    entry: fn(&'static T) -> usize,
    shared: &'static T,
}

/// Create a thread in this domain running `entry(shared)` at `priority`
/// (0 lowest .. 31 highest) with a `stack`-byte stack; its number (as
/// [`gate::thread_create`], which it calls, answers).
pub fn spawn<T: Sync + 'static>(
    entry: fn(&'static T) -> usize,
    shared: &'static T,
    priority: u8,
    stack: usize,
) -> Result<usize, Error> {
    let start = Box::into_raw(Box::new(Start { entry, shared }));
    let word = start.expose_provenance();
    gate::thread_create(start_thread::<T>, word, priority, stack).inspect_err(|_| {
        // SAFETY: the record was made just above by `Box::into_raw` and,
        // the thread not having been made, nothing else has it.
        drop(unsafe { Box::from_raw(start) });
    })
}

/// Where a thread made by [`spawn`] starts: the record named by `word`,
/// taken back, tells it what to run.
fn start_thread<T: Sync + 'static>(word: usize) -> usize {
    // SAFETY: this function is private to this module and only `spawn`
    // names it, passing as `word` the address of a `Start<T>` it leaked
    // with `Box::into_raw` for this one thread, for the same `T` (the
    // function is instantiated with it). The kernel runs a thread's first
    // upcall once, so the record is taken back exactly once.
    let start = unsafe { Box::from_raw(core::ptr::with_exposed_provenance_mut::<Start<T>>(word)) };
    (start.entry)(start.shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    fn bump(shared: &'static AtomicUsize) -> usize {
        shared.fetch_add(1, Ordering::Relaxed) + 100
    }

    #[test]
    fn a_started_thread_runs_its_entry_with_the_shared_state() {
        static SHARED: AtomicUsize = AtomicUsize::new(7);
        // What the kernel does with the word `spawn` hands it.
        let word = Box::into_raw(Box::new(Start { entry: bump, shared: &SHARED })).expose_provenance();
        assert_eq!(start_thread::<AtomicUsize>(word), 107);
        assert_eq!(SHARED.load(Ordering::Relaxed), 8);
    }

    /// Off the target the gate answers every call with `NoSuchCall` — on an
    /// x86 host (on an AArch64 host its `svc` would reach the host's kernel).
    #[test]
    #[cfg(all(not(target_os = "none"), not(target_arch = "aarch64")))]
    fn a_thread_the_kernel_refuses_is_reported_and_nothing_runs() {
        static SHARED: AtomicUsize = AtomicUsize::new(0);
        assert_eq!(spawn(bump, &SHARED, 8, 64 << 10), Err(Error::NoSuchCall));
        assert_eq!(SHARED.load(Ordering::Relaxed), 0);
    }
}
