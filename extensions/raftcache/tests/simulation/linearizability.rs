//! A linearizability checker for histories of cache operations, after Wing & Gong's search with
//! Lowe's memoisation. Linearizability is local, so each key's sub-history is checked on its own
//! against a register model holding `(value, version)`. Operations whose outcome is unknown
//! (a write that timed out, or whose node crashed) may take effect at any point after their call,
//! or never.

use std::collections::HashSet;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Get,
    Put { value: u64 },
    CreateIfAbsent { value: u64 },
    Cas { expected: u64, value: u64 },
    Delete,
}

/// `(value, version)` as the cache returned it.
pub type Seen = Option<(u64, u64)>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Got(Seen),
    Written(u64),
    Mismatch(Seen),
    Removed(bool),
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub client: usize,
    pub node: u64,
    pub key: String,
    pub op: Op,
    pub call: u64,
    /// None when the outcome is unknown.
    pub ret: Option<u64>,
    pub outcome: Outcome,
}

/// Register state: value and version (None = version not observed yet, after an unknown write).
type State = Option<(u64, Option<u64>)>;

fn matches_seen(state: &State, seen: &Seen) -> Option<State> {
    match (state, seen) {
        (None, None) => Some(None),
        (Some((v, ver)), Some((v2, ver2))) if v == v2 && ver.is_none_or(|x| x == *ver2) => Some(Some((*v, Some(*ver2)))),
        _ => None,
    }
}

fn version_of(state: &State) -> Option<u64> {
    match state {
        None => Some(0),
        Some((_, v)) => *v,
    }
}

/// The states `op` with `outcome` can lead to from `state` (empty = impossible here).
fn step(state: &State, op: &Op, outcome: &Outcome) -> Vec<State> {
    let newer = |ver: u64| version_of(state).is_none_or(|old| ver > old);
    match (op, outcome) {
        (Op::Get, Outcome::Got(seen)) => matches_seen(state, seen).into_iter().collect(),
        (Op::Put { value }, Outcome::Written(ver)) if newer(*ver) => vec![Some((*value, Some(*ver)))],
        (Op::Put { value }, Outcome::Unknown) => vec![Some((*value, None))],
        (Op::CreateIfAbsent { value }, Outcome::Written(ver)) if state.is_none() && newer(*ver) => vec![Some((*value, Some(*ver)))],
        (Op::CreateIfAbsent { value }, Outcome::Unknown) if state.is_none() => vec![Some((*value, None))],
        (Op::CreateIfAbsent { .. }, Outcome::Mismatch(seen)) if seen.is_some() => matches_seen(state, seen).into_iter().collect(),
        (Op::Cas { expected, value }, Outcome::Written(ver)) => {
            let ok = match version_of(state) {
                Some(v) => v == *expected,
                None => *expected != 0,
            };
            if ok && (state.is_some() || *expected == 0) && *ver > *expected {
                vec![Some((*value, Some(*ver)))]
            } else {
                vec![]
            }
        }
        (Op::Cas { expected, value }, Outcome::Unknown) => match version_of(state) {
            Some(v) if v != *expected => vec![],
            _ => vec![Some((*value, None))],
        },
        (Op::Cas { expected, .. }, Outcome::Mismatch(seen)) => {
            if seen.map_or(0, |s| s.1) == *expected {
                return vec![];
            }
            matches_seen(state, seen).into_iter().collect()
        }
        (Op::Delete, Outcome::Removed(existed)) if *existed == state.is_some() => vec![None],
        (Op::Delete, Outcome::Unknown) => vec![None],
        _ => vec![],
    }
}

