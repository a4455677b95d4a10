//! Small helpers for building and reading OTLP attribute values, and HTTP status texts for span
//! names. Shared by everything that writes or reads spans.

use crate::otlp_common::{AnyValue, ArrayValue, KeyValue, any_value::Value};

pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(Value::IntValue(value)) }),
    }
}

pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(Value::BoolValue(value)) }),
    }
}

pub fn kv_strings(key: &str, values: impl IntoIterator<Item = String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: values
                    .into_iter()
                    .map(|v| AnyValue { value: Some(Value::StringValue(v)) })
                    .collect(),
            })),
        }),
    }
}

/// The reason phrase of an HTTP status code (RFC 9110), as the apiserver's clients show it.
pub fn http_status_text(code: i32) -> Option<&'static str> {
    Some(match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The string value of attribute `key`, if present and a string.
pub fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// The integer value of attribute `key`, if present and an integer.
pub fn attr_int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_back() {
        let attrs = vec![kv_str("a", "x"), kv_int("b", 7), kv_bool("c", true)];
        assert_eq!(attr_str(&attrs, "a"), Some("x"));
        assert_eq!(attr_int(&attrs, "b"), Some(7));
        assert_eq!(attr_str(&attrs, "b"), None);
        assert_eq!(attr_str(&attrs, "zz"), None);
        assert_eq!(http_status_text(409), Some("Conflict"));
    }
}
