//! Generated names (arc-controller.md §3.1).

/// The alphabet of Kubernetes' `SafeEncodeString`: no vowels, no confusable characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv1a32(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Kubernetes' `SafeEncodeString`: each character mapped through the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.chars()
        .map(|c| char::from(SAFE_ALPHABET[(c as usize) % SAFE_ALPHABET.len()]))
        .collect()
}

/// ARC's short hash: FNV-1a 32 of the bytes, in decimal, safe-encoded, at most 8 characters.
pub fn hash8(s: &str) -> String {
    let mut encoded = safe_encode(&fnv1a32(s).to_string());
    encoded.truncate(8);
    encoded
}

/// A hash of arbitrary bytes, safe-encoded (for integrity annotations; only self-consistency matters).
pub fn content_hash(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    safe_encode(&h.to_string())
}

/// `<ars>-<hash8(ns@group@url)>-listener`: the AutoscalingListener, its pod, ServiceAccount,
/// Role and RoleBinding.
pub fn listener_name(ars_name: &str, ars_namespace: &str, runner_group: &str, config_url: &str) -> String {
    let hash = hash8(&format!("{ars_namespace}@{runner_group}@{config_url}"));
    format!("{ars_name}-{hash}-listener")
}

/// `<listener>-config`.
pub fn listener_config_secret_name(listener: &str) -> String {
    format!("{listener}-config")
}

/// `<listener>-proxy`.
pub fn listener_proxy_secret_name(listener: &str) -> String {
    format!("{listener}-proxy")
}

/// `<ers>-<hash8(ns)>-runner-proxy`.
pub fn runner_proxy_secret_name(ers_name: &str, namespace: &str) -> String {
    format!("{ers_name}-{}-runner-proxy", hash8(namespace))
}

/// The `generateName` of the EphemeralRunners of an ERS.
pub fn runner_generate_name(ers_name: &str) -> String {
    format!("{ers_name}-runner-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash8_matches_arcs_vectors() {
        assert_eq!(hash8("arc-runners"), "754b578d");
        assert_eq!(hash8("default"), "68c4584d");
        assert_eq!(hash8("arc-runners@@https://github.com/my-org"), "56b4bcfc");
        assert_eq!(hash8("arc-runners@default@https://github.com/my-org"), "bb9db77b");
    }

    #[test]
    fn listener_name_fits_63_with_a_45_character_set_name() {
        let ars = "a".repeat(45);
        let name = listener_name(&ars, "arc-runners", "", "https://github.com/my-org");
        assert_eq!(name, format!("{ars}-56b4bcfc-listener"));
        assert_eq!(name.len(), 63);
    }

    #[test]
    fn runner_names() {
        assert_eq!(
            runner_proxy_secret_name("set", "arc-runners"),
            "set-754b578d-runner-proxy"
        );
        assert_eq!(runner_generate_name("set"), "set-runner-");
        assert_eq!(listener_config_secret_name("l"), "l-config");
        assert_eq!(listener_proxy_secret_name("l"), "l-proxy");
    }
}
