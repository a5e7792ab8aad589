//! End-to-end tests of the `cairn` binary against real git repositories and real files.

mod bad_input;
mod cache;
mod ci;
mod code;
mod consistency;
mod depfiles;
mod diff;
mod digests;
mod environment;
mod export;
mod fidelity;
mod hardening;
mod init;
mod lineage;
mod lock_verify;
mod numerics;
mod probe_cache;
mod python_api;
mod rebuild;
mod rebuild_env;
mod schemas;
mod shell;
mod summaries;
mod terminal;
mod untrusted;
mod util;
