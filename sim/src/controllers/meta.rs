//! Small accessors over objects held as JSON: metadata, owner references, label selectors,
//! resource quantities, pod readiness and timestamps in the precisions Kubernetes uses. Pure
//! functions only; every controller's decisions are built from these.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}
pub fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}
pub fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}
pub fn resource_version(o: &Value) -> &str {
    o["metadata"]["resourceVersion"].as_str().unwrap_or_default()
}
pub fn generation(o: &Value) -> i64 {
    o["metadata"]["generation"].as_i64().unwrap_or(0)
}
pub fn is_terminating(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].as_str().is_some_and(|s| !s.is_empty())
}
pub fn creation_timestamp(o: &Value) -> Option<DateTime<Utc>> {
    parse_time(o["metadata"]["creationTimestamp"].as_str()?)
}
pub fn labels(o: &Value) -> BTreeMap<String, String> {
    string_map(&o["metadata"]["labels"])
}
pub fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o["metadata"]["annotations"][key].as_str()
}
pub fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// `metadata.ownerReferences[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl OwnerReference {
    /// The reference a controller puts on what it creates (`controller` and
    /// `blockOwnerDeletion` both true).
    pub fn controller_of(owner: &Value) -> OwnerReference {
        OwnerReference {
            api_version: owner["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind: owner["kind"].as_str().unwrap_or_default().to_string(),
            name: name(owner).to_string(),
            uid: uid(owner).to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

pub fn owner_references(o: &Value) -> Vec<OwnerReference> {
    serde_json::from_value(o["metadata"]["ownerReferences"].clone()).unwrap_or_default()
}

pub fn controller_ref(o: &Value) -> Option<OwnerReference> {
    owner_references(o).into_iter().find(|r| r.controller == Some(true))
}

/// Whether `o` is controlled by the object with uid `owner_uid`.
pub fn is_controlled_by(o: &Value, owner_uid: &str) -> bool {
    controller_ref(o).is_some_and(|r| r.uid == owner_uid)
}

/// Whether `labels` satisfy a `metav1.LabelSelector` (matchLabels and matchExpressions). An
/// empty or missing selector matches nothing, as controllers treat it.
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = string_map(&selector["matchLabels"]);
    let expressions = selector["matchExpressions"].as_array().cloned().unwrap_or_default();
    if match_labels.is_empty() && expressions.is_empty() {
        return false;
    }
    if !match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    expressions.iter().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => labels.get(key).is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => !labels.get(key).is_some_and(|v| values.contains(&v.as_str())),
            "Exists" => labels.contains_key(key),
            "DoesNotExist" => !labels.contains_key(key),
            _ => false,
        }
    })
}

/// `app=demo,tier=web` for a selector's matchLabels (what list calls send).
pub fn selector_string(selector: &Value) -> String {
    string_map(&selector["matchLabels"]).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// CPU quantity in millicores (`100m`, `1`, `0.5`).
pub fn parse_cpu_millis(q: &str) -> Option<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as i64);
    }
    q.parse::<f64>().ok().map(|v| (v * 1000.0).ceil() as i64)
}

/// Memory (or any byte) quantity in bytes (`128Mi`, `1G`, `16393216Ki`, `1e3`).
pub fn parse_bytes(q: &str) -> Option<i64> {
    let q = q.trim();
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * factor).ceil() as i64);
        }
    }
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| (v / 1000.0).ceil() as i64);
    }
    q.parse::<f64>().ok().map(|v| v.ceil() as i64)
}

/// The sum of a pod's container requests: (cpu millicores, memory bytes).
pub fn pod_requests(pod: &Value) -> (i64, i64) {
    let mut cpu = 0;
    let mut memory = 0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let requests = &c["resources"]["requests"];
        cpu += requests["cpu"].as_str().and_then(parse_cpu_millis).unwrap_or(0);
        memory += requests["memory"].as_str().and_then(parse_bytes).unwrap_or(0);
    }
    (cpu, memory)
}

pub fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

/// The status and lastTransitionTime of a status condition.
pub fn condition<'a>(o: &'a Value, condition_type: &str) -> Option<&'a Value> {
    o["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == condition_type)
}

