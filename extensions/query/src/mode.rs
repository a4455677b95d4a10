//! Display modes (the "services" of the Jaeger API) and the query-side trace ids that carry
//! them. A trace id is `ff` + 8 hex digits of mode + `e1e3e7` + 16 hex digits naming a stored
//! (root object, time range), as Kelemetry does, so editing the mode digits in a URL switches
//! the view of the same object and range.

use std::fmt;

/// How an object's story is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// One span per object, activities as logs on it, hierarchy = ownership.
    Tracing,
}

/// Which linked objects a trace includes besides its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Owned objects, following child links down from the root.
    Children,
}

/// A view combined with a scope. The 32-bit code in trace ids is `0xVVVV_SSSS`: view in the
/// high half, scope in the low half.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    pub view: View,
    pub scope: Scope,
}

/// Every mode, in the order `/api/services` lists them, with its service name.
pub const MODES: &[(&str, DisplayMode)] = &[("tracing", DisplayMode { view: View::Tracing, scope: Scope::Children })];

impl DisplayMode {
    /// The mode a Jaeger service name stands for.
    pub fn from_service(name: &str) -> Option<DisplayMode> {
        MODES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }

    pub fn service_name(self) -> &'static str {
        MODES.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("tracing")
    }

    pub fn code(self) -> u32 {
        let view: u32 = match self.view {
            View::Tracing => 1,
        };
        let scope: u32 = match self.scope {
            Scope::Children => 2,
        };
        view << 16 | scope
    }

    pub fn from_code(code: u32) -> Option<DisplayMode> {
        let view = match code >> 16 {
            1 => View::Tracing,
            _ => return None,
        };
        let scope = match code & 0xffff {
            2 => Scope::Children,
            _ => return None,
        };
        Some(DisplayMode { view, scope })
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
        let mode = DisplayMode::from_code(code).ok_or(TraceIdError::UnknownMode(code))?;
        Ok(QueryTraceId { mode, id })
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
        let id = QueryTraceId { mode, id: 0x0123_4567_89ab_cdef };
        let text = id.to_string();
        assert_eq!(text, "ff00010002e1e3e70123456789abcdef");
        assert_eq!(QueryTraceId::parse(&text), Ok(id));
        assert_eq!(QueryTraceId::parse(&text.to_uppercase()), Ok(id));
        assert_eq!(QueryTraceId::parse("abc"), Err(TraceIdError::Length(3)));
        assert_eq!(QueryTraceId::parse("ff00010002e1e3e70123456789abcdeg"), Err(TraceIdError::NotHex));
        assert_eq!(QueryTraceId::parse("0000010002e1e3e70123456789abcdef"), Err(TraceIdError::Scheme));
        assert_eq!(QueryTraceId::parse("ff00090002e1e3e70123456789abcdef"), Err(TraceIdError::UnknownMode(0x0009_0002)));
        assert_eq!(DisplayMode::from_service("nope"), None);
    }
}
