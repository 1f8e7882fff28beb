//! Where objects live in the store: `/registry/{group}/{plural}/{namespace}/{name}` for
//! namespaced resources and `/registry/{group}/{plural}/{name}` for cluster-scoped ones,
//! with `core` standing for the empty core group so that no key has an empty segment.
//!
//! Every prefix ends in `/`, so a range over namespace `default` never picks up keys of a
//! namespace `default2`.

use crate::catalog::Resource;

fn group_segment(res: &Resource) -> &str {
    if res.group.is_empty() {
        "core"
    } else {
        &res.group
    }
}

/// Every object of `res`, in every namespace.
pub fn resource_prefix(res: &Resource) -> String {
    format!("/registry/{}/{}/", group_segment(res), res.plural)
}

/// The objects of `res` in `namespace`, or in all namespaces (`None`, or a cluster-scoped
/// resource).
pub fn collection_prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced && !ns.is_empty() => {
            format!("{}{ns}/", resource_prefix(res))
        }
        _ => resource_prefix(res),
    }
}

/// The key of one object (`namespace` is ignored for cluster-scoped resources).
pub fn object_key(res: &Resource, namespace: &str, name: &str) -> String {
    if res.namespaced {
        format!("{}{namespace}/{name}", resource_prefix(res))
    } else {
        format!("{}{name}", resource_prefix(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn keys_have_no_empty_segments() {
        let c = Catalog::builtin();
        let cm = c.lookup("", "v1", "configmaps").unwrap();
        assert_eq!(
            object_key(&cm, "default", "a"),
            "/registry/core/configmaps/default/a"
        );
        assert_eq!(
            collection_prefix(&cm, Some("default")),
            "/registry/core/configmaps/default/"
        );
        assert_eq!(collection_prefix(&cm, None), "/registry/core/configmaps/");
        let ns = c.lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            object_key(&ns, "ignored", "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        let d = c.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(object_key(&d, "x", "y"), "/registry/apps/deployments/x/y");
    }
}
