//! The process panic hook: a panic on any thread is logged through tracing
//! with its thread and location (its own test binary: the hook is global).

use std::sync::{Arc, Mutex};

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_on_any_thread_is_logged_with_its_thread_and_location() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let log = log.clone();
        move || LogWriter(log.clone())
    };
    tracing_subscriber::fmt().with_writer(writer).with_ansi(false).init();
    flowserver_control::rpc_guard::install_panic_hook();
    // The panic names its own line, whatever the formatting.
    let joined = std::thread::Builder::new()
        .name("shard-7".into())
        .spawn(|| panic!("index 9 out of range on line {}", line!()))
        .unwrap()
        .join();
    assert!(joined.is_err());
    let _ = std::panic::take_hook();
    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("thread=\"shard-7\""), "{log}");
    let line: u32 =
        log.split("out of range on line ").nth(1).and_then(|rest| rest.split('"').next()).unwrap().parse().unwrap();
    assert!(log.contains(&format!("location=\"control/tests/panic_hook.rs:{line}:")), "{log}");
    assert!(log.contains(&format!("panic=\"index 9 out of range on line {line}\"")), "{log}");
}
