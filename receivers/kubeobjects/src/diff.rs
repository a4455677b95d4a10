//! Structured diffs between two versions of an object, as JSON paths with old and new values
//! (`spec.replicas 2 -> 4`, `metadata.labels["app.kubernetes.io/name"]`), and the redaction
//! that keeps secret values out of them. Pure functions over `serde_json::Value`; no I/O.
//! `metadata.managedFields` is never compared: it changes on every write and says nothing a
//! reader of the diff wants.

use kausal_core::activity::DiffEntry;
use serde_json::{Map, Value};

/// How values of an object may appear in diffs and snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redaction {
    /// Values shown.
    None,
    /// Changed paths shown, values never (objects matching a pattern or labelled
    /// `kausal.io/redact`).
    Values,
}

/// Bookkeeping paths whose changes are marked verbose.
const VERBOSE_PATHS: &[&str] = &["metadata.resourceVersion", "metadata.generation"];

/// Paths never compared.
const IGNORED_PATHS: &[&str] = &["metadata.managedFields"];

/// Appends one key to a path: `spec.replicas`, or `metadata.labels["app.kubernetes.io/name"]`
/// when the key is not a plain identifier.
pub fn push_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{path}[{quoted}]")
    }
}

fn push_index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The differences between `old` and `new`, in path order. Arrays of equal length are compared
/// element by element; arrays whose length changed are reported as one entry.
pub fn diff(old: &Value, new: &Value, redaction: Redaction) -> Vec<DiffEntry> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    for e in &mut out {
        e.verbose = VERBOSE_PATHS.contains(&e.path.as_str());
        if redaction == Redaction::Values && !e.verbose {
            e.old = None;
            e.new = None;
        }
    }
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<DiffEntry>) {
    if IGNORED_PATHS.contains(&path) || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => walk_maps(path, a, b, out),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&push_index(path, i), x, y, out);
            }
        }
        _ => out.push(DiffEntry {
            path: path.to_string(),
            old: Some(old.clone()).filter(|v| !v.is_null()),
            new: Some(new.clone()).filter(|v| !v.is_null()),
            verbose: false,
        }),
    }
}

fn walk_maps(path: &str, a: &Map<String, Value>, b: &Map<String, Value>, out: &mut Vec<DiffEntry>) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
    keys.sort();
    for k in keys {
        let p = push_key(path, k);
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => walk(&p, x, y, out),
            (Some(x), None) => {
                if !IGNORED_PATHS.contains(&p.as_str()) {
                    out.push(DiffEntry { path: p, old: Some(x.clone()), new: None, verbose: false });
                }
            }
            (None, Some(y)) => {
                if !IGNORED_PATHS.contains(&p.as_str()) {
                    out.push(DiffEntry { path: p, old: None, new: Some(y.clone()), verbose: false });
                }
            }
            (None, None) => {}
        }
    }
}

/// Whether the object is a core/v1 Secret (by group and resource).
pub fn is_secret(group: &str, resource: &str) -> bool {
    group.is_empty() && resource == "secrets"
}

/// Whether the object asks for redaction by label.
pub fn labelled_redact(object: &Value) -> bool {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|l| l.contains_key(REDACT_LABEL))
}

/// Label that asks kausal to record changed paths without values.
pub const REDACT_LABEL: &str = "kausal.io/redact";

/// Placeholder that replaces every redacted value.
pub const REDACTED: &str = "<redacted>";

/// Makes an object safe to keep and to diff: drops `metadata.managedFields`; for Secrets,
/// replaces each `data`/`stringData` value by a fingerprint (`seed` is process-local and
/// random, so the fingerprint only tells equal from different within this process and is never
/// shown: [`diff`] callers redact Secret diffs). The result is what is stored and compared.
pub fn sanitize(mut object: Value, secret: bool, seed: u64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if secret && let Some(map) = object.as_object_mut() {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(values)) = map.get_mut(field) {
                for v in values.values_mut() {
                    let text = v.to_string();
                    *v = Value::String(format!("fp:{:016x}", xxh(seed, text.as_bytes())));
                }
            }
        }
    }
    object
}

/// Hides every value of an object that is to be shown redacted: keeps identity metadata
/// (name, namespace, uid, resourceVersion, generation, creation/deletion timestamps, owners,
/// labels) and replaces every other leaf by [`REDACTED`].
pub fn redact_snapshot(object: &Value) -> Value {
    const KEEP: &[&str] = &[
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "ownerReferences",
        "labels",
    ];
    let mut out = Map::new();
    if let Some(map) = object.as_object() {
        for (k, v) in map {
            let redacted = match k.as_str() {
                "apiVersion" | "kind" => v.clone(),
                "metadata" => match v.as_object() {
                    Some(meta) => Value::Object(
                        meta.iter()
                            .map(|(mk, mv)| {
                                let keep = KEEP.contains(&mk.as_str());
                                (mk.clone(), if keep { mv.clone() } else { hide(mv) })
                            })
                            .collect(),
                    ),
                    None => hide(v),
                },
                _ => hide(v),
            };
            out.insert(k.clone(), redacted);
        }
    }
    Value::Object(out)
}

