//! Helpers shared by the client ⇄ rarc-sim integration tests: those of `rarc_sim::testing`.
#![allow(unused_imports)]

pub use rarc_sim::testing::*;
