//! The fuzzer on a few seeds: deterministic, clean on the real code, and the finding it made.

use switchyard_sim::SimOptions;
use switchyard_sim::fuzz::{capture_panics, fuzz_one, fuzz_with};

#[test]
fn a_seed_gives_the_same_run_every_time_and_no_violation() {
    capture_panics();
    for seed in [1, 2] {
        let a = fuzz_one(seed, 300, None);
        let b = fuzz_one(seed, 300, None);
        assert_eq!(a.trace, b.trace, "seed {seed}: two traces");
        assert_eq!((a.operations, a.faults), (b.operations, b.faults));
        assert!(a.violations.is_empty(), "seed {seed}: {:?}", a.violations);
        assert!(a.operations > 150 && a.faults > 5, "it did work: {a:?}");
    }
}

#[test]
fn seed_6_found_that_a_restored_leader_can_serve_a_stale_read() {
    capture_panics();
    // As the server runs it (leader restore off): clean.
    let fixed = fuzz_one(6, 400, None);
    assert!(fixed.violations.is_empty(), "{:?}", fixed.violations);
    // With openraft's default (a restarted leader resumes at once), seed 6 reads a stale value.
    let restore = SimOptions {
        leader_restore: true,
        ..SimOptions::default()
    };
    let broken = fuzz_with(6, 400, restore);
    assert!(
        broken
            .violations
            .iter()
            .any(|v| v.contains("linearizable read")),
        "{:?}",
        broken.violations
    );
}
