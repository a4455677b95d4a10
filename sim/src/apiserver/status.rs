//! API errors as kube-apiserver reports them: a `metav1.Status` body with the HTTP code, the
//! machine-readable reason and the exact message formats clients and humans are used to.
//! This module only builds errors; deciding *when* to fail lives with the store and handlers.

use kausal_core::audit::{Status, StatusCause, StatusDetails};
use serde_json::json;

/// A failed API request, rendered as a `Status` with `status: Failure`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    /// `metav1.StatusReason`, e.g. `NotFound`, `Conflict`, `Expired`.
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<StatusDetails>>,
}

/// How a resource is named in messages: `deployments.apps`, or `pods` for the core group.
pub fn qualified_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, resource: &str, name: &str) -> Option<Box<StatusDetails>> {
    Some(Box::new(StatusDetails {
        name: name.to_string(),
        group: group.to_string(),
        kind: resource.to_string(),
        ..Default::default()
    }))
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "{} \"{name}\" not found",
                qualified_resource(group, resource)
            ),
            details: details(group, resource, name),
        }
    }

    /// A path the server has no handler or resource for.
    pub fn unknown_resource() -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".to_string(),
            details: Some(Box::default()),
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!(
                "{} \"{name}\" already exists",
                qualified_resource(group, resource)
            ),
            details: details(group, resource, name),
        }
    }

    /// The optimistic-concurrency failure of an update with a stale resourceVersion.
    pub fn conflict(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified_resource(group, resource)
            ),
            details: details(group, resource, name),
        }
    }

    /// 422 Invalid; `kind` is the object kind (`Deployment`), causes name the fields.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> ApiError {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let list = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{qualified_kind} \"{name}\" is invalid: {list}"),
            details: Some(Box::new(StatusDetails {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes,
                ..Default::default()
            })),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".to_string(),
            details: Some(Box::default()),
        }
    }

    /// 410 Gone for a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 410,
            reason: "Expired",
            message: message.into(),
            details: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".to_string(),
            details: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
            details: None,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
            details: None,
        }
    }

    pub fn request_entity_too_large(limit: usize) -> ApiError {
        ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!("Request entity too large: limit is {limit}"),
            details: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 500,
            reason: "InternalError",
            message: message.into(),
            details: None,
        }
    }

    /// The `Status` as the audit `responseStatus` and as the response body.
    pub fn to_status(&self) -> Status {
        Status {
            kind: Some("Status".to_string()),
            api_version: Some("v1".to_string()),
            metadata: Some(json!({})),
            status: "Failure".to_string(),
            message: self.message.clone(),
            reason: self.reason.to_string(),
            details: self.details.as_deref().cloned(),
            code: i32::from(self.code),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_status())
            .unwrap_or_else(|_| json!({"kind": "Status", "code": self.code}))
    }
}

/// `Status` with `status: Success`, the body of a delete that removed the object immediately
/// for clients that asked for it, and the audit `responseStatus` of any success.
pub fn success_status(code: u16) -> Status {
    Status {
        metadata: Some(json!({})),
        code: i32::from(code),
        ..Default::default()
    }
}

/// One `details.causes` entry of an Invalid error.
pub fn cause(reason: &str, field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: reason.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_matches_kube_apiserver() {
        let e = ApiError::conflict("apps", "deployments", "demo");
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on deployments.apps \"demo\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let s = e.to_json();
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["code"], 409);
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["status"], "Failure");
    }

    #[test]
    fn core_group_resources_are_unqualified() {
        assert_eq!(
            ApiError::not_found("", "pods", "p").message,
            "pods \"p\" not found"
        );
    }

    #[test]
    fn invalid_lists_several_causes_in_brackets() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "demo",
            vec![
                cause("FieldValueRequired", "spec.selector", "Required value"),
                cause(
                    "FieldValueRequired",
                    "spec.template.spec.containers",
                    "Required value",
                ),
            ],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"demo\" is invalid: [spec.selector: Required value, spec.template.spec.containers: Required value]"
        );
        assert_eq!(e.code, 422);
    }
}
