//! Fault injection: rules that change how the simulator answers matching requests (spec §15.1).

use serde::{Deserialize, Serialize};

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// Answer with this status instead. With `exception`, the body is that .NET exception's JSON;
    /// with `body`, that body (and `contentType`, default `text/plain`); else an empty body.
    /// `retryAfter` sets the `Retry-After` header (seconds or an HTTP date).
    #[serde(rename_all = "camelCase")]
    Status {
        status: u16,
        #[serde(default)]
        exception: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// Wait this long, then answer normally.
    Latency { ms: u64 },
    /// Never answer (the client's timeout must give up).
    Hang,
    /// Answer 200 with an empty body.
    EmptyBody,
    /// Answer 200 with a body that is not what the client expects (default `{"messageId":`).
    Malformed {
        #[serde(default)]
        body: Option<String>,
    },
    /// Answer normally, with a UTF-8 BOM in front of the body.
    Bom,
}

/// A fault and the requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Assigned by the simulator.
    #[serde(default)]
    pub id: u64,
    /// Only this method (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// A substring of the request path, e.g. `/acquirejobs` or `/broker/scalesets/message`.
    pub path: String,
    #[serde(flatten)]
    pub fault: FaultKind,
    /// Let this many matching requests through first.
    #[serde(default)]
    pub skip: u32,
    /// Affect this many requests, then retire (forever when absent).
    #[serde(default)]
    pub times: Option<u32>,
    /// How many requests it has affected so far.
    #[serde(default)]
    pub hits: u32,
}

impl FaultRule {
    /// Checks a rule the control API received; names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.path.is_empty() {
            return Err("field `path`: a non-empty path substring is required".into());
        }
        if let Some(m) = &self.method
            && !matches!(
                m.to_ascii_uppercase().as_str(),
                "GET" | "POST" | "PATCH" | "PUT" | "DELETE"
            )
        {
            return Err(format!("field `method`: `{m}` is not an HTTP method"));
        }
        if let FaultKind::Status { status, .. } = &self.fault
            && !(100..=599).contains(status)
        {
            return Err(format!("field `status`: {status} is not an HTTP status"));
        }
        if self.times == Some(0) {
            return Err("field `times`: must be at least 1 (omit it for a permanent fault)".into());
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && path.contains(&self.path)
    }
}

/// The active rules, in the order they were added.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    next_id: u64,
    /// Requests that matched a rule while it was skipping, by rule id.
    seen: std::collections::HashMap<u64, u32>,
}

impl Faults {
    pub fn add(&mut self, mut rule: FaultRule) -> Result<FaultRule, String> {
        rule.validate()?;
        self.next_id += 1;
        rule.id = self.next_id;
        rule.hits = 0;
        self.rules.push(rule.clone());
        Ok(rule)
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    /// The fault to apply to this request, if any; counts it against the rule.
    pub fn take(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let rule = self.rules.iter_mut().find(|r| r.matches(method, path))?;
        let seen = self.seen.entry(rule.id).or_insert(0);
        *seen += 1;
        if *seen <= rule.skip {
            return None;
        }
        rule.hits += 1;
        let fault = rule.fault.clone();
        if rule.times.is_some_and(|t| rule.hits >= t) {
            let id = rule.id;
            self.rules.retain(|r| r.id != id);
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn skip_then_times_then_retire() {
        let mut f = Faults::default();
        f.add(rule(
            r#"{"path":"/acquirejobs","kind":"status","status":503,"skip":1,"times":2}"#,
        ))
        .unwrap();
        assert_eq!(f.take("POST", "/t/_apis/x/acquirejobs"), None);
        assert!(matches!(
            f.take("POST", "/t/_apis/x/acquirejobs"),
            Some(FaultKind::Status { status: 503, .. })
        ));
        assert!(f.take("POST", "/t/_apis/x/acquirejobs").is_some());
        assert_eq!(f.take("POST", "/t/_apis/x/acquirejobs"), None);
        assert!(f.list().is_empty());
    }

    #[test]
    fn method_filter_and_validation() {
        let mut f = Faults::default();
        f.add(rule(r#"{"path":"/m","method":"DELETE","kind":"hang"}"#)).unwrap();
        assert_eq!(f.take("GET", "/m"), None);
        assert_eq!(f.take("DELETE", "/m"), Some(FaultKind::Hang));
        assert!(
            f.add(rule(r#"{"path":"","kind":"hang"}"#))
                .unwrap_err()
                .contains("`path`")
        );
        assert!(
            f.add(rule(r#"{"path":"/x","kind":"status","status":42}"#))
                .unwrap_err()
                .contains("`status`")
        );
        assert!(
            f.add(rule(r#"{"path":"/x","kind":"hang","method":"FETCH"}"#))
                .unwrap_err()
                .contains("`method`")
        );
        assert!(
            f.add(rule(r#"{"path":"/x","kind":"hang","times":0}"#))
                .unwrap_err()
                .contains("`times`")
        );
    }
}
