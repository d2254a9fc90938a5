//! Every label, annotation and finalizer key of arc-controller.md §3, spelled exactly as ARC does.

/// The API group of the four resources.
pub const GROUP: &str = "actions.github.com";
/// Their only version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the four resources.
pub const API_VERSION: &str = "actions.github.com/v1alpha1";

/// Label keys.
pub mod labels {
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const VERSION: &str = "app.kubernetes.io/version";
    pub const SCALE_SET_NAME: &str = "actions.github.com/scale-set-name";
    pub const SCALE_SET_NAMESPACE: &str = "actions.github.com/scale-set-namespace";
    pub const ENTERPRISE: &str = "actions.github.com/enterprise";
    pub const ORGANIZATION: &str = "actions.github.com/organization";
    pub const REPOSITORY: &str = "actions.github.com/repository";
    pub const LISTENER_NAME: &str = "auto-scaling-listener-name";
    pub const LISTENER_NAMESPACE: &str = "auto-scaling-listener-namespace";
    /// On runner pods, value [`EPHEMERAL_RUNNER_TRUE`].
    pub const EPHEMERAL_RUNNER: &str = "actions-ephemeral-runner";
    pub const EPHEMERAL_RUNNER_TRUE: &str = "True";
    pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
    /// Set by the container hooks on the job pods and secrets of a runner pod.
    pub const HOOKS_RUNNER_POD: &str = "runner-pod";

    /// `app.kubernetes.io/part-of` of the ERS, ER and AL.
    pub const PART_OF_SCALE_SET: &str = "gha-runner-scale-set";
    pub const COMPONENT_RUNNER_SET: &str = "runner-set";
    pub const COMPONENT_RUNNER: &str = "runner";
    pub const COMPONENT_LISTENER: &str = "runner-scale-set-listener";
}

/// Annotation keys.
pub mod annotations {
    /// On the ARS; no domain prefix, as in ARC.
    pub const RUNNER_SCALE_SET_ID: &str = "runner-scale-set-id";
    pub const RUNNER_SCALE_SET_NAME: &str = "actions.github.com/runner-scale-set-name";
    pub const RUNNER_GROUP_NAME: &str = "actions.github.com/runner-group-name";
    pub const VALUES_HASH: &str = "actions.github.com/values-hash";
    /// Hash of what an object was built from (ARC master's name for it).
    pub const INTEGRITY_HASH: &str = "actions.github.com/integrity-hash";
    /// ARC 0.14.2's runner spec hash on ERS and AL.
    pub const RUNNER_SPEC_HASH: &str = "actions.github.com/runner-spec-hash";
    /// On each ER: the ERS `patchID` it was created for.
    pub const PATCH_ID: &str = "actions.github.com/patch-id";

    pub const CLEANUP_GITHUB_SECRET_NAME: &str = "actions.github.com/cleanup-github-secret-name";
    pub const CLEANUP_MANAGER_ROLE_BINDING: &str = "actions.github.com/cleanup-manager-role-binding";
    pub const CLEANUP_MANAGER_ROLE_NAME: &str = "actions.github.com/cleanup-manager-role-name";
    pub const CLEANUP_KUBERNETES_MODE_ROLE_BINDING_NAME: &str =
        "actions.github.com/cleanup-kubernetes-mode-role-binding-name";
    pub const CLEANUP_KUBERNETES_MODE_ROLE_NAME: &str = "actions.github.com/cleanup-kubernetes-mode-role-name";
    pub const CLEANUP_KUBERNETES_MODE_SERVICE_ACCOUNT_NAME: &str =
        "actions.github.com/cleanup-kubernetes-mode-service-account-name";
    pub const CLEANUP_NO_PERMISSION_SERVICE_ACCOUNT_NAME: &str =
        "actions.github.com/cleanup-no-permission-service-account-name";
}

/// Finalizers.
pub mod finalizers {
    pub const AUTOSCALING_RUNNER_SET: &str = "autoscalingrunnerset.actions.github.com/finalizer";
    pub const AUTOSCALING_LISTENER: &str = "autoscalinglistener.actions.github.com/finalizer";
    /// ARC master's ERS finalizer (the one rarc writes).
    pub const EPHEMERAL_RUNNER_SET: &str = "ephemeralrunnerset.actions.github.com/finalizer";
    /// ARC 0.14.2 put the ER string on ERS too; rarc removes it when it takes such an ERS over.
    pub const EPHEMERAL_RUNNER_SET_LEGACY: &str = "ephemeralrunner.actions.github.com/finalizer";
    pub const EPHEMERAL_RUNNER: &str = "ephemeralrunner.actions.github.com/finalizer";
    pub const EPHEMERAL_RUNNER_REGISTRATION: &str = "ephemeralrunner.actions.github.com/runner-registration-finalizer";
    /// Put on chart objects by Helm; removed by the controller when the ARS is deleted.
    pub const CLEANUP_PROTECTION: &str = "actions.github.com/cleanup-protection";
}
