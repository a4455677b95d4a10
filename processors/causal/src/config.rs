//! Configuration of `causal`.

use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

use crate::pattern::{Pattern, PatternConfig, default_patterns};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CausalConfig {
    /// How long an activity is held for its cause (or an earlier-stamped sibling) to arrive.
    #[serde(default = "default_buffer", with = "duration")]
    pub buffer: Duration,
    /// Timestamps of Events are often whole seconds; a cause up to this much later than its
    /// effect's stamp still counts as before it.
    #[serde(default = "default_tolerance", with = "duration")]
    pub tolerance: Duration,
    /// How far back a cause is looked for (and how long activities are remembered).
    #[serde(default = "default_horizon", with = "duration")]
    pub horizon: Duration,
    /// Activities remembered as possible causes; the oldest are forgotten first.
    #[serde(default = "default_max_activities")]
    pub max_activities: usize,
    /// Parent-reports-child patterns added to the built-in ones.
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
    /// Leave out the built-in patterns.
    #[serde(default)]
    pub no_default_patterns: bool,
    /// Event reasons that belong to taking an object down (placed under a `delete` report).
    #[serde(default = "default_teardown_reasons")]
    pub teardown_reasons: Vec<String>,
    /// Event reasons that report a write to the object by whoever sent them (Flux's `Sync`):
    /// such an Event triggers what the object's controllers do next.
    #[serde(default = "default_trigger_reasons")]
    pub trigger_reasons: Vec<String>,
    /// How much later than the effects a trigger Event may be stamped: tools report a write
    /// after it went through, by which time the controllers may already have acted.
    #[serde(default = "default_trigger_delay", with = "duration")]
    pub trigger_delay: Duration,
    /// Annotations holding a W3C traceparent: the object's root activity continues that trace.
    #[serde(default = "default_traceparent_annotations")]
    pub traceparent_annotations: Vec<String>,
    /// Annotations (any non-empty value but `false`) that make an object start its own trace:
    /// its activities are not placed under its owners'.
    #[serde(default = "default_trace_start_annotations")]
    pub trace_start_annotations: Vec<String>,
}

impl Default for CausalConfig {
    fn default() -> Self {
        CausalConfig {
            buffer: default_buffer(),
            tolerance: default_tolerance(),
            horizon: default_horizon(),
            max_activities: default_max_activities(),
            patterns: vec![],
            no_default_patterns: false,
            teardown_reasons: default_teardown_reasons(),
            trigger_reasons: default_trigger_reasons(),
            trigger_delay: default_trigger_delay(),
            traceparent_annotations: default_traceparent_annotations(),
            trace_start_annotations: default_trace_start_annotations(),
        }
    }
}

fn default_buffer() -> Duration {
    Duration::from_secs(5)
}

fn default_tolerance() -> Duration {
    Duration::from_secs(1)
}

fn default_horizon() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_activities() -> usize {
    200_000
}

fn default_teardown_reasons() -> Vec<String> {
    ["Killing", "SuccessfulDelete", "Preempting", "Evicted", "Deleted"].map(String::from).to_vec()
}

fn default_trigger_reasons() -> Vec<String> {
    vec!["Sync".into()]
}

fn default_trigger_delay() -> Duration {
    Duration::from_secs(10)
}

fn default_traceparent_annotations() -> Vec<String> {
    vec!["kausal.io/traceparent".into()]
}

fn default_trace_start_annotations() -> Vec<String> {
    vec!["kausal.io/trace-start".into()]
}

impl CausalConfig {
    /// The patterns in force, compiled.
    pub fn compiled_patterns(&self) -> Result<Vec<Pattern>, String> {
        let defaults = if self.no_default_patterns { vec![] } else { default_patterns() };
        defaults.into_iter().chain(self.patterns.iter().cloned()).map(Pattern::compile).collect()
    }

    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.max_activities == 0 {
            return Err(config.error("max_activities", "must be at least 1"));
        }
        self.compiled_patterns().map_err(|m| config.error("patterns", m))?;
        Ok(())
    }
}
