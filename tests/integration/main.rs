//! End-to-end tests of the `cairn` binary against real git repositories and real files.

mod bad_input;
mod cache;
mod ci;
mod code;
mod digests;
mod environment;
mod export;
mod init;
mod lineage;
mod lock_verify;
mod schemas;
mod shell;
mod util;
