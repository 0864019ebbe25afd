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
//!   kernel. Today every domain is protected and the gate is an `svc`; when
//!   merging arrives it becomes a direct call for merged domains, and server
//!   code does not change.
//!
//! Server crates (`servers/*`) are `#![forbid(unsafe_code)]`; the `svc`
//! instruction they need lives here, behind a safe interface.
#![no_std]

pub mod gate;
pub mod registry;
pub mod service;

pub use registry::DomainSpec;
