//! The committed CRD manifests are exactly what the types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let update = std::env::var_os("RARC_UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for (file, yaml) in rarc_crd::crds_yaml() {
        let path = dir.join(&file);
        if update {
            std::fs::write(&path, &yaml).expect("write CRD");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != yaml {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "crates/crd/crds/{stale:?} differ from the types: run `RARC_UPDATE_CRDS=1 cargo test -p rarc-crd --test crds` and commit"
    );
}

#[test]
fn every_crd_has_the_status_subresource_and_one_served_storage_version() {
    for crd in rarc_crd::crds() {
        assert!(rarc_crd::CRD_NAMES.contains(&crd.metadata.name.as_deref().unwrap_or("")));
        assert_eq!(crd.spec.group, "actions.github.com");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(
            v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{}",
            crd.spec.names.kind
        );
    }
}
