//! Which audit events become activities: by stage, verb, resource, user and user agent. An
//! include list that is empty admits everything; exclude lists are applied after include lists.
//! Pure functions over the decoded event; counting and logging the drops is the caller's job.

use std::fmt;

use kausal_core::audit::{Event, Stage};

use crate::config::Config;

/// Why an event did not become an activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    Stage,
    Verb,
    Resource,
    User,
    UserAgent,
    /// Non-resource request (`/healthz`, `/version`): no object to attach it to.
    NoObject,
    /// Neither `requestReceivedTimestamp` nor `stageTimestamp` (nor v1beta1 `timestamp`).
    NoTimestamp,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::Stage,
        DropReason::Verb,
        DropReason::Resource,
        DropReason::User,
        DropReason::UserAgent,
        DropReason::NoObject,
        DropReason::NoTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Stage => "stage",
            DropReason::Verb => "verb",
            DropReason::Resource => "resource",
            DropReason::User => "user",
            DropReason::UserAgent => "user_agent",
            DropReason::NoObject => "no_object",
            DropReason::NoTimestamp => "no_timestamp",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A glob over characters: `*` matches any run (also empty), `?` exactly one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    chars: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
            chars: pattern.chars().collect(),
        }
    }

    pub fn is_literal(pattern: &str) -> bool {
        !pattern.contains(['*', '?'])
    }

    pub fn matches(&self, text: &str) -> bool {
        // User agents and names are nearly always ASCII: match bytes without allocating.
        if text.is_ascii() && self.pattern.is_ascii() {
            glob_match(self.pattern.as_bytes(), text.as_bytes(), b'?', b'*')
        } else {
            let text: Vec<char> = text.chars().collect();
            glob_match(&self.chars, &text, '?', '*')
        }
    }
}

/// Linear-time wildcard matching with backtracking to the last `*` only.
fn glob_match<T: PartialEq + Copy>(p: &[T], t: &[T], one: T, run: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text index it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != run && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == run {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == run)
}

/// How a literal (non-glob) pattern compares.
#[derive(Clone, Copy, Debug)]
enum Literal {
    Exact,
    Prefix,
}

#[derive(Clone, Debug)]
enum TextPattern {
    Exact(String),
    Prefix(String),
    Glob(Glob),
}

impl TextPattern {
    fn new(pattern: &str, literal: Literal) -> TextPattern {
        if Glob::is_literal(pattern) {
            match literal {
                Literal::Exact => TextPattern::Exact(pattern.to_string()),
                Literal::Prefix => TextPattern::Prefix(pattern.to_string()),
            }
        } else {
            TextPattern::Glob(Glob::new(pattern))
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            TextPattern::Exact(p) => p == text,
            TextPattern::Prefix(p) => text.starts_with(p.as_str()),
            TextPattern::Glob(g) => g.matches(text),
        }
    }
}

/// `resource` (core group) or `group/resource`, each part exact or a glob.
#[derive(Clone, Debug)]
pub struct ResourcePattern {
    group: TextPattern,
    resource: TextPattern,
}

impl ResourcePattern {
    pub fn parse(s: &str) -> Result<ResourcePattern, String> {
        let (group, resource) = match s.split_once('/') {
            Some((g, r)) => (g, r),
            None => ("", s),
        };
        if resource.is_empty() || resource.contains('/') {
            return Err(format!(
                "invalid resource {s:?}; expected `resource` for the core group or `group/resource`, e.g. coordination.k8s.io/leases"
            ));
        }
        Ok(ResourcePattern {
            group: TextPattern::new(group, Literal::Exact),
            resource: TextPattern::new(resource, Literal::Exact),
        })
    }

    pub fn matches(&self, group: &str, resource: &str) -> bool {
        self.group.matches(group) && self.resource.matches(resource)
    }
}

/// The compiled filter of one receiver.
#[derive(Clone, Debug)]
pub struct Filter {
    stages: Vec<Stage>,
    verbs: Vec<String>,
    exclude_verbs: Vec<String>,
    resources: Vec<ResourcePattern>,
    exclude_resources: Vec<ResourcePattern>,
    users: Vec<TextPattern>,
    exclude_users: Vec<TextPattern>,
    user_agents: Vec<TextPattern>,
    exclude_user_agents: Vec<TextPattern>,
}

impl Filter {
    /// Errors are `(key relative to the receiver's section, message)`.
    pub fn new(config: &Config) -> Result<Filter, (String, String)> {
        let resources = |key: &str, list: &[String]| {
            list.iter()
                .map(|s| ResourcePattern::parse(s).map_err(|m| (key.to_string(), m)))
                .collect::<Result<Vec<_>, _>>()
        };
        let texts = |list: &[String], literal| list.iter().map(|s| TextPattern::new(s, literal)).collect();
        Ok(Filter {
            stages: config.stages.clone(),
            verbs: config.verbs.clone(),
            exclude_verbs: config.exclude_verbs.clone(),
            resources: resources("resources", &config.resources)?,
            exclude_resources: resources("exclude_resources", &config.exclude_resources)?,
            users: texts(&config.users, Literal::Exact),
            exclude_users: texts(&config.exclude_users, Literal::Exact),
            user_agents: texts(&config.user_agents, Literal::Prefix),
            exclude_user_agents: texts(&config.exclude_user_agents, Literal::Prefix),
        })
    }

