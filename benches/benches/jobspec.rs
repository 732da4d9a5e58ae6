//! Submit-time cost of a job file: reading and validating one with many
//! mapping entries (`parse_job_file`: the YAML checks, the serde layer and
//! validation, mapping classification included). A JSON job whose one table
//! maps 10,000 and 100,000 columns, half of them pushed down
//! (`(value->>'k')::int`), half left to the database; throughput in bytes of
//! job file. Validation is linear: 100,000 entries cost ten times 10,000.
//!
//! `cargo bench -p flowserver-benches --bench jobspec`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowserver_control::jobspec::parse_job_file;

/// 36 bytes per entry on average: 3.6 MB for 100,000 entries (the file of
/// the report, 2.8 MB and 100,000 entries, took 13 to 17 s to submit).
fn job_file(entries: usize) -> String {
    let mut text = String::from(
        "version: v1.0\nsource:\n  kafka:\n    brokers: [kafka:9092]\n    topic: wide\n    value:\n      json:\n        \
         column: {name: value, type: json}\ntarget:\n  database:\n    host: db\n    user: loader\n    dbname: dw\n    \
         tables:\n    - table: wide\n      mapping:\n",
    );
    for i in 0..entries {
        if i % 2 == 0 {
            text.push_str(&format!("        c{i}: (value->>'k{i}')::int\n"));
        } else {
            text.push_str(&format!("        c{i}: value->>'k{i}'\n"));
        }
    }
    text
}

fn jobspec(c: &mut Criterion) {
    let mut group = c.benchmark_group("jobspec_parse");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for entries in [10_000, 100_000] {
        let text = job_file(entries);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("mapping_{entries}"), |b| {
            b.iter(|| {
                let config = parse_job_file("wide.yaml", black_box(&text)).expect("valid job file");
                black_box(config.target.tables.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, jobspec);
criterion_main!(benches);
