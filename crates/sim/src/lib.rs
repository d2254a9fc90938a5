//! rarc-sim: a faithful simulator of the GitHub API and the Actions scale-set service
//! (spec `actions-protocol.md` §15.1), plus a simulated runner process.

pub mod job;
pub mod runner;
pub mod runner_api;
