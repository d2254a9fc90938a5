//! `rarc-hooks`: the runner container hooks binary. The runner starts it through a shim
//! (`images/hooks/index.js` or `index.sh`) with the mode as the first argument.

use clap::Parser;
use rarc_hooks::env::RunnerEnv;
use rarc_hooks::protocol::input::DEFAULT_STDIN_TIMEOUT;
use rarc_hooks::signals::Cancellation;
use rarc_hooks::{Config, Mode, workflow_command};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

const ABOUT: &str = "Runner container hooks for GitHub Actions (ACTIONS_RUNNER_CONTAINER_HOOKS): a drop-in for \
actions/runner-container-hooks.";

const LONG_ABOUT: &str = "Runner container hooks for GitHub Actions (ACTIONS_RUNNER_CONTAINER_HOOKS): a drop-in for \
actions/runner-container-hooks.

The runner runs a hook once per container operation: it writes one JSON request line on stdin \
({command, responseFile, args, state}; command is prepare_job, run_script_step, run_container_step \
or cleanup_job), streams stdout and stderr into the step log, and reads responseFile afterwards. \
The runner only runs .js/.sh/.ps1 hooks, so it calls this binary through a shim (index.js or \
index.sh, see docs/hooks.md), which passes the MODE.

Stdout is the runner's log: it carries only step output and workflow commands (::error:: …). \
Diagnostics go to stderr, at the level of RARC_HOOKS_LOG.

The docker mode talks to the Docker Engine API at DOCKER_HOST (default \
unix:///var/run/docker.sock; tcp:// and TLS with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) and reads \
RUNNER_NAME (instance label), GITHUB_WORKSPACE, ACTIONS_RUNNER_NETWORK_DRIVER and \
RARC_HOOKS_HEALTH_TIMEOUT (seconds, default 600).

STATUS: the protocol core and the docker mode are implemented. The k8s and k8s-novolume modes are \
NOT IMPLEMENTED YET: every command fails with \"::error::the <mode> mode does not implement \
<command> yet\" and exit code 1.";

const AFTER_HELP: &str = "Exit codes:
  0        success (prepare_job: the response was written to responseFile)
  1        the hook failed: bad input (no stdin, invalid or truncated JSON, unknown command, missing
           field, missing environment variable such as GITHUB_WORKSPACE or RUNNER_NAME), a missing
           response file, a failed container operation, or a command not implemented yet; one
           ::error:: line on stdout says what is wrong
  N        run_script_step / run_container_step: the step's own exit code (1..255)
  128+S    the step was killed by signal S, or the hook was cancelled by SIGINT (130) or SIGTERM
           (143), the runner's job cancellation

Examples:
  echo '{\"command\":\"cleanup_job\",\"responseFile\":\"/tmp/r.json\",\"args\":{},\"state\":null}' \\
    | GITHUB_WORKSPACE=/tmp RUNNER_NAME=r1 rarc-hooks docker
  jq -c . request.json | rarc-hooks k8s-novolume";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "rarc-hooks", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Which backend runs the containers.
    #[arg(value_enum, env = "RARC_HOOKS_MODE")]
    mode: Mode,

    /// Seconds to wait for the request on stdin (the runner writes it at once and closes stdin).
    #[arg(long, env = "RARC_HOOKS_STDIN_TIMEOUT", default_value_t = DEFAULT_STDIN_TIMEOUT.as_secs(), value_name = "SECONDS")]
    stdin_timeout: u64,

    /// Seconds a cancelled step's processes get after the forwarded SIGINT/SIGTERM before SIGKILL.
    #[arg(long, env = "RARC_HOOKS_KILL_GRACE", default_value_t = rarc_hooks::process::DEFAULT_KILL_GRACE.as_secs(), value_name = "SECONDS")]
    kill_grace: u64,

    /// Diagnostics on stderr (tracing EnvFilter syntax, e.g. debug or rarc_hooks=trace).
    /// Default: warn, or debug when the runner's debug logging is on (RUNNER_DEBUG=1).
    #[arg(long, env = "RARC_HOOKS_LOG", value_name = "FILTER")]
    log: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            workflow_command::error(&format!("rarc-hooks: {}", usage_error(&e.to_string())));
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    init_tracing(cli.log.as_deref());
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            workflow_command::error(&format!("rarc-hooks: {e:#}"));
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let config = Config {
        mode: cli.mode,
        stdin_timeout: Duration::from_secs(cli.stdin_timeout),
        kill_grace: Duration::from_secs(cli.kill_grace),
    };
    let code = runtime.block_on(async {
        let cancel = Cancellation::install().map_err(rarc_hooks::HookError::Signals)?;
        if std::io::stdin().is_terminal() {
            let e = rarc_hooks::HookError::StdinIsTerminal;
            workflow_command::error(&e.to_string());
            return Ok::<u8, anyhow::Error>(e.exit_code());
        }
        Ok(rarc_hooks::run(&config, tokio::io::stdin(), RunnerEnv::from_process(), cancel).await)
    })?;
    // A stdin read still blocked in the pool (after a timeout or cancellation) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

/// The message of a clap error as one line: its first paragraph, without `error: `.
fn usage_error(text: &str) -> String {
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    message.join(" ").trim_start_matches("error: ").to_owned()
}

fn init_tracing(filter: Option<&str>) {
    let default = if std::env::var("RUNNER_DEBUG").is_ok_and(|v| v == "1") {
        "debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}
