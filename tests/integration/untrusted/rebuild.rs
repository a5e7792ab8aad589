//! `cairn rebuild` on hostile repositories: nothing of the lock runs before consent.
