//! Parent-reports-child Event patterns: a controller reports on the object it manages that it
//! created or deleted a child ("Created pod: web-1"), so the child's own Events belong under
//! that report. A pattern is the reporting component plus a message template in which
//! `{child}` stands for the child's name (one word) and `*` for anything.

use serde::Deserialize;

/// Whether the reported action brought the child up or took it down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Create,
    Delete,
}

/// One configured pattern.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// `source.component` / reporting controller of the Event.
    pub source: String,
    /// Message template, e.g. `Created pod: {child}`.
    pub message: String,
    /// Kind and apiVersion of the child.
    pub child_kind: String,
    pub child_api_version: String,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Child,
    Any,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub config: PatternConfig,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn compile(config: PatternConfig) -> Result<Pattern, String> {
        let mut segments = Vec::new();
        let mut rest = config.message.as_str();
        let mut children = 0;
        while !rest.is_empty() {
            let next_child = rest.find("{child}");
            let next_any = rest.find('*');
            let (at, seg, len) = match (next_child, next_any) {
                (Some(c), Some(a)) if a < c => (a, Segment::Any, 1),
                (Some(c), _) => (c, Segment::Child, "{child}".len()),
                (None, Some(a)) => (a, Segment::Any, 1),
                (None, None) => (rest.len(), Segment::Literal(String::new()), 0),
            };
            if at > 0 {
                segments.push(Segment::Literal(rest[..at].to_string()));
            }
            if len == 0 {
                break;
            }
            if seg == Segment::Child {
                children += 1;
            }
            segments.push(seg);
            rest = &rest[at + len..];
        }
        if children != 1 {
            return Err(format!("message template {:?} must name `{{child}}` exactly once", config.message));
        }
        Ok(Pattern { config, segments })
    }

    /// The child's name when `source` and `message` match.
    pub fn child_of<'m>(&self, source: &str, message: &'m str) -> Option<&'m str> {
        if source != self.config.source {
            return None;
        }
        let mut child = None;
        matches(&self.segments, message, 0, &mut child).then_some(child).flatten().map(|(a, b)| &message[a..b])
    }
}

/// Backtracking match of `segments` against `text[pos..]`, recording the child's byte range.
fn matches(segments: &[Segment], text: &str, pos: usize, child: &mut Option<(usize, usize)>) -> bool {
    let Some((first, rest)) = segments.split_first() else { return pos == text.len() };
    match first {
        Segment::Literal(l) => text[pos..].starts_with(l.as_str()) && matches(rest, text, pos + l.len(), child),
        Segment::Any => (pos..=text.len())
            .filter(|&end| text.is_char_boundary(end))
            .any(|end| matches(rest, text, end, child)),
        Segment::Child => {
            // One word: up to the next space, at least one character.
            let word_end = text[pos..].find(char::is_whitespace).map_or(text.len(), |i| pos + i);
            (pos + 1..=word_end).filter(|&end| text.is_char_boundary(end)).rev().any(|end| {
                if matches(rest, text, end, child) {
                    *child = Some((pos, end));
                    true
                } else {
                    false
                }
            })
        }
    }
}

fn pattern(source: &str, message: &str, child_kind: &str, child_api_version: &str, effect: Effect) -> PatternConfig {
    PatternConfig {
        source: source.into(),
        message: message.into(),
        child_kind: child_kind.into(),
        child_api_version: child_api_version.into(),
        effect,
    }
}

/// The built-in controllers' reports (kube-controller-manager message formats, 1.19 to 1.33).
pub fn default_patterns() -> Vec<PatternConfig> {
    vec![
        pattern("deployment-controller", "Scaled up replica set {child} *", "ReplicaSet", "apps/v1", Effect::Create),
        pattern("deployment-controller", "Scaled down replica set {child} *", "ReplicaSet", "apps/v1", Effect::Delete),
        pattern("replicaset-controller", "Created pod: {child}", "Pod", "v1", Effect::Create),
        pattern("replicaset-controller", "Deleted pod: {child}", "Pod", "v1", Effect::Delete),
        pattern("statefulset-controller", "create Pod {child} in StatefulSet * successful", "Pod", "v1", Effect::Create),
        pattern("statefulset-controller", "delete Pod {child} in StatefulSet * successful", "Pod", "v1", Effect::Delete),
        pattern("daemonset-controller", "Created pod: {child}", "Pod", "v1", Effect::Create),
        pattern("daemonset-controller", "Deleted pod: {child}", "Pod", "v1", Effect::Delete),
        pattern("job-controller", "Created pod: {child}", "Pod", "v1", Effect::Create),
        pattern("job-controller", "Deleted pod: {child}", "Pod", "v1", Effect::Delete),
        pattern("cronjob-controller", "Created job {child}", "Job", "batch/v1", Effect::Create),
        pattern("cronjob-controller", "Deleted job {child}", "Job", "batch/v1", Effect::Delete),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(i: usize) -> Pattern {
        Pattern::compile(default_patterns()[i].clone()).unwrap()
    }

    #[test]
    fn templates_capture_one_word_children() {
        let up = compiled(0);
        assert_eq!(up.child_of("deployment-controller", "Scaled up replica set px-5d567cc74c to 2"), Some("px-5d567cc74c"));
        assert_eq!(up.child_of("deployment-controller", "Scaled up replica set web-abc from 1 to 2"), Some("web-abc"));
        assert_eq!(up.child_of("replicaset-controller", "Scaled up replica set px-5d567cc74c to 2"), None);
        assert_eq!(up.child_of("deployment-controller", "Scaled down replica set px to 0"), None);
        assert_eq!(compiled(2).child_of("replicaset-controller", "Created pod: px-5d567cc74c-ss4lb"), Some("px-5d567cc74c-ss4lb"));
        assert_eq!(compiled(2).child_of("replicaset-controller", "Created pod: a b"), None);
        let sts = compiled(4);
        assert_eq!(sts.child_of("statefulset-controller", "create Pod ingester-3 in StatefulSet ingester successful"), Some("ingester-3"));
        assert_eq!(sts.child_of("statefulset-controller", "create Pod ingester-3 in StatefulSet ingester failed"), None);
    }

    #[test]
    fn templates_need_exactly_one_child() {
        let mut p = default_patterns()[0].clone();
        p.message = "Scaled *".into();
        assert!(Pattern::compile(p.clone()).is_err());
        p.message = "{child} and {child}".into();
        assert!(Pattern::compile(p).is_err());
    }
}
