//! aliasd as a cluster on etcd: state and leadership in etcd, every node serving DNS and the
//! proxy from its own snapshot.

pub mod etcd;
pub mod node;
pub mod replica;
pub mod status;

pub use status::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus};
