//! The flowserver process itself: what it promises about memory depends on
//! its allocator configuration being the one linked in.

use flowserver_tests::*;

/// Names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's /proc entry");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// `control/src/allocator.rs` sets `background_thread:true` through
/// jemalloc's `malloc_conf` symbol; a background purge thread proves both
/// that jemalloc is the process allocator and that the symbol was linked (a
/// lost `malloc_conf` would silently bring back the defaults that broke the
/// memory bound under a stalled database).
#[test]
fn the_server_runs_on_jemalloc_with_its_built_in_configuration() {
    let server = Server::start();
    let pid = server.pid().expect("a running server");
    let names = thread_names(pid);
    assert!(names.iter().any(|name| name == "jemalloc_bg_thd"), "no jemalloc background thread among {names:?}");
    assert!(names.iter().any(|name| name.starts_with("shard-")), "no shard thread among {names:?}");
}
