//! URL composition (spec §5.5, §6.10, §6.11): Actions-service paths under `{A}`, and the
//! message-queue URLs derived from `{MQ}`.

use crate::error::{Error, Result};
use crate::types::API_VERSION;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// Everything but RFC 3986 unreserved characters is escaped in query keys and values (a space
/// becomes `%20`, `+` becomes `%2B`).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Escapes one path segment (names and ids interpolated into paths).
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, QUERY).to_string()
}

/// `{A}` joined with `path` (one slash between them), with `query` plus `api-version` encoded
/// with keys sorted alphabetically.
pub(crate) fn actions_url(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
    let mut pairs: Vec<(&str, &str)> = query.to_vec();
    if !pairs.iter().any(|(k, _)| *k == "api-version") {
        pairs.push(("api-version", API_VERSION));
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY), utf8_percent_encode(v, QUERY)))
        .collect();

    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url.set_query(Some(&encoded.join("&")));
    url.set_fragment(None);
    url
}

/// Parses a URL the server gave us.
pub(crate) fn parse(text: &str) -> Result<Url> {
    Url::parse(text).map_err(|source| Error::InvalidUrl {
        url: text.to_owned(),
        source,
    })
}

/// GET message URL: `{MQ}` as is, with `lastMessageId` replaced or added only when `last > 0`.
/// Other query parameters are kept byte for byte.
pub(crate) fn message_poll_url(mq: &Url, last_message_id: i64) -> Url {
    if last_message_id <= 0 {
        return mq.clone();
    }
    let mut parts: Vec<String> = mq
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("lastMessageId"))
        .map(str::to_owned)
        .collect();
    parts.push(format!("lastMessageId={last_message_id}"));
    let mut url = mq.clone();
    url.set_query(Some(&parts.join("&")));
    url
}

/// DELETE message URL: `{MQ path}/{id}` with the original query.
pub(crate) fn message_delete_url(mq: &Url, message_id: i64) -> Url {
    let mut url = mq.clone();
    let path = format!("{}/{message_id}", mq.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn joins_paths_and_sorts_queries() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "http://h/tenant/123/",
                "_apis/runtime/runnerscalesets",
                &[("runnerGroupId", "1"), ("name", "arc-runner-set")],
                "http://h/tenant/123/_apis/runtime/runnerscalesets?api-version=6.0-preview&name=arc-runner-set&runnerGroupId=1",
            ),
            (
                "http://h/tenant/123",
                "/_apis/runtime/runnerscalesets/5",
                &[],
                "http://h/tenant/123/_apis/runtime/runnerscalesets/5?api-version=6.0-preview",
            ),
            (
                "https://pipelines.example/abc/",
                "/_apis/runtime/runnergroups/",
                &[("groupName", "my group&co+1#x")],
                "https://pipelines.example/abc/_apis/runtime/runnergroups/?api-version=6.0-preview&groupName=my%20group%26co%2B1%23x",
            ),
            (
                "http://h/",
                "_apis/distributedtask/pools/0/agents",
                &[("agentName", "ünïcode")],
                "http://h/_apis/distributedtask/pools/0/agents?agentName=%C3%BCn%C3%AFcode&api-version=6.0-preview",
            ),
        ];
        for (base, path, query, want) in cases {
            assert_eq!(actions_url(&u(base), path, query).as_str(), *want);
        }
    }

    #[test]
    fn last_message_id_is_set_only_when_positive() {
        let broker = u("https://broker.example/scalesets/message");
        assert_eq!(
            message_poll_url(&broker, 0).as_str(),
            "https://broker.example/scalesets/message"
        );
        assert_eq!(
            message_poll_url(&broker, -1).as_str(),
            "https://broker.example/scalesets/message"
        );
        assert_eq!(
            message_poll_url(&broker, 2_147_483_648).as_str(),
            "https://broker.example/scalesets/message?lastMessageId=2147483648"
        );
        let old = u("http://h/t/_apis/runtime/runnerscalesets/5/messages?sessionId=abc&lastMessageId=3&x=a%20b");
        assert_eq!(
            message_poll_url(&old, 7).as_str(),
            "http://h/t/_apis/runtime/runnerscalesets/5/messages?sessionId=abc&x=a%20b&lastMessageId=7"
        );
        assert_eq!(message_poll_url(&old, 0), old);
    }

    #[test]
    fn delete_url_appends_the_id_and_keeps_the_query() {
        assert_eq!(
            message_delete_url(&u("https://broker.example/scalesets/message"), 100000171).as_str(),
            "https://broker.example/scalesets/message/100000171"
        );
        assert_eq!(
            message_delete_url(
                &u("http://h/t/_apis/runtime/runnerscalesets/5/messages/?sessionId=abc"),
                9
            )
            .as_str(),
            "http://h/t/_apis/runtime/runnerscalesets/5/messages/9?sessionId=abc"
        );
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("6d1a2c1e-9a0b"), "6d1a2c1e-9a0b");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
