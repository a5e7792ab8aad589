//! Attacker repositories: each test builds a repository whose every byte is hostile, clones it
//! with plain `git clone`, runs a cairn command in the clone and asserts that nothing of the
//! repository ran (no marker file appeared) and nothing outside the clone was read or changed.
//! The payloads only ever touch a marker file. See spec/security.md for the rules they check.

mod output;
mod readonly;
mod rebuild;
