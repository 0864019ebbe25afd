//! The kernel state on this machine: one structure, one lock.
//!
//! The kernel (`tern_core::kernel::Kernel`) holds every thread, activation,
//! port and domain, and the [`Aarch64`] machine it runs on. Kernel code
//! reaches it only through [`with`]: interrupts masked, the lock taken,
//! and — when the body is done — what the assembly fast paths read
//! published, so that by the time any domain runs again they see exactly
//! what the kernel knows. On one core the lock is never contended; it is a
//! lock anyway so that SMP can split it later without changing callers.
//!
//! Rule: never switch threads while holding the lock — the kernel decides
//! a switch (a [`crate::machine::Switch`], two context pointers), the lock
//! is dropped, then [`crate::threads::perform`] carries it out.

use crate::machine::Aarch64;

/// The kernel, on this machine.
pub type Kernel = tern_core::kernel::Kernel<Aarch64>;

/// The kernel state (present after boot).
pub static KERNEL: spin::Mutex<Option<Kernel>> = spin::Mutex::new(None);

/// Run `body` on the kernel state.
pub fn with<R>(body: impl FnOnce(&mut Kernel) -> R) -> R {
    crate::cpu::without_interrupts(|| {
        let mut guard = KERNEL.lock();
        let kernel = guard.as_mut().expect("kernel state used before boot");
        let result = body(kernel);
        kernel.publish();
        result
    })
}
