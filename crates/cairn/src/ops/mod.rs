//! The commands, one module each. Each is a policy over the same pipeline: probe what is here,
//! compare it with a lock, and decide what the differences mean for that command.

pub mod audit;
pub mod checkpoint;
pub mod diff;
pub mod export;
pub mod init;
pub mod lineage;
pub mod lock;
pub mod rebuild;
pub mod verify;
