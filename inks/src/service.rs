//! Placeholder: written by the servers work.
