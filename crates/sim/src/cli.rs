//! Command-line interface: argument types and one thin function per subcommand.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rarc_sim::config::SimSettings;
use rarc_sim::{SimOptions, SimServer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A faithful simulator of the GitHub API and the Actions runner scale-set service.
///
/// `rarc-sim serve` starts the service. Clients reach it as a GitHub Enterprise Server: config URL
/// `http://127.0.0.1:PORT/<org>`, REST API under `/api/v3`, the Actions service under `/tenant/123/`.
/// The other subcommands drive a running simulator through its control API (`/_sim`), or act as a
/// simulated runner (`rarc-sim runner`).
#[derive(Debug, Parser)]
#[command(name = "rarc-sim", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the simulator and serve until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// A simulated ephemeral runner: takes its JIT config, runs one job, exits.
    Runner(rarc_sim::runner::RunnerArgs),
    /// Queue, list or wait for jobs, or print their figures (`jobs stats`).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Create a scale set through the Actions API (as ARC's controller does), or list them.
    #[command(subcommand)]
    ScaleSets(ScaleSetsCommand),
    /// Print the call log as JSON lines.
    Calls(CallsArgs),
    /// Add, list or clear injected faults.
    #[command(subcommand)]
    Faults(FaultsCommand),
    /// Make the current admin and/or message-queue tokens invalid.
    ExpireTokens(ExpireArgs),
    /// Print counts of scale sets, sessions, runners and jobs.
    State(Remote),
    /// Run a complete client scenario against an in-process simulator and print a summary.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "RARC_SIM_ADDR")]
    pub addr: SocketAddr,
    /// Seed for every id and token the simulator makes (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Serve HTTPS with a generated CA; its certificate is written to `--ca-file`.
    #[arg(long)]
    pub tls: bool,
    /// Where to write the CA certificate when `--tls` is set.
    #[arg(long, default_value = "rarc-sim-ca.pem")]
    pub ca_file: PathBuf,
    /// A PAT the registration-token call accepts (repeatable; default: the built-in test PAT).
    #[arg(long = "pat")]
    pub pats: Vec<String>,
    /// Seconds without a poll after which a message session expires.
    #[arg(long, default_value_t = 120)]
    pub session_ttl_secs: u64,
    /// Write `RARC_SIM_URL=...` to this file once listening (for scripts).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SimSettings,
}

