//! cairn: reproducible machine-learning training runs.
//!
//! The library behind the `cairn` command. Data flows one way: probes ([`git`], [`digest`],
//! [`host`]) fill a [`lockfile::Lock`], which is written as canonical TOML; verification reads
//! the TOML back into a `Lock`, probes again, and produces a [`verify::Report`]. The library never
//! prints.
#![warn(missing_docs)]

pub mod audit;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod diff;
pub mod digest;
pub mod env;
pub mod error;
pub mod export;
pub mod git;
pub mod host;
pub mod init;
pub mod inputs;
pub mod lineage;
pub mod lock;
pub mod lockfile;
pub mod lockfiles;
pub mod paths;
pub mod project;
pub mod python;
pub mod rebuild;
pub mod verify;
pub mod walk;

pub use error::{Error, Result};
