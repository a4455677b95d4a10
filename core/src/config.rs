//! Loading the YAML configuration: several files deep-merged (figment + serde-saphyr), then
//! `${env:VAR}` / `${env:VAR:-default}` expanded in values, then the top-level shape checked.
//! Every error names the key path, and the file and line where it can be found. Checking the
//! service graph against the registry is `service::validate`'s job, not this module's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::Format;
use figment::value::{Dict, Tag, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_saphyr::figment::Yaml;

use crate::component::ComponentId;

/// One configuration problem: where (key path, file, line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `receivers.kubeaudit.endpoint`; empty for the whole document.
    pub path: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            file: None,
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Several problems, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The texts of the loaded files, kept to point errors at lines.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<(PathBuf, String)>,
}

impl Sources {
    /// Fills in file and line for `err` from the last file (highest precedence) that defines the
    /// deepest existing prefix of its path.
    pub fn locate(&self, mut err: ConfigError) -> ConfigError {
        if err.file.is_some() || err.path.is_empty() {
            return err;
        }
        let parts: Vec<&str> = split_path(&err.path);
        for depth in (1..=parts.len()).rev() {
            for (file, text) in self.files.iter().rev() {
                if let Some(line) = locate_line(text, &parts[..depth]) {
                    err.file = Some(file.clone());
                    err.line = Some(line);
                    return err;
                }
            }
        }
        err
    }
}

/// Splits a dotted path; component IDs may not contain dots, so a plain split is exact.
fn split_path(path: &str) -> Vec<&str> {
    path.split('.').filter(|p| !p.is_empty()).collect()
}

/// 1-based line on which the block-style mapping key at `path` is written, if any. Flow-style
/// mappings and keys inside sequences are not searched.
fn locate_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if trimmed.starts_with('-') {
            continue;
        }
        let Some(colon) = trimmed.find(':') else { continue };
        let after = &trimmed[colon + 1..];
        if !(after.is_empty() || after.starts_with(' ') || after.starts_with('\t')) {
            continue;
        }
        let key = trimmed[..colon].trim().trim_matches(['"', '\'']).to_string();
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return Some(i + 1);
        }
    }
    None
}

fn figment_error(prefix: &str, e: figment::Error) -> ConfigErrors {
    ConfigErrors(
        e.into_iter()
            .map(|e| {
                let mut parts: Vec<String> = split_path(prefix).into_iter().map(str::to_string).collect();
                parts.extend(e.path.iter().cloned());
                let message = match &e.kind {
                    figment::error::Kind::UnknownField(field, expected) => {
                        if parts.last() != Some(field) {
                            parts.push(field.clone());
                        }
                        if expected.is_empty() {
                            "unknown key".to_string()
                        } else {
                            format!("unknown key; expected one of: {}", expected.join(", "))
                        }
                    }
                    figment::error::Kind::MissingField(field) => {
                        if parts.last().map(String::as_str) != Some(field.as_ref()) {
                            parts.push(field.to_string());
                        }
                        "required key is missing".to_string()
                    }
                    other => other.to_string(),
                };
                ConfigError::new(parts.join("."), message)
            })
            .collect(),
    )
}

/// One component's section, parsed on demand into the component's own config type.
#[derive(Clone)]
pub struct ComponentConfig {
    pub id: ComponentId,
    /// `receivers.kubeaudit` etc.
    pub path: String,
    value: Value,
    sources: Arc<Sources>,
}

impl ComponentConfig {
    pub fn new(id: ComponentId, path: String, value: Value, sources: Arc<Sources>) -> Self {
        // `ownerlinker:` with nothing after it means "all defaults".
        let value = match value {
            Value::Empty(tag, _) => Value::Dict(tag, Dict::new()),
            v => v,
        };
        ComponentConfig { id, path, value, sources }
    }

