//! The GitHub / Actions scale-set protocol (spec `actions-protocol.md`).

pub mod lenient;
pub mod secret;
pub mod types;

pub use secret::Secret;
