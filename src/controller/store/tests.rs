use super::*;
use crate::controller::state::StoredAlias;

fn sample() -> StoredState {
    let mut s = StoredState::default();
    s.serials.insert("internal.".into(), 42);
    s.aliases.insert(
        "web.internal.".into(),
        StoredAlias {
            targets: vec!["web-v2".into()],
            revision: 3,
            changed_at_ms: 1_700_000_000_000,
            changed_by: "deploy".into(),
        },
    );
    s
}

#[test]
fn a_saved_state_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, loaded) = Store::open(dir.path()).unwrap();
    assert_eq!(loaded, None);
    store.save(&sample()).unwrap();
    drop(store);
    let (_, loaded) = Store::open(dir.path()).unwrap();
    assert_eq!(loaded, Some(sample()));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, _) = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn truncated_and_corrupt_files_are_refused_and_left_alone() {
    let good = encode(&sample());
    let damaged = [
        ("truncated", good[..good.len() - 10].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let i = b.len() - 20;
            b[i] ^= 0x01;
            b
        }),
        ("empty", Vec::new()),
        ("foreign", b"{\"aliases\":{}}\n".to_vec()),
    ];
    for (what, bytes) in damaged {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        fs::write(&path, &bytes).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err}");
        assert!(err.to_string().contains("state.json"), "{what}: {err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{what}: the file was changed"
        );
    }
}
