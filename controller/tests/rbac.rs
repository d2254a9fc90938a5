//! T81 + T82 of arc-controller.md §12: the controller binary, run with exactly the permissions of
//! ARC's charts in single-namespace mode (controller/deploy/rbac-single-namespace.yaml: Roles only,
//! no ClusterRole, no list/watch on Secrets outside the runner namespace), serves a scale set
//! from creation through jobs to deletion without a single forbidden request.
//!
//! ```sh
//! cargo build -p rarc-listener -p rarc-sim
//! RARC_KUBECONFIG=$(tests/cluster/up | tail -1) cargo test -p rarc-controller --test rbac
//! ```

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;

const RBAC: &str = include_str!("../deploy/rbac-single-namespace.yaml");
const SA: &str = "rarc-controller";

/// A kubeconfig for `token`, with the server and CA of the admin kubeconfig.
fn token_kubeconfig(admin_path: &str, token: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let admin: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(admin_path).expect("admin kubeconfig")).expect("kubeconfig");
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": SA}}],
        "current-context": "x",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write kubeconfig");
    path
}

/// Kills the child on drop (a failing assertion must not leave a controller running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t82_chart_rbac_single_namespace_is_enough_for_a_whole_lifecycle() {
    Env::run("rbac", async |env| {
        // The harness's in-process controller (admin credentials) steps aside for the binary.
        env.stop_controller().await;

        let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.cns);
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": SA}})).expect("sa");
        sas.create(&PostParams::default(), &sa)
            .await
            .expect("create ServiceAccount");
        let rbac = RBAC
            .replace("@CONTROLLER_NS@", &env.cns)
            .replace("@WATCHED_NS@", &env.ns)
            .replace("@SA@", SA)
            .replace("@NAME@", "rarc-test");
        rarc_kube_test::apply_yaml(&env.client, None, &rbac)
            .await
            .expect("apply the chart's Roles");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = sas
            .create_subresource::<TokenRequest, TokenRequest>("token", SA, &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .expect("token status")
            .token;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = token_kubeconfig(&rarc_kube_test::kubeconfig_location(), &token, dir.path());

        let log_path = std::env::temp_dir().join(format!("rarc-rbac-{}.log", env.ns));
        eprintln!("controller log: {}", log_path.display());
        let mut child = Running(
            Command::new(env!("CARGO_BIN_EXE_rarc-controller"))
                .args([
                    "--auto-scaling-runner-set-only",
                    "--metrics-addr=0",
                    "--listener-metrics-addr=0",
                    "--log-level=debug",
                    &format!("--watch-single-namespace={}", env.ns),
                    &format!("--listener-entrypoint={LISTENER_ENTRYPOINT}"),
                ])
                .env("KUBECONFIG", &kubeconfig)
                .env("RARC_LOG", "debug,kube=debug,hyper=warn,tower=warn")
                .env("CONTROLLER_MANAGER_POD_NAMESPACE", &env.cns)
                .env("CONTROLLER_MANAGER_CONTAINER_IMAGE", &env.image)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).expect("log file"))
                .spawn()
                .expect("spawn rarc-controller"),
        );

        // A whole lifecycle: registration, listener, two jobs on runner pods, deletion.
        let name = "rbac-set";
        let mut ars = env.ars(name);
        ars.spec.max_runners = Some(2);
        env.create_ars(&ars).await;
        let id = env.wait_scale_set_id(name, Duration::from_secs(60)).await;
        env.wait_listener_running(name, id, Duration::from_secs(120)).await;
        env.wait_ars_phase(name, "Running", Duration::from_secs(60)).await;
        let ids = env.queue_jobs(2, name, 500);
        let jobs = env.wait_jobs_completed(&ids, Duration::from_secs(150)).await;
        assert_eq!(jobs.len(), 2);
        env.delete_ars(name).await;
        env.wait_ars_gone(name, Duration::from_secs(120)).await;
        env.wait_no_sim_runners(id, Duration::from_secs(30)).await;
        assert!(
            env.sim_scale_sets().iter().all(|s| s.id != id),
            "the scale set was deleted on GitHub with the restricted credentials"
        );

        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "the controller exited early"
        );
        let _ = child.0.kill();
        let _ = child.0.wait();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                (l.contains("forbidden") || l.contains(" 403"))
                    && !l.contains("no permission to read crds")
                    && !l.contains("customresourcedefinitions")
            })
            .take(10)
            .collect();
        assert!(
            forbidden.is_empty(),
            "forbidden requests with the chart's RBAC:\n{}",
            forbidden.join("\n")
        );
        assert!(!log.contains(&token), "the token never appears in the log");
        // The in-process controller is back for the harness's teardown checks.
        drop(child);
        env.start_controller().await;
        // The Roles of this test go with it (the harness checks the runner namespace is empty).
        for kind in ["rarc-test-manager", "rarc-test-single-namespace-watch"] {
            let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(env.client.clone(), &env.ns);
            let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(env.client.clone(), &env.ns);
            let _ = roles.delete(kind, &Default::default()).await;
            let _ = bindings.delete(kind, &Default::default()).await;
        }
        sas.delete(SA, &Default::default())
            .await
            .expect("delete the ServiceAccount");
    })
    .await;
}