    /// `Ok` when the event should become an activity. Events without a resource are not judged
    /// by the resource lists here; mapping drops them (`NoObject`).
    pub fn check(&self, event: &Event) -> Result<(), DropReason> {
        if !self.stages.contains(&event.stage) {
            return Err(DropReason::Stage);
        }
        let verb = event.verb.as_str();
        if (!self.verbs.is_empty() && !self.verbs.iter().any(|v| v == verb)) || self.exclude_verbs.iter().any(|v| v == verb)
        {
            return Err(DropReason::Verb);
        }
        if let Some(r) = &event.object_ref {
            let (g, res) = (r.api_group.as_str(), r.resource.as_str());
            if (!self.resources.is_empty() && !self.resources.iter().any(|p| p.matches(g, res)))
                || self.exclude_resources.iter().any(|p| p.matches(g, res))
            {
                return Err(DropReason::Resource);
            }
        }
        if !admits(&self.users, &self.exclude_users, &event.user.username) {
            return Err(DropReason::User);
        }
        if !admits(&self.user_agents, &self.exclude_user_agents, &event.user_agent) {
            return Err(DropReason::UserAgent);
        }
        Ok(())
    }
}

fn admits(include: &[TextPattern], exclude: &[TextPattern], text: &str) -> bool {
    (include.is_empty() || include.iter().any(|p| p.matches(text))) && !exclude.iter().any(|p| p.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::audit::decode_event;

    fn event(stage: &str, verb: &str, group: &str, resource: &str, user: &str, agent: &str) -> Event {
        let json = serde_json::json!({
            "level": "Metadata", "auditID": "x", "stage": stage, "verb": verb,
            "user": {"username": user}, "userAgent": agent,
            "objectRef": {"apiGroup": group, "resource": resource, "name": "n"},
        });
        decode_event(json.to_string().as_bytes()).unwrap()
    }

    fn filter(f: impl FnOnce(&mut Config)) -> Filter {
        let mut c = Config::default();
        f(&mut c);
        Filter::new(&c).unwrap()
    }

    #[test]
    fn globs_match_whole_strings() {
        assert!(Glob::new("a*c").matches("abbbc"));
        assert!(Glob::new("a*c").matches("ac"));
        assert!(!Glob::new("a*c").matches("acb"));
        assert!(Glob::new("*controller*").matches("kube-controller-manager/v1.31"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("*a*b").matches("xaxxab"));
        assert!(Glob::new("h?llo*").matches("hällo wörld"), "non-ASCII text matches by character");
        assert!(!Glob::new("h?llo").matches("häällo"));
    }

    #[test]
    fn defaults_drop_events_and_leases_and_early_stages() {
        let f = filter(|_| {});
        let ok = |s, g, r| f.check(&event(s, "update", g, r, "u", "kubectl/v1.31"));
        assert_eq!(ok("ResponseComplete", "apps", "deployments"), Ok(()));
        assert_eq!(ok("Panic", "", "pods"), Ok(()));
        assert_eq!(ok("ResponseComplete", "", "events"), Err(DropReason::Resource));
        assert_eq!(ok("ResponseComplete", "events.k8s.io", "events"), Err(DropReason::Resource));
        assert_eq!(ok("ResponseComplete", "coordination.k8s.io", "leases"), Err(DropReason::Resource));
        assert_eq!(ok("RequestReceived", "", "pods"), Err(DropReason::Stage));
        assert_eq!(ok("ResponseStarted", "", "pods"), Err(DropReason::Stage));
    }

    #[test]
    fn include_and_exclude_lists() {
        let f = filter(|c| {
            c.verbs = vec!["create".into(), "update".into()];
            c.exclude_verbs = vec!["update".into()];
            c.resources = vec!["*/deployments".into(), "pods".into()];
            c.exclude_resources = vec![];
            c.exclude_users = vec!["system:serviceaccount:kube-system:*".into()];
            c.user_agents = vec!["kubectl/".into(), "*manager*".into()];
        });
        let check = |verb, g, r, user, agent| f.check(&event("ResponseComplete", verb, g, r, user, agent));
        assert_eq!(check("create", "apps", "deployments", "alice", "kubectl/v1.31"), Ok(()));
        assert_eq!(check("create", "", "pods", "alice", "kube-controller-manager/v1"), Ok(()));
        assert_eq!(check("update", "", "pods", "alice", "kubectl/v1"), Err(DropReason::Verb));
        assert_eq!(check("get", "", "pods", "alice", "kubectl/v1"), Err(DropReason::Verb));
        assert_eq!(check("create", "apps", "replicasets", "alice", "kubectl/v1"), Err(DropReason::Resource));
        assert_eq!(check("create", "", "events", "alice", "kubectl/v1"), Err(DropReason::Resource));
        assert_eq!(
            check("create", "", "pods", "system:serviceaccount:kube-system:gc", "kubectl/v1"),
            Err(DropReason::User)
        );
        assert_eq!(check("create", "", "pods", "alice", "curl/8"), Err(DropReason::UserAgent));
    }

    #[test]
    fn resource_patterns_parse() {
        assert!(ResourcePattern::parse("events").unwrap().matches("", "events"));
        assert!(!ResourcePattern::parse("events").unwrap().matches("events.k8s.io", "events"));
        assert!(ResourcePattern::parse("*/events").unwrap().matches("events.k8s.io", "events"));
        assert!(ResourcePattern::parse("apps/*").unwrap().matches("apps", "statefulsets"));
        assert!(ResourcePattern::parse("a/b/c").is_err());
        assert!(ResourcePattern::parse("apps/").is_err());
    }
}
