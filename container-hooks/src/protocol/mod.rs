//! The runner ⇄ hook protocol (`container-hooks.md` §1): the request on stdin, the response file.

pub mod input;
pub mod request;
pub mod response;

pub use request::{Command, Env, HookContainer, Mount, PrepareJobArgs, Registry, Request, RequestArgs, ScriptStepArgs};
pub use response::{ContainerInfo, PrepareJobResponse, ResponseContext};
