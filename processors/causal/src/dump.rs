//! A readable dump of causal trees, one line per span: its number, indentation by depth, the
//! service that acted (Event source, request user, field manager), `Kind.Name` (the Event
//! reason, request verb or managedFields operation), the parent's number, and the message.
//! Golden tests compare it and `kausal replay --dump` prints it. Object observations (snapshots
//! of objects a recording holds) are state, not spans of the story; they are counted, not shown.

use std::collections::HashMap;

use kausal_core::activity::{Activity, ActivityDetail, Cause, Change};
use kausal_core::object::ObjectKey;

/// Whether an activity only tells what an object looked like.
pub fn is_observation(a: &Activity) -> bool {
    matches!(&a.detail, ActivityDetail::Change(c) if c.manager.is_empty())
        && matches!(a.change, Some(Change::Snapshot { .. }) | None)
        && a.cause.is_none()
}

type NodeKey = (ObjectKey, String);

/// The dump of `activities` (in any order): roots by start time, children under their cause.
pub fn dump(activities: &[Activity]) -> String {
    let shown: Vec<&Activity> = activities.iter().filter(|a| !is_observation(a)).collect();
    let index: HashMap<NodeKey, usize> =
        shown.iter().enumerate().map(|(i, a)| ((a.object.key.clone(), a.span_identity()), i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots: Vec<usize> = Vec::new();
    for (i, a) in shown.iter().enumerate() {
        let parent = match &a.cause {
            Some(Cause::Activity { object, identity, .. }) => index.get(&(object.key.clone(), identity.clone())).copied(),
            _ => None,
        };
        match parent.filter(|p| *p != i) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let order = |v: &mut Vec<usize>| {
        v.sort_by(|x, y| {
            let (a, b) = (shown[*x], shown[*y]);
            a.start
                .cmp(&b.start)
                .then_with(|| a.object.key.cmp(&b.object.key))
                .then_with(|| a.span_identity().cmp(&b.span_identity()))
        })
    };
    order(&mut roots);
    for v in children.values_mut() {
        order(v);
    }
    let mut out = String::new();
    let mut number: HashMap<usize, usize> = HashMap::new();
    let mut stack: Vec<(usize, usize, Option<usize>)> = roots.iter().rev().map(|r| (*r, 0, None)).collect();
    while let Some((i, depth, parent)) = stack.pop() {
        if number.contains_key(&i) {
            continue;
        }
        let n = number.len();
        number.insert(i, n);
        let parent_text = match (parent.and_then(|p| number.get(&p)), &shown[i].cause) {
            (Some(p), _) => p.to_string(),
            (None, Some(Cause::Remote { trace_id, span_id })) => format!("remote {trace_id}/{span_id}"),
            (None, Some(Cause::Activity { object, .. })) => format!("not held: {}", object.key),
            (None, None) => "-".into(),
        };
        out.push_str(&format!("{}{n}: {} ({parent_text}) {}\n", "  ".repeat(depth), head(shown[i]), message(shown[i])));
        if let Some(kids) = children.get(&i) {
            for k in kids.iter().rev() {
                stack.push((*k, depth + 1, Some(i)));
            }
        }
    }
    let hidden = activities.len() - shown.len();
    if hidden > 0 {
        out.push_str(&format!("# {hidden} object observations not shown\n"));
    }
    out
}

fn kind(a: &Activity) -> &str {
    a.object.kind().unwrap_or(a.object.key.resource.as_str())
}

/// `deployment-controller Deployment.ScalingReplicaSet`, `alice Deployment.update`.
fn head(a: &Activity) -> String {
    match &a.detail {
        ActivityDetail::Event(e) => format!("{} {}.{}", if e.source.is_empty() { "?" } else { &e.source }, kind(a), e.reason),
        ActivityDetail::Audit(audit) => {
            let verb = if audit.subresource.is_empty() { audit.verb.clone() } else { format!("{}/{}", audit.verb, audit.subresource) };
            format!("{} {}.{}", audit.user.username, kind(a), verb)
        }
        ActivityDetail::Change(c) if !c.manager.is_empty() => format!("{} {}.{}", c.manager, kind(a), c.operation),
        ActivityDetail::Change(c) => format!("observed {}.change {}", kind(a), c.new_resource_version),
    }
}

fn message(a: &Activity) -> String {
    match &a.detail {
        ActivityDetail::Event(e) => e.message.replace('\n', " "),
        _ if a.object.key.namespace.is_empty() => a.object.key.name.clone(),
        _ => format!("{}/{}", a.object.key.namespace, a.object.key.name),
    }
}
