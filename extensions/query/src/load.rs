//! Loading what a trace needs from a store snapshot: the asked object's records and
//! activities, then the objects its scope reaches through links (owners upwards, owned objects
//! downwards), within a depth and a link budget. It decides nothing about shape;
//! `assemble.rs` does.
//!
//! Following links is cycle-safe: an object is loaded at most once, whatever points at it.

use std::collections::{BTreeSet, HashSet, VecDeque};

use kausal_core::{LinkRole, ObjectKey};
use kausal_store::{Snapshot, StoreError};

use crate::assemble::{ObjectData, TimeRange, TraceRecords};
use crate::mode::Scope;

/// How far a trace reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// Link hops followed from the asked object, in each direction.
    pub max_depth: usize,
    /// Linked objects loaded besides the asked one (the link budget).
    pub max_linked: usize,
}

/// Load the records of `object` and of the objects `scope` reaches from it over `range`.
pub fn load(
    snapshot: &Snapshot,
    object: &ObjectKey,
    range: TimeRange,
    scope: Scope,
    limits: LoadLimits,
) -> Result<TraceRecords, StoreError> {
    let mut records = TraceRecords::default();
    let mut dropped = 0usize;
    let data = load_object(snapshot, object, range, scope.ancestors())?;
    records.objects.insert(object.clone(), data);

    if scope.ancestors() {
        // Up the first owner of each object; an object has one controller owner in practice,
        // further owners are named in a warning rather than drawn as a second root.
        let mut current = object.clone();
        for _ in 0..limits.max_depth {
            let Some(data) = records.objects.get(&current) else { break };
            let owners = owners(data);
            let Some(owner) = owners.first().cloned() else { break };
            if owners.len() > 1 {
                let others: Vec<String> = owners[1..].iter().map(|o| o.to_string()).collect();
                records.object_warnings.entry(current.clone()).or_default().push(format!(
                    "also owned by {}; only {owner} is followed upwards",
                    others.join(", ")
                ));
            }
            if records.objects.contains_key(&owner) {
                // An ownership cycle: stop climbing.
                records.object_warnings.entry(current.clone()).or_default().push(format!(
                    "owner {owner} is already in this trace (ownership cycle); not followed further"
                ));
                break;
            }
            if records.objects.len() > limits.max_linked {
                dropped += 1;
                break;
            }
            let data = load_object(snapshot, &owner, range, true)?;
            records.ancestry.insert(0, owner.clone());
            records.objects.insert(owner.clone(), data);
            current = owner;
        }
    }

    if scope.children() {
        let mut queue: VecDeque<(ObjectKey, usize)> = VecDeque::from([(object.clone(), 0)]);
        while let Some((key, depth)) = queue.pop_front() {
            if depth >= limits.max_depth {
                continue;
            }
            let Some(data) = records.objects.get(&key) else { continue };
            let next: BTreeSet<ObjectKey> = crate::assemble::children(data).into_iter().cloned().collect();
            for peer in next {
                if records.objects.contains_key(&peer) {
                    continue;
                }
                if records.objects.len() > limits.max_linked {
                    dropped += 1;
                    continue;
                }
                let data = load_object(snapshot, &peer, range, false)?;
                records.objects.insert(peer.clone(), data);
                queue.push_back((peer, depth + 1));
            }
        }
    }
    if dropped > 0 {
        records.warnings.push(format!(
            "{dropped} linked objects not shown: the link budget of {} objects was reached",
            limits.max_linked
        ));
    }
    Ok(records)
}

/// An object's owners: those it names itself (its ownerReferences, authoritative) first, then
/// those that name it as their child; each group in key order.
fn owners(data: &ObjectData) -> Vec<ObjectKey> {
    let own: BTreeSet<&ObjectKey> =
        data.windows.iter().flat_map(|w| &w.links).filter(|l| l.role == LinkRole::Parent).map(|l| &l.peer).collect();
    let reverse: BTreeSet<&ObjectKey> =
        data.reverse_links.iter().filter(|(r, k)| *r == LinkRole::Parent && !own.contains(k)).map(|(_, k)| k).collect();
    own.into_iter().chain(reverse).cloned().collect()
}

/// One object's windows and activities in `range`, and the links others recorded to it:
/// always the children's, the owners' only when `with_parents` (owners are only climbed from
/// the asked object and its ancestors).
fn load_object(snapshot: &Snapshot, key: &ObjectKey, range: TimeRange, with_parents: bool) -> Result<ObjectData, StoreError> {
    let windows = snapshot.object_windows(key, range.start, range.end)?;
    let mut activities = Vec::new();
    let mut reverse_links = Vec::new();
    // A ReplicaSet's hundreds of Pods name it again in every window: dedup by hash, not by
    // scanning the list (that was quadratic and dominated fetches of large trees).
    let mut seen: HashSet<(LinkRole, ObjectKey)> = HashSet::new();
    let roles: &[LinkRole] = if with_parents { &[LinkRole::Child, LinkRole::Parent] } else { &[LinkRole::Child] };
    for window in &windows {
        activities.extend(snapshot.activities(window.span_id, range.start, range.end)?);
        for &role in roles {
            for link in snapshot.linked_to(key, window.window.start, role)? {
                if seen.insert((role, link.object.clone())) {
                    reverse_links.push((role, link.object));
                }
            }
        }
    }
    Ok(ObjectData { windows, activities, reverse_links })
}
