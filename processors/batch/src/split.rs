//! Merging and splitting batches by item count. Pure: spans are split between scopes and
//! resources with the resource and scope copied onto each part.

use kausal_core::Batch;
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans};

/// Takes up to `max` spans from the front of `from`.
pub fn take_spans(from: &mut Vec<ResourceSpans>, max: usize) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    let mut left = max;
    while left > 0 && !from.is_empty() {
        let rs = &mut from[0];
        let mut part = ResourceSpans { resource: rs.resource.clone(), scope_spans: Vec::new(), schema_url: rs.schema_url.clone() };
        while left > 0 && !rs.scope_spans.is_empty() {
            let ss = &mut rs.scope_spans[0];
            if ss.spans.len() <= left {
                left -= ss.spans.len();
                part.scope_spans.push(rs.scope_spans.remove(0));
            } else {
                let spans: Vec<_> = ss.spans.drain(..left).collect();
                left = 0;
                part.scope_spans.push(ScopeSpans { scope: ss.scope.clone(), spans, schema_url: ss.schema_url.clone() });
            }
        }
        if rs.scope_spans.is_empty() {
            from.remove(0);
        }
        out.push(part);
    }
    out
}

/// Takes up to `max` items from the front of `from` (same kind).
pub fn take(from: &mut Batch, max: usize) -> Batch {
    match from {
        Batch::Activities(a) => Batch::Activities(a.drain(..max.min(a.len())).collect()),
        Batch::Spans(s) => Batch::Spans(take_spans(s, max)),
        // Kinds this processor does not split pass through whole.
        #[allow(unreachable_patterns)]
        other => std::mem::replace(other, Batch::Spans(Vec::new())),
    }
}

/// Appends `more` to `into` when both are of one kind; otherwise hands `more` back.
pub fn append(into: &mut Batch, more: Batch) -> Result<(), Batch> {
    match (into, more) {
        (Batch::Activities(a), Batch::Activities(b)) => {
            a.extend(b);
            Ok(())
        }
        (Batch::Spans(a), Batch::Spans(b)) => {
            a.extend(b);
            Ok(())
        }
        #[allow(unreachable_patterns)]
        (_, more) => Err(more),
    }
}

#[cfg(test)]
mod tests {
    use kausal_core::otlp_trace::Span;

    use super::*;

    fn rs(n: usize, tag: &str) -> ResourceSpans {
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n).map(|i| Span { name: format!("{tag}{i}"), ..Default::default() }).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn splitting_keeps_order_and_counts() {
        let mut b = Batch::Spans(vec![rs(3, "a"), rs(4, "b")]);
        let first = take(&mut b, 5);
        assert_eq!((first.len(), b.len()), (5, 2));
        let names = |b: &Batch| match b {
            Batch::Spans(s) => s.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).map(|s| s.name.clone()).collect::<Vec<_>>(),
            _ => vec![],
        };
        assert_eq!(names(&first), vec!["a0", "a1", "a2", "b0", "b1"]);
        assert_eq!(names(&b), vec!["b2", "b3"]);
        let rest = take(&mut b, 100);
        assert_eq!((rest.len(), b.is_empty()), (2, true));
    }
}
