//! Label propagation (arc-controller.md §3.2): the URL labels, excluded prefixes, and the rule
//! that reserved keys win over user metadata.

use std::collections::BTreeMap;

use rarc_actions::{GitHubConfig, Scope};
use rarc_crd::keys::labels as l;

/// A label map.
pub type Labels = BTreeMap<String, String>;

/// A label value from a URL part: trimmed of `-_.`, and if longer than 63 cut to 58 + `-trim`.
pub fn url_label_value(part: &str) -> String {
    let v = part.trim_matches(|c| c == '-' || c == '_' || c == '.');
    if v.len() > 63 {
        let cut: String = v.chars().take(58).collect();
        format!("{cut}-trim")
    } else {
        v.to_owned()
    }
}

/// `actions.github.com/{enterprise,organization,repository}` from a configure URL (empty when it
/// does not parse).
pub fn url_labels(config_url: &str) -> Labels {
    let mut out = Labels::new();
    let Ok(config) = GitHubConfig::parse(config_url) else {
        return out;
    };
    let (enterprise, org, repo) = match &config.scope {
        Scope::Enterprise { enterprise } => (enterprise.as_str(), "", ""),
        Scope::Organization { org } => ("", org.as_str(), ""),
        Scope::Repository { owner, repo } => ("", owner.as_str(), repo.as_str()),
    };
    out.insert(l::ENTERPRISE.into(), url_label_value(enterprise));
    out.insert(l::ORGANIZATION.into(), url_label_value(org));
    out.insert(l::REPOSITORY.into(), url_label_value(repo));
    out
}

/// Removes every key starting with one of `prefixes`.
pub fn exclude(mut labels: Labels, prefixes: &[String]) -> Labels {
    labels.retain(|k, _| !prefixes.iter().any(|p| !p.is_empty() && k.starts_with(p.as_str())));
    labels
}

/// `base` overwritten by `reserved`, with `user` keys added only where neither has them; then
/// `prefixes` excluded.
pub fn merge(base: &Labels, reserved: Labels, user: &Labels, prefixes: &[String]) -> Labels {
    let mut out = base.clone();
    out.extend(reserved);
    for (k, v) in user {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    exclude(out, prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_labels_of_each_scope() {
        let o = url_labels("https://github.com/my-org");
        assert_eq!(o[l::ORGANIZATION], "my-org");
        assert_eq!(o[l::REPOSITORY], "");
        let r = url_labels("https://ghe.example/owner/_repo.");
        assert_eq!(
            (
                o[l::ENTERPRISE].as_str(),
                r[l::ORGANIZATION].as_str(),
                r[l::REPOSITORY].as_str()
            ),
            ("", "owner", "repo")
        );
        let e = url_labels("https://github.com/enterprises/ent");
        assert_eq!(e[l::ENTERPRISE], "ent");
        assert!(url_labels("not a url").is_empty());
    }

    #[test]
    fn long_values_are_trimmed_to_63() {
        let v = url_label_value(&"x".repeat(70));
        assert_eq!(v.len(), 63);
        assert!(v.ends_with("-trim"));
    }

    #[test]
    fn reserved_keys_win_and_prefixes_are_excluded() {
        let base: Labels = [
            ("a".into(), "1".into()),
            ("argocd.argoproj.io/instance".into(), "x".into()),
        ]
        .into();
        let reserved: Labels = [(l::COMPONENT.into(), "runner-set".into())].into();
        let user: Labels = [(l::COMPONENT.into(), "mine".into()), ("u".into(), "2".into())].into();
        let out = merge(&base, reserved, &user, &["argocd.argoproj.io/".into()]);
        assert_eq!(out[l::COMPONENT], "runner-set");
        assert_eq!(out["u"], "2");
        assert_eq!(out["a"], "1");
        assert!(!out.contains_key("argocd.argoproj.io/instance"));
    }
}
