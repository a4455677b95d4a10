//! The placement decision, pure over activities with time passed in: which activity caused each
//! Event. Activities are held for a bounded time after they arrive so that a cause arriving
//! late (watches and recorders deliver out of order) is still found; placement looks only at
//! timestamps and content, never at arrival order, so any order of the same activities gives
//! the same tree once they are all held. Object state (owners, `managedFields`, annotations)
//! comes from what passes through — never from a call to the API server.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use kausal_core::activity::{Activity, ActivityDetail, Cause, Change, ChangeActivity, LinkRole, Nanos, nanos_of};
use kausal_core::object::{ObjectKey, ObjectRef, resource_of};
use serde_json::Value;

use crate::config::CausalConfig;
use crate::pattern::{Effect, Pattern};

/// How many owners up an owner walk goes (guards against cycles too).
const MAX_OWNER_DEPTH: usize = 8;

/// What is remembered of one activity as a possible cause.
#[derive(Clone, Debug)]
struct Known {
    object: ObjectRef,
    start: Nanos,
    identity: String,
    what: KnownKind,
}

#[derive(Clone, Debug)]
enum KnownKind {
    /// A Kubernetes Event, with the child it reports on when it matches a pattern.
    Event { reports: Option<(ObjectKey, Effect)>, source: String, trigger: bool },
    /// A write request (not a read, not a status update).
    AuditWrite { user: String, user_agent: String, spec: bool },
    /// Anything else that happened to the object (reads, status writes, observed changes).
    Other,
}

impl Known {
    fn cause(&self) -> Cause {
        Cause::Activity { object: self.object.clone(), start: self.start, identity: self.identity.clone() }
    }
}

/// A spec write known only from `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SpecWrite {
    time: Nanos,
    manager: String,
    operation: String,
}

/// What passing activities taught about one object.
#[derive(Clone, Debug, Default)]
struct ObjectInfo {
    object: Option<ObjectRef>,
    owner: Option<ObjectRef>,
    spec_writes: BTreeSet<SpecWrite>,
    traceparent: Option<(String, String)>,
    trace_start: bool,
}

pub struct CausalPlacer {
    patterns: Vec<Pattern>,
    teardown: HashSet<String>,
    trigger_reasons: HashSet<String>,
    trigger_delay: Nanos,
    traceparent_annotations: Vec<String>,
    trace_start_annotations: Vec<String>,
    buffer: Nanos,
    tolerance: Nanos,
    horizon: Nanos,
    max_known: usize,
    objects: HashMap<ObjectKey, ObjectInfo>,
    /// Possible causes by object, in arrival order.
    by_object: HashMap<ObjectKey, Vec<Known>>,
    /// Parent-reports-child Events by the child they name.
    reports: HashMap<ObjectKey, Vec<(Known, Effect)>>,
    /// Arrival order of everything known, for forgetting the oldest.
    order: VecDeque<(ObjectKey, Nanos)>,
    /// Held activities with their arrival time.
    pending: Vec<(Nanos, Activity)>,
    /// Identities of roots synthesised from managedFields and already handed on.
    synthesized: HashSet<String>,
    newest: Nanos,
}