pub fn is_pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (the availability rule of ReplicaSets,
/// Deployments and StatefulSets).
pub fn is_pod_available(pod: &Value, min_ready_seconds: i64, now: DateTime<Utc>) -> bool {
    let Some(ready) = condition(pod, "Ready") else { return false };
    if ready["status"] != "True" {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready["lastTransitionTime"]
        .as_str()
        .and_then(parse_time)
        .is_some_and(|t| t + chrono::Duration::seconds(min_ready_seconds) <= now)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// `metav1.Time`: RFC 3339 with second precision (`2021-05-19T09:42:58Z`).
pub fn time_seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `metav1.MicroTime`: RFC 3339 with microseconds (`2021-05-19T09:42:58.638469Z`).
pub fn time_micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An `ObjectReference` to `o` as Events' `involvedObject`/`regarding` carry it.
pub fn object_reference(o: &Value) -> Value {
    json!({
        "apiVersion": o["apiVersion"],
        "kind": o["kind"],
        "name": name(o),
        "namespace": namespace(o),
        "resourceVersion": resource_version(o),
        "uid": uid(o),
    })
}

/// Resolves an `IntOrString` such as maxSurge (`25%` or `1`) against `total`, rounding up or
/// down as the Deployment rules require.
pub fn resolve_int_or_percent(v: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let raw = if v.is_null() { json!(default) } else { v.clone() };
    if let Some(i) = raw.as_i64() {
        return i.max(0);
    }
    let s = raw.as_str().unwrap_or(default);
    match s.strip_suffix('%').and_then(|p| p.trim().parse::<i64>().ok()) {
        Some(percent) => {
            let scaled = percent * total;
            if round_up { (scaled + 99) / 100 } else { scaled / 100 }
        }
        None => s.parse::<i64>().unwrap_or(0).max(0),
    }
}

/// Go's `time.Duration` String() rendering, as kubelet messages print durations
/// (`1.2s`, `870.196872ms`, `1m3.5s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos as f64 / 1e6));
    }
    let total_secs = nanos as f64 / 1e9;
    let hours = (total_secs / 3600.0).floor();
    let minutes = ((total_secs - hours * 3600.0) / 60.0).floor();
    let seconds = total_secs - hours * 3600.0 - minutes * 60.0;
    let mut out = String::new();
    if hours > 0.0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0.0 || minutes > 0.0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_fraction(seconds)));
    out
}

fn trim_fraction(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// Characters client-go uses for generated names and hashes (no vowels, no confusables).
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a 32-bit.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A stable hash of a pod template, rendered like pod-template-hash / controller-revision-hash
/// values: the FNV-32a hash's decimal digits mapped through the safe alphabet.
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut canonical = serde_json::to_vec(template).unwrap_or_default();
    if collision_count > 0 {
        canonical.extend_from_slice(collision_count.to_string().as_bytes());
    }
    let hash = fnv32a(&canonical);
    hash.to_string().bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// A random lowercase suffix from the safe alphabet.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len).map(|_| SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "demo".to_string())].into();
        assert!(selector_matches(&json!({"matchLabels": {"app": "demo"}}), &labels));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "other"}}), &labels));
        assert!(!selector_matches(&json!({}), &labels));
        assert!(selector_matches(&json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "demo"]}]}), &labels));
        assert!(!selector_matches(&json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}), &labels));
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_cpu_millis("100m"), Some(100));
        assert_eq!(parse_cpu_millis("2"), Some(2000));
        assert_eq!(parse_cpu_millis("0.5"), Some(500));
        assert_eq!(parse_bytes("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("16393216Ki"), Some(16393216 * 1024));
        assert_eq!(parse_bytes("junk"), None);
    }

    #[test]
    fn percentages_round_as_deployments_do() {
        assert_eq!(resolve_int_or_percent(&Value::Null, 2, true, "25%"), 1);
        assert_eq!(resolve_int_or_percent(&Value::Null, 2, false, "25%"), 0);
        assert_eq!(resolve_int_or_percent(&json!("50%"), 4, false, "25%"), 2);
        assert_eq!(resolve_int_or_percent(&json!(3), 4, false, "25%"), 3);
    }

    #[test]
    fn durations_print_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration(Duration::from_nanos(5_870_196_872)), "5.870196872s");
        assert_eq!(go_duration(Duration::from_micros(870_196)), "870.196ms");
        assert_eq!(go_duration(Duration::from_secs(63)), "1m3s");
    }

    #[test]
    fn timestamps_have_their_precisions() {
        let t = parse_time("2021-05-19T09:42:58.638469123Z").unwrap_or_default();
        assert_eq!(time_seconds(t), "2021-05-19T09:42:58Z");
        assert_eq!(time_micros(t), "2021-05-19T09:42:58.638469Z");
    }

    #[test]
    fn template_hashes_are_stable_and_safe() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "alpine:3.16"}]}}), 0);
        let b = template_hash(&json!({"spec": {"containers": [{"image": "alpine:3.17"}]}}), 0);
        assert_eq!(a, template_hash(&json!({"spec": {"containers": [{"image": "alpine:3.16"}]}}), 0));
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let now = parse_time("2024-01-01T00:00:05Z").unwrap_or_default();
        assert!(is_pod_available(&pod, 0, now));
        assert!(is_pod_available(&pod, 5, now));
        assert!(!is_pod_available(&pod, 6, now));
    }
}
