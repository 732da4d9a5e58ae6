//! The native fetch path's own cost on one core: walking the record batches
//! of a fetch response to each record's value, uncompressed and with the
//! codecs producers use. This replaces librdkafka's per-message work (an op
//! allocated on its fetch thread, queued, destroyed on the shard), which has
//! no in-process equivalent to bench: `kafka_json_to_blackhole --fetch
//! librdkafka|native` compares the two end to end.
//!
//! `cargo bench -p flowserver-benches --bench kafka`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowserver_engine::kafka::wire::{RecordBatches, batch_records, encode_record_batch, set_compressed_records};
use flowserver_tests::id_messages;

const RECORDS: usize = 10_000;
const PER_BATCH: usize = 500;

/// `RECORDS` JSON values in batches of `PER_BATCH`, the records section of
/// each batch compressed by `compress` (codec id in the attributes).
fn batches(codec: i16, compress: impl Fn(&[u8]) -> Vec<u8>) -> (Vec<u8>, u64) {
    let values: Vec<Vec<u8>> = id_messages(0..RECORDS as i64).collect();
    let bytes: u64 = values.iter().map(|v| v.len() as u64).sum();
    let mut out = Vec::new();
    for (n, chunk) in values.chunks(PER_BATCH).enumerate() {
        let records: Vec<_> = chunk.iter().enumerate().map(|(i, v)| (i as i64, None, Some(v.as_slice()))).collect();
        let mut batch = Vec::new();
        encode_record_batch(&mut batch, (n * PER_BATCH) as i64, 1_700_000_000_000, 0, -1, &records);
        if codec != 0 {
            let packed = compress(batch_records(&batch));
            set_compressed_records(&mut batch, codec, &packed);
        }
        out.extend_from_slice(&batch);
    }
    (out, bytes)
}

fn walk(records: &[u8], scratch: &mut Vec<u8>) -> usize {
    let mut total = 0;
    for batch in RecordBatches::new(records) {
        let batch = batch.expect("batch");
        for record in batch.records(scratch).expect("records") {
            total += record.expect("record").value.map_or(0, <[u8]>::len);
        }
    }
    total
}

/// (name, Kafka codec id, compressor)
type Case = (&'static str, i16, fn(&[u8]) -> Vec<u8>);

fn kafka_records(c: &mut Criterion) {
    let cases: [Case; 3] = [
        ("uncompressed", 0, |b| b.to_vec()),
        ("lz4", 3, |b| {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut encoder, b).expect("lz4");
            encoder.finish().expect("lz4")
        }),
        ("zstd", 4, |b| zstd::bulk::compress(b, 3).expect("zstd")),
    ];
    let mut group = c.benchmark_group("kafka_records");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let mut scratch = Vec::new();
    for (name, codec, compress) in cases {
        let (records, value_bytes) = batches(codec, compress);
        assert_eq!(walk(&records, &mut scratch) as u64, value_bytes);
        group.bench_function(name, |b| b.iter(|| black_box(walk(black_box(&records), &mut scratch))));
    }
    group.finish();
}

criterion_group!(benches, kafka_records);
criterion_main!(benches);
