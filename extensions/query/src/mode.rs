//! Display modes (the "services" of the Jaeger API) and the query-side trace ids that carry
//! them. A trace id is `ff` + 8 hex digits of mode + `e1e3e7` + 16 hex digits naming a stored
//! (root object, time range), as Kelemetry does, so editing the mode digits in a URL switches
//! the view of the same object and range. This module only names and encodes modes; what a
//! mode looks like is `assemble.rs`'s business and what it loads is `load.rs`'s.
//!
//! The 8 mode digits follow Kelemetry's layout: the first digit is the view (Kelemetry's base
//! configs: `0` tree, `1` timeline, `2` tracing, `3` grouped; `4` is kausal's `causal` view), the last digit holds the link selection bits (`1` ancestors, `2` children,
//! so `3` is the full tree and `0` the object alone). Every other digit must be zero.

use std::fmt;

/// How an object's story is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// One span per object, activities as logs on it, hierarchy = ownership.
    Tracing,
    /// As `Tracing`, with one child span per data source (audit, event, change) holding that
    /// source's activities as logs.
    Grouped,
    /// Activities as child spans of their object, with their attributes as tags.
    Tree,
    /// The root object with every activity of every object in scope directly beneath it.
    Timeline,
    /// kspan's view: activities of the objects in scope nested under the activity that caused
    /// them (the `causal` span links the causal processor leads to); the rest under the root.
    Causal,
}

/// The view digit of the `causal` view (kspan-style cause and effect).
pub const CAUSAL_VIEW_DIGIT: u32 = 4;

impl View {
    pub const ALL: [View; 5] = [View::Tracing, View::Grouped, View::Tree, View::Timeline, View::Causal];

    pub fn name(self) -> &'static str {
        match self {
            View::Tracing => "tracing",
            View::Grouped => "grouped",
            View::Tree => "tree",
            View::Timeline => "timeline",
            View::Causal => "causal",
        }
    }

    fn digit(self) -> u32 {
        match self {
            View::Tree => 0,
            View::Timeline => 1,
            View::Tracing => 2,
            View::Grouped => 3,
            View::Causal => CAUSAL_VIEW_DIGIT,
        }
    }

    fn from_digit(d: u32) -> Option<View> {
        View::ALL.into_iter().find(|v| v.digit() == d)
    }

    pub fn parse(name: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// Which linked objects a trace includes besides the object it was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The object alone.
    Object,
    /// Its owners, up the parent links (up to `max_depth` hops); the topmost becomes the root.
    Ancestors,
    /// Its owned objects, down the child links (up to `max_depth` hops).
    Children,
    /// Ancestors and children together (siblings are not included).
    FullTree,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::FullTree, Scope::Ancestors, Scope::Children, Scope::Object];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Object => "object",
            Scope::Ancestors => "ancestors",
            Scope::Children => "children",
            Scope::FullTree => "full tree",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        let name = name.replace(['_', '-'], " ");
        Scope::ALL.into_iter().find(|s| s.name() == name || (name == "full" && *s == Scope::FullTree))
    }

    pub fn ancestors(self) -> bool {
        matches!(self, Scope::Ancestors | Scope::FullTree)
    }

    pub fn children(self) -> bool {
        matches!(self, Scope::Children | Scope::FullTree)
    }

    fn bits(self) -> u32 {
        u32::from(self.ancestors()) | u32::from(self.children()) << 1
    }

    fn from_bits(bits: u32) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.bits() == bits)
    }
}

/// A view combined with a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    pub view: View,
    pub scope: Scope,
}

impl Default for DisplayMode {
    /// What `/redirect` and the UI open: the ownership story up and down.
    fn default() -> Self {
        DisplayMode { view: View::Tracing, scope: Scope::FullTree }
    }
}

/// Every mode, in the order `/api/services` lists them.
pub fn all_modes() -> Vec<DisplayMode> {
    View::ALL
        .into_iter()
        .flat_map(|view| Scope::ALL.into_iter().map(move |scope| DisplayMode { view, scope }))
        .collect()
}

impl DisplayMode {
    /// The mode a Jaeger service name stands for: `tracing` (full tree), `tracing [children]`,
    /// `tree [object]`, ...
    pub fn from_service(name: &str) -> Option<DisplayMode> {
        let name = name.trim();
        let (view, scope) = match name.split_once('[') {
            Some((view, rest)) => (view.trim(), Scope::parse(rest.strip_suffix(']')?.trim())?),
            None => (name, Scope::FullTree),
        };
        Some(DisplayMode { view: View::parse(view)?, scope })
    }

    /// The Jaeger service name: the view alone for the full tree (the default scope), else
    /// `view [scope]` in Kelemetry's modifier style.
    pub fn service_name(self) -> String {
        match self.scope {
            Scope::FullTree => self.view.name().to_string(),
            scope => format!("{} [{}]", self.view.name(), scope.name()),
        }
    }

