//! Helper of the `listener` benchmark, not a benchmark itself: the same-run baseline process for
//! the listener's memory figures. It does the network wait of a listener and nothing else: the
//! default multi-thread tokio runtime (as `rarc-listener`'s `#[tokio::main]`), the same
//! `rarc-actions` client, one `MessageSession`, long poll → decode → acknowledge. No config file,
//! no logging, no metrics or health server, no backend.
//!
//! Driven by `benches/listener.rs` through `RARC_BENCH_BARE_POLL="<config url> <scale set id>"` and
//! `RARC_BENCH_BARE_TOKEN`; prints `ready` once the session is open, then `jobs <total>` after
//! each message. Without those variables (e.g. a plain `cargo bench`) it does nothing.

use rarc_actions::{ActionsClient, ClientConfig, Credentials, MessageSession, ProxyEnv, Secret};
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = std::env::var_os("RARC_BENCH_BARE_POLL") else {
        println!("bare_poll: a helper process of the `listener` benchmark; nothing to run on its own");
        return Ok(());
    };
    let args = args.to_string_lossy().into_owned();
    let (url, id) = args
        .split_once(' ')
        .ok_or("RARC_BENCH_BARE_POLL: \"<config url> <id>\"")?;
    let id: i64 = id.trim().parse()?;
    let token = std::env::var("RARC_BENCH_BARE_TOKEN")?;
    let mut cfg = ClientConfig::new(url, Credentials::Pat(Secret::new(token)));
    cfg.proxy = ProxyEnv::default();
    let client = ActionsClient::new(cfg)?;
    let mut session = MessageSession::open(client, id, "bare-poll").await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let (mut last, mut jobs) = (0i64, 0usize);
    loop {
        let Some(msg) = session.get_message(last, 1_000_000).await? else {
            continue;
        };
        last = msg.message_id;
        jobs += msg.job_messages()?.len();
        session.delete_message(msg.message_id).await?;
        writeln!(out, "jobs {jobs}")?;
        out.flush()?;
    }
}