#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// Base URL of a running simulator.
    #[arg(long, env = "RARC_SIM_URL", default_value = "http://127.0.0.1:8900")]
    pub url: String,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Queue N jobs.
    Queue(QueueArgs),
    /// List jobs (optionally only those in one state).
    List {
        #[command(flatten)]
        remote: Remote,
        /// queued, assigned, running, completed or lost.
        #[arg(long)]
        state: Option<String>,
    },
    /// Wait until COUNT jobs are in STATE.
    Wait {
        #[command(flatten)]
        remote: Remote,
        #[arg(long, default_value = "completed")]
        state: String,
        #[arg(long)]
        count: Option<usize>,
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// Print the jobs' figures as JSON: counts by state, results, jobs run more than once, runner
    /// start latency min/p50/p90/p99/max in ms (queued → taken by a runner), queue → finish, makespan.
    Stats(Remote),
    /// Print the output a runner streamed for one job, line by line (`--json`: with step and stream).
    Log {
        #[command(flatten)]
        remote: Remote,
        /// The job's runner request id (as `jobs queue` prints it).
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScaleSetsCommand {
    /// Create a scale set the way ARC's controller does (PAT → registration token → admin token →
    /// runner group by name → POST runnerscalesets); print its id (`--json`: the whole scale set).
    Create(CreateScaleSetArgs),
    /// List every scale set with its statistics (control API), as JSON.
    List(Remote),
}

#[derive(Debug, Args)]
pub struct CreateScaleSetArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The scale set's name (unique in its runner group).
    #[arg(long)]
    pub name: String,
    /// runs-on labels, comma separated (default: the name, as ARC registers it).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Runner group, by name.
    #[arg(long, default_value = "default")]
    pub runner_group: String,
    /// Path of the configure URL under the simulator: an org (`my-org`), `owner/repo`, or
    /// `enterprises/NAME`.
    #[arg(long, default_value = "my-org")]
    pub scope: String,
    /// The PAT to authenticate with (default: the simulator's built-in PAT).
    #[arg(long, env = "RARC_SIM_PAT", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) of a `serve --tls` simulator.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print the created scale set as JSON instead of its id.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// runs-on labels, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub labels: Vec<String>,
    /// Simulated work per job, in milliseconds.
    #[arg(long)]
    pub duration_ms: Option<u64>,
    /// `owner/repo`.
    #[arg(long, default_value = "my-org/my-repo")]
    pub repository: String,
    /// A job definition (JSON, see `rarc_sim::job::JobSpec`) read from this file.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// A `run:` step (repeatable), for jobs without a spec file.
    #[arg(long = "run")]
    pub runs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CallsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Only calls after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
}

#[derive(Debug, Subcommand)]
pub enum FaultsCommand {
    /// Add a fault rule given as JSON, e.g. '{"path":"/acquirejobs","kind":"status","status":503,"times":2}'.
    Add {
        #[command(flatten)]
        remote: Remote,
        rule: String,
    },
    List(Remote),
    Clear(Remote),
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub admin: bool,
    #[arg(long)]
    pub mq: bool,
}

pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Runner(args) => {
            let outcome = rarc_sim::runner::run(args).await;
            if let Err(e) = &outcome {
                eprintln!("rarc-sim runner: {e}");
            }
            return rarc_sim::runner::exit_code(&outcome);
        }
        Command::Serve(args) => serve(args).await,
        Command::Jobs(cmd) => jobs(cmd).await,
        Command::ScaleSets(cmd) => scale_sets(cmd).await,
        Command::Calls(args) => calls(args).await,
        Command::Faults(cmd) => faults(cmd).await,
        Command::ExpireTokens(args) => expire(args).await,
        Command::State(remote) => print(get(&remote, "/_sim/state").await),
        Command::Demo(args) => crate::demo::run(args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rarc-sim: {e:#}");
            1
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RARC_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_tracing(false);
    let opts = SimOptions {
        settings: args.settings,
        seed: args.seed,
        addr: args.addr,
        pats: if args.pats.is_empty() {
            SimOptions::default().pats
        } else {
            args.pats
        },
        tls: args.tls,
        session_ttl: std::time::Duration::from_secs(args.session_ttl_secs),
        ..SimOptions::default()
    };
    let server = SimServer::start(opts).await.context("cannot start the simulator")?;
    if let Some(ca) = &server.ca_pem {
        std::fs::write(&args.ca_file, ca).with_context(|| format!("cannot write {}", args.ca_file.display()))?;
    }
    if let Some(path) = &args.env_file {
        std::fs::write(path, format!("RARC_SIM_URL={}\n", server.url))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("rarc-sim listening on {}", server.url);
    println!("config URL for org `my-org`: {}", server.config_url("my-org"));
    let stop = server.stop_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    server.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn answer(resp: reqwest::Response) -> Result<serde_json::Value> {
    let status = resp.status();
    let text = resp.text().await.context("reading the answer")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        bail!("{status}: {msg}");
    }
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text).context("the simulator's answer is not JSON")
}

async fn get(remote: &Remote, path: &str) -> Result<serde_json::Value> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let resp = client()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    answer(resp).await
}

async fn send(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let resp = client()
        .request(method, &url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    answer(resp).await
}

fn print(v: Result<serde_json::Value>) -> Result<()> {
    let v = v?;
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

async fn jobs(cmd: JobsCommand) -> Result<()> {
    match cmd {
        JobsCommand::Queue(a) => {
            let mut spec: serde_json::Value = match &a.spec {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("{} is not a JSON job spec", path.display()))?
                }
                None => serde_json::json!({}),
            };
            if !a.runs.is_empty() {
                let steps: Vec<_> = a.runs.iter().map(|r| serde_json::json!({ "run": r })).collect();
                spec["steps"] = serde_json::Value::Array(steps);
            }
            let mut body =
                serde_json::json!({ "count": a.count, "labels": a.labels, "repository": a.repository, "spec": spec });
            if let Some(ms) = a.duration_ms {
                body["durationMs"] = ms.into();
            }
            print(send(&a.remote, reqwest::Method::POST, "/_sim/jobs", body).await)
        }
        JobsCommand::List { remote, state } => {
            let path = match state {
                Some(s) => format!("/_sim/jobs?state={s}"),
                None => "/_sim/jobs".into(),
            };
            print(get(&remote, &path).await)
        }
        JobsCommand::Wait {
            remote,
            state,
            count,
            timeout_ms,
        } => {
            let mut path = format!("/_sim/jobs/wait?state={state}&timeoutMs={timeout_ms}");
            if let Some(c) = count {
                path.push_str(&format!("&count={c}"));
            }
            let jobs = get(&remote, &path).await?;
            println!("{} jobs {state}", jobs.as_array().map(Vec::len).unwrap_or(0));
            Ok(())
        }
        JobsCommand::Stats(remote) => {
            let jobs: Vec<rarc_sim::state::JobView> = serde_json::from_value(get(&remote, "/_sim/jobs").await?)
                .context("the job list is not JobView JSON")?;
            let stats = rarc_sim::stats::JobStats::of(&jobs);
            print(Ok(serde_json::to_value(stats)?))
        }
        JobsCommand::Log { remote, id, json } => {
            let log = get(&remote, &format!("/_sim/jobs/{id}/log")).await?;
            if json {
                return print(Ok(log));
            }
            let lines: Vec<rarc_sim::runner_api::LogLine> =
                serde_json::from_value(log).context("the job log is not a list of lines")?;
            for l in lines {
                println!("{}", l.line);
            }
            Ok(())
        }
    }
}

async fn scale_sets(cmd: ScaleSetsCommand) -> Result<()> {
    match cmd {
        ScaleSetsCommand::List(remote) => print(get(&remote, "/_sim/scalesets").await),
        ScaleSetsCommand::Create(a) => {
            let created = create_scale_set(&a).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.id);
            }
            Ok(())
        }
    }
}

