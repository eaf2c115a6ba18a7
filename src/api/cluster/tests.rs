//! The cluster's lines of `/metrics`, for a single node and for a follower of an etcd cluster.

use super::render_metrics;
use crate::cluster::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus};

fn node(name: &str, port: u16, leader: bool, applied: i64, behind: i64, hash: &str) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        api: format!("127.0.0.1:{port}").parse().unwrap(),
        leader,
        applied_revision: applied,
        behind,
        config_hash: hash.into(),
        config_matches: hash == "h1",
        started_ms: 1_700_000_000_000,
    }
}

/// The metric lines of `status`, without HELP and TYPE.
fn samples(status: &ClusterStatus) -> Vec<String> {
    let mut out = String::new();
    render_metrics(status, &mut out);
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_single_node_is_its_own_leader_and_has_no_etcd_line() {
    let status = ClusterStatus::single("host-a", "127.0.0.1:5380".parse().unwrap(), "h1", 1);
    let mut out = String::new();
    render_metrics(&status, &mut out);
    assert_eq!(
        samples(&status),
        [
            "aliasd_cluster_leader{node=\"host-a\"} 1",
            "aliasd_cluster_nodes 1",
            "aliasd_cluster_applied_revision 0",
            "aliasd_cluster_behind_revisions 0",
            "aliasd_cluster_config_matches 1",
        ]
    );
    // Every metric has its HELP and TYPE before its samples.
    for name in [
        "aliasd_cluster_leader",
        "aliasd_cluster_nodes",
        "aliasd_cluster_applied_revision",
        "aliasd_cluster_behind_revisions",
        "aliasd_cluster_config_matches",
    ] {
        let help = out.find(&format!("# HELP {name} ")).expect(name);
        let kind = out.find(&format!("# TYPE {name} gauge\n")).expect(name);
        let sample = out.find(&format!("\n{name}")).expect(name);
        assert!(help < kind && kind < sample, "{name}:\n{out}");
    }
}

#[test]
fn a_follower_shows_how_far_behind_it_is_etcd_and_whether_its_definitions_match() {
    let status = ClusterStatus {
        mode: ClusterMode::Etcd,
        node: "b".into(),
        leader: Some("a".into()),
        revision: 120,
        etcd: Some(EtcdStatus {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            connected: false,
            since_ms: 5,
            error: Some("connection refused".into()),
        }),
        config_hash: "h2".into(),
        nodes: vec![
            node("a", 5380, true, 120, 0, "h1"),
            node("b", 5381, false, 117, 3, "h2"),
            node("c", 5382, false, 120, 0, "h1"),
        ],
        problems: vec!["node b answers from other definitions than the leader".into()],
    };
    assert_eq!(
        samples(&status),
        [
            "aliasd_cluster_leader{node=\"b\"} 0",
            "aliasd_cluster_nodes 3",
            "aliasd_cluster_applied_revision 117",
            "aliasd_cluster_behind_revisions 3",
            "aliasd_cluster_etcd_connected 0",
            "aliasd_cluster_config_matches 0",
        ]
    );
    // A node whose lease expired is not among the nodes: no lines about its own revision, and
    // its definitions compared with the leader's entry.
    let gone = ClusterStatus {
        nodes: status.nodes[..1].to_vec(),
        config_hash: "h1".into(),
        ..status
    };
    assert_eq!(
        samples(&gone),
        [
            "aliasd_cluster_leader{node=\"b\"} 0",
            "aliasd_cluster_nodes 1",
            "aliasd_cluster_etcd_connected 0",
            "aliasd_cluster_config_matches 1",
        ]
    );
}
