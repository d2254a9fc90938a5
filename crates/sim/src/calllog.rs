//! A record of every call the simulator received, for tests to assert the wire format on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bodies longer than this are cut in the log.
pub const MAX_BODY: usize = 64 * 1024;

/// One request and the status it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    pub method: String,
    /// The path as received (before duplicate slashes were collapsed).
    pub path: String,
    pub query: String,
    /// Header names lower-cased. `authorization` keeps only its scheme (`Bearer ***`).
    pub headers: BTreeMap<String, String>,
    /// Whose token authorised the call: `pat`, `installation`, `registration`, `admin`, `mq`,
    /// `runner`, `app-jwt`, `unknown`, or empty when there was none.
    pub auth: String,
    pub body: String,
    pub status: u16,
    /// Which fault (kind) was applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub duration_ms: u64,
}

impl CallRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The value of one query parameter (percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// The log of calls.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Vec<CallRecord>,
    next_seq: u64,
}

impl CallLog {
    pub fn push(&mut self, mut rec: CallRecord) -> u64 {
        self.next_seq += 1;
        rec.seq = self.next_seq;
        self.calls.push(rec);
        self.next_seq
    }

    pub fn since(&self, seq: u64) -> Vec<CallRecord> {
        let start = self.calls.partition_point(|c| c.seq <= seq);
        self.calls[start..].to_vec()
    }

    pub fn clear(&mut self) {
        self.calls.clear();
    }
}
