//! `rarc-sim`: the GitHub + Actions service simulator, its control client and the simulated runner.
//!
//! Exit codes: 0 success; 1 an error (server unreachable, request refused, bad control input, a wait
//! that timed out); 2 bad command-line usage. `rarc-sim runner` documents its own codes.

mod cli;
mod demo;

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = cli::Cli::parse();
    std::process::exit(cli::run(args).await);
}
