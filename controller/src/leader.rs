//! Leader election on a `coordination.k8s.io/v1` Lease in the controller namespace: acquire
//! (create, or take over an expired lease), renew every few seconds, release on shutdown.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, is_already_exists, not_found_as_none};

/// How long a lease is valid without renewal.
pub const LEASE_SECONDS: i32 = 15;
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// This replica's identity: the pod name (HOSTNAME), else a random id.
pub fn identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("rarc-{}", rand::random::<u32>()))
}

/// True when `lease` may be taken by `me` at `now`.
pub fn can_take(spec: &LeaseSpec, me: &str, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    now.as_second() > renewed.0.as_second() + duration
}

async fn try_take(api: &Api<Lease>, name: &str, me: &str) -> Result<bool> {
    let now = Timestamp::now();
    match not_found_as_none(api.get(name).await).map_err(Error::kube(format!("get Lease {name}")))? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.into()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_already_exists(&e) => Ok(false),
                Err(e) => Err(Error::kube(format!("create Lease {name}"))(e)),
            }
        }
        Some(lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            if !can_take(&spec, me, now) {
                return Ok(false);
            }
            let transitions =
                spec.lease_transitions.unwrap_or(0) + i32::from(spec.holder_identity.as_deref() != Some(me));
            let patch = json!({
                "metadata": { "resourceVersion": lease.metadata.resource_version },
                "spec": {
                    "holderIdentity": me,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": MicroTime(now),
                    "acquireTime": if spec.holder_identity.as_deref() == Some(me) { spec.acquire_time.map(|t| json!(t)).unwrap_or(json!(MicroTime(now))) } else { json!(MicroTime(now)) },
                    "leaseTransitions": transitions,
                }
            });
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(Error::kube(format!("patch Lease {name}"))(e)),
            }
        }
    }
}

/// Waits until this replica holds the lease (or `shutdown`).
pub async fn acquire(client: &Client, namespace: &str, name: &str, shutdown: &CancellationToken) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let me = identity_cached();
    loop {
        if try_take(&api, name, &me).await? {
            tracing::info!(lease = name, identity = %me, "became leader");
            return Ok(());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Renews the lease until `shutdown`; cancels `lost` when renewal fails for a whole lease period.
pub async fn keep(
    client: Client,
    namespace: String,
    name: String,
    shutdown: CancellationToken,
    lost: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let me = identity_cached();
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RENEW_EVERY) => {}
        }
        match try_take(&api, &name, &me).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %name, "another replica holds the lease: stopping");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "lease renewal failed");
                if last_ok.elapsed() > Duration::from_secs(LEASE_SECONDS as u64) {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// Gives the lease up (best effort) so a standby takes over at once.
pub async fn release(client: &Client, namespace: &str, name: &str) {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let me = identity_cached();
    if let Ok(Some(lease)) = not_found_as_none(api.get(name).await)
        && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(me.as_str())
    {
        let patch = json!({ "spec": { "holderIdentity": null, "renewTime": null } });
        let _ = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}

fn identity_cached() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(identity).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs_ago: i64) -> LeaseSpec {
        let now = Timestamp::now().as_second();
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(now - renewed_secs_ago).expect("ts"))),
            ..Default::default()
        }
    }

    #[test]
    fn take_free_own_or_expired_leases_only() {
        let now = Timestamp::now();
        assert!(can_take(&spec(None, 0), "me", now));
        assert!(can_take(&spec(Some("me"), 1), "me", now));
        assert!(!can_take(&spec(Some("other"), 1), "me", now));
        assert!(can_take(&spec(Some("other"), 60), "me", now));
    }
}
