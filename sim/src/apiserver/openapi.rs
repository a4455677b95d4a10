//! The OpenAPI documents kubectl reads before it writes: the v3 index (`/openapi/v3`) and one
//! document per group/version whose paths declare the `fieldValidation` parameter, so kubectl
//! leaves validation to the server. The documents deliberately carry no component schemas:
//! kubectl then computes apply patches from its compiled-in types, which is exactly right for
//! the built-in resources, and treats custom resources as schemaless. `/openapi/v2` is an
//! empty Swagger document for older clients.

use serde_json::{Map, Value, json};

use super::resources::Registry;

/// Hash in `serverRelativeURL`s; clients only use it as a cache key.
fn etag(registry: &Registry, group: &str, version: &str) -> String {
    let names: Vec<&str> = registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| t.plural.as_str())
        .collect();
    format!("{:016X}", xx_like_hash(&names.join(",")))
}

fn xx_like_hash(s: &str) -> u64 {
    // FNV-1a: stable across runs, no dependency needed for a cache key.
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of per-group/version documents.
pub fn v3_root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let p = gv_path(&group, &version);
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", etag(registry, &group, &version))}));
        }
    }
    json!({"paths": paths})
}

fn operation(
    verb: &str,
    kind: &str,
    group: &str,
    version: &str,
    with_field_validation: bool,
) -> Value {
    let mut params = vec![
        json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
    ];
    if with_field_validation {
        params.push(json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
        params.push(json!({"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
    }
    json!({
        "operationId": format!("{verb}{kind}"),
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind}
    })
}

/// `/openapi/v3/apis/{group}/{version}` (or `/openapi/v3/api/v1`).
pub fn v3_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    if !registry.has_group_version(group, version) {
        return None;
    }
    let prefix = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for t in registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation("list", &t.kind, group, version, false), "post": operation("post", &t.kind, group, version, true)}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation("get", &t.kind, group, version, false),
                "put": operation("put", &t.kind, group, version, true),
                "patch": operation("patch", &t.kind, group, version, true),
                "delete": operation("delete", &t.kind, group, version, false)
            }),
        );
        for sub in &t.subresources {
            paths.insert(
                format!("{collection}/{{name}}/{}", sub.as_str()),
                json!({"put": operation("put", &t.kind, group, version, true), "patch": operation("patch", &t.kind, group, version, true)}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

/// `/openapi/v2`: an empty Swagger 2.0 document.
pub fn v2(_registry: &Registry) -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {}, "definitions": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_declare_field_validation_on_writes() {
        let r = Registry::builtin();
        let root = v3_root(&r);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(root["paths"]["api/v1"].is_object());
        let doc = v3_group_version(&r, "apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(v3_group_version(&r, "apps", "v9").is_none());
    }
}
