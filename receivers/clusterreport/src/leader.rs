//! Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
//! the holder renews `spec.renewTime`; anyone may take the lease once
//! `renewTime + leaseDurationSeconds` has passed. Writes carry the resourceVersion read, so two
//! candidates never both win. [`decide`] is the pure rule; [`LeaderElector`] the edge.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::cluster::{ClusterClient, ClusterError};

/// What a Lease says, the parts election reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub renew_time: Option<DateTime<Utc>>,
    pub lease_duration: Duration,
    pub transitions: i64,
}

/// What to do with the lease now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder let it expire): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Follow,
}

pub fn decide(lease: Option<&LeaseRecord>, me: &str, now: DateTime<Utc>) -> Decision {
    let Some(lease) = lease else {
        return Decision::Acquire;
    };
    match lease.holder.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) => {
            let expired = match lease.renew_time {
                Some(t) => {
                    let d = chrono::Duration::from_std(lease.lease_duration)
                        .unwrap_or(chrono::Duration::MAX);
                    t.checked_add_signed(d).is_none_or(|end| end <= now)
                }
                None => true,
            };
            if expired {
                Decision::Acquire
            } else {
                Decision::Follow
            }
        }
    }
}

fn lease_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn record_of(obj: &DynamicObject) -> LeaseRecord {
    let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
    LeaseRecord {
        holder: spec
            .get("holderIdentity")
            .and_then(Value::as_str)
            .map(str::to_string),
        renew_time: spec
            .get("renewTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
        lease_duration: Duration::from_secs(
            spec.get("leaseDurationSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        ),
        transitions: spec
            .get("leaseTransitions")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    }
}

/// One candidate for one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<DynamicObject>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl LeaderElector {
    pub fn new(
        cluster: &ClusterClient,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced_with(cluster.kube().clone(), namespace, &lease_resource()),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: DateTime<Utc>, acquire_time: String, transitions: i64) -> Value {
        json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration.as_secs().max(1),
            "acquireTime": acquire_time,
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        })
    }

    /// One round: acquires or renews when allowed. `Ok(true)` when we lead afterwards; a lost
    /// race (409 Conflict, 409 AlreadyExists) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ClusterError> {
        let err = |what: &str, e: kube::Error| ClusterError::Request {
            what: format!("{what} lease {}", self.name),
            message: e.to_string(),
        };
        let now = Utc::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| err("reading", e))?;
        let record = current.as_ref().map(record_of);
        match decide(record.as_ref(), &self.identity, now) {
            Decision::Follow => Ok(false),
            decision => {
                let result = match current {
                    None => {
                        let mut obj = DynamicObject::new(&self.name, &lease_resource());
                        obj.data = json!({"spec": self.spec(now, micro_time(now), 0)});
                        self.api
                            .create(&PostParams::default(), &obj)
                            .await
                            .map(|_| ())
                    }
                    Some(mut obj) => {
                        let old = record.unwrap_or(LeaseRecord {
                            holder: None,
                            renew_time: None,
                            lease_duration: Duration::ZERO,
                            transitions: 0,
                        });
                        let (acquire_time, transitions) = if decision == Decision::Renew {
                            let kept = obj
                                .data
                                .pointer("/spec/acquireTime")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| micro_time(now));
                            (kept, old.transitions)
                        } else {
                            (micro_time(now), old.transitions + 1)
                        };
                        obj.data["spec"] = self.spec(now, acquire_time, transitions);
                        self.api
                            .replace(&self.name, &PostParams::default(), &obj)
                            .await
                            .map(|_| ())
                    }
                };
                match result {
                    Ok(()) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                        Ok(false)
                    }
                    Err(e) => Err(err("writing", e)),
                }
            }
        }
    }

    /// Gives the lease up if we hold it, so another replica need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut obj)) = self.api.get_opt(&self.name).await
            && record_of(&obj).holder.as_deref() == Some(self.identity.as_str())
        {
            obj.data["spec"]["holderIdentity"] = Value::Null;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &obj)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_string),
            renew_time: Some(Utc::now() - chrono::Duration::seconds(renewed_secs_ago)),
            lease_duration: Duration::from_secs(duration),
            transitions: 0,
        }
    }

    #[test]
    fn election_rules() {
        let now = Utc::now();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease(Some("a"), 1, 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 1, 15)), "a", now),
            Decision::Follow
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 20, 15)), "a", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(None, 1, 15)), "a", now),
            Decision::Acquire
        );
        let mut no_renew = lease(Some("b"), 0, 15);
        no_renew.renew_time = None;
        assert_eq!(decide(Some(&no_renew), "a", now), Decision::Acquire);
    }
}
