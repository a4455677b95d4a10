//! Loading what a trace needs from a store snapshot: the root's records and activities, then
//! the objects its scope reaches through links, within a depth and object budget. It decides
//! nothing about shape; `assemble.rs` does.

use std::collections::{BTreeSet, VecDeque};

use kausal_core::{LinkRole, ObjectKey};
use kausal_store::{Snapshot, StoreError};

use crate::assemble::{ObjectData, TimeRange, TraceRecords};
use crate::mode::{DisplayMode, Scope};

/// How far a trace reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// Link hops followed from the root.
    pub max_depth: usize,
    /// Objects loaded per trace, root included.
    pub max_objects: usize,
}

/// Load the records of `root` and of the objects `mode`'s scope reaches from it over `range`.
pub fn load(
    snapshot: &Snapshot,
    root: &ObjectKey,
    range: TimeRange,
    mode: DisplayMode,
    limits: LoadLimits,
) -> Result<TraceRecords, StoreError> {
    let follow = match mode.scope {
        Scope::Children => LinkRole::Child,
    };
    let mut records = TraceRecords::default();
    let mut queued: BTreeSet<ObjectKey> = BTreeSet::from([root.clone()]);
    let mut queue: VecDeque<(ObjectKey, usize)> = VecDeque::from([(root.clone(), 0)]);
    let mut dropped = 0usize;
    while let Some((key, depth)) = queue.pop_front() {
        let data = load_object(snapshot, &key, range)?;
        if depth < limits.max_depth {
            let own = data.windows.iter().flat_map(|w| &w.links).filter(|l| l.role == follow).map(|l| &l.peer);
            let reverse = data.reverse_links.iter().filter(|(role, _)| *role == follow).map(|(_, k)| k);
            let next: BTreeSet<&ObjectKey> = own.chain(reverse).collect();
            for peer in next {
                if queued.contains(peer) {
                    continue;
                }
                if queued.len() >= limits.max_objects {
                    dropped += 1;
                    continue;
                }
                queued.insert(peer.clone());
                queue.push_back((peer.clone(), depth + 1));
            }
        }
        records.objects.insert(key, data);
    }
    if dropped > 0 {
        records.warnings.push(format!(
            "{dropped} linked objects not shown: the trace holds at most {} objects",
            limits.max_objects
        ));
    }
    Ok(records)
}

fn load_object(snapshot: &Snapshot, key: &ObjectKey, range: TimeRange) -> Result<ObjectData, StoreError> {
    let windows = snapshot.object_windows(key, range.start, range.end)?;
    let mut activities = Vec::new();
    let mut reverse_links = Vec::new();
    for window in &windows {
        activities.extend(snapshot.activities(window.span_id, range.start, range.end)?);
        for role in [LinkRole::Child, LinkRole::Parent] {
            for link in snapshot.linked_to(key, window.window.start, role)? {
                if !reverse_links.iter().any(|(r, k)| *r == role && *k == link.object) {
                    reverse_links.push((role, link.object));
                }
            }
        }
    }
    Ok(ObjectData { windows, activities, reverse_links })
}
