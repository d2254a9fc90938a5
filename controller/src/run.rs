//! Starts the four controllers: watches (never on Secrets or ConfigMaps), optional leader election,
//! `/healthz` `/readyz` and `/metrics`, and a graceful stop on cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use rarc_crd::keys::labels as l;
use rarc_crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::leader;
use crate::metrics::{RECONCILE_ERRORS_TOTAL, RECONCILE_TOTAL};
use crate::reconcile::{autoscaling_listener, autoscaling_runner_set, ephemeral_runner, ephemeral_runner_set};

/// How long running reconciles may take to finish after a stop.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(8);

/// Readiness: true once the controllers run (and, with leader election, this replica leads).
#[derive(Default, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// An `Api` over `namespace`, or all namespaces when `None`.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Drives one controller's stream, counting reconciles and errors.
async fn drive<K, S, E>(name: &'static str, ctx: Arc<Context>, stream: S)
where
    K: Resource,
    S: futures::Stream<Item = Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, watcher::Error>>>,
    E: std::error::Error + 'static,
{
    let labels = vec![("controller", name.to_owned())];
    stream
        .for_each(|r| {
            ctx.metrics.inc(RECONCILE_TOTAL, &labels);
            if let Err(e) = &r {
                ctx.metrics.inc(RECONCILE_ERRORS_TOTAL, &labels);
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(err, obj) => {
                        tracing::warn!(controller = name, object = %obj, error = %err, "reconcile failed")
                    }
                    other => tracing::debug!(controller = name, error = %other, "controller event"),
                }
            }
            futures::future::ready(())
        })
        .await;
}

