//! Helpers shared by the listener's Docker test binaries (`mod support;`).
#![allow(dead_code)]

pub mod docker;
pub mod drive;
pub mod world;
