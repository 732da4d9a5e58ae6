//! Serving cost of the gpfdist path on one core: cutting a published batch of
//! fs_formatter rows into blocks of whole rows and framing them (`F O L D`),
//! with and without zstd (level 1, one frame per block as segments expect).
//! Throughput is in bytes of rows served.
//!
//! `cargo bench -p flowserver-benches --bench gpfdist`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowserver_engine::codec::{fsrow, pgcopy};
use flowserver_engine::gpfdist::ServedBatch;
use flowserver_engine::gpfdist::response::block_header;

/// 100,000 rows of (int, bigint, 20-char text, timestamp, double).
fn batch() -> ServedBatch {
    let mut data = Vec::new();
    let mut row_ends = Vec::new();
    for i in 0..100_000u64 {
        let start = fsrow::begin_row(&mut data);
        pgcopy::begin_row(&mut data, 5);
        pgcopy::put_i32(&mut data, i as i32);
        pgcopy::put_i64(&mut data, i as i64 * 1_000_003);
        let text: Vec<u8> = (0..20).map(|k| b'a' + ((i * 31 + k * 7) % 26) as u8).collect();
        pgcopy::put_field(&mut data, &text);
        pgcopy::put_i64(&mut data, 757_382_400_000_000 + i as i64 * 1_000_000);
        pgcopy::put_f64(&mut data, i as f64 * 0.5);
        fsrow::end_row(&mut data, start);
        row_ends.push(data.len() as u32);
    }
    ServedBatch { data, row_ends }
}

fn gpfdist(c: &mut Criterion) {
    let batch = batch();
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
