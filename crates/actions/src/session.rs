//! A message session and the message-queue calls (spec §4.7, §6.7–§6.12).
//!
//! GET message, DELETE message and acquirejobs use the session's MQ token. On a 401 from any of
//! them the session is refreshed once (PATCH), the whole session replaced (URL and token) and the
//! call retried once; a second 401 is returned.

use crate::actions_url;
use crate::client::ActionsClient;
use crate::error::{Error, Result};
use crate::http::Request;
use crate::secret::Secret;
use crate::types::{MESSAGE_TYPE_JOB_MESSAGES, RunnerScaleSetMessage, RunnerScaleSetSession, Statistics};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName};
use http::{HeaderValue, Method, StatusCode};
use std::future::Future;

/// The `Accept` header of GET message.
pub const MESSAGE_ACCEPT: &str = "application/json; api-version=6.0-preview";
/// Header carrying the listener's `max_runners`.
pub const MAX_CAPACITY_HEADER: &str = "X-ScaleSetMaxCapacity";

/// One open message session of one scale set.
#[derive(Debug)]
pub struct MessageSession {
    client: ActionsClient,
    scale_set_id: i64,
    owner: String,
    session: RunnerScaleSetSession,
}

/// What a message-queue call needs from the session (cloned so the call can outlive a refresh).
#[derive(Clone)]
struct MqAuth {
    url: String,
    token: Secret,
}

impl MessageSession {
    /// Creates a session for `scale_set_id` owned by `owner` (usually the host name).
    pub async fn open(client: ActionsClient, scale_set_id: i64, owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        let session = client.create_message_session(scale_set_id, &owner).await?;
        tracing::info!(scale_set_id, session_id = %session.session_id, owner = %owner, "message session created");
        Ok(Self {
            client,
            scale_set_id,
            owner,
            session,
        })
    }

    /// Wraps a session created elsewhere.
    pub fn from_session(
        client: ActionsClient,
        scale_set_id: i64,
        owner: impl Into<String>,
        session: RunnerScaleSetSession,
    ) -> Self {
        Self {
            client,
            scale_set_id,
            owner: owner.into(),
            session,
        }
    }

    /// The current session (replaced by every refresh).
    pub fn session(&self) -> &RunnerScaleSetSession {
        &self.session
    }

    /// Statistics the session was created (or last refreshed) with.
    pub fn statistics(&self) -> Option<Statistics> {
        self.session.statistics
    }

