//! # tern-inks: domains as the kernel sees them, and the gate they call through
//!
//! "inks" stands for *in-kernel servers*: any server domain can later be
//! merged into the kernel domain at run time. This crate holds the pieces
//! that must be the same whichever way a domain runs:
//!
//! - [`registry`]: how a server crate declares its domains (name and entry
//!   point) so that linking the crate into the image is all it takes, with
//!   no central list to edit;
//! - [`gate`]: the *service gate*, the one place a domain's code reaches the
//!   kernel, the same in both modes;
//! - [`mode`]: a domain's mode, protected or merged into the kernel domain.
//!
//! Server crates (`servers/*`) are `#![forbid(unsafe_code)]`; the `svc`
//! instruction they need lives here, behind a safe interface.
#![no_std]

pub mod gate;
pub mod mode;
pub mod registry;
pub mod service;

pub use registry::DomainSpec;
