//! Names, labels and image references (`container-hooks.md` §3.1, §3.2): pure functions.

/// The instance label: the lowercase hex of the UTF-8 bytes of `RUNNER_NAME` (`test` →
/// `74657374`), used as a bare label key (empty value) on everything the hook creates.
pub fn instance_label(runner_name: &str) -> String {
    runner_name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The reference's `sanitize`: ASCII letters, digits and `_` only, starting with a letter
/// (`ubuntu:latest` → `ubuntulatest`, `ghcr.io/o/my_img:1` → `ghcrioomy_img1`).
pub fn sanitize(image: &str) -> String {
    image
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .skip_while(|c| !c.is_ascii_alphabetic())
        .collect()
}

/// Longest sanitized image part kept in a container name.
const MAX_IMAGE_PART: usize = 64;

/// A job or service container name: `<uuid hex32>_<sanitized image>_<6 hex>` (the reference's
/// shape). It matches Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+` for any image reference.
pub fn container_name(image: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let mut image = sanitize(image);
    image.truncate(MAX_IMAGE_PART);
    if image.is_empty() {
        format!("{id}_{suffix}")
    } else {
        format!("{id}_{image}_{suffix}")
    }
}

/// The job network's name: `github_network_<uuid v4>`.
pub fn network_name() -> String {
    format!("github_network_{}", uuid::Uuid::new_v4())
}

/// The tag of an image built for a Dockerfile container step: `<label>:<6 hex>`.
pub fn step_image_tag(label: &str) -> String {
    format!("{label}:{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// The parts of an image reference: repository (with registry), tag, digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Splits `[registry[:port]/]path[:tag][@digest]`.
pub fn parse_image(image: &str) -> ImageRef<'_> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => ImageRef {
            repository: &rest[..last_slash + i],
            tag: Some(&rest[last_slash + i + 1..]),
            digest,
        },
        None => ImageRef {
            repository: rest,
            tag: None,
            digest,
        },
    }
}

/// The tag to ask the daemon for when pulling `image`: `latest` when the reference has neither a
/// tag nor a digest (without one, the Engine API pulls every tag of the repository).
pub fn pull_tag(image: &str) -> Option<&'static str> {
    let r = parse_image(image);
    (r.tag.is_none() && r.digest.is_none()).then_some("latest")
}

/// A network alias derived from an image (`redis:7` → `redis`, `ghcr.io/o/my-db:1` → `my-db`): the
/// last path segment of the repository, lowercased, with characters a DNS name cannot have
/// dropped. `None` when nothing usable is left.
pub fn image_alias(image: &str) -> Option<String> {
    let repository = parse_image(image).repository;
    let last = repository.rsplit('/').next().unwrap_or(repository);
    dns_label(last)
}

/// `name` as a DNS label (lowercase letters, digits, `-`), or `None`.
pub fn dns_label(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let trimmed = cleaned.trim_matches('-');
    (!trimmed.is_empty()).then(|| trimmed.chars().take(63).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_the_hex_of_the_runner_name() {
        assert_eq!(instance_label("test"), "74657374");
        assert_eq!(instance_label("Runner 1"), "52756e6e65722031");
        assert_eq!(instance_label("é"), "c3a9");
        assert_eq!(instance_label(""), "");
    }

    #[test]
    fn sanitize_like_the_reference() {
        assert_eq!(sanitize("ubuntu:latest"), "ubuntulatest");
        assert_eq!(sanitize("ghcr.io/o/my_img:1"), "ghcrioomy_img1");
        assert_eq!(sanitize("1.2/_x-y"), "xy");
        assert_eq!(sanitize("127.0.0.1:5000/9"), "");
    }

    fn valid_docker_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && name.len() > 1
    }

    #[test]
    fn container_names_are_valid_for_any_image() {
        for image in [
            "redis",
            "my_registry:5000/a_b/c_d:1.0_rc",
            "127.0.0.1:5000/9",
            "@sha256:abc",
            "",
            "x".repeat(300).as_str(),
            "ünïcödé/ïmage",
        ] {
            let name = container_name(image);
            assert!(valid_docker_name(&name), "{image:?} → {name:?}");
            assert!(name.len() <= 32 + 1 + MAX_IMAGE_PART + 1 + 6, "{name}");
        }
        assert!(container_name("redis:7").contains("_redis7_"));
        assert_ne!(container_name("redis"), container_name("redis"));
    }

    #[test]
    fn image_references() {
        let r = parse_image("127.0.0.1:5000/a/b:1.2@sha256:ff");
        assert_eq!(r.repository, "127.0.0.1:5000/a/b");
        assert_eq!(r.tag, Some("1.2"));
        assert_eq!(r.digest, Some("sha256:ff"));
        let r = parse_image("127.0.0.1:5000/a/b");
        assert_eq!((r.repository, r.tag), ("127.0.0.1:5000/a/b", None));
        assert_eq!(pull_tag("redis"), Some("latest"));
        assert_eq!(pull_tag("localhost:5000/redis"), Some("latest"));
        assert_eq!(pull_tag("redis:7"), None);
        assert_eq!(pull_tag("redis@sha256:ab"), None);
    }

    #[test]
    fn aliases() {
        assert_eq!(image_alias("redis:7").as_deref(), Some("redis"));
        assert_eq!(image_alias("ghcr.io/o/My_DB:1").as_deref(), Some("my-db"));
        assert_eq!(image_alias("127.0.0.1:5000/x/postgres").as_deref(), Some("postgres"));
        assert_eq!(image_alias("___"), None);
        assert_eq!(dns_label("web.server").as_deref(), Some("web-server"));
        assert_eq!(dns_label(&"a".repeat(100)).map(|s| s.len()), Some(63));
    }

    #[test]
    fn other_names() {
        let net = network_name();
        assert!(net.starts_with("github_network_") && net.len() == "github_network_".len() + 36);
        let tag = step_image_tag("74657374");
        assert!(tag.starts_with("74657374:") && tag.len() == 9 + 6, "{tag}");
    }
}
