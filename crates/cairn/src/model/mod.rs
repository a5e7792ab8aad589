//! The lockfile model: what `cairn.lock` says, validated, and written back canonically.
//!
//! `wire` mirrors the TOML; `validate` (with the field [`rules`]) turns it into the
//! [`lockfile::Lock`] that every command works with, refusing anything malformed; `writer` turns
//! a `Lock` back into the one canonical text. Every path a lock names is a [`paths::RelPath`], checked before anything else
//! sees it.

pub mod lockfile;
pub mod oid;
pub mod paths;
pub mod python;
pub mod rules;
mod validate;
pub(crate) mod wire;
pub(crate) mod writer;
