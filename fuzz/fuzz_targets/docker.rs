//! Docker's payloads through discovery: each input line is a container inspection (`I{...}`,
//! as `GET /containers/{id}/json` answers) or an event (`E{...}`, a line of `GET /events`),
//! applied in order to discovery's view as the daemon would deliver them. Labels become
//! endpoints with their health settings or a problem naming the label; nothing may panic, and
//! the endpoint sets discovery reports must render as aliasd serves them (stored as Docker's
//! services, then the snapshot and every service's API view).
#![no_main]

use std::sync::LazyLock;

use aliasd::check::CheckConfig;
use aliasd::config::Config;
use aliasd::controller::SourceUpdate;
use aliasd::discovery::docker::{Effect, Rules, View, facts_of};
use aliasd::state::StoredState;
use bollard::models::{ContainerInspectResponse, EventMessage};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "aliasd.";

static CONFIG: LazyLock<Config> = LazyLock::new(|| aliasd_fuzz::fixture().config);

fuzz_target!(|bytes: &[u8]| {
    let check = CheckConfig::default();
    let rules = Rules {
        prefix: PREFIX,
        labels: &[],
        network: None,
        addressing: Default::default(),
        default_check: &check,
    };
    let mut view = View::default();
    for line in bytes.split(|b| *b == b'\n') {
        match line.split_first() {
            Some((b'I', json)) => {
                if let Ok(inspect) = serde_json::from_slice::<ContainerInspectResponse>(json) {
                    let facts = facts_of(&inspect);
                    let id = facts.id.clone();
                    view.inspected(&id, Some(facts), &rules);
                }
            }
            Some((b'E', json)) => {
                if let Ok(event) = serde_json::from_slice::<EventMessage>(json) {
                    // A refresh would inspect the container again: the next `I` line.
                    let _: Effect = view.on_event(&event, PREFIX);
                }
            }
            _ => {}
        }
    }
    let SourceUpdate::Docker { services, problems } = view.update() else {
        panic!("discovery's view is not a Docker update");
    };
    for problem in &problems {
        assert!(
            !problem.message.is_empty(),
            "a container skipped without a reason"
        );
    }
    let stored = StoredState {
        docker: services
            .into_iter()
            .map(|(name, endpoints)| (name.to_string(), endpoints))
            .collect(),
        ..StoredState::default()
    };
    aliasd_fuzz::render(&CONFIG, Some(&stored));
});