/// True when one key's history is linearizable.
pub fn check_key(events: &[Event]) -> bool {
    let n = events.len();
    let words = n.div_ceil(64).max(1);
    let mut memo: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut done = vec![0u64; words];
    search(events, &mut done, &None, &mut memo)
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn search(events: &[Event], done: &mut Vec<u64>, state: &State, memo: &mut HashSet<(Vec<u64>, State)>) -> bool {
    let pending_definite: Vec<usize> = (0..events.len()).filter(|&i| !is_done(done, i) && events[i].ret.is_some()).collect();
    if pending_definite.is_empty() {
        return true;
    }
    if !memo.insert((done.clone(), *state)) {
        return false;
    }
    let horizon = pending_definite.iter().filter_map(|&i| events[i].ret).min().unwrap_or(u64::MAX);
    for i in 0..events.len() {
        if is_done(done, i) || events[i].call >= horizon {
            continue;
        }
        for next in step(state, &events[i].op, &events[i].outcome) {
            done[i / 64] |= 1 << (i % 64);
            let ok = search(events, done, &next, memo);
            done[i / 64] &= !(1 << (i % 64));
            if ok {
                return true;
            }
        }
    }
    false
}

/// Every value a read observed was written by an operation of the history, so a shortened
/// history fails for its real reason rather than for a read of a value from nowhere.
fn closed(events: &[Event]) -> bool {
    let written: HashSet<u64> = events
        .iter()
        .filter_map(|e| match e.op {
            Op::Put { value } | Op::CreateIfAbsent { value } | Op::Cas { value, .. } => Some(value),
            _ => None,
        })
        .collect();
    events.iter().all(|e| match &e.outcome {
        Outcome::Got(Some((v, _))) | Outcome::Mismatch(Some((v, _))) => written.contains(v),
        _ => true,
    })
}

/// The first key whose history is not linearizable, with a locally minimal failing sub-history
/// (no single operation can be dropped without the violation disappearing).
pub fn find_violation(history: &[Event]) -> Option<(String, Vec<Event>)> {
    let mut keys: Vec<&String> = history.iter().map(|e| &e.key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let mut events: Vec<Event> = history.iter().filter(|e| &e.key == key).cloned().collect();
        if check_key(&events) {
            continue;
        }
        let mut i = 0;
        while i < events.len() {
            let mut shorter = events.clone();
            shorter.remove(i);
            if closed(&shorter) && !check_key(&shorter) {
                events = shorter;
            } else {
                i += 1;
            }
        }
        return Some((key.clone(), events));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(call: u64, ret: Option<u64>, op: Op, outcome: Outcome) -> Event {
        Event { client: 0, node: 1, key: "k".into(), op, call, ret, outcome }
    }

    #[test]
    fn accepts_concurrent_and_unknown_writes() {
        let h = vec![
            ev(0, Some(10), Op::Put { value: 1 }, Outcome::Written(5)),
            ev(1, None, Op::Put { value: 2 }, Outcome::Unknown),
            ev(11, Some(12), Op::Get, Outcome::Got(Some((2, 7)))),
            ev(13, Some(14), Op::Cas { expected: 7, value: 3 }, Outcome::Written(9)),
            ev(15, Some(16), Op::Get, Outcome::Got(Some((3, 9)))),
        ];
        assert!(check_key(&h));
    }

    #[test]
    fn rejects_a_stale_read_and_minimises_it() {
        let h = vec![
            ev(0, Some(1), Op::Put { value: 1 }, Outcome::Written(5)),
            ev(2, Some(3), Op::Get, Outcome::Got(Some((1, 5)))),
            ev(4, Some(5), Op::Put { value: 2 }, Outcome::Written(6)),
            ev(6, Some(7), Op::Get, Outcome::Got(Some((2, 6)))),
            ev(8, Some(9), Op::Get, Outcome::Got(Some((1, 5)))),
        ];
        let (_, minimal) = find_violation(&h).expect("violation");
        let calls: Vec<u64> = minimal.iter().map(|e| e.call).collect();
        assert_eq!(calls, vec![0, 4, 8], "{minimal:?}");
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        let h = vec![
            ev(0, Some(1), Op::CreateIfAbsent { value: 1 }, Outcome::Written(3)),
            ev(2, Some(3), Op::Get, Outcome::Got(None)),
        ];
        assert!(!check_key(&h));
    }
}
