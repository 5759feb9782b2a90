//! Sample sizes at every frequency and risk, attribute-sampling sizes against the published
//! zero-deviation values, and the seeded draw: reproducible, order-independent, and
//! recomputable from its documented definition.

use audit::sampling::{
    attribute_size, draw, rank, sample_size, AttributePlan, Frequency, Range, RiskLevel,
    SamplingError, SizeTable,
};
use sha2::{Digest, Sha256};

fn size(f: Frequency, r: RiskLevel, population: u64) -> u64 {
    sample_size(f, r, population, &SizeTable::default(), None)
        .unwrap()
        .size
}

#[test]
fn the_practitioners_table_at_each_frequency_and_risk() {
    use Frequency::*;
    use RiskLevel::*;
    let expected = [
        (Annual, 1, 1),
        (Quarterly, 2, 2),
        (Monthly, 2, 5),
        (Weekly, 5, 15),
        (Daily, 20, 40),
        (MultipleTimesADay, 25, 60),
        (PerChange, 25, 60),
    ];
    for (f, low, high) in expected {
        assert_eq!(size(f, Lower, 10_000), low, "{f:?} lower");
        assert_eq!(size(f, Higher, 10_000), high, "{f:?} higher");
    }
    let s = sample_size(Monthly, Higher, 12, &SizeTable::default(), None).unwrap();
    assert_eq!(
        s.basis,
        "monthly control: 2–5, the upper end for higher risk"
    );
    assert!(!s.whole_population);
}

#[test]
fn a_population_no_larger_than_the_sample_is_tested_whole() {
    let at = |population| {
        sample_size(
            Frequency::Daily,
            RiskLevel::Lower,
            population,
            &SizeTable::default(),
            None,
        )
        .unwrap()
    };
    let below = at(19);
    assert_eq!(
        (below.size, below.planned, below.whole_population),
        (19, 20, true)
    );
    let equal = at(20);
    assert_eq!((equal.size, equal.whole_population), (20, true));
    let above = at(21);
    assert_eq!((above.size, above.whole_population), (20, false));
    assert_eq!(at(0).size, 0);
}

#[test]
fn a_firm_sets_its_own_ranges_and_a_broken_table_is_refused() {
    let table = SizeTable {
        weekly: Range { low: 10, high: 25 },
        ..SizeTable::default()
    };
    let s = sample_size(Frequency::Weekly, RiskLevel::Higher, 52, &table, None).unwrap();
    assert_eq!(s.size, 25);
    let broken = SizeTable {
        daily: Range { low: 40, high: 20 },
        ..SizeTable::default()
    };
    let err = sample_size(Frequency::Annual, RiskLevel::Lower, 1, &broken, None).unwrap_err();
    assert!(
        matches!(&err, SamplingError::Table(m) if m.contains("daily")),
        "{err}"
    );
    let zero = SizeTable {
        annual: Range { low: 0, high: 0 },
        ..SizeTable::default()
    };
    assert!(sample_size(Frequency::Annual, RiskLevel::Lower, 1, &zero, None).is_err());
}

fn plan(confidence: f64, tolerable: f64, expected: f64) -> AttributePlan {
    AttributePlan {
        confidence,
        tolerable,
        expected,
    }
}

#[test]
fn attribute_sizes_with_no_expected_deviation_are_the_published_ones() {
    // With no deviation expected the size is the smallest n with (1 - tolerable)^n ≤ risk:
    // the values of the AICPA audit sampling tables.
    assert_eq!(attribute_size(&plan(0.95, 0.05, 0.0)).unwrap(), 59);
    assert_eq!(attribute_size(&plan(0.90, 0.05, 0.0)).unwrap(), 45);
    assert_eq!(attribute_size(&plan(0.95, 0.10, 0.0)).unwrap(), 29);
    assert_eq!(attribute_size(&plan(0.90, 0.10, 0.0)).unwrap(), 22);
}

#[test]
fn attribute_sizes_grow_with_confidence_and_expected_deviations() {
    let base = attribute_size(&plan(0.95, 0.05, 0.0)).unwrap();
    let surer = attribute_size(&plan(0.99, 0.05, 0.0)).unwrap();
    let one_percent = attribute_size(&plan(0.95, 0.05, 0.01)).unwrap();
    let two_percent = attribute_size(&plan(0.95, 0.05, 0.02)).unwrap();
    assert!(surer > base && one_percent > base && two_percent > one_percent);
    // The found size is the smallest that works: one item fewer does not.
    let s = sample_size(
        Frequency::PerChange,
        RiskLevel::Lower,
        10_000,
        &SizeTable::default(),
        Some(&plan(0.95, 0.05, 0.01)),
    )
    .unwrap();
    assert_eq!(s.size, one_percent);
    assert!(
        s.basis.starts_with("attribute sampling: 95 % confidence"),
        "{}",
        s.basis
    );
}

