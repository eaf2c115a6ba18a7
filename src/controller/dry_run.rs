//! The plan of a promotion without making it: the same pure machine step the writer takes,
//! on the alias's published state, and the drain window the machine would wait. The API's
//! `?dry_run=true` renders it; nothing here is stored or published.

use super::machine::{self, Counts, Ctx, Input, OpKind, Outcome, PromoteOptions};
use super::{ControlError, Gates, check_services, counts};
use crate::model::ServiceName;
use crate::registry::Topology;
use crate::snapshot::HealthMap;
use crate::state::AliasState;

/// What a promotion of one alias would do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The targets it would leave.
    pub from: Vec<ServiceName>,
    pub to: Vec<ServiceName>,
    /// The alias already answers with `to`: a promote would change nothing.
    pub noop: bool,
    /// The gates with the config's defaults filled in.
    pub options: PromoteOptions,
    /// Healthy endpoints of `to` the warming phase waits for.
    pub need: u32,
    /// The endpoints of `to`, and how many of them are healthy now.
    pub counts: Counts,
    /// How long the old version would drain once it leaves the answers.
    pub drain_window_ms: u64,
}

/// Plans a promotion of the alias in `state` to `to` at `now`, or says why it would be refused
/// (an unknown or repeated service, an operation already running).
#[allow(clippy::too_many_arguments)]
pub fn promote(
    topology: &Topology,
    health: &HealthMap,
    state: &AliasState,
    to: Vec<ServiceName>,
    gates: &Gates,
    actor: String,
    reason: Option<String>,
    now: u64,
) -> Result<DryRun, ControlError> {
    check_services(topology, &to)?;
    let count = |services: &[ServiceName]| counts(topology, health, services);
    let options = gates.resolve(&topology.defaults);
    let ctx = Ctx {
        now,
        ttl_window_s: topology.ttl_window_s(),
        grace_ms: u64::try_from(topology.defaults.drain_grace.as_millis()).unwrap_or(u64::MAX),
        counts: &count,
        busy: &|_| 0,
        drain_deadline_ms: 0,
        secondaries: &|| machine::Caught::Since(0),
        measured: &|| machine::Measured::Nothing,
    };
    let input = Input::Promote {
        to: to.clone(),
        options: options.clone(),
        kind: OpKind::Promote,
        actor,
        reason,
    };
    let outcome = machine::step(state, input, &ctx)?;
    let counts = count(&to);
    Ok(DryRun {
        from: state.targets.clone(),
        noop: outcome == Outcome::Unchanged,
        need: machine::required(&options, counts),
        drain_window_ms: machine::drain_window_ms(state, &ctx),
        options,
        counts,
        to,
    })
}