fn nanos(d: std::time::Duration) -> Nanos {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl CausalPlacer {
    pub fn new(config: &CausalConfig) -> Result<CausalPlacer, String> {
        Ok(CausalPlacer {
            patterns: config.compiled_patterns()?,
            teardown: config.teardown_reasons.iter().cloned().collect(),
            trigger_reasons: config.trigger_reasons.iter().cloned().collect(),
            trigger_delay: nanos(config.trigger_delay),
            traceparent_annotations: config.traceparent_annotations.clone(),
            trace_start_annotations: config.trace_start_annotations.clone(),
            buffer: nanos(config.buffer),
            tolerance: nanos(config.tolerance),
            horizon: nanos(config.horizon),
            max_known: config.max_activities.max(1),
            objects: HashMap::new(),
            by_object: HashMap::new(),
            reports: HashMap::new(),
            order: VecDeque::new(),
            pending: Vec::new(),
            synthesized: HashSet::new(),
            newest: i64::MIN,
        })
    }

    /// Number of activities held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Takes in one activity that arrived at `now`: learns from it at once, places it later.
    pub fn push(&mut self, activity: Activity, now: Nanos) {
        self.learn(&activity);
        self.remember(&activity);
        self.newest = self.newest.max(activity.start);
        self.pending.push((now, activity));
    }

    /// Activities held at least the buffer time by `now`, placed, oldest first; roots
    /// synthesised for them come just before the first activity that needs them.
    pub fn release(&mut self, now: Nanos) -> Vec<Activity> {
        let (mut due, mut held): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(arrived, _)| arrived.saturating_add(self.buffer) <= now);
        // The hold is bounded too: beyond the size bound the earliest arrivals go out early.
        if held.len() > self.max_known {
            held.sort_by_key(|(arrived, _)| *arrived);
            let keep = held.split_off(held.len() - self.max_known);
            due.append(&mut held);
            held = keep;
        }
        self.pending = held;
        self.place(due.into_iter().map(|(_, a)| a).collect())
    }

    /// Places everything held, whatever its age (shutdown, end of a replay).
    pub fn flush(&mut self) -> Vec<Activity> {
        let all = std::mem::take(&mut self.pending).into_iter().map(|(_, a)| a).collect();
        self.place(all)
    }

    fn place(&mut self, mut activities: Vec<Activity>) -> Vec<Activity> {
        activities.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.span_identity().cmp(&b.span_identity())));
        let mut out = Vec::with_capacity(activities.len());
        for mut a in activities {
            if a.cause.is_none() {
                let (cause, root) = self.cause_of(&a);
                if let Some(root) = root
                    && self.synthesized.insert(root.span_identity())
                {
                    out.push(root);
                }
                a.cause = cause;
            }
            // An Event lasts until the next thing happens to its object (a FailedScheduling
            // until the Scheduled), whatever its own series says.
            if matches!(a.detail, ActivityDetail::Event(_))
                && let Some(next) = self.next_on(&a.object.key, a.start, &a.span_identity())
            {
                a.end = next;
            }
            out.push(a);
        }
        self.forget();
        out
    }

    /// Start of the next activity (other than observations) on `key` after `start`.
    fn next_on(&self, key: &ObjectKey, start: Nanos, identity: &str) -> Option<Nanos> {
        self.by_object
            .get(key)?
            .iter()
            .filter(|k| k.start > start && k.identity != identity && !matches!(k.what, KnownKind::Other))
            .map(|k| k.start)
            .min()
    }

    /// The cause of `a`, and a root to synthesise when the cause is a write known only from
    /// managedFields.
    fn cause_of(&self, a: &Activity) -> (Option<Cause>, Option<Activity>) {
        let ActivityDetail::Event(event) = &a.detail else {
            // Requests and changes are causes, not effects, unless an annotation says whose.
            return (self.remote_parent(&a.object.key), None);
        };
        let key = &a.object.key;
        let t = a.start;
        let own_identity = a.span_identity();
        let teardown = self.teardown.contains(&event.reason)
            || self.reported_child(&event.source, &event.message, key).is_some_and(|(_, e)| e == Effect::Delete);

        // 1. A report by the parent that names this object.
        if let Some(k) = self.report_naming(key, teardown, t, &own_identity) {
            return (Some(k.cause()), None);
        }
        // 2. A write by the acting controller to this object, then to its owners.
        let mut chain = vec![key.clone()];
        chain.extend(self.owners(key));
        for k in &chain {
            if let Some(w) = self.controller_write(k, &event.source, t) {
                return (Some(w.cause()), None);
            }
        }
        // 3. What triggered this object or, up the owners, the nearest one that was triggered
        //    or reported on.
        for (depth, k) in chain.iter().enumerate() {
            if depth > 0
                && let Some(r) = self.report_naming(k, teardown, t, &own_identity)
            {
                return (Some(r.cause()), None);
            }
            if let Some(found) = self.trigger(k, &event.source, t) {
                return found;
            }
        }
        (self.remote_parent(key), None)
    }

    /// The owners of `key`, nearest first, stopping at an object that starts its own trace.
    fn owners(&self, key: &ObjectKey) -> Vec<ObjectKey> {
        let mut out: Vec<ObjectKey> = Vec::new();
        let mut cur = key.clone();
        while out.len() < MAX_OWNER_DEPTH {
            let Some(info) = self.objects.get(&cur) else { break };
            if info.trace_start {
                break;
            }
            let Some(owner) = &info.owner else { break };
            if owner.key == *key || out.contains(&owner.key) {
                break;
            }
            out.push(owner.key.clone());
            cur = owner.key.clone();
        }
        out
    }

    /// The report naming `child` that fits an Event at `t`: of the matching effect when there
    /// is one, the latest at or before `t`, else the earliest within the tolerance after it.
    fn report_naming(&self, child: &ObjectKey, teardown: bool, t: Nanos, own_identity: &str) -> Option<&Known> {
        let all = self.reports.get(child)?;
        let wanted = if teardown { Effect::Delete } else { Effect::Create };
        let fitting: Vec<&Known> = all.iter().filter(|(_, e)| *e == wanted).map(|(k, _)| k).collect();
        let candidates: Vec<&Known> =
            if fitting.is_empty() { all.iter().map(|(k, _)| k).collect() } else { fitting };
        let candidates = candidates.into_iter().filter(|k| k.identity != own_identity);
        let before = candidates
            .clone()
            .filter(|k| k.start <= t && k.start >= t.saturating_sub(self.horizon))
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)));
        before.or_else(|| {
            candidates
                .filter(|k| k.start > t && k.start <= t.saturating_add(self.tolerance))
                .min_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)))
        })
    }

    /// The latest write to `key` by the component `source` (matched against the user name and
    /// user agent), at most the tolerance after `t`.
    fn controller_write(&self, key: &ObjectKey, source: &str, t: Nanos) -> Option<&Known> {
        if source.is_empty() {
            return None;
        }
        self.by_object
            .get(key)?
            .iter()
            .filter(|k| match &k.what {
                KnownKind::AuditWrite { user, user_agent, .. } => acts_as(user, user_agent, source),
                _ => false,
            })
            .filter(|k| k.start <= t.saturating_add(self.tolerance) && k.start >= t.saturating_sub(self.horizon))
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)))
    }

    /// The newest spec write to `key` at most the tolerance after `t`, by anyone but the
    /// acting component and other system users: an observed request if there is one at least as new as what
    /// managedFields say, else a root synthesised from managedFields.
    fn trigger(&self, key: &ObjectKey, source: &str, t: Nanos) -> Option<(Option<Cause>, Option<Activity>)> {
        let limit = t.saturating_add(self.tolerance);
        let observed = self
            .by_object
            .get(key)
            .into_iter()
            .flatten()
            .filter(|k| match &k.what {
                // Controllers' own writes (service accounts, system users) react; they do not
                // trigger.
                KnownKind::AuditWrite { user, user_agent, spec } => {
                    *spec && !acts_as(user, user_agent, source) && !user.starts_with("system:")
                }
                _ => false,
            })
            .filter(|k| k.start <= limit)
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)));
        // A tool's report of its write (Flux `Sync`): the latest before, else the first one
        // stamped within the trigger delay after.
        let reported = |k: &&Known| matches!(&k.what, KnownKind::Event { trigger: true, source: s, .. } if s != source);
        let known = self.by_object.get(key).into_iter().flatten();
        let report_before = known
            .clone()
            .filter(reported)
            .filter(|k| k.start <= limit && k.start >= t.saturating_sub(self.horizon))
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)));
        let report_after = known
            .filter(reported)
            .filter(|k| k.start > limit && k.start <= t.saturating_add(self.trigger_delay))
            .min_by(|a, b| a.start.cmp(&b.start).then_with(|| a.identity.cmp(&b.identity)));
        let observed = match (observed, report_before) {
            (Some(a), Some(b)) => Some(if b.start > a.start { b } else { a }),
            (a, b) => a.or(b),
        };
        let info = self.objects.get(key);
        let written = info.and_then(|i| i.spec_writes.iter().rev().find(|w| w.time <= limit));
        match (observed, written) {
            // The request is what managedFields recorded, seen first hand (to the second).
            (Some(o), Some(w)) if o.start >= w.time - 1_000_000_000 => Some((Some(o.cause()), None)),
            (Some(o), None) => Some((Some(o.cause()), None)),
            (None, None) => report_after.map(|r| (Some(r.cause()), None)),
            (_, Some(w)) => {
                let info = info?;
                let object = info.object.clone().unwrap_or_else(|| ObjectRef::new(key.clone()));
                let root = Activity {
                    object,
                    start: w.time,
                    end: w.time,
                    detail: ActivityDetail::Change(ChangeActivity {
                        old_resource_version: String::new(),
                        new_resource_version: String::new(),
                        manager: w.manager.clone(),
                        operation: w.operation.clone(),
                    }),
                    links: vec![],
                    change: None,
                    cause: self.remote_parent(key),
                };
                let cause = Cause::Activity { object: root.object.clone(), start: root.start, identity: root.span_identity() };
                Some((Some(cause), Some(root)))
            }
        }
    }

    fn remote_parent(&self, key: &ObjectKey) -> Option<Cause> {
        let (trace_id, span_id) = self.objects.get(key)?.traceparent.clone()?;
        Some(Cause::Remote { trace_id, span_id })
    }

    /// The child an Event reports on, by the first matching pattern.
    fn reported_child(&self, source: &str, message: &str, about: &ObjectKey) -> Option<(ObjectKey, Effect)> {
        self.patterns.iter().find_map(|p| {
            let name = p.child_of(source, message)?;
            let (group, resource) = resource_of(&p.config.child_api_version, &p.config.child_kind);
            Some((ObjectKey::new(&about.cluster, group, resource, &about.namespace, name), p.config.effect))
        })
    }

    /// Learns owners, spec writes and annotations from an activity.
    fn learn(&mut self, a: &Activity) {
        let info = self.objects.entry(a.object.key.clone()).or_default();
        match &mut info.object {
            Some(o) => {
                if a.object.uid.is_some() {
                    o.uid = a.object.uid.clone();
                }
                if a.object.kind.is_some() {
                    o.kind = a.object.kind.clone();
                }
            }
            None => info.object = Some(a.object.clone()),
        }
        if let Some(owner) = a.links.iter().find(|l| l.role == LinkRole::Parent && l.class == kausal_core::activity::LINK_CLASS_CHILDREN) {
            info.owner = Some(owner.peer.clone());
        }
        let Some(Change::Snapshot { object, .. }) = &a.change else { return };
        for entry in object.pointer("/metadata/managedFields").and_then(Value::as_array).into_iter().flatten() {
            let touches_spec = entry.pointer("/fieldsV1/f:spec").is_some();
            let time = entry
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| nanos_of(t.with_timezone(&chrono::Utc)));
            let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
            if let (true, Some(time), false) = (touches_spec, time, manager.is_empty()) {
                info.spec_writes.insert(SpecWrite {
                    time,
                    manager: manager.to_string(),
                    operation: entry.get("operation").and_then(Value::as_str).unwrap_or("Update").to_string(),
                });
            }
        }
        let annotations = object.pointer("/metadata/annotations");
        let annotation = |names: &[String]| {
            names.iter().find_map(|n| annotations.and_then(|a| a.get(n)).and_then(Value::as_str).filter(|v| !v.is_empty()))
        };
        if let Some(tp) = annotation(&self.traceparent_annotations) {
            info.traceparent = parse_traceparent(tp);
        }
        if let Some(v) = annotation(&self.trace_start_annotations) {
            info.trace_start = v != "false";
        }
    }

    fn remember(&mut self, a: &Activity) {
        let identity = a.span_identity();
        let what = match &a.detail {
            ActivityDetail::Event(e) => KnownKind::Event {
                source: e.source.clone(),
                trigger: self.trigger_reasons.contains(&e.reason),
                reports: self.reported_child(&e.source, &e.message, &a.object.key),
            },
            ActivityDetail::Audit(audit) if is_write(&audit.verb) && audit.subresource != "status" => KnownKind::AuditWrite {
                user: audit.user.username.clone(),
                user_agent: audit.user_agent.clone(),
                spec: audit.subresource.is_empty() || audit.subresource == "scale",
            },
            _ => KnownKind::Other,
        };
        let known = Known { object: a.object.clone(), start: a.start, identity, what };
        if let KnownKind::Event { reports: Some((child, effect)), .. } = &known.what {
            self.reports.entry(child.clone()).or_default().push((known.clone(), *effect));
        }
        self.order.push_back((a.object.key.clone(), a.start));
        self.by_object.entry(a.object.key.clone()).or_default().push(known);
    }

    /// Forgets what is older than the horizon before the newest activity, and the oldest
    /// arrivals beyond the size bound; object state only of objects with nothing remembered,
    /// once there is more of it than the bound.
    fn forget(&mut self) {
        if self.objects.len() > self.max_known {
            let by_object = &self.by_object;
            self.objects.retain(|k, _| by_object.contains_key(k));
        }
        if self.synthesized.len() > self.max_known {
            // A root synthesised again later gets the same span ID; the store merges it.
            self.synthesized.clear();
        }
        let cutoff = self.newest.saturating_sub(self.horizon);
        while self.order.len() > self.max_known || self.order.front().is_some_and(|(_, s)| *s < cutoff) {
            let Some((key, start)) = self.order.pop_front() else { break };
            if let Some(list) = self.by_object.get_mut(&key) {
                if let Some(i) = list.iter().position(|k| k.start == start) {
                    let gone = list.remove(i);
                    if let KnownKind::Event { reports: Some((child, _)), .. } = &gone.what
                        && let Some(r) = self.reports.get_mut(child)
                    {
                        r.retain(|(k, _)| k.identity != gone.identity);
                        if r.is_empty() {
                            self.reports.remove(child);
                        }
                    }
                }
                if list.is_empty() {
                    self.by_object.remove(&key);
                }
            }
        }
    }
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "apply")
}

