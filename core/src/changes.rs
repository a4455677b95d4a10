//! The record of one observed object change as receivers store it in the cache and joiners
//! read it back: keyed by the object and by the resourceVersion it produced (`new`) and the one
//! it started from (`old`). Only the format and the keys live here, no I/O.

use serde::{Deserialize, Serialize};

use crate::activity::{Change, Nanos};
use crate::cache::CacheKey;
use crate::object::ObjectKey;

/// Default time a stored change stays joinable.
pub const DEFAULT_CHANGE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// One change between two versions of an object, or a creation/deletion snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredChange {
    /// Empty for a creation.
    pub old_resource_version: String,
    pub new_resource_version: String,
    /// When the watcher saw it.
    pub observed_at: Nanos,
    pub change: Change,
    /// The object's uid, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Cache key of the change that produced `resource_version`.
pub fn key_by_new(object: &ObjectKey, resource_version: &str) -> CacheKey {
    CacheKey::new(object.encode(), format!("change/new/{resource_version}"))
}

/// Cache key of the change that started from `resource_version`.
pub fn key_by_old(object: &ObjectKey, resource_version: &str) -> CacheKey {
    CacheKey::new(object.encode(), format!("change/old/{resource_version}"))
}

/// Cache key of the deletion snapshot of an object.
pub fn key_of_deletion(object: &ObjectKey) -> CacheKey {
    CacheKey::new(object.encode(), "change/deletion")
}

/// Cache key of the creation snapshot of an object.
pub fn key_of_creation(object: &ObjectKey) -> CacheKey {
    CacheKey::new(object.encode(), "change/creation")
}

/// Cache key of what the watcher last knew of an object (owners, for linkers).
pub fn key_of_meta(object: &ObjectKey) -> CacheKey {
    CacheKey::new(object.encode(), "meta")
}

/// What linkers may read about an object without calling the API server: its controller
/// owner and the fields link rules look at, as the watcher last saw them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The controller owner reference (`apiVersion`, `kind`, `name`, `uid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::DiffEntry;

    #[test]
    fn keys_group_by_object_and_name_the_version() {
        let k = ObjectKey::new("c", "apps", "deployments", "default", "demo");
        assert_eq!(key_by_new(&k, "7").object, k.encode());
        assert_eq!(key_by_new(&k, "7").entry, "change/new/7");
        assert_eq!(key_by_old(&k, "6").entry, "change/old/6");
        let rec = StoredChange {
            old_resource_version: "6".into(),
            new_resource_version: "7".into(),
            observed_at: 1,
            change: Change::Diff {
                entries: vec![DiffEntry { path: "spec.replicas".into(), old: Some(2.into()), new: Some(4.into()), verbose: false }],
            },
            uid: None,
        };
        let back: StoredChange = serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);
    }
}