fn hide(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), hide(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(hide).collect()),
        _ => Value::String(REDACTED.to_string()),
    }
}

/// 64-bit FNV-1a over the seed and the bytes; only used for in-process equality of secrets.
fn xxh(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(entries: &[DiffEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let show = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_else(|| "<none>".into());
                format!("{} {} -> {}{}", e.path, show(&e.old), show(&e.new), if e.verbose { " (verbose)" } else { "" })
            })
            .collect()
    }

    #[test]
    fn scale_diff_reads_like_kubectl_paths() {
        let old = json!({"metadata":{"name":"demo","resourceVersion":"10","generation":1,
            "labels":{"app.kubernetes.io/name":"demo"},
            "managedFields":[{"manager":"kubectl"}]},
            "spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"a","image":"alpine:3.16"}]}}}});
        let new = json!({"metadata":{"name":"demo","resourceVersion":"12","generation":2,
            "labels":{"app.kubernetes.io/name":"demo2"},
            "managedFields":[{"manager":"kubectl-scale"}]},
            "spec":{"replicas":4,"template":{"spec":{"containers":[{"name":"a","image":"alpine:3.17"}]}}}});
        assert_eq!(
            lines(&diff(&old, &new, Redaction::None)),
            vec![
                r#"metadata.generation 1 -> 2 (verbose)"#,
                r#"metadata.labels["app.kubernetes.io/name"] "demo" -> "demo2""#,
                r#"metadata.resourceVersion "10" -> "12" (verbose)"#,
                r#"spec.replicas 2 -> 4"#,
                r#"spec.template.spec.containers[0].image "alpine:3.16" -> "alpine:3.17""#,
            ]
        );
    }

    #[test]
    fn added_removed_and_resized_paths() {
        let old = json!({"a":{"x":1},"list":[1,2]});
        let new = json!({"a":{"y":2},"list":[1,2,3]});
        assert_eq!(lines(&diff(&old, &new, Redaction::None)), vec!["a.x 1 -> <none>", "a.y <none> -> 2", "list [1,2] -> [1,2,3]"]);
    }

    #[test]
    fn redaction_keeps_paths_and_drops_values() {
        let old = json!({"spec":{"password":"hunter2"}});
        let new = json!({"spec":{"password":"hunter3"}});
        let d = diff(&old, &new, Redaction::Values);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].path.as_str(), d[0].old.is_none(), d[0].new.is_none()), ("spec.password", true, true));
    }

    #[test]
    fn secrets_are_fingerprinted_and_snapshots_hidden() {
        let s1 = sanitize(json!({"kind":"Secret","metadata":{"name":"s","managedFields":[]},"data":{"k":"c2VjcmV0"}}), true, 7);
        let s2 = sanitize(json!({"kind":"Secret","metadata":{"name":"s"},"data":{"k":"b3RoZXI="}}), true, 7);
        assert!(!s1.to_string().contains("c2VjcmV0"));
        assert!(s1.pointer("/metadata/managedFields").is_none());
        let d = diff(&s1, &s2, Redaction::Values);
        assert_eq!(d.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), vec!["data.k"]);
        let snap = redact_snapshot(&json!({"kind":"Secret","metadata":{"name":"s","annotations":{"a":"b"}},"data":{"k":"c2VjcmV0"}}));
        assert_eq!(snap.pointer("/metadata/name"), Some(&json!("s")));
        assert_eq!(snap.pointer("/data/k"), Some(&json!(REDACTED)));
        assert_eq!(snap.pointer("/metadata/annotations/a"), Some(&json!(REDACTED)));
    }

    #[test]
    fn keys_are_quoted_when_not_identifiers() {
        assert_eq!(push_key("", "spec"), "spec");
        assert_eq!(push_key("metadata.labels", "app.kubernetes.io/name"), r#"metadata.labels["app.kubernetes.io/name"]"#);
        assert_eq!(push_key("a", "0x"), r#"a["0x"]"#);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i32>().prop_map(Value::from), "[a-z]{0,3}".prop_map(Value::from)];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z./]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn equal_values_have_no_diff(v in value()) {
                prop_assert!(diff(&v, &v, Redaction::None).is_empty());
            }

            #[test]
            fn different_values_have_a_diff_and_paths_are_unique(a in value(), b in value()) {
                let d = diff(&a, &b, Redaction::None);
                prop_assert_eq!(d.is_empty(), a == b);
                let mut paths: Vec<&str> = d.iter().map(|e| e.path.as_str()).collect();
                let n = paths.len();
                paths.sort();
                paths.dedup();
                prop_assert_eq!(paths.len(), n);
            }

            #[test]
            fn redacted_diffs_carry_no_values(a in value(), b in value()) {
                for e in diff(&a, &b, Redaction::Values) {
                    prop_assert!(e.verbose || (e.old.is_none() && e.new.is_none()));
                }
            }
        }
    }
}