/// Whether a request by `user` with `user_agent` was made by the controller `source` reports
/// as: `system:serviceaccount:kube-system:deployment-controller`, or a user agent naming it.
fn acts_as(user: &str, user_agent: &str, source: &str) -> bool {
    user == source
        || user.rsplit(':').next() == Some(source)
        || user_agent.split(['/', ' ']).any(|part| part == source)
}

/// `00-<32 hex>-<16 hex>-<2 hex>` → (trace id, span id), lower-case; all-zero IDs refused.
pub fn parse_traceparent(s: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [version, trace, span, _flags] = parts.as_slice() else { return None };
    let hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_hexdigit()) && x.bytes().any(|b| b != b'0');
    (version.len() == 2 && *version != "ff" && hex(trace, 32) && hex(span, 16))
        .then(|| (trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_strictly() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(tp),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into()))
        );
        assert_eq!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("garbage"), None);
    }

    #[test]
    fn controllers_are_recognised_by_service_account_or_user_agent() {
        assert!(acts_as("system:serviceaccount:kube-system:deployment-controller", "", "deployment-controller"));
        assert!(acts_as("system:kube-controller-manager", "kube-controller-manager/v1.30 (linux/amd64) deployment-controller", "deployment-controller"));
        assert!(!acts_as("alice", "kubectl/v1.30", "deployment-controller"));
    }
}
