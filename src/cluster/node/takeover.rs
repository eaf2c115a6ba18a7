//! What a new leader starts from: the state etcd holds over this node's definitions, and
//! the first writes of its term, in transactions etcd takes.

use super::*;

/// What a new leader starts from, and what it writes before it serves: the changes the
/// start itself made (aliases new in the config, the serials), in units etcd takes.
pub struct Taken {
    pub state: State,
    pub topology: Arc<Topology>,
    /// Every committed history entry, with those of this start at the end.
    pub entries: Vec<HistoryEntry>,
    pub bootstrap: Vec<(StoredDelta, Vec<HistoryEntry>, Live)>,
    pub notes: Vec<String>,
}

/// The state a new leader continues from `data` (what etcd holds) over `base`; see [`Taken`].
/// The serials stay those published, so a failover alone changes no answer.
pub fn takeover(
    base: &Base,
    data: &etcd::Data,
    mut entries: Vec<HistoryEntry>,
    now_ms: u64,
) -> Taken {
    let stored = data.has_state.then_some(&data.stored);
    let committed: HashMap<String, u64> = stored
        .map(|s| {
            s.aliases
                .iter()
                .map(|(k, a)| (k.clone(), a.revision))
                .collect()
        })
        .unwrap_or_default();
    let (mut state, notes) = initial_state(base, stored, now_ms);
    state.history_seq = state
        .history_seq
        .max(entries.iter().map(|e| e.seq).max().unwrap_or(0));
    if data.has_state {
        for (i, zone) in base.zones.iter().enumerate() {
            if let Some(serial) = data.serials.get(&zone.origin.name().to_ascii()) {
                state.serials[i] = *serial;
            }
        }
    }
    let topology = Arc::new(Topology::build(
        base,
        &state.registry,
        state.named_services(),
    ));
    let mut started = crate::controller::recover::changed_at_start(&state, &committed);
    // Numbered in the order `split` writes the aliases (by name), so that a unit's entries
    // follow the last unit's without a hole.
    started.sort_by_key(alias_of);
    for e in &mut started {
        state.history_seq += 1;
        e.seq = state.history_seq;
    }
    state.serial_reserve = state
        .serials
        .iter()
        .map(|s| s.wrapping_add(SERIAL_RESERVE))
        .collect();
    let after = to_stored(&topology, &state);
    let before = stored.cloned().unwrap_or_default();
    let mut delta = diff(&before, &after);
    delta.history_seq = state.history_seq;
    let live = Live {
        serials: topology
            .zones
            .iter()
            .zip(&state.serials)
            .map(|(z, s)| (z.origin.name().to_ascii(), *s))
            .collect(),
        ..Live::default()
    };
    let bootstrap = split(delta, started.clone(), live, before.history_seq);
    entries.extend(started);
    Taken {
        state,
        topology,
        entries,
        bootstrap,
        notes,
    }
}

