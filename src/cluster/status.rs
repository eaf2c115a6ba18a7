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

    /// This node's own entry in [`ClusterStatus::nodes`], when it is listed (a node whose lease
    /// expired is not).
    pub fn me(&self) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == self.node)
    }

    /// Whether this node's definitions are the leader's: its own entry says so, or else its
    /// hash is compared with the leader's entry; `None` while neither is known.
    pub fn config_matches(&self) -> Option<bool> {
        if let Some(me) = self.me() {
            return Some(me.config_matches);
        }
        let leader = self.leader.as_deref()?;
        let leader = self.nodes.iter().find(|n| n.name == leader)?;
        Some(leader.config_hash == self.config_hash)
    }

    /// Why no leader can take a change now, for the 503 that says so: etcd's error when it
    /// cannot be reached, else the problems, else that no node holds the leadership.
    pub fn no_leader_reason(&self) -> String {
        if let Some(etcd) = self.etcd.as_ref().filter(|e| !e.connected) {
            return match &etcd.error {
                Some(error) => format!("etcd cannot be reached: {error}"),
                None => "etcd cannot be reached".to_owned(),
            };
        }
        if !self.problems.is_empty() {
            return self.problems.join("; ");
        }
        match &self.leader {
            Some(leader) => format!("the leader {leader} is not among the live nodes"),
            None => "no node holds the leadership now".to_owned(),
        }
    }

    /// A new digest of this node's definitions (after a reload), in its own entry too, and
    /// every node compared with the leader's again (this node may be the leader).
    pub fn set_config_hash(&mut self, hash: &str) {
        self.config_hash = hash.to_owned();
        let node = self.node.clone();
        for n in self.nodes.iter_mut().filter(|n| n.name == node) {
            n.config_hash = hash.to_owned();
        }
        let leader_hash = self
            .leader
            .as_deref()
            .and_then(|l| self.nodes.iter().find(|n| n.name == l))
            .map(|n| n.config_hash.clone());
        if let Some(leader_hash) = leader_hash {
            for n in &mut self.nodes {
                n.config_matches = n.config_hash == leader_hash;
            }
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), the default name of a node; `aliasd`
/// where it cannot be read.
pub fn host_name() -> String {
    crate::config::host_name()
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "aliasd".to_owned())
}

/// The nodes that do not render the latest revision yet, as a drain's wait names them.
pub fn nodes_behind(status: &ClusterStatus) -> Vec<String> {
    status
        .nodes
        .iter()
        .filter(|n| n.behind > 0)
        .map(|n| {
            format!(
                "node {} ({}): renders revision {}, {} behind",
                n.name, n.api, n.applied_revision, n.behind
            )
        })
        .collect()
}