/// Runs the controllers until `shutdown` is cancelled (then lets running reconciles finish).
pub async fn run(client: Client, ctx: Arc<Context>, readiness: Readiness, shutdown: CancellationToken) -> Result<()> {
    let settings = ctx.settings.clone();
    if settings.enable_leader_election {
        leader::acquire(
            &client,
            &settings.controller_namespace,
            &settings.leader_election_id,
            &shutdown,
        )
        .await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
    let lost = CancellationToken::new();
    let renew = settings.enable_leader_election.then(|| {
        tokio::spawn(leader::keep(
            client.clone(),
            settings.controller_namespace.clone(),
            settings.leader_election_id.clone(),
            shutdown.clone(),
            lost.clone(),
        ))
    });
    let stop = {
        let (a, b) = (shutdown.clone(), lost.clone());
        move || {
            let (a, b) = (a.clone(), b.clone());
            async move {
                tokio::select! { _ = a.cancelled() => {}, _ = b.cancelled() => {} }
            }
        }
    };

    // Every stored scale set id is checked against GitHub again once this replica reconciles.
    autoscaling_runner_set::forget_all_validations();
    let watched = settings.single_namespace().map(str::to_owned);
    let runners_ns = watched.as_deref();
    let controller_ns = settings.controller_namespace.as_str();
    let wc = watcher::Config::default;

    let ars = Controller::new(api::<AutoscalingRunnerSet>(&client, runners_ns), wc())
        .owns(api::<EphemeralRunnerSet>(&client, runners_ns), wc())
        .watches(
            Api::<AutoscalingListener>::namespaced(client.clone(), controller_ns),
            wc(),
            |al| {
                let (ns, name) = (
                    al.spec.autoscaling_runner_set_namespace.clone(),
                    al.spec.autoscaling_runner_set_name.clone(),
                );
                ns.zip(name).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            },
        )
        .graceful_shutdown_on(stop())
        .run(
            autoscaling_runner_set::reconcile,
            autoscaling_runner_set::error_policy,
            ctx.clone(),
        );

    let ers = Controller::new(api::<EphemeralRunnerSet>(&client, runners_ns), wc())
        .owns(api::<EphemeralRunner>(&client, runners_ns), wc())
        .graceful_shutdown_on(stop())
        .run(
            ephemeral_runner_set::reconcile,
            ephemeral_runner_set::error_policy,
            ctx.clone(),
        );

    let runner_pods = wc().labels(&format!("{}={}", l::EPHEMERAL_RUNNER, l::EPHEMERAL_RUNNER_TRUE));
    let er = Controller::new(api::<EphemeralRunner>(&client, runners_ns), wc())
        .owns(api::<Pod>(&client, runners_ns), runner_pods)
        .with_config(ControllerConfig::default().concurrency(settings.runner_max_concurrent_reconciles.max(1)))
        .graceful_shutdown_on(stop())
        .run(ephemeral_runner::reconcile, ephemeral_runner::error_policy, ctx.clone());

    let listener_objects = || wc().labels(&format!("{}={}", l::COMPONENT, l::COMPONENT_LISTENER));
    let by_listener_labels = |meta: &kube::api::ObjectMeta| {
        let labels = meta.labels.as_ref()?;
        let name = labels.get(l::LISTENER_NAME)?;
        let ns = labels.get(l::LISTENER_NAMESPACE)?;
        Some(ObjectRef::<AutoscalingListener>::new(name).within(ns))
    };
    let al = Controller::new(
        Api::<AutoscalingListener>::namespaced(client.clone(), controller_ns),
        wc(),
    )
    .owns(
        Api::<Pod>::namespaced(client.clone(), controller_ns),
        listener_objects(),
    )
    .owns(
        Api::<ServiceAccount>::namespaced(client.clone(), controller_ns),
        listener_objects(),
    )
    .watches(api::<Role>(&client, runners_ns), listener_objects(), move |r: Role| {
        by_listener_labels(&r.metadata)
    })
    .watches(
        api::<RoleBinding>(&client, runners_ns),
        listener_objects(),
        move |r: RoleBinding| by_listener_labels(&r.metadata),
    )
    .graceful_shutdown_on(stop())
    .run(
        autoscaling_listener::reconcile,
        autoscaling_listener::error_policy,
        ctx.clone(),
    );

    readiness.set(true);
    tracing::info!(
        namespace = runners_ns.unwrap_or("<all>"),
        controller_namespace = controller_ns,
        "controllers started"
    );
    let all = async {
        futures::join!(
            drive("autoscalingrunnerset", ctx.clone(), ars),
            drive("ephemeralrunnerset", ctx.clone(), ers),
            drive("ephemeralrunner", ctx.clone(), er),
            drive("autoscalinglistener", ctx.clone(), al),
        )
    };
    // After the stop, running reconciles get STOP_GRACE to finish (the chart's pod grace period
    // is 10 s). A controller stopped before its cache synced never ends on its own (kube-runtime
    // waits for the store), so the grace also bounds that.
    let grace = {
        let stop = stop();
        async move {
            stop.await;
            tokio::time::sleep(STOP_GRACE).await;
        }
    };
    tokio::select! {
        _ = all => {}
        _ = grace => tracing::warn!(grace = ?STOP_GRACE, "controllers still busy after the stop: exiting anyway"),
    }
    readiness.set(false);
    if let Some(h) = renew {
        h.abort();
        if lost.is_cancelled() && !shutdown.is_cancelled() {
            return Err(Error::Other("lost the leader election lease".into()));
        }
        leader::release(&client, &settings.controller_namespace, &settings.leader_election_id).await;
    }
    Ok(())
}

/// Serves `router` on `addr` until `shutdown`.
pub async fn serve(
    addr: String,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::Other(format!("bind {addr}: {e}")))?;
    Ok(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    })
}

/// `/healthz` (always 200 while the process serves) and `/readyz` (200 once the controllers run).
pub fn health_router(readiness: Readiness) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let r = readiness.clone();
                async move {
                    if r.get() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// `/metrics` in the Prometheus text format.
pub fn metrics_router(ctx: Arc<Context>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let ctx = ctx.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    ctx.metrics.render(),
                )
            }
        }),
    )
}
