//! Leader election on a coordination.k8s.io/v1 Lease, like client-go's leaderelection: the
//! holder renews `spec.renewTime` every `retry_period`; another replica takes the lease over
//! once `lease_duration` has passed without a renewal. Writes use the Lease's resourceVersion,
//! so two candidates never both win. [`decide`] is the pure rule; [`LeaderElection`] talks to
//! the API server.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

/// `leader_election` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// This replica's identity (default: host name and process id).
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default = "default_lease_duration", with = "kausal_core::config::duration")]
    pub lease_duration: Duration,
    #[serde(default = "default_retry_period", with = "kausal_core::config::duration")]
    pub retry_period: Duration,
}

fn default_namespace() -> String {
    "default".into()
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}

impl LeaseConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.lease_duration {
            return Err(("retry_period", "must be positive and shorter than lease_duration".into()));
        }
        Ok(())
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }
}

/// The Lease as the rule sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseState {
    pub holder: Option<String>,
    pub renew_time: Option<DateTime<Utc>>,
    pub lease_duration: Option<Duration>,
}

/// What a candidate does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the lease with us as holder (renewal, or takeover of an expired/free lease).
    Write { takeover: bool },
    /// Someone else holds a live lease.
    Follow,
}

/// The election rule: renew our own lease; take over a free or expired one; else follow.
pub fn decide(state: &LeaseState, me: &str, now: DateTime<Utc>, default_duration: Duration) -> Decision {
    match state.holder.as_deref() {
        Some(h) if h == me => Decision::Write { takeover: false },
        None | Some("") => Decision::Write { takeover: true },
        Some(_) => {
            let duration = state.lease_duration.unwrap_or(default_duration);
            let expired = match state.renew_time {
                Some(t) => now - t > chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX),
                None => true,
            };
            if expired { Decision::Write { takeover: true } } else { Decision::Follow }
        }
    }
}

fn lease_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"), "leases")
}

fn state_of(obj: &DynamicObject) -> LeaseState {
    let spec = obj.data.get("spec");
    LeaseState {
        holder: spec.and_then(|s| s.get("holderIdentity")).and_then(|v| v.as_str()).map(str::to_string),
        renew_time: spec
            .and_then(|s| s.get("renewTime"))
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
        lease_duration: spec
            .and_then(|s| s.get("leaseDurationSeconds"))
            .and_then(|v| v.as_u64())
            .map(Duration::from_secs),
    }
}

/// A running election. `leading()` tells whether this replica holds the lease now.
pub struct LeaderElection {
    leading: watch::Receiver<bool>,
}

impl LeaderElection {
    /// Starts campaigning in a background task that ends when `shutdown` flips to true.
    pub fn start(client: kube::Client, config: LeaseConfig, mut shutdown: watch::Receiver<bool>) -> LeaderElection {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let api: Api<DynamicObject> = Api::namespaced_with(client, &config.namespace, &lease_resource());
            let me = config.identity();
            loop {
                let leading = match campaign(&api, &config, &me).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(lease = %config.name, error = %e, "leader election request failed");
                        // Without a confirmed renewal we must assume we lost the lease once it
                        // would have expired; stepping down early is the safe side.
                        false
                    }
                };
                if *tx.borrow() != leading {
                    tracing::info!(lease = %config.name, identity = %me, leading, "leadership changed");
                }
                let _ = tx.send(leading);
                tokio::select! {
                    _ = tokio::time::sleep(config.retry_period) => {}
                    _ = shutdown.changed() => break,
                }
                if *shutdown.borrow() {
                    break;
                }
            }
            let _ = tx.send(false);
        });
        LeaderElection { leading: rx }
    }

    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver that changes when leadership does.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }
}

async fn campaign(api: &Api<DynamicObject>, config: &LeaseConfig, me: &str) -> Result<bool, kube::Error> {
    let now = Utc::now();
    let now_text = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let seconds = config.lease_duration.as_secs().max(1);
    match api.get_opt(&config.name).await? {
        None => {
            let mut obj = DynamicObject::new(&config.name, &lease_resource()).within(&config.namespace);
            obj.data = json!({"spec": {"holderIdentity": me, "leaseDurationSeconds": seconds,
                "acquireTime": now_text, "renewTime": now_text, "leaseTransitions": 0}});
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut obj) => match decide(&state_of(&obj), me, now, config.lease_duration) {
            Decision::Follow => Ok(false),
            Decision::Write { takeover } => {
                let spec = obj.data.get_mut("spec").and_then(|s| s.as_object_mut());
                let Some(spec) = spec else {
                    obj.data["spec"] = json!({});
                    return Ok(false);
                };
                spec.insert("holderIdentity".into(), json!(me));
                spec.insert("renewTime".into(), json!(now_text));
                spec.insert("leaseDurationSeconds".into(), json!(seconds));
                if takeover {
                    let transitions = spec.get("leaseTransitions").and_then(|v| v.as_i64()).unwrap_or(0);
                    spec.insert("leaseTransitions".into(), json!(transitions + 1));
                    spec.insert("acquireTime".into(), json!(now_text));
                }
                // replace carries metadata.resourceVersion: a concurrent writer makes this 409.
                match api.replace(&config.name, &PostParams::default(), &obj).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_own_take_expired_follow_live() {
        let now = Utc::now();
        let d = Duration::from_secs(15);
        let live = LeaseState { holder: Some("a".into()), renew_time: Some(now - chrono::Duration::seconds(5)), lease_duration: Some(d) };
        assert_eq!(decide(&live, "a", now, d), Decision::Write { takeover: false });
        assert_eq!(decide(&live, "b", now, d), Decision::Follow);
        let expired = LeaseState { renew_time: Some(now - chrono::Duration::seconds(16)), ..live.clone() };
        assert_eq!(decide(&expired, "b", now, d), Decision::Write { takeover: true });
        assert_eq!(decide(&LeaseState::default(), "b", now, d), Decision::Write { takeover: true });
    }
}
