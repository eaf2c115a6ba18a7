//! aliasd as a cluster on etcd: state and leadership in etcd, every node serving DNS and the
//! proxy from its own snapshot.

pub mod docker;
pub mod etcd;
pub mod hash;
pub mod node;
pub mod replica;
pub mod status;

pub use hash::definitions_hash;
pub use status::{ClusterMode, ClusterStatus, EtcdStatus, NodeStatus, host_name};
