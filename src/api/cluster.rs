//! The cluster as this node sees it: `GET /v1/cluster` and its lines in `/metrics`. Both show
//! the one [`ClusterStatus`] the node keeps (a single node shows itself as the leader of a
//! cluster of one).

use std::fmt::Write;

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::cluster::ClusterStatus;

#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "meta",
    summary = "The cluster as this node sees it: the nodes, the leader, each node's applied revision and how far behind it is, etcd's health",
    responses(
        (status = 200, description = "The cluster", body = ClusterStatus)
    )
)]
pub async fn cluster(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(state.cluster.borrow().clone())
}

/// The cluster's lines of `/metrics`, with their HELP and TYPE. `aliasd_cluster_etcd_connected`
/// only when etcd is used; the lines about this node only while it is listed among the nodes.
pub fn render_metrics(status: &ClusterStatus, out: &mut String) {
    let mut gauge = |name: &str, help: &str, lines: &[String]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for line in lines {
            let _ = writeln!(out, "{name}{line}");
        }
    };
    gauge(
        "aliasd_cluster_leader",
        "1 while this node is the leader (the one that runs the writer), else 0.",
        &[format!(
            "{{node=\"{}\"}} {}",
            escape(&status.node),
            u8::from(status.is_leader())
        )],
    );
    gauge(
        "aliasd_cluster_nodes",
        "Nodes alive in the cluster (whose lease holds), this one included.",
        &[format!(" {}", status.nodes.len())],
    );
    if let Some(me) = status.me() {
        gauge(
            "aliasd_cluster_applied_revision",
            "The etcd revision this node's snapshot is rendered from (0 for a single node).",
            &[format!(" {}", me.applied_revision)],
        );
        gauge(
            "aliasd_cluster_behind_revisions",
            "How many revisions this node's snapshot is behind the latest it has seen.",
            &[format!(" {}", me.behind)],
        );
    }
    if let Some(etcd) = &status.etcd {
        gauge(
            "aliasd_cluster_etcd_connected",
            "1 while this node's last request to etcd succeeded, else 0.",
            &[format!(" {}", u8::from(etcd.connected))],
        );
    }
    if let Some(matches) = status.config_matches() {
        gauge(
            "aliasd_cluster_config_matches",
            "1 while this node answers from the same definitions as the leader (zones, services, aliases), else 0.",
            &[format!(" {}", u8::from(matches))],
        );
    }
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
