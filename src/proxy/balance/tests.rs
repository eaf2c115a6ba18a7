//! Unit tests of member choice and passive health: pure, no sockets.

use super::*;

fn ep(n: u8) -> Endpoint {
    format!("127.0.0.{n}:8080").parse().unwrap()
}

/// Picks with the real random source `rounds` times and returns every member picked.
fn picks(
    active: &[Endpoint],
    draining: &[Endpoint],
    exclude: &[Endpoint],
    load: impl Fn(&Endpoint) -> u64,
    ejected: impl Fn(&Endpoint) -> bool,
    rounds: usize,
) -> Vec<Endpoint> {
    (0..rounds)
        .filter_map(|_| {
            pick(
                active,
                draining,
                exclude,
                &load,
                &ejected,
                &mut random_below,
            )
        })
        .collect()
}

#[test]
fn of_the_two_drawn_the_less_loaded_is_picked() {
    let members = [ep(1), ep(2), ep(3)];
    let load = |e: &Endpoint| match e.addr().ip().to_string().as_str() {
        "127.0.0.1" => 7,
        "127.0.0.2" => 3,
        _ => 5,
    };
    // Scripted draws: the first names an index, the second an offset past it.
    let draws = |script: [usize; 2]| {
        let mut it = script.into_iter();
        move |_n: usize| it.next().unwrap()
    };
    // Draws 0 and 1: loads 7 and 3.
    let got = pick(&members, &[], &[], load, |_| false, &mut draws([0, 0]));
    assert_eq!(got, Some(ep(2)));
    // Draws 0 and 2: loads 7 and 5.
    let got = pick(&members, &[], &[], load, |_| false, &mut draws([0, 1]));
    assert_eq!(got, Some(ep(3)));
    // Draws 2 and 0: loads 5 and 7.
    let got = pick(&members, &[], &[], load, |_| false, &mut draws([2, 0]));
    assert_eq!(got, Some(ep(3)));
}

#[test]
fn the_two_draws_always_differ() {
    let members = [ep(1), ep(2)];
    // Whatever the draws, two members means both are compared: the idle one always wins.
    for a in 0..4 {
        for b in 0..4 {
            let mut script = [a, b].into_iter();
            let got = pick(
                &members,
                &[],
                &[],
                |e| u64::from(*e == ep(1)) * 10,
                |_| false,
                &mut |_| script.next().unwrap(),
            );
            assert_eq!(got, Some(ep(2)), "draws {a} and {b}");
        }
    }
}

#[test]
fn load_spreads_over_equal_members() {
    let members = [ep(1), ep(2), ep(3), ep(4)];
    let got = picks(&members, &[], &[], |_| 0, |_| false, 4000);
    for m in members {
        let n = got.iter().filter(|e| **e == m).count();
        assert!(n > 500, "{m} picked {n} times of 4000");
    }
}

#[test]
fn excluded_draining_and_ejected_members_are_never_picked() {
    let members = [ep(1), ep(2), ep(3), ep(4), ep(5)];
    let got = picks(&members, &[ep(2)], &[ep(3)], |_| 0, |e| *e == ep(4), 2000);
    assert_eq!(got.len(), 2000);
    assert!(
        got.iter().all(|e| *e == ep(1) || *e == ep(5)),
        "picked {:?}",
        got.iter()
            .filter(|e| **e != ep(1) && **e != ep(5))
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_ejected_member_is_picked_only_when_no_other_is_eligible() {
    let members = [ep(1), ep(2)];
    let got = picks(&members, &[], &[ep(2)], |_| 0, |e| *e == ep(1), 50);
    assert_eq!(got, vec![ep(1); 50]);
    // A draining member is never a fallback: it left the answers.
    assert_eq!(picks(&members, &[ep(1)], &[ep(2)], |_| 0, |_| true, 50), []);
}

#[test]
fn nothing_is_picked_from_nothing() {
    assert_eq!(picks(&[], &[], &[], |_| 0, |_| false, 10), []);
    assert_eq!(picks(&[ep(1)], &[], &[ep(1)], |_| 0, |_| false, 10), []);
}

#[test]
fn three_failures_in_a_row_eject_a_member() {
    let p = Passive::default();
    assert!(!p.failure(100, true));
    assert!(!p.failure(101, true));
    assert_eq!(p.ejected_since(), None);
    assert!(p.failure(102, true));
    assert_eq!(p.ejected_since(), Some(102));
    // Further failures keep the first ejection time.
    assert!(!p.failure(103, true));
    assert_eq!(p.ejected_since(), Some(102));
    p.readmit();
    assert_eq!(p.ejected_since(), None);
    assert!(!p.failure(104, true), "readmitted: the count starts over");
}

#[test]
fn a_success_ends_the_run_of_failures() {
    let p = Passive::default();
    p.failure(1, true);
    p.failure(2, true);
    p.success();
    assert!(!p.failure(3, true));
    assert!(!p.failure(4, true));
    assert!(p.failure(5, true));
}

#[test]
fn the_last_usable_member_is_never_ejected() {
    let p = Passive::default();
    for t in 0..20 {
        assert!(!p.failure(t, false));
    }
    assert_eq!(p.ejected_since(), None);
    // Once another member is usable again, the next failure ejects it.
    assert!(p.failure(21, true));
}

#[test]
fn random_numbers_stay_below_the_bound() {
    for n in 1..50 {
        for _ in 0..50 {
            assert!(random_below(n) < n);
        }
    }
}
