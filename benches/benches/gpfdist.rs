//! Serving cost of the gpfdist path on one core: cutting a published batch of
//! fs_formatter rows into blocks of whole rows and framing them (`F O L D`),
//! with and without zstd (level 1, one frame per block as segments expect).
//! Throughput is in bytes of rows served.
//!
//! `cargo bench -p flowserver-benches --bench gpfdist`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowserver_engine::gpfdist::response::block_header;
use flowserver_tests::segment::sample_batch;

fn gpfdist(c: &mut Criterion) {
    // 100,000 rows of (int, bigint, 20-char text, timestamp, double), the
    // sample rows the listener's tests and `perf/gpfdist_serving` serve.
    let batch = sample_batch(0, 100_000);
    let mut group = c.benchmark_group("gpfdist_blocks");
    group.throughput(Throughput::Bytes(batch.data.len() as u64));
    let block_size = 256 << 10;
    let mut out = Vec::with_capacity(batch.data.len() + 4096);
    group.bench_function("frame", |b| {
        b.iter(|| {
            out.clear();
            let mut row = 0;
            while let Some(block) = batch.block_at(row, block_size) {
                block_header(&mut out, b"/job", block.start as u64, block.first_row as u64 + 1, block.len() as u32);
                out.extend_from_slice(&batch.data[block.start..block.end]);
                row = block.end_row;
            }
            black_box(out.len())
        })
    });
    let mut compressor = zstd::bulk::Compressor::new(1).expect("zstd");
    let mut packed = vec![0u8; zstd::zstd_safe::compress_bound(block_size * 2)];
    group.bench_function("frame_zstd", |b| {
        b.iter(|| {
            out.clear();
            let mut row = 0;
            while let Some(block) = batch.block_at(row, block_size) {
                let payload = &batch.data[block.start..block.end];
                block_header(&mut out, b"/job", block.start as u64, block.first_row as u64 + 1, payload.len() as u32);
                let n = compressor.compress_to_buffer(payload, &mut packed[..]).expect("compress");
                out.extend_from_slice(&packed[..n]);
                row = block.end_row;
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, gpfdist);
criterion_main!(benches);
