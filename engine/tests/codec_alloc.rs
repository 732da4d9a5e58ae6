//! A warm `RowEncoder` allocates nothing per message.
//!
//! Lives in its own test binary because it installs a counting global
//! allocator. Allocations are counted per thread, so the test harness's own
//! threads do not disturb the count.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flowserver_engine::codec::{
    Conversion, CsvOptions, DecodePlan, EncodeContext, Encoded, FastColumn, JsonKind, JsonPath, PgType, RowEncoder,
    SourceFormat,
};

struct CountingAllocator;

thread_local! {
    // Const-initialised and without destructor: using it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a plain thread-local cell that does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const MESSAGES: usize = 10_000;

fn conversion(cast: PgType, target: PgType) -> Conversion {
    Conversion::new(cast, target).expect("supported pair")
}

/// Encodes every message and returns (allocations, fast rows, slow rows).
fn run(encoder: &mut RowEncoder, messages: &[Vec<u8>], fast: &mut Vec<u8>, slow: &mut Vec<u8>) -> (u64, usize, usize) {
    let before = allocations();
    let (mut fast_rows, mut slow_rows) = (0, 0);
    for message in messages {
        match encoder.encode(Some(message), fast, slow) {
            Encoded::Fast => fast_rows += 1,
            Encoded::Slow => slow_rows += 1,
            Encoded::Rejected(reason) => panic!("unexpected rejection: {reason}"),
        }
    }
    (allocations() - before, fast_rows, slow_rows)
}

#[test]
fn warm_encoders_do_not_allocate() {
    // The counter sees this thread's allocations.
    let before = allocations();
    std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert!(allocations() > before);

    let context = EncodeContext { session_time_zone_is_utc: true };

    let json_plan = DecodePlan {
        format: SourceFormat::Json(JsonKind::Json),
        fast_columns: vec![
            FastColumn::JsonPath { path: JsonPath::key("id"), conversion: conversion(PgType::Int4, PgType::Int4) },
            FastColumn::JsonPath {
                path: JsonPath::elements(&["meta", "seq"]),
                conversion: conversion(PgType::Int8, PgType::Int8),
            },
            FastColumn::JsonPath {
                path: JsonPath::key("name"),
                conversion: conversion(PgType::Text, PgType::Varchar(Some(20))),
            },
            FastColumn::JsonPath {
                path: JsonPath::key("at"),
                conversion: conversion(PgType::Timestamp, PgType::Timestamp),
            },
            FastColumn::JsonPath {
                path: JsonPath::key("score"),
                conversion: conversion(PgType::Float8, PgType::Float8),
            },
        ],
        context,
    };
    let json_messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            // Every 7th name has escapes, every 10th score is outside the fast subset.
            let name = if i % 7 == 0 { format!("n\\u00e9\\\"{i:08}") } else { format!("name-{i:015}") };
            let score = if i % 10 == 0 { "\"NaN\"".to_string() } else { format!("{}.{}e-3", i, i % 97) };
            format!(
                r#"{{"id":{i},"meta":{{"seq":{},"tags":["a","b"]}},"name":"{name}","at":"2024-03-{:02}T12:34:56.{:06}Z","score":{score},"extra":null}}"#,
                i as i64 * 1_000_003,
                i % 28 + 1,
                i % 1_000_000,
            )
            .into_bytes()
        })
        .collect();

    let mut csv_options = CsvOptions::new(5);
    csv_options.null_string = b"\\N".to_vec();
    let csv_plan = DecodePlan {
        format: SourceFormat::Csv(csv_options),
        fast_columns: vec![
            FastColumn::CsvField { index: 0, conversion: conversion(PgType::Int4, PgType::Int8) },
            FastColumn::CsvField { index: 1, conversion: conversion(PgType::Text, PgType::Text) },
            FastColumn::CsvField { index: 2, conversion: conversion(PgType::Timestamptz, PgType::Timestamptz) },
            FastColumn::CsvField {
                index: 3,
                conversion: conversion(PgType::Numeric(None), PgType::Numeric(Some((12, 2)))),
            },
            FastColumn::SourceText { source_index: 4 },
        ],
        context,
    };
    let csv_messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            // Every 10th id is outside the fast subset; every 5th note is NULL.
            let id = if i % 10 == 0 { format!(" {i}") } else { i.to_string() };
            let note = if i % 5 == 0 { "\\N".to_string() } else { format!("\"note, \"\"{i}\"\"\"") };
            format!("{id},\"text {i}\",2024-01-02 03:04:05.{:03}+01:00,{}.{:03},{note}\r\n", i % 1000, i, i % 1000)
                .into_bytes()
        })
        .collect();

    for (plan, messages) in [(&json_plan, &json_messages), (&csv_plan, &csv_messages)] {
        let mut encoder = RowEncoder::new(plan);
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        // Warm up: scratch buffers reach their working size.
        run(&mut encoder, &messages[..100], &mut fast, &mut slow);
        let (fast_size, slow_size) = (fast.len(), slow.len());
        fast.clear();
        slow.clear();
        // Later messages have longer numbers: twice the warm-up rate is ample.
        fast.reserve(2 * fast_size * (MESSAGES / 100));
        slow.reserve(2 * slow_size * (MESSAGES / 100));

        let (allocated, fast_rows, slow_rows) = run(&mut encoder, messages, &mut fast, &mut slow);
        assert_eq!(fast_rows + slow_rows, MESSAGES);
        assert_eq!(slow_rows, MESSAGES / 10, "every 10th message is slow");
        assert_eq!(allocated, 0, "allocations while encoding {MESSAGES} messages");
    }
}