    pub fn code(self) -> u32 {
        self.view.digit() << 28 | self.scope.bits()
    }

    pub fn from_code(code: u32) -> Result<DisplayMode, TraceIdError> {
        let view_digit = code >> 28;
        if code & 0x0fff_fffc != 0 {
            return Err(TraceIdError::UnknownMode(code));
        }
        let view = View::from_digit(view_digit).ok_or(TraceIdError::UnknownMode(code))?;
        let scope = Scope::from_bits(code & 3).ok_or(TraceIdError::UnknownMode(code))?;
        Ok(DisplayMode { view, scope })
    }
}

/// A query-side trace id: a display mode and the id of a stored (root, range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryTraceId {
    pub mode: DisplayMode,
    pub id: u64,
}

/// Why a trace id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceIdError {
    #[error("trace id must be 32 hex digits, got {0} characters")]
    Length(usize),
    #[error("trace id must be hex digits only")]
    NotHex,
    #[error("trace id must start with `ff` and have `e1e3e7` at digits 11-16 (kausal trace ids come from a search)")]
    Scheme,
    #[error("trace id names unknown display mode {0:08x}")]
    UnknownMode(u32),
}

impl QueryTraceId {
    pub fn parse(s: &str) -> Result<QueryTraceId, TraceIdError> {
        if s.len() != 32 {
            return Err(TraceIdError::Length(s.chars().count()));
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TraceIdError::NotHex);
        }
        let s = s.to_ascii_lowercase();
        if &s[..2] != "ff" || &s[10..16] != "e1e3e7" {
            return Err(TraceIdError::Scheme);
        }
        let code = u32::from_str_radix(&s[2..10], 16).map_err(|_| TraceIdError::NotHex)?;
        let id = u64::from_str_radix(&s[16..], 16).map_err(|_| TraceIdError::NotHex)?;
        let mode = DisplayMode::from_code(code)?;
        Ok(QueryTraceId { mode, id })
    }

    /// The same stored trace in another mode.
    pub fn with_mode(self, mode: DisplayMode) -> QueryTraceId {
        QueryTraceId { mode, id: self.id }
    }
}

impl fmt::Display for QueryTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ff{:08x}e1e3e7{:016x}", self.mode.code(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_round_trip_and_reject_garbage() {
        let mode = DisplayMode::from_service("tracing").unwrap();
        assert_eq!(mode, DisplayMode::default());
        let id = QueryTraceId { mode, id: 0x0123_4567_89ab_cdef };
        let text = id.to_string();
        assert_eq!(text, "ff20000003e1e3e70123456789abcdef");
        assert_eq!(QueryTraceId::parse(&text), Ok(id));
        assert_eq!(QueryTraceId::parse(&text.to_uppercase()), Ok(id));
        assert_eq!(QueryTraceId::parse("abc"), Err(TraceIdError::Length(3)));
        assert_eq!(QueryTraceId::parse("ff20000003e1e3e70123456789abcdeg"), Err(TraceIdError::NotHex));
        assert_eq!(QueryTraceId::parse("0020000003e1e3e70123456789abcdef"), Err(TraceIdError::Scheme));
        assert_eq!(QueryTraceId::parse("ff00090002e1e3e70123456789abcdef"), Err(TraceIdError::UnknownMode(0x0009_0002)));
        assert_eq!(QueryTraceId::parse("ff90000000e1e3e70123456789abcdef"), Err(TraceIdError::UnknownMode(0x9000_0000)));
        let causal = QueryTraceId::parse("ff40000003e1e3e70123456789abcdef").unwrap();
        assert_eq!(causal.mode, DisplayMode { view: View::Causal, scope: Scope::FullTree });
        assert_eq!(QueryTraceId::parse("ff50000003e1e3e70123456789abcdef"), Err(TraceIdError::UnknownMode(0x5000_0003)));
        assert_eq!(DisplayMode::from_service("nope"), None);
        assert_eq!(DisplayMode::from_service("tracing [sideways]"), None);
    }

    #[test]
    fn every_mode_has_a_distinct_code_and_name_that_round_trip() {
        let modes = all_modes();
        assert_eq!(modes.len(), 20);
        let mut codes: Vec<u32> = modes.iter().map(|m| m.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 20);
        for mode in modes {
            assert_eq!(DisplayMode::from_code(mode.code()), Ok(mode));
            assert_eq!(DisplayMode::from_service(&mode.service_name()), Some(mode), "{}", mode.service_name());
        }
        // Kelemetry's digits for its base configs.
        let code = |s: &str| DisplayMode::from_service(s).map(|m| m.code());
        assert_eq!(code("tree [object]"), Some(0x0000_0000));
        assert_eq!(code("timeline [object]"), Some(0x1000_0000));
        assert_eq!(code("tracing [children]"), Some(0x2000_0002));
        assert_eq!(code("grouped [ancestors]"), Some(0x3000_0001));
        assert_eq!(code("tree [full_tree]"), Some(0x0000_0003));
    }
}
