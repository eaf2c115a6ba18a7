//! What a node knows of its cluster: the nodes, the leader, each node's applied revision and
//! how far behind it is, and etcd's health. `GET /v1/cluster`, `aliasctl cluster`, `/metrics`
//! and the dashboard all show this one value. A single node (no `[cluster]` table) shows itself
//! as the leader of a cluster of one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// `single` (no `[cluster]` table: the local journal) or `etcd`.
    pub mode: ClusterMode,
    /// This node's name.
    pub node: String,
    /// The leader's name, when one is known.
    pub leader: Option<String>,
    /// The latest etcd revision this node has seen (0 in single mode).
    pub revision: i64,
    /// etcd as this node reaches it (absent in single mode).
    pub etcd: Option<EtcdStatus>,
    /// A digest of the definitions this node answers from (zones, config services and
    /// aliases): every node of a cluster must have the same.
    pub config_hash: String,
    /// Every node alive in the cluster (whose lease holds), this one included, by name.
    pub nodes: Vec<NodeStatus>,
    /// What is wrong, said so an operator knows what to do ("node b answers from other
    /// definitions than the leader: ...").
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    Single,
    Etcd,
}

/// etcd from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EtcdStatus {
    pub endpoints: Vec<String>,
    /// Whether this node's last request to etcd succeeded.
    pub connected: bool,
    /// Unix ms since when `connected` has been what it is.
    pub since_ms: u64,
    /// Why the last request failed.
    pub error: Option<String>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub name: String,
    /// Where the other nodes reach its API (`advertise` and the API's port).
    #[schema(value_type = String)]
    pub api: SocketAddr,
    pub leader: bool,
    /// The etcd revision its snapshot is rendered from.
    pub applied_revision: i64,
    /// How many revisions it is behind the latest this node has seen.
    pub behind: i64,
    pub config_hash: String,
    /// Whether its definitions are the leader's (`config_hash` equal).
    pub config_matches: bool,
    /// Unix ms when it started.
    pub started_ms: u64,
}

impl ClusterStatus {
    /// A node on its own: the leader of a cluster of one.
    pub fn single(node: &str, api: SocketAddr, config_hash: &str, started_ms: u64) -> Self {
        Self {
            mode: ClusterMode::Single,
            node: node.to_owned(),
            leader: Some(node.to_owned()),
            revision: 0,
            etcd: None,
            config_hash: config_hash.to_owned(),
            nodes: vec![NodeStatus {
                name: node.to_owned(),
                api,
                leader: true,
                applied_revision: 0,
                behind: 0,
                config_hash: config_hash.to_owned(),
                config_matches: true,
                started_ms,
            }],
            problems: Vec::new(),
        }
    }

    /// Whether this node is the leader (always, for a single node).
    pub fn is_leader(&self) -> bool {
        self.leader.as_deref() == Some(self.node.as_str())
    }

    /// Where the leader's API is, when another node leads.
    pub fn leader_api(&self) -> Option<SocketAddr> {
        let leader = self.leader.as_deref()?;
        if leader == self.node {
            return None;
        }
        self.nodes.iter().find(|n| n.name == leader).map(|n| n.api)
    }
}