/// What differs between two stored states, key by key.
pub(super) fn diff(before: &StoredState, after: &StoredState) -> StoredDelta {
    fn map<V: Clone + PartialEq>(
        a: &BTreeMap<String, V>,
        b: &BTreeMap<String, V>,
    ) -> BTreeMap<String, Option<V>> {
        let mut out = BTreeMap::new();
        for (k, v) in b {
            if a.get(k) != Some(v) {
                out.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in a.keys() {
            if !b.contains_key(k) {
                out.insert(k.clone(), None);
            }
        }
        out
    }
    StoredDelta {
        seq: 0,
        aliases: map(&before.aliases, &after.aliases),
        serials: after
            .serials
            .iter()
            .filter(|(k, v)| before.serials.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        services: map(&before.services, &after.services),
        alias_specs: map(&before.alias_specs, &after.alias_specs),
        docker: map(&before.docker, &after.docker),
        history_seq: after.history_seq,
        rollouts: map(&before.rollouts, &after.rollouts),
    }
}

/// Splits a takeover's delta into units of at most [`TXN_OPS`] writes: the aliases first,
/// each with its own history entry and `state/meta` counting the entries written so far (a
/// leader that dies between two units leaves no alias without its entry, nor an entry without
/// its alias), then the rest (with the serials) last, so the last unit is what commits the start.
pub(super) fn split(
    mut delta: StoredDelta,
    entries: Vec<HistoryEntry>,
    live: Live,
    history_seq_before: u64,
) -> Vec<(StoredDelta, Vec<HistoryEntry>, Live)> {
    let rest = delta.services.len()
        + delta.alias_specs.len()
        + delta.docker.len()
        + delta.rollouts.len()
        + delta.serials.len()
        + live.serials.len()
        + 1;
    if rest + delta.aliases.len() + entries.len() <= TXN_OPS {
        return vec![(delta, entries, live)];
    }
    let mut by_alias: HashMap<String, HistoryEntry> = HashMap::new();
    let mut others = Vec::new();
    for e in entries {
        match alias_of(&e) {
            Some(a) if delta.aliases.contains_key(&a) && !by_alias.contains_key(&a) => {
                by_alias.insert(a, e);
            }
            _ => others.push(e),
        }
    }
    let mut units = Vec::new();
    let mut seq = history_seq_before;
    let (mut chunk, mut chunk_entries) = (BTreeMap::new(), Vec::new());
    for (k, v) in std::mem::take(&mut delta.aliases) {
        if let Some(e) = by_alias.remove(&k) {
            seq = seq.max(e.seq);
            chunk_entries.push(e);
        }
        chunk.insert(k, v);
        // Two writes per alias at most, and `state/meta`.
        if chunk.len() + chunk_entries.len() + 3 > TXN_OPS {
            units.push(aliases_only(
                std::mem::take(&mut chunk),
                std::mem::take(&mut chunk_entries),
                seq,
            ));
        }
    }
    if !chunk.is_empty() {
        units.push(aliases_only(chunk, chunk_entries, seq));
    }
    units.push((delta, others, live));
    units
}

/// The alias a history entry is about, as the stored state names it.
pub(super) fn alias_of(e: &HistoryEntry) -> Option<String> {
    e.alias().map(|a| a.alias.clone())
}

pub(super) fn aliases_only(
    aliases: BTreeMap<String, Option<crate::state::StoredAlias>>,
    entries: Vec<HistoryEntry>,
    history_seq: u64,
) -> (StoredDelta, Vec<HistoryEntry>, Live) {
    (
        StoredDelta {
            aliases,
            history_seq,
            ..StoredDelta::default()
        },
        entries,
        Live::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::history::{AliasChange, Subject};
    use crate::controller::machine::ChangeKind;

    fn linked(alias: &str, seq: u64) -> HistoryEntry {
        HistoryEntry {
            seq,
            subject: Subject::Alias(AliasChange {
                alias: alias.to_owned(),
                revision: 1,
                phase: "stable".into(),
                targets: vec!["blue".into()],
                answering: vec!["blue".into()],
                op: None,
                op_kind: None,
            }),
            at_ms: 0,
            actor: "config".into(),
            change: ChangeKind::Linked,
            reason: None,
        }
    }

    /// A first start with many aliases in the config: every unit fits one transaction, each
    /// alias is written with its own entry, and `state/meta` never counts an entry not written.
    #[test]
    fn a_takeover_of_many_new_aliases_splits_into_transactions_etcd_takes() {
        let keys = Keys::new("/aliasd");
        let names: Vec<String> = (0..1_000).map(|i| format!("a{i:04}.internal.")).collect();
        let delta = StoredDelta {
            aliases: names.iter().map(|n| (n.clone(), None)).collect(),
            history_seq: 7 + names.len() as u64,
            ..StoredDelta::default()
        };
        let entries: Vec<HistoryEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| linked(n, 8 + i as u64))
            .collect();
        let live = Live {
            serials: [("internal.".to_owned(), 5)].into(),
            ..Live::default()
        };
        let units = split(delta, entries, live, 7);
        assert!(units.len() > 1);
        let mut written = 7;
        let mut aliases = 0;
        for (delta, entries, live) in &units {
            assert!(etcd::ops(&keys, delta, entries, live).len() <= TXN_OPS);
            for e in entries {
                let a = e.alias().unwrap();
                assert!(
                    delta.aliases.contains_key(&a.alias),
                    "{a:?} without its alias"
                );
                assert_eq!(e.seq, written + 1, "entries in order, without a hole");
                written = e.seq;
            }
            assert_eq!(delta.history_seq, written);
            aliases += delta.aliases.len();
        }
        assert_eq!(aliases, names.len());
        assert_eq!(written, 7 + names.len() as u64);
        assert_eq!(units.last().unwrap().2.serials.len(), 1);
    }
}
