//! Why the writer refuses a command, and the check of a request's services that most refusals
//! start from. Shared by the shell, the pure registry changes (`changes`) and the API.

use crate::model::ServiceName;
use crate::registry::Topology;

use super::machine::MachineError;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown alias `{0}`")]
    UnknownAlias(String),
    /// `known` lists the services there are ([`crate::text::known`]), so a typo shows.
    #[error("unknown service `{name}` (known: {known})")]
    UnknownService { name: String, known: String },
    #[error("targets must name at least one service")]
    EmptyTargets,
    #[error("service `{0}` is listed twice in targets")]
    DuplicateTarget(String),
    /// The request does not fit the alias's current phase.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// A reload refused whole: every problem, one a line.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("the change could not be stored, nothing was changed: {0}")]
    Storage(String),
    /// The writer stopped before it answered: the daemon is shutting down, or (in a cluster)
    /// the leader's term ended while the command waited.
    #[error(
        "the writer stopped before it answered (aliasd is shutting down, or this node's term as the cluster's leader ended); ask again (`aliasctl history` shows whether it was applied)"
    )]
    Unavailable,
    /// A cluster node whose writer is not running: it is not the leader.
    #[error(
        "this node is not the cluster's leader, and no leader could take the change; nothing was changed"
    )]
    NotLeader,
    /// The store cannot take changes now (etcd has no quorum, or this node lost its
    /// leadership): nothing was changed, and asking again later may work.
    #[error("{0}")]
    StoreUnavailable(String),
}

impl From<super::store::StoreError> for ControlError {
    fn from(e: super::store::StoreError) -> Self {
        match e {
            super::store::StoreError::Unavailable(m) => Self::StoreUnavailable(format!(
                "the change could not be stored, nothing was changed: {m}"
            )),
            e => Self::Storage(e.to_string()),
        }
    }
}

impl ControlError {
    /// `name` is not a service of `topology`: the error lists the ones that are.
    pub fn unknown_service(topology: &Topology, name: &ServiceName) -> Self {
        Self::UnknownService {
            name: name.to_string(),
            known: crate::text::known(topology.services.keys()),
        }
    }
}

impl From<MachineError> for ControlError {
    fn from(e: MachineError) -> Self {
        match e {
            MachineError::EmptyTargets => Self::EmptyTargets,
            // How many endpoints a service has is the current state, not the request's shape:
            // a conflict, as the API's spec (which cannot know it) documents.
            MachineError::MinHealthyTooHigh { .. }
            | MachineError::Busy { .. }
            | MachineError::NothingRunning
            | MachineError::NotMixed { .. }
            | MachineError::NoConfirmGate
            | MachineError::StepNotPaused { .. }
            | MachineError::StepNotInEffect { .. } => Self::Conflict(e.to_string()),
        }
    }
}

/// Checks that every service in `targets` exists and none is repeated.
pub fn check_services(topology: &Topology, targets: &[ServiceName]) -> Result<(), ControlError> {
    for (i, t) in targets.iter().enumerate() {
        if !topology.services.contains_key(t) {
            return Err(ControlError::unknown_service(topology, t));
        }
        if targets[..i].contains(t) {
            return Err(ControlError::DuplicateTarget(t.to_string()));
        }
    }
    Ok(())
}