    pub fn scale_set_id(&self) -> i64 {
        self.scale_set_id
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn client(&self) -> &ActionsClient {
        &self.client
    }

    /// Refreshes the session (PATCH) and replaces it whole.
    pub async fn refresh(&mut self) -> Result<()> {
        let fresh = self
            .client
            .refresh_message_session(self.scale_set_id, &self.session.session_id)
            .await?;
        tracing::info!(
            scale_set_id = self.scale_set_id,
            session_id = %fresh.session_id,
            queue_url_changed = fresh.message_queue_url != self.session.message_queue_url,
            "message session refreshed"
        );
        self.session = fresh;
        Ok(())
    }

    /// Creates a new session in place of the current one (for a refresh that returned 404).
    pub async fn recreate(&mut self) -> Result<()> {
        let fresh = self
            .client
            .create_message_session(self.scale_set_id, &self.owner)
            .await?;
        tracing::info!(
            scale_set_id = self.scale_set_id,
            old_session_id = %self.session.session_id,
            session_id = %fresh.session_id,
            "message session recreated"
        );
        self.session = fresh;
        Ok(())
    }

    /// Deletes the session (204).
    pub async fn close(self) -> Result<()> {
        self.client
            .delete_message_session(self.scale_set_id, &self.session.session_id)
            .await?;
        tracing::info!(scale_set_id = self.scale_set_id, session_id = %self.session.session_id, "message session deleted");
        Ok(())
    }

    /// Long-polls for the next message after `last_message_id` (0 = from the start).
    ///
    /// `None` on 202 (the poll window elapsed) and, as a documented improvement over ARC, on a 200
    /// with an empty body. A message of another type than `RunnerScaleSetJobMessages`, or without
    /// statistics, is a protocol error.
    pub async fn get_message(
        &mut self,
        last_message_id: i64,
        max_capacity: i64,
    ) -> Result<Option<RunnerScaleSetMessage>> {
        if max_capacity < 0 {
            return Err(Error::InvalidArgument(format!(
                "max capacity must not be negative, got {max_capacity}"
            )));
        }
        let capacity = HeaderValue::from(max_capacity);
        self.with_refresh(move |client, mq| {
            let capacity = capacity.clone();
            async move {
                let url = actions_url::message_poll_url(&actions_url::parse(&mq.url)?, last_message_id);
                let request = Request::new(Method::GET, url)
                    .authorization("Bearer", &mq.token)?
                    .header(ACCEPT, MESSAGE_ACCEPT)
                    .header_value(HeaderName::from_static("x-scalesetmaxcapacity"), capacity);
                let response = client.http().send(&request).await?.expect(&[StatusCode::OK, StatusCode::ACCEPTED])?;
                if response.status == StatusCode::ACCEPTED {
                    return Ok(None);
                }
                if response.body.trim_ascii().is_empty() {
                    tracing::warn!(url = %response.url, "message queue answered 200 with an empty body; treating it as no message");
                    return Ok(None);
                }
                let message: RunnerScaleSetMessage = response.json()?;
                check_message(&message)?;
                Ok(Some(message))
            }
        })
        .await
    }

    /// Acknowledges (deletes) a message (204).
    pub async fn delete_message(&mut self, message_id: i64) -> Result<()> {
        self.with_refresh(move |client, mq| async move {
            let url = actions_url::message_delete_url(&actions_url::parse(&mq.url)?, message_id);
            let request = Request::new(Method::DELETE, url)
                .authorization("Bearer", &mq.token)?
                .header(CONTENT_TYPE, "application/json");
            client
                .http()
                .send(&request)
                .await?
                .expect(&[StatusCode::NO_CONTENT])
                .map(drop)
        })
        .await
    }

    /// Acquires the offered jobs `ids`; returns the ids actually acquired. No ids ⇒ no call.
    pub async fn acquire_jobs(&mut self, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let scale_set_id = self.scale_set_id;
        let ids = ids.to_vec();
        self.with_refresh(move |client, mq| {
            let ids = ids.clone();
            async move { client.acquire_jobs_with(scale_set_id, &mq.token, &ids).await }
        })
        .await
    }

    /// Runs `call`; on 401 refreshes the session once and runs it again.
    async fn with_refresh<T, F, Fut>(&mut self, call: F) -> Result<T>
    where
        F: Fn(ActionsClient, MqAuth) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match call(self.client.clone(), self.mq_auth()).await {
            Err(e) if e.is_unauthorized() => {
                tracing::info!(
                    scale_set_id = self.scale_set_id,
                    "message queue token rejected; refreshing the session"
                );
                self.refresh().await?;
                call(self.client.clone(), self.mq_auth()).await
            }
            other => other,
        }
    }

    fn mq_auth(&self) -> MqAuth {
        MqAuth {
            url: self.session.message_queue_url.clone(),
            token: self.session.message_queue_access_token.clone(),
        }
    }
}

/// The envelope checks of §6.10 / §14: the type must be `RunnerScaleSetJobMessages` and
/// statistics must be present.
pub fn check_message(message: &RunnerScaleSetMessage) -> Result<()> {
    if message.message_type != MESSAGE_TYPE_JOB_MESSAGES {
        return Err(Error::protocol(format!(
            "message {} has type {:?}, expected {MESSAGE_TYPE_JOB_MESSAGES}",
            message.message_id, message.message_type
        )));
    }
    if message.statistics.is_none() {
        return Err(Error::protocol(format!(
            "message {} has no statistics",
            message.message_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_checks() {
        let ok = RunnerScaleSetMessage {
            message_id: 1,
            message_type: MESSAGE_TYPE_JOB_MESSAGES.into(),
            statistics: Some(Statistics::default()),
            body: String::new(),
        };
        assert!(check_message(&ok).is_ok());
        let wrong = RunnerScaleSetMessage {
            message_type: "RunnerScaleSetCapacityMessages".into(),
            ..ok.clone()
        };
        assert!(
            matches!(check_message(&wrong), Err(Error::Protocol(m)) if m.contains("RunnerScaleSetCapacityMessages"))
        );
        let no_stats = RunnerScaleSetMessage { statistics: None, ..ok };
        assert!(matches!(check_message(&no_stats), Err(Error::Protocol(m)) if m.contains("no statistics")));
    }
}