#[test]
fn impossible_plans_are_refused_naming_the_field() {
    for (p, field) in [
        (plan(1.0, 0.05, 0.0), "confidence"),
        (plan(0.95, 0.0, 0.0), "tolerable"),
        (plan(0.95, 0.05, 0.05), "expected"),
        (plan(0.95, 0.05, -0.01), "expected"),
        (plan(f64::NAN, 0.05, 0.0), "confidence"),
    ] {
        let err = attribute_size(&p).unwrap_err();
        assert!(err.to_string().contains(field), "{p:?}: {err}");
    }
}

fn population(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("CHG-{i:06}")).collect()
}

#[test]
fn the_same_seed_draws_the_same_sample_and_another_seed_another() {
    let items = population(500);
    let a = draw(20261204, "CM-04", &items, 25).unwrap();
    let b = draw(20261204, "CM-04", &items, 25).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 25);
    let other_seed = draw(20261205, "CM-04", &items, 25).unwrap();
    assert_ne!(a, other_seed);
    let other_control = draw(20261204, "CM-05", &items, 25).unwrap();
    assert_ne!(a, other_control);
    // Ranks come out in order and the items are distinct.
    assert!(a.windows(2).all(|w| w[0].rank < w[1].rank));
}

#[test]
fn the_draw_does_not_depend_on_how_the_population_was_listed() {
    let items = population(300);
    let mut reversed = items.clone();
    reversed.reverse();
    let mut interleaved: Vec<String> = items.iter().step_by(2).cloned().collect();
    interleaved.extend(items.iter().skip(1).step_by(2).cloned());
    let a = draw(7, "CM-09", &items, 40).unwrap();
    assert_eq!(a, draw(7, "CM-09", &reversed, 40).unwrap());
    assert_eq!(a, draw(7, "CM-09", &interleaved, 40).unwrap());
}

#[test]
fn ranks_are_recomputable_from_their_definition() {
    let mut h = Sha256::new();
    h.update(b"changegate-sample-v1\x0042\x00CM-04\x00CHG-000007\x00");
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(rank(42, "CM-04", "CHG-000007"), expected);
    let drawn = draw(42, "CM-04", &["CHG-000007".to_string()], 1).unwrap();
    assert_eq!(drawn[0].rank, hex::encode(expected));
}

#[test]
fn a_sample_of_the_whole_population_or_more_takes_every_item_once() {
    let items = population(12);
    let all = draw(1, "CM-01", &items, 12).unwrap();
    let more = draw(1, "CM-01", &items, 1_000).unwrap();
    assert_eq!(all, more);
    let mut got: Vec<String> = all.into_iter().map(|d| d.item).collect();
    got.sort();
    assert_eq!(got, items);
    assert!(draw(1, "CM-01", &items, 0).unwrap().is_empty());
}

#[test]
fn a_new_item_changes_the_sample_only_if_it_ranks_among_the_drawn() {
    let items = population(200);
    let before = draw(99, "CM-04", &items, 20).unwrap();
    let mut grown = items.clone();
    grown.push("CHG-999999".into());
    let after = draw(99, "CM-04", &grown, 20).unwrap();
    let newcomer_rank = hex::encode(rank(99, "CM-04", "CHG-999999"));
    if newcomer_rank < before.last().unwrap().rank {
        assert!(after.iter().any(|d| d.item == "CHG-999999"));
        assert_eq!(&after[..], {
            let mut expected = before.clone();
            expected.pop();
            expected.push(audit::sampling::Drawn {
                item: "CHG-999999".into(),
                rank: newcomer_rank,
            });
            expected.sort_by(|a, b| a.rank.cmp(&b.rank));
            expected
        });
    } else {
        assert_eq!(after, before);
    }
}

#[test]
fn a_population_listing_an_item_twice_is_refused() {
    let mut items = population(5);
    items.push("CHG-000003".into());
    assert_eq!(
        draw(1, "CM-01", &items, 2).unwrap_err(),
        SamplingError::DuplicateItem("CHG-000003".into())
    );
}