    /// A config for tests and embedded defaults, from YAML text.
    pub fn from_yaml(id: &str, yaml: &str) -> Result<ComponentConfig, ConfigErrors> {
        let id = ComponentId::parse(id).map_err(|m| ConfigError::new("", m))?;
        let value: Value = if yaml.trim().is_empty() {
            Value::Dict(Tag::Default, Dict::new())
        } else {
            Figment::from(Yaml::string(yaml))
                .extract::<Dict>()
                .map(|d| Value::Dict(Tag::Default, d))
                .map_err(|e| figment_error("", e))?
        };
        Ok(ComponentConfig::new(id.clone(), id.to_string(), value, Arc::default()))
    }

    /// Deserializes the section; errors carry the full key path and line.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.value.deserialize::<T>().map_err(|e| {
            let mut errs = figment_error(&self.path, e).0;
            let first = errs.swap_remove(0);
            self.sources.locate(first)
        })
    }

    /// An error about a key of this section, located in the files.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let path = if key.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{key}", self.path)
        };
        self.sources.locate(ConfigError::new(path, message))
    }
}

impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig").field("path", &self.path).finish()
    }
}

/// `service:` of the configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub exporters: Vec<String>,
    /// Items the pipeline's entrance queue holds before refusing data (retryable).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
}

fn default_queue_size() -> usize {
    50_000
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub encoding: LogEncoding,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: default_log_level(),
            encoding: LogEncoding::Console,
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; none when absent.
    #[serde(default)]
    pub address: Option<String>,
}

/// The whole configuration after merging and env expansion.
#[derive(Clone, Debug)]
pub struct Config {
    pub receivers: BTreeMap<ComponentId, ComponentConfig>,
    pub processors: BTreeMap<ComponentId, ComponentConfig>,
    pub exporters: BTreeMap<ComponentId, ComponentConfig>,
    pub extensions: BTreeMap<ComponentId, ComponentConfig>,
    pub service: ServiceConfig,
    /// The resolved document, for `print-config`.
    pub resolved: Dict,
    pub sources: Arc<Sources>,
}

impl Config {
    /// Loads and merges `paths` in order (later files win), then expands `${env:...}` using
    /// `env` (usually `std::env::var`).
    pub fn load(paths: &[PathBuf], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        if paths.is_empty() {
            return Err(ConfigError::new("", "no configuration given; pass --config FILE").into());
        }
        let mut sources = Sources::default();
        let mut figment = Figment::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                path: String::new(),
                file: Some(path.clone()),
                line: None,
                message: format!("cannot read: {e}"),
            })?;
            // Parse each file alone first so syntax errors name their file and line.
            if let Err(e) = serde_saphyr::from_str::<serde_json::Value>(&text) {
                return Err(ConfigError {
                    path: String::new(),
                    file: Some(path.clone()),
                    line: None,
                    message: format!("not valid YAML: {e}"),
                }
                .into());
            }
            figment = figment.merge(Yaml::string(&text));
            sources.files.push((path.clone(), text));
        }
        Config::from_figment(figment, sources, env)
    }

    /// Loads configuration from YAML text (tests, embedded defaults).
    pub fn from_yaml(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let sources = Sources {
            files: vec![(PathBuf::from("<config>"), text.to_string())],
        };
        Config::from_figment(Figment::from(Yaml::string(text)), sources, env)
    }

    fn from_figment(
        figment: Figment,
        sources: Sources,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let sources = Arc::new(sources);
        let locate = |errs: ConfigErrors| ConfigErrors(errs.0.into_iter().map(|e| sources.locate(e)).collect());
        let mut dict: Dict = figment.extract().map_err(|e| locate(figment_error("", e)))?;
        let mut errors = Vec::new();
        for (key, value) in dict.iter_mut() {
            expand_env(value, key, env, &mut errors);
        }
        if !errors.is_empty() {
            return Err(locate(ConfigErrors(errors)));
        }
        const SECTIONS: [&str; 5] = ["receivers", "processors", "exporters", "extensions", "service"];
        for key in dict.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                errors.push(ConfigError::new(
                    key.clone(),
                    format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
                ));
            }
        }
        let mut sections: BTreeMap<&str, BTreeMap<ComponentId, ComponentConfig>> = BTreeMap::new();
        for kind in &SECTIONS[..4] {
            let mut components = BTreeMap::new();
            match dict.get(*kind) {
                None | Some(Value::Empty(..)) => {}
                Some(Value::Dict(_, entries)) => {
                    for (id, value) in entries {
                        let path = format!("{kind}.{id}");
                        match ComponentId::parse(id) {
                            Ok(cid) => {
                                components.insert(
                                    cid.clone(),
                                    ComponentConfig::new(cid, path, value.clone(), sources.clone()),
                                );
                            }
                            Err(m) => errors.push(ConfigError::new(path, m)),
                        }
                    }
                }
                Some(_) => errors.push(ConfigError::new(*kind, "must be a mapping of component IDs to settings")),
            }
            sections.insert(kind, components);
        }
        let service = match dict.get("service") {
            None => {
                errors.push(ConfigError::new("service", "required key is missing"));
                ServiceConfig::default()
            }
            Some(v) => v.deserialize::<ServiceConfig>().unwrap_or_else(|e| {
                errors.extend(figment_error("service", e).0);
                ServiceConfig::default()
            }),
        };
        if !errors.is_empty() {
            return Err(locate(ConfigErrors(errors)));
        }
        let mut take = |k: &str| sections.remove(k).unwrap_or_default();
        Ok(Config {
            receivers: take("receivers"),
            processors: take("processors"),
            exporters: take("exporters"),
            extensions: take("extensions"),
            service,
            resolved: dict,
            sources,
        })
    }

    /// The resolved configuration (merged, env expanded) as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(&self.resolved).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Expands `${env:NAME}` and `${env:NAME:-default}` inside string values; `$$` is a literal `$`.
