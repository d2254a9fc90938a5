//! `rarc-sim demo`: the client-only scenario (the README's `make demo` runs the listener: scripts/demo).
//!
//! Starts rarc-sim in-process and drives it with the real client the way a listener would: register a
//! scale set (PAT → registration token → admin token), open a message session, queue jobs, long-poll,
//! acknowledge, acquire, scale with the ARC formula, start one simulated runner per desired runner from
//! a JIT config, and wait until every job is done and the runner count is back at `minRunners`.

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rarc_actions::scaling::PatchIdState;
use rarc_actions::types::{JitConfigRequest, JobMessage};
use rarc_actions::{ActionsClient, ClientConfig, Credentials, MessageSession, ProxyEnv, Secret};
use rarc_sim::auth::DEFAULT_PAT;
use rarc_sim::config::{JobMode, SimSettings};
use rarc_sim::runner::RunnerArgs;
use rarc_sim::state::{JobState, QueueJobs};
use rarc_sim::{SimOptions, SimServer};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Jobs to queue.
    #[arg(long, default_value_t = 20)]
    pub jobs: u32,
    /// Simulated work per job, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub duration_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub min_runners: i64,
    #[arg(long, default_value_t = 10)]
    pub max_runners: i64,
    /// Offer jobs for acquisition (GHES) instead of assigning them (github.com).
    #[arg(long)]
    pub offer: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn run(args: DemoArgs) -> Result<()> {
    ensure!(args.jobs > 0, "--jobs must be at least 1");
    ensure!(
        args.max_runners >= args.min_runners && args.min_runners >= 0,
        "--max-runners must be >= --min-runners >= 0"
    );
    let settings = SimSettings {
        long_poll_ms: 1_000,
        mode: if args.offer { JobMode::Offer } else { JobMode::Assign },
        ..SimSettings::default()
    };
    let server = SimServer::start(SimOptions {
        settings,
        ..SimOptions::default()
    })
    .await
    .context("starting rarc-sim")?;
    println!("rarc-sim listening on {}", server.url);
    let mut cfg = ClientConfig::new(server.config_url("my-org"), Credentials::Pat(Secret::new(DEFAULT_PAT)));
    cfg.proxy = ProxyEnv::default();
    let client = ActionsClient::new(cfg)?;
    let set = client
        .create_runner_scale_set(&rarc_sim::testing::scale_set_body("rarc-demo"))
        .await?;
    println!("scale set `{}` registered with id {}", set.name, set.id);
    let mut session = MessageSession::open(client.clone(), set.id, "rarc-demo-listener").await?;
    let workdir = std::env::temp_dir().join(format!("rarc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)?;

    let queued = server.sim.with_state(|s| {
        s.queue_jobs(&QueueJobs {
            count: args.jobs,
            labels: vec!["rarc-demo".into()],
            display_name: "build".into(),
            duration_ms: Some(args.duration_ms),
            spec: rarc_sim::job::JobSpec {
                steps: vec![rarc_sim::job::StepSpec {
                    name: "hello".into(),
                    run: Some("echo hello from $RUNNER_NAME".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        })
    })?;
    println!(
        "queued {} jobs (runs-on: rarc-demo), maxRunners {}, minRunners {}",
        queued.len(),
        args.max_runners,
        args.min_runners
    );

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout_secs);
    let stop = CancellationToken::new();
    let mut scaler = PatchIdState::new(args.min_runners, args.max_runners);
    let mut runners: JoinSet<i32> = JoinSet::new();
    let mut runner_seq = 0u32;
    let mut peak = 0usize;
    let mut round_trips: Vec<f64> = Vec::new();
    let mut last_id = 0i64;
    let mut latest = session.statistics().unwrap_or_default();
    let mut failures = 0usize;
    loop {
        if Instant::now() > deadline {
            stop.cancel();
            bail!("timed out after {}s", args.timeout_secs);
        }
        while let Some(done) = runners.try_join_next() {
            if done.map(|code| code != 0).unwrap_or(true) {
                failures += 1;
            }
        }
        let t0 = Instant::now();
        if let Some(msg) = session.get_message(last_id, args.max_runners).await? {
            last_id = msg.message_id;
            latest = msg.statistics.unwrap_or_default();
            session.delete_message(msg.message_id).await?;
            let jobs = msg.job_messages().context("message body")?;
            let available: Vec<i64> = jobs
                .iter()
                .filter_map(|j| match j {
                    JobMessage::Available(a) => Some(a.base.runner_request_id),
                    _ => None,
                })
                .collect();
            if !available.is_empty() {
                session.acquire_jobs(&available).await?;
            }
            for j in &jobs {
                match j {
                    JobMessage::Started(_) => scaler.job_started(),
                    JobMessage::Completed(_) => scaler.job_completed(),
                    _ => {}
                }
            }
            round_trips.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let (target, _patch_id) = scaler.next(latest.total_assigned_jobs);
        let live = runners.len() as i64;
        for _ in live..target {
            runner_seq += 1;
            let name = format!("rarc-demo-runner-{runner_seq}");
            let jit = client
                .generate_jit_runner_config(
                    set.id,
                    &JitConfigRequest {
                        name: name.clone(),
                        work_folder: String::new(),
                    },
                )
                .await?;
            let root = workdir.join(&name);
            std::fs::create_dir_all(&root)?;
            let runner_args = RunnerArgs {
                jitconfig: Some(jit.encoded_jit_config),
                root: Some(root),
                quiet: true,
                wait_ms: 2_000,
                ..RunnerArgs::default()
            };
            let token = stop.child_token();
            runners.spawn(async move {
                rarc_sim::runner::exit_code(&rarc_sim::runner::run_until(runner_args, token).await)
            });
        }
        peak = peak.max(runners.len());
        let (done, registered) = server.sim.with_state(|s| {
            let done = s
                .jobs()
                .iter()
                .filter(|j| matches!(j.state, JobState::Completed | JobState::Lost))
                .count();
            (done, s.statistics(set.id).total_registered_runners)
        });
        if done == queued.len() && registered <= args.min_runners && runners.len() as i64 <= args.min_runners {
            break;
        }
    }
    let elapsed = start.elapsed();
    stop.cancel();
    while runners.join_next().await.is_some() {}
    session.close().await?;

    let jobs = server.sim.with_state(|s| s.jobs());
    let succeeded = jobs.iter().filter(|j| j.result.as_deref() == Some("succeeded")).count();
    let ran_twice = jobs.iter().filter(|j| j.runs > 1).count();
    let mut latency: Vec<f64> = jobs
        .iter()
        .filter_map(|j| {
            j.runner_assign_time
                .map(|t| (t - j.queue_time).as_seconds_f64() * 1000.0)
        })
        .collect();
    latency.sort_by(f64::total_cmp);
    round_trips.sort_by(f64::total_cmp);
    let calls = server.sim.calls();
    println!();
    println!("summary");
    println!(
        "  jobs:                 {} queued, {succeeded} succeeded, {} run more than once",
        jobs.len(),
        ran_twice
    );
    println!("  runners:              {runner_seq} started, peak {peak} at once, {failures} exited non-zero");
    println!(
        "  runner start latency: p50 {:.0} ms, p99 {:.0} ms (job queued → taken by a runner)",
        percentile(&latency, 50.0),
        percentile(&latency, 99.0)
    );
    println!(
        "  message round trips:  {} (poll → ack → acquire), p50 {:.1} ms, p99 {:.1} ms",
        round_trips.len(),
        percentile(&round_trips, 50.0),
        percentile(&round_trips, 99.0)
    );
    println!(
        "  service calls:        {} in {:.1} s",
        calls.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "  scaled back to:       {} registered runners (minRunners {})",
        server.sim.with_state(|s| s.statistics(set.id).total_registered_runners),
        args.min_runners
    );
    let _ = std::fs::remove_dir_all(&workdir);
    server.stop().await;
    ensure!(
        succeeded == jobs.len() && ran_twice == 0 && failures == 0,
        "not every job succeeded exactly once"
    );
    Ok(())
}
