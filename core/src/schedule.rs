//! The run queue: ready threads by priority.
//!
//! 32 priorities (0 lowest, 31 highest), a FIFO per priority and a bitmap
//! of non-empty queues, so finding the most urgent ready thread is one
//! count-leading-zeros. Round robin within a priority comes from pushing a
//! preempted thread at the back.

use alloc::collections::VecDeque;

/// Number of priorities.
pub const PRIORITIES: usize = 32;

/// Ready threads, by priority. Generic over the thread handle so it is
/// tested on the host with plain numbers.
#[derive(Debug)]
pub struct RunQueue<T> {
    queues: [VecDeque<T>; PRIORITIES],
    bitmap: u32,
}

impl<T: Copy + PartialEq> RunQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        RunQueue { queues: core::array::from_fn(|_| VecDeque::new()), bitmap: 0 }
    }

    /// Make `thread` ready at `priority` (clamped to the highest), at the back.
    pub fn push(&mut self, thread: T, priority: u8) {
        let priority = (priority as usize).min(PRIORITIES - 1);
        self.queues[priority].push_back(thread);
        self.bitmap |= 1 << priority;
    }

    /// The highest priority with a ready thread.
    pub fn highest(&self) -> Option<u8> {
        if self.bitmap == 0 { None } else { Some(31 - self.bitmap.leading_zeros() as u8) }
    }

    /// Take the most urgent ready thread.
    pub fn pop(&mut self) -> Option<(T, u8)> {
        let priority = self.highest()?;
        let queue = &mut self.queues[priority as usize];
        let thread = queue.pop_front()?;
        if queue.is_empty() {
            self.bitmap &= !(1 << priority);
        }
        Some((thread, priority))
    }

    /// Take `thread` out wherever it is; true if it was there.
    pub fn remove(&mut self, thread: T) -> bool {
        for priority in 0..PRIORITIES {
            let queue = &mut self.queues[priority];
            if let Some(at) = queue.iter().position(|&queued| queued == thread) {
                queue.remove(at);
                if queue.is_empty() {
                    self.bitmap &= !(1 << priority);
                }
                return true;
            }
        }
        false
    }

    /// No thread is ready.
    pub fn is_empty(&self) -> bool {
        self.bitmap == 0
    }
}

impl<T: Copy + PartialEq> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_urgent_first_fifo_within_a_priority() {
        let mut queue = RunQueue::new();
        assert_eq!(queue.pop(), None);
        queue.push(1u32, 3);
        queue.push(2, 10);
        queue.push(3, 10);
        queue.push(4, 99);
        assert_eq!(queue.highest(), Some(31));
        assert_eq!(queue.pop(), Some((4, 31)));
        assert_eq!(queue.pop(), Some((2, 10)));
        assert!(queue.remove(3));
        assert!(!queue.remove(3));
        assert_eq!(queue.pop(), Some((1, 3)));
        assert!(queue.is_empty());
    }
}