/// A value that is exactly one reference takes the type its text reads as (number, bool).
fn expand_env(value: &mut Value, path: &str, env: &dyn Fn(&str) -> Option<String>, errors: &mut Vec<ConfigError>) {
    match value {
        Value::String(tag, s) => {
            if !s.contains('$') {
                return;
            }
            match expand_str(s, env) {
                Ok((expanded, whole)) => {
                    *value = if whole { typed_scalar(*tag, expanded) } else { Value::String(*tag, expanded) };
                }
                Err(m) => errors.push(ConfigError::new(path, m)),
            }
        }
        Value::Dict(_, d) => {
            for (k, v) in d.iter_mut() {
                expand_env(v, &format!("{path}.{k}"), env, errors);
            }
        }
        Value::Array(_, items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, &format!("{path}[{i}]"), env, errors);
            }
        }
        _ => {}
    }
}

/// Returns the expanded text, and whether the input was exactly one `${env:...}` reference.
fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut references = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated ${{...}} in {s:?}"))?;
            let reference = &body[..end];
            let spec = reference
                .strip_prefix("env:")
                .ok_or_else(|| format!("unsupported reference ${{{reference}}}; use ${{env:NAME}} or ${{env:NAME:-default}}"))?;
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?} in {s:?}"));
            }
            match env(name).filter(|v| !v.is_empty() || default.is_none()) {
                Some(v) => out.push_str(&v),
                None => match default {
                    Some(d) => out.push_str(d),
                    None => return Err(format!("environment variable {name} is not set and has no default (use ${{env:{name}:-default}})")),
                },
            }
            references += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    let whole = references == 1 && s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
    Ok((out, whole))
}

fn typed_scalar(tag: Tag, text: String) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = text.parse::<f64>()
        && text.contains('.')
    {
        return Value::from(f);
    }
    match text.as_str() {
        "true" => Value::Bool(tag, true),
        "false" => Value::Bool(tag, false),
        _ => Value::String(tag, text),
    }
}

