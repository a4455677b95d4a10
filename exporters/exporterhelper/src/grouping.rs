//! Export grouping per owner tree. The span builder puts every object (per window) in a trace
//! of its own and records ownership as span links with `kausal.link.role=parent`. Plain trace
//! viewers do not follow links, so with `grouping: owner_tree` each object span is re-parented
//! under its parent's object span and moved, together with its activity spans, into the trace
//! of the topmost owner known (the root). What was learned about parents is remembered in a
//! bounded map, so a child exported after its parent still lands in the parent's tree.
//!
//! Deliberately not done: re-sending spans already exported when a parent becomes known later,
//! and choosing between several parents (the first `parent` link wins, ownership class
//! `children` preferred).

use std::collections::HashMap;

use kausal_core::bounded::BoundedIndex;
use kausal_core::conventions::{attr, span_type};
use kausal_core::otlp::attr_str;
use kausal_core::otlp_trace::ResourceSpans;

type TraceId = [u8; 16];
type SpanId = [u8; 8];

/// Object spans followed upwards at most this far (guards against cycles).
const MAX_DEPTH: usize = 32;

pub struct OwnerTreeGrouper {
    /// Object span → its parent object span (trace id, span id).
    parent_of: BoundedIndex<SpanId, (TraceId, SpanId)>,
    /// Object span → its own trace id (per-object trace).
    trace_of: BoundedIndex<SpanId, TraceId>,
}

fn trace_id(b: &[u8]) -> Option<TraceId> {
    b.try_into().ok()
}

fn span_id(b: &[u8]) -> Option<SpanId> {
    b.try_into().ok()
}

impl OwnerTreeGrouper {
    pub fn new(capacity: usize) -> Self {
        OwnerTreeGrouper { parent_of: BoundedIndex::new(capacity), trace_of: BoundedIndex::new(capacity) }
    }

    /// Rewrites trace ids and object-span parents in place.
    pub fn apply(&mut self, batch: &mut [ResourceSpans]) {
        // 1. Learn object spans and their parent links.
        for span in batch.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            if attr_str(&span.attributes, attr::SPAN_TYPE) != Some(span_type::OBJECT) {
                continue;
            }
            let (Some(sid), Some(tid)) = (span_id(&span.span_id), trace_id(&span.trace_id)) else { continue };
            self.trace_of.insert(sid, tid);
            let parents = span
                .links
                .iter()
                .filter(|l| attr_str(&l.attributes, attr::LINK_ROLE) == Some("parent"));
            let chosen = parents
                .clone()
                .find(|l| attr_str(&l.attributes, attr::LINK_CLASS) == Some("children"))
                .or_else(|| parents.clone().next());
            if let Some(l) = chosen
                && let (Some(pt), Some(ps)) = (trace_id(&l.trace_id), span_id(&l.span_id))
                && ps != sid
            {
                self.parent_of.insert(sid, (pt, ps));
                self.trace_of.insert(ps, pt);
            }
        }
        // 2. Each object span's root trace; remember the move of its own trace.
        let mut moved: HashMap<TraceId, TraceId> = HashMap::new();
        for rs in batch.iter_mut() {
            for ss in rs.scope_spans.iter_mut() {
                for span in ss.spans.iter_mut() {
                    if attr_str(&span.attributes, attr::SPAN_TYPE) != Some(span_type::OBJECT) {
                        continue;
                    }
                    let (Some(sid), Some(tid)) = (span_id(&span.span_id), trace_id(&span.trace_id)) else { continue };
                    let Some(&(_, parent)) = self.parent_of.get(&sid) else { continue };
                    let root = self.root_trace(sid).unwrap_or(tid);
                    if span.parent_span_id.is_empty() {
                        span.parent_span_id = parent.to_vec();
                    }
                    if root != tid {
                        span.trace_id = root.to_vec();
                        moved.insert(tid, root);
                    }
                }
            }
        }
        // 3. Activity spans follow their object's trace. Object spans from earlier batches
        //    whose trace moved are found through the remembered map too.
        for rs in batch.iter_mut() {
            for ss in rs.scope_spans.iter_mut() {
                for span in ss.spans.iter_mut() {
                    if attr_str(&span.attributes, attr::SPAN_TYPE) == Some(span_type::OBJECT) {
                        continue;
                    }
                    let Some(tid) = trace_id(&span.trace_id) else { continue };
                    let target = match moved.get(&tid) {
                        Some(t) => Some(*t),
                        None => span_id(&span.parent_span_id)
                            .filter(|p| self.parent_of.get(p).is_some())
                            .and_then(|p| self.root_trace(p)),
                    };
                    if let Some(t) = target
                        && t != tid
                    {
                        span.trace_id = t.to_vec();
                    }
                }
            }
        }
    }

    /// The per-object trace id of the topmost known ancestor of `span`.
    fn root_trace(&mut self, span: SpanId) -> Option<TraceId> {
        let mut current = span;
        let mut root_trace = self.trace_of.get(&span).copied();
        for _ in 0..MAX_DEPTH {
            match self.parent_of.get(&current).copied() {
                Some((pt, ps)) if ps != span => {
                    root_trace = Some(self.trace_of.get(&ps).copied().unwrap_or(pt));
                    current = ps;
                }
                _ => break,
            }
        }
        root_trace
    }
}

