//! Content: the walk below a dataset, checkpoint or output, its BLAKE3 digests and manifest, and
//! the stat cache that lets an unchanged file skip being read again.

pub mod cache;
pub mod digest;
pub mod manifest;
pub mod shard;
pub mod walk;