/// Durations in config: `500ms`, `15s`, `30m`, `1h`, `7d`, or a bare number of seconds.
pub mod duration {
    use super::*;
    use serde::Deserializer;

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}; expected e.g. 500ms, 15s, 30m, 1h, 7d"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1000.0,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            u => return Err(format!("invalid duration unit {u:?} in {s:?}; use ms, s, m, h or d")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("invalid duration {s:?}"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!("invalid duration {n}"))),
            Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

/// Reads a config file path relative to the working directory, for error messages.
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const BASE: &str = "receivers:\n  kubeaudit:\n    endpoint: 0.0.0.0:8443\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    kube:\n      receivers: [kubeaudit]\n      exporters: [debug]\n";

    #[test]
    fn unknown_top_level_key_names_path_and_line() {
        let err = Config::from_yaml(&format!("{BASE}recievers: {{}}\n"), &no_env).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "recievers");
        assert_eq!(e.line, Some(11));
        assert!(err.to_string().contains("<config>:11: recievers: unknown key"), "{err}");
    }

    #[test]
    fn unknown_service_key_is_rejected_with_path() {
        let text = BASE.replace("      exporters: [debug]\n", "      exporters: [debug]\n      exporter: [x]\n");
        let err = Config::from_yaml(&text, &no_env).unwrap_err();
        assert_eq!(err.0[0].path, "service.pipelines.kube.exporter");
        assert_eq!(err.0[0].line, Some(11));
    }

    #[test]
    fn env_references_expand_with_defaults_and_types() {
        let text = "receivers:\n  kubeaudit:\n    endpoint: \"${env:HOST:-127.0.0.1}:${env:PORT}\"\n    limit: ${env:PORT}\n    literal: \"$$HOME\"\nservice: {}\n";
        let env = |k: &str| (k == "PORT").then(|| "8443".to_string());
        let cfg = Config::from_yaml(text, &env).unwrap();
        #[derive(Deserialize)]
        struct R {
            endpoint: String,
            limit: u32,
            literal: String,
        }
        let r: R = cfg.receivers.values().next().unwrap().parse().unwrap();
        assert_eq!((r.endpoint.as_str(), r.limit, r.literal.as_str()), ("127.0.0.1:8443", 8443, "$HOME"));
    }

    #[test]
    fn unset_env_without_default_is_an_error_naming_the_key() {
        let text = "receivers:\n  kubeaudit:\n    token: ${env:KAUSAL_TEST_UNSET}\nservice: {}\n";
        let err = Config::from_yaml(text, &no_env).unwrap_err();
        assert_eq!(err.0[0].path, "receivers.kubeaudit.token");
        assert_eq!(err.0[0].line, Some(3));
        assert!(err.0[0].message.contains("KAUSAL_TEST_UNSET is not set"), "{err}");
    }

    #[test]
    fn component_config_errors_carry_full_path() {
        let cfg = Config::from_yaml(BASE, &no_env).unwrap();
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Other {
            listen: String,
        }
        let err = cfg.receivers.values().next().unwrap().parse::<Other>().unwrap_err();
        assert_eq!(err.path, "receivers.kubeaudit.endpoint");
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn files_deep_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, BASE).unwrap();
        std::fs::write(&b, "receivers:\n  kubeaudit:\n    cluster: prod\n").unwrap();
        let cfg = Config::load(&[a, b], &no_env).unwrap();
        #[derive(Deserialize)]
        struct R {
            endpoint: String,
            cluster: String,
        }
        let r: R = cfg.receivers.values().next().unwrap().parse().unwrap();
        assert_eq!((r.endpoint.as_str(), r.cluster.as_str()), ("0.0.0.0:8443", "prod"));
        assert!(cfg.to_yaml().contains("cluster: prod"));
    }

    #[test]
    fn yaml_syntax_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("bad.yaml");
        std::fs::write(&a, "receivers:\n  kubeaudit: [\n").unwrap();
        let err = Config::load(&[a], &no_env).unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(duration::parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(duration::parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration::parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(duration::parse("5 parsecs").is_err());
    }
}
