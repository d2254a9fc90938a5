//! Simulator settings: chosen on the command line, changeable at run time through the control API.

use serde::{Deserialize, Serialize};

/// How a queued job reaches a scale set (spec §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// github.com: the job is assigned to a matching scale set directly (`JobAssigned`).
    #[default]
    Assign,
    /// GHES / older service: the job is offered (`JobAvailable`) until a scale set acquires it.
    Offer,
}

/// Which message-queue URL sessions get (spec §6.10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BrokerStyle {
    /// `{base}/broker/scalesets/message` (today's broker).
    #[default]
    Broker,
    /// `{A}_apis/runtime/runnerscalesets/{id}/messages?sessionId=…` (older sessions).
    Legacy,
}

/// Run-time settings. Durations are in milliseconds so the control API can set them in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase")]
pub struct SimSettings {
    /// Long-poll window of GET message before it answers 202 (the service uses ~50 s).
    #[arg(long, default_value_t = 50_000, env = "RARC_SIM_LONG_POLL_MS")]
    pub long_poll_ms: u64,
    /// Assign jobs directly (github.com) or offer them for acquisition (GHES).
    #[arg(long, value_enum, default_value_t = JobMode::Assign)]
    pub mode: JobMode,
    /// Message-queue URL style handed out in sessions.
    #[arg(long, value_enum, default_value_t = BrokerStyle::Broker)]
    pub broker: BrokerStyle,
    /// Lifetime of admin tokens from runner-registration, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub admin_token_ttl_secs: u64,
    /// Lifetime of message-queue tokens, in seconds (the service: about 50 minutes).
    #[arg(long, default_value_t = 3000)]
    pub mq_token_ttl_secs: u64,
    /// An assigned job no runner picks up within this time is cancelled and re-assigned (up to
    /// 3 times), as the service does. 0 disables it.
    #[arg(long, default_value_t = 300_000)]
    pub reassign_after_ms: u64,
    /// A running job whose runner has not been heard from for this long is marked lost. 0 disables it.
    #[arg(long, default_value_t = 120_000)]
    pub lost_after_ms: u64,
    /// Message ids of a fresh scale set start here (the service: 100000001).
    #[arg(long, default_value_t = 100_000_001)]
    pub first_message_id: i64,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            long_poll_ms: 50_000,
            mode: JobMode::Assign,
            broker: BrokerStyle::Broker,
            admin_token_ttl_secs: 3600,
            mq_token_ttl_secs: 3000,
            reassign_after_ms: 300_000,
            lost_after_ms: 120_000,
            first_message_id: 100_000_001,
        }
    }
}
