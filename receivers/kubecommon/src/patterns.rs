//! Resource patterns as users write them: `pods`, `deployments.apps`, `*.example.com`, `*`
//! (`resource[.group]`, `*` matching any run of characters). Pure matching, no discovery.

/// Include and exclude lists; exclude wins.
#[derive(Clone, Debug, Default)]
pub struct ResourcePatterns {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl ResourcePatterns {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        ResourcePatterns { include: include.to_vec(), exclude: exclude.to_vec() }
    }

    /// Whether the resource `resource` of API group `group` is selected.
    pub fn matches(&self, group: &str, resource: &str) -> bool {
        let name = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        let included = self.include.is_empty() || self.include.iter().any(|p| glob(p, &name));
        included && !self.exclude.iter().any(|p| glob(p, &name))
    }
}

/// `*` matches any run of characters (including none); everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude_and_globs() {
        let p = ResourcePatterns::new(&[], &["events".into(), "events.events.k8s.io".into(), "leases.coordination.k8s.io".into()]);
        assert!(p.matches("", "pods"));
        assert!(p.matches("apps", "deployments"));
        assert!(!p.matches("", "events"));
        assert!(!p.matches("coordination.k8s.io", "leases"));
        let only = ResourcePatterns::new(&["*.example.com".into(), "pods".into()], &[]);
        assert!(only.matches("example.com", "widgets"));
        assert!(only.matches("", "pods"));
        assert!(!only.matches("apps", "deployments"));
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXbY") && glob("*", ""));
    }
}
