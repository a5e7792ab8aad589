//! End-to-end tests of the `cairn` binary against real git repositories and real files.

mod bad_input;
mod cache;
mod code;
mod diff;
mod digests;
mod environment;
mod hardening;
mod lineage;
mod lock_verify;
mod rebuild;
mod util;
