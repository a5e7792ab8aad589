//! `cairn diff` end to end.
