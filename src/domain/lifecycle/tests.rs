use proptest::prelude::*;

use super::*;

fn observations() -> Vec<Observation> {
    let mut all = vec![
        Observation::Claimed,
        Observation::NotSent,
        Observation::Refused,
        Observation::Failed,
        Observation::Overdue,
        Observation::NotPlaced,
    ];
    all.extend(ALL.into_iter().map(Observation::Reported));
    all
}

#[test]
fn the_table_names_only_observations_that_exist() {
    let names: Vec<&str> = observations().iter().map(|o| o.name()).collect();
    for (_, name, _) in TRANSITIONS {
        assert!(names.contains(name), "{name}");
    }
}

#[test]
fn an_order_is_sent_only_from_pending_and_comes_back_only_unsent() {
    assert_eq!(next(Pending, Observation::Claimed), Ok(Submitted));
    assert!(next(Submitted, Observation::Claimed).is_err());
    assert_eq!(next(Submitted, Observation::NotSent), Ok(Pending));
    assert!(next(PartiallyFilled, Observation::NotSent).is_err());
    assert!(next(Unknown, Observation::NotSent).is_err());
}

#[test]
fn finished_orders_stay_finished_except_a_late_appearance() {
    for done in [Filled, Canceled, Error] {
        for observation in observations() {
            let to = next(done, observation);
            assert!(
                to.is_err() || to == Ok(done),
                "{done:?} on {observation:?}: {to:?}"
            );
        }
    }
    assert_eq!(next(Rejected, Observation::Reported(Filled)), Ok(Filled));
    assert!(next(Rejected, Observation::Refused).is_err());
    assert!(next(Rejected, Observation::Claimed).is_err());
}

#[test]
fn a_refusal_never_ends_an_order_the_exchange_has_seen() {
    assert!(next(PartiallyFilled, Observation::Refused).is_err());
    assert!(next(Unknown, Observation::Refused).is_err());
    assert!(next(PartiallyFilled, Observation::NotPlaced).is_err());
}

#[test]
fn a_partially_filled_order_can_become_unknown() {
    assert_eq!(next(PartiallyFilled, Observation::Overdue), Ok(Unknown));
    assert!(next(Unknown, Observation::Overdue).is_err());
}

#[test]
fn the_exchange_cannot_report_the_services_own_states() {
    for status in [Pending, Rejected, Error, Unknown] {
        for from in ALL {
            let to = next(from, Observation::Reported(status));
            assert!(
                to.is_err() || (to == Ok(from) && from == status),
                "{from:?} reported {status:?}: {to:?}"
            );
        }
    }
}

#[test]
fn starts_of_lists_exactly_the_states_a_transition_leaves() {
    assert_eq!(starts_of(Observation::Claimed), vec![Pending]);
    assert_eq!(starts_of(Observation::NotPlaced), vec![Submitted, Unknown]);
    assert_eq!(
        starts_of(Observation::Overdue),
        vec![Submitted, PartiallyFilled]
    );
}

proptest! {
    /// No sequence of observations reaches a state outside the machine, a
    /// refused observation changes nothing, and an observation applied
    /// twice in a row (a replay) changes nothing the second time.
    #[test]
    fn random_observation_sequences_stay_legal_and_replays_are_idempotent(
        picks in proptest::collection::vec(0usize..14, 0..40),
    ) {
        let all = observations();
        let mut state = Pending;
        for pick in picks {
            let observation = all[pick % all.len()];
            match next(state, observation) {
                Ok(to) => {
                    prop_assert!(ALL.contains(&to));
                    let legal = to == state
                        || TRANSITIONS.iter().any(|(f, n, t)| *f == state && *n == observation.name() && *t == to);
                    prop_assert!(legal, "{:?} -> {:?} on {:?}", state, to, observation);
                    let again = next(to, observation);
                    prop_assert!(again.is_err() || again == Ok(to), "replay of {:?} moved {:?} to {:?}", observation, to, again);
                    state = to;
                }
                Err(illegal) => prop_assert_eq!(illegal.from, state),
            }
        }
    }
}
