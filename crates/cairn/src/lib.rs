//! cairn: reproducible machine-learning training runs.
//!
//! The library behind the `cairn` command. It never prints. Data flows one way, and the folders
//! follow it:
//!
//! * [`model`]: the `cairn.lock` model: wire types, validation, the canonical writer.
//! * [`content`]: walking a dataset or checkpoint, its BLAKE3 digests and manifest, the stat cache.
//! * [`probe`]: observing what is here now: git tree, Python environment, host, lock files, inputs.
//! * [`compare`]: the one comparison of a lock with another lock or with what
//!   [`probe::observe`] found here now, as typed differences.
//! * [`ops`]: the commands. Locking is **probe -> Lock -> canonical TOML**; verify, diff and
//!   rebuild are **TOML -> Lock -> observe -> compare -> report**, each a policy over the same
//!   differences (which fail, which warn, how they are worded).
//! * [`project`] and [`config`] say where things are; [`error`] is the one error type;
//!   [`process`] starts every child process, [`fs`] does every write, and [`text`] makes what a
//!   repository wrote safe to show. [`trust`] keeps the user's trust in a project's cairn.toml;
//!   [`places`] where this user's external datasets are on this machine.
#![warn(missing_docs)]

pub mod compare;
pub mod config;
pub mod content;
pub mod error;
pub mod fs;
pub mod model;
pub mod ops;
pub mod places;
pub mod probe;
pub mod process;
pub mod project;
pub mod text;
pub mod trust;

pub use error::{Error, Result};