/// Export grouping by cause (`grouping: causal`), kspan's shape for plain trace viewers: an
/// activity span with a `causal` link (set by the span builder from the `causal` processor's
/// placement) is re-parented under the span of its cause and moved into the trace its cause
/// ended up in, so a whole chain — the write, the controller's reports, the pods' Events —
/// reads as one trace under the root cause's object span. Activities without a cause, and
/// object spans, keep their per-object traces. Causes are exported before their effects by the
/// causal processor; an effect exported before its cause stays in the cause's own object trace.
pub struct CausalGrouper {
    /// Activity span → the trace it was exported in.
    trace_of: BoundedIndex<SpanId, TraceId>,
}

impl CausalGrouper {
    pub fn new(capacity: usize) -> Self {
        CausalGrouper { trace_of: BoundedIndex::new(capacity) }
    }

    /// Rewrites trace ids and parents of caused activity spans in place, in batch order.
    pub fn apply(&mut self, batch: &mut [ResourceSpans]) {
        for span in batch.iter_mut().flat_map(|r| r.scope_spans.iter_mut()).flat_map(|s| s.spans.iter_mut()) {
            if attr_str(&span.attributes, attr::SPAN_TYPE) == Some(span_type::OBJECT) {
                continue;
            }
            let cause = span
                .links
                .iter()
                .find(|l| attr_str(&l.attributes, attr::LINK_CLASS) == Some(kausal_core::activity::LINK_CLASS_CAUSAL))
                .and_then(|l| Some((trace_id(&l.trace_id)?, span_id(&l.span_id)?)));
            if let Some((cause_trace, cause_span)) = cause
                && Some(cause_span) != span_id(&span.span_id)
            {
                let target = self.trace_of.get(&cause_span).copied().unwrap_or(cause_trace);
                span.trace_id = target.to_vec();
                span.parent_span_id = cause_span.to_vec();
            }
            if let (Some(sid), Some(tid)) = (span_id(&span.span_id), trace_id(&span.trace_id)) {
                self.trace_of.insert(sid, tid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kausal_core::otlp::kv_str;
    use kausal_core::otlp_trace::{ScopeSpans, Span, span::Link};

    use super::*;

    fn object(name: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![name; 16],
            span_id: vec![name; 8],
            name: format!("object {name}"),
            attributes: vec![kv_str(attr::SPAN_TYPE, span_type::OBJECT)],
            links: parent
                .map(|p| Link {
                    trace_id: vec![p; 16],
                    span_id: vec![p; 8],
                    attributes: vec![kv_str(attr::LINK_ROLE, "parent"), kv_str(attr::LINK_CLASS, "children")],
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn activity(object: u8, id: u8) -> Span {
        Span {
            trace_id: vec![object; 16],
            span_id: vec![id; 8],
            parent_span_id: vec![object; 8],
            name: format!("activity {id}"),
            attributes: vec![kv_str(attr::SPAN_TYPE, span_type::AUDIT)],
            ..Default::default()
        }
    }

    fn batch(spans: Vec<Span>) -> Vec<ResourceSpans> {
        vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }]
    }

    fn outline(b: &[ResourceSpans]) -> Vec<String> {
        b.iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| format!("{}: trace {} parent {:?}", s.name, s.trace_id[0], s.parent_span_id.first()))
            .collect()
    }

    fn caused(object: u8, id: u8, cause: Option<(u8, u8)>) -> Span {
        let mut span = activity(object, id);
        span.attributes = vec![kv_str(attr::SPAN_TYPE, span_type::EVENT)];
        if let Some((cause_object, cause_id)) = cause {
            span.links.push(Link {
                trace_id: vec![cause_object; 16],
                span_id: vec![cause_id; 8],
                attributes: vec![kv_str(attr::LINK_ROLE, "parent"), kv_str(attr::LINK_CLASS, "causal")],
                ..Default::default()
            });
        }
        span
    }

    #[test]
    fn a_causal_chain_becomes_one_trace_under_its_root_cause() {
        // 10 on the Deployment (1) is the root; 20 on the ReplicaSet (2) reports under it; 30 on
        // a Pod (3) under 20, in a later batch; 31 has no cause and stays in its object's trace.
        let mut g = CausalGrouper::new(100);
        let mut first = batch(vec![object(1, None), caused(1, 10, None), caused(2, 20, Some((1, 10)))]);
        g.apply(&mut first);
        let mut second = batch(vec![caused(3, 30, Some((2, 20))), caused(3, 31, None)]);
        g.apply(&mut second);
        assert_eq!(
            [outline(&first), outline(&second)].concat(),
            vec![
                "object 1: trace 1 parent None",
                "activity 10: trace 1 parent Some(1)",
                "activity 20: trace 1 parent Some(10)",
                "activity 30: trace 1 parent Some(20)",
                "activity 31: trace 3 parent Some(3)",
            ]
        );
    }

    #[test]
    fn a_deployment_tree_becomes_one_trace() {
        // 1 = Deployment, 2 = ReplicaSet (owned by 1), 3 = Pod (owned by 2).
        let mut g = OwnerTreeGrouper::new(100);
        let mut b = batch(vec![object(1, None), object(2, Some(1)), object(3, Some(2)), activity(3, 30), activity(1, 10)]);
        g.apply(&mut b);
        assert_eq!(
            outline(&b),
            vec![
                "object 1: trace 1 parent None",
                "object 2: trace 1 parent Some(1)",
                "object 3: trace 1 parent Some(2)",
                "activity 30: trace 1 parent Some(3)",
                "activity 10: trace 1 parent Some(1)",
            ]
        );
    }

    #[test]
    fn later_batches_use_what_was_learned() {
        let mut g = OwnerTreeGrouper::new(100);
        let mut first = batch(vec![object(2, Some(1)), object(3, Some(2))]);
        g.apply(&mut first);
        let mut second = batch(vec![activity(3, 31), activity(2, 21)]);
        g.apply(&mut second);
        assert_eq!(
            outline(&second),
            vec!["activity 31: trace 1 parent Some(3)", "activity 21: trace 1 parent Some(2)"]
        );
    }

    #[test]
    fn cycles_and_unowned_objects_are_left_alone() {
        let mut g = OwnerTreeGrouper::new(100);
        let mut b = batch(vec![object(4, Some(5)), object(5, Some(4)), object(6, None), activity(6, 60)]);
        g.apply(&mut b);
        let o = outline(&b);
        assert_eq!(o[2], "object 6: trace 6 parent None");
        assert_eq!(o[3], "activity 60: trace 6 parent Some(6)");
        // The cycle terminates; both end up in one of the two traces.
        assert!(o[0].contains("trace 4") || o[0].contains("trace 5"), "{o:?}");
    }
}
