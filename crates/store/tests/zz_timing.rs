mod support;
use std::time::Instant;
#[test]
fn timing() {
    for h in [
        Some(support::Harness::sqlite()),
        support::Harness::postgres(),
    ]
    .into_iter()
    .flatten()
    {
        let s = h.store();
        let t = Instant::now();
        for round in 0..10u64 {
            let writes = (0..100u64)
                .map(|n| support::new_change(round * 100 + n, "x"))
                .collect();
            for r in s.apply(writes) {
                r.expect("ok");
            }
        }
        let batched = t.elapsed();
        let t = Instant::now();
        for n in 0..100u64 {
            support::apply_one(s.as_ref(), support::new_change(n, "y"));
        }
        let single = t.elapsed();
        let t = Instant::now();
        for n in 0..200u64 {
            s.change(&format!("CHG-{:06}", n + 1)).expect("read");
        }
        let reads = t.elapsed();
        eprintln!(
            "pg={} 1000 batched: {batched:?}, 100 single: {single:?}, 200 reads: {reads:?}",
            h.is_postgres()
        );
    }
}