async fn create_scale_set(a: &CreateScaleSetArgs) -> Result<rarc_actions::types::RunnerScaleSet> {
    use rarc_actions::types::{Label, RunnerScaleSet, RunnerSetting};
    use rarc_actions::{ActionsClient, ClientConfig, Credentials, Secret};
    let name = a.name.trim();
    if name.is_empty() {
        bail!("--name must not be empty");
    }
    let config_url = format!("{}/{}", a.remote.url.trim_end_matches('/'), a.scope.trim_matches('/'));
    let token = a
        .token
        .clone()
        .unwrap_or_else(|| rarc_sim::auth::DEFAULT_PAT.to_owned());
    let mut cfg = ClientConfig::new(config_url.clone(), Credentials::Pat(Secret::new(token)));
    if let Some(path) = &a.ca_file {
        cfg.root_ca_pem =
            Some(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    let client = ActionsClient::new(cfg).with_context(|| format!("configure URL {config_url}"))?;
    let group = client
        .get_runner_group_by_name(&a.runner_group)
        .await
        .with_context(|| format!("runner group `{}`", a.runner_group))?;
    let labels: Vec<Label> = if a.labels.iter().all(|l| l.trim().is_empty()) {
        vec![Label::system(name)]
    } else {
        a.labels
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(Label::system)
            .collect()
    };
    let body = RunnerScaleSet {
        name: name.to_owned(),
        runner_group_id: group.id,
        labels,
        runner_setting: RunnerSetting {
            disable_update: Some(true),
            ..Default::default()
        },
        ..Default::default()
    };
    client
        .create_runner_scale_set(&body)
        .await
        .with_context(|| format!("creating scale set `{name}` at {config_url}"))
}

async fn calls(a: CallsArgs) -> Result<()> {
    let calls = get(&a.remote, &format!("/_sim/calls?since={}", a.since)).await?;
    for c in calls.as_array().into_iter().flatten() {
        println!("{c}");
    }
    Ok(())
}

async fn faults(cmd: FaultsCommand) -> Result<()> {
    match cmd {
        FaultsCommand::Add { remote, rule } => {
            let rule: serde_json::Value = serde_json::from_str(&rule).context("the rule is not JSON")?;
            print(send(&remote, reqwest::Method::POST, "/_sim/faults", rule).await)
        }
        FaultsCommand::List(remote) => print(get(&remote, "/_sim/faults").await),
        FaultsCommand::Clear(remote) => print(
            send(
                &remote,
                reqwest::Method::DELETE,
                "/_sim/faults",
                serde_json::Value::Null,
            )
            .await,
        ),
    }
}

async fn expire(a: ExpireArgs) -> Result<()> {
    print(
        send(
            &a.remote,
            reqwest::Method::POST,
            "/_sim/tokens/expire",
            serde_json::json!({ "admin": a.admin, "mq": a.mq }),
        )
        .await,
    )
}
