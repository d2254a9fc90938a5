//! Message round trip against rarc-sim on loopback: poll → acknowledge → acquire, as the listener
//! does for every message (spec §9.3), through the real client.
//!
//! Baseline, measured in the same run against the same server: three bare HTTP requests with a plain
//! reqwest client (`GET /_sim/ping`, which answers 204 through the same
//! recording layer), i.e. the floor for three calls on this machine. The figure
//! that matters is the ratio, since these machines are noisy.
//!
//! `RARC_BENCH_QUICK=1` runs fewer iterations (CI). Figures go to docs/benchmarks.md.

use rarc_actions::types::JobMessage;
use rarc_actions::{ActionsClient, ClientConfig, Credentials, MessageSession, ProxyEnv, Secret};
use rarc_sim::auth::DEFAULT_PAT;
use rarc_sim::config::{JobMode, SimSettings};
use rarc_sim::state::QueueJobs;
use rarc_sim::{SimOptions, SimServer};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: Duration,
    p99: Duration,
    total: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    let total = samples.iter().sum();
    samples.sort();
    Stats {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
        total,
        n: samples.len(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let quick = std::env::var_os("RARC_BENCH_QUICK").is_some();
    let (warmup, iterations) = if quick { (20, 200) } else { (200, 3000) };
    let settings = SimSettings {
        mode: JobMode::Offer,
        long_poll_ms: 5_000,
        reassign_after_ms: 0,
        ..SimSettings::default()
    };
    let server = SimServer::start(SimOptions {
        settings,
        ..SimOptions::default()
    })
    .await?;
    let mut cfg = ClientConfig::new(server.config_url("my-org"), Credentials::Pat(Secret::new(DEFAULT_PAT)));
    cfg.proxy = ProxyEnv::default();
    let client = ActionsClient::new(cfg)?;
    let set = client
        .create_runner_scale_set(&rarc_sim::testing::scale_set_body("bench"))
        .await?;
    let mut session = MessageSession::open(client, set.id, "bench").await?;
    let queue = QueueJobs {
        count: 1,
        labels: vec!["bench".into()],
        ..Default::default()
    };

    let mut last = 0i64;
    let mut round_trips = Vec::with_capacity(iterations);
    let mut acquired = 0usize;
    for i in 0..warmup + iterations {
        server.sim.with_state(|s| s.queue_jobs(&queue))?;
        let start = Instant::now();
        let msg = session.get_message(last, 10).await?.ok_or("a message was queued")?;
        last = msg.message_id;
        session.delete_message(msg.message_id).await?;
        let available: Vec<i64> = msg
            .job_messages()?
            .iter()
            .filter_map(|j| match j {
                JobMessage::Available(a) => Some(a.base.runner_request_id),
                _ => None,
            })
            .collect();
        let got = session.acquire_jobs(&available).await?;
        if i >= warmup {
            round_trips.push(start.elapsed());
            acquired += got.len();
        }
    }

    let raw = reqwest::Client::new();
    let state_url = format!("{}/_sim/ping", server.url);
    let mut baseline = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let start = Instant::now();
        for _ in 0..3 {
            raw.get(&state_url).send().await?.bytes().await?;
        }
        if i >= warmup {
            baseline.push(start.elapsed());
        }
    }
    server.stop().await;

    let rt = stats(round_trips);
    let base = stats(baseline);
    let calls_per_sec = (rt.n * 3) as f64 / rt.total.as_secs_f64();
    let base_calls_per_sec = (base.n * 3) as f64 / base.total.as_secs_f64();
    println!(
        "message round trip (poll → delete → acquire) against rarc-sim, {} iterations, {acquired} jobs acquired",
        rt.n
    );
    println!("| measure | p50 ms | p99 ms | calls/s |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| rarc client round trip | {:.3} | {:.3} | {:.0} |",
        ms(rt.p50),
        ms(rt.p99),
        calls_per_sec
    );
    println!(
        "| baseline: 3 bare requests | {:.3} | {:.3} | {:.0} |",
        ms(base.p50),
        ms(base.p99),
        base_calls_per_sec
    );
    println!(
        "| ratio (rarc / baseline) | {:.2} | {:.2} | {:.2} |",
        ms(rt.p50) / ms(base.p50),
        ms(rt.p99) / ms(base.p99),
        calls_per_sec / base_calls_per_sec
    );
    if acquired != rt.n {
        return Err(format!("expected {} acquisitions, got {acquired}", rt.n).into());
    }
    Ok(())
}
