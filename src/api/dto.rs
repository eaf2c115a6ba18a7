//! The JSON shapes of the control API: the only types that cross the wire, shared by the server
//! and the client so they cannot drift apart.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::snapshot::{AliasView, Snapshot};

/// An alias as `GET /v1/aliases/{alias}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AliasDto {
    /// Fully qualified, without the trailing dot: `web.internal`.
    pub name: String,
    pub zone: String,
    /// The linked services, in order.
    pub targets: Vec<String>,
    /// The endpoints DNS answers with: the union of the targets' endpoints.
    pub endpoints: Vec<String>,
    /// The SRV owner name that carries the ports.
    pub srv: String,
    /// TTL of the alias's answers, in seconds.
    pub ttl: u32,
    pub revision: u64,
    /// RFC 3339 time of the last change.
    pub changed_at: String,
    pub changed_by: String,
    /// The snapshot generation and zone serial this view belongs to.
    pub generation: u64,
    pub serial: u32,
}

impl AliasDto {
    pub fn from_view(view: &AliasView, snapshot: &Snapshot) -> Self {
        let serial = snapshot
            .zones
            .iter()
            .find(|z| z.origin == hickory_proto::rr::LowerName::new(&view.zone))
            .map_or(0, |z| z.serial);
        Self {
            name: view.name.to_string(),
            zone: view.zone.to_ascii(),
            targets: view.state.targets.iter().map(|t| t.to_string()).collect(),
            endpoints: view.endpoints.iter().map(|e| e.to_string()).collect(),
            srv: view.srv_name.to_ascii(),
            ttl: snapshot.topology.alias_ttl,
            revision: view.state.revision,
            changed_at: rfc3339_ms(view.state.changed_at_ms),
            changed_by: view.state.changed_by.clone(),
            generation: snapshot.generation,
            serial,
        }
    }
}

/// A service as `GET /v1/services` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceDto {
    pub name: String,
    pub endpoints: Vec<String>,
    /// The aliases that link it now.
    pub linked_by: Vec<String>,
}

/// The body of `PUT /v1/aliases/{alias}/targets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub targets: Vec<String>,
}

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDto {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthDto {
    pub status: String,
    pub generation: u64,
}

pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
