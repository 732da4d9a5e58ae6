//! The job registry seen from outside: the files it keeps in `StateDir`, and
//! submits of big job files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flowserver_tests::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn kept_job_files_are_readable_by_their_owner_only() {
    let mut server = Server::start();
    let job = simple_json_job("t", "t", "exactly-once", "        interval_ms: 200", "    password: s3cret-pw\n");
    assert!(server.submit_yaml("secret_job", &job, &[]).success);
    let state = server.dir.path().join("state");
    let jobs = state.join("jobs");
    let record = jobs.join("secret_job.json");
    // The file holds the job file as submitted, password included: what the modes protect.
    assert!(std::fs::read_to_string(&record).unwrap().contains("s3cret-pw"));
    assert_eq!(mode(&state), 0o700, "StateDir, created by flowserver");
    assert_eq!(mode(&jobs), 0o700);
    assert_eq!(mode(&record), 0o600);

    // Left looser (by an older version, or by hand): tightened when the server opens them.
    server.terminate();
    set_mode(&jobs, 0o755);
    set_mode(&record, 0o644);
    let stale = jobs.join(".other.json.tmp");
    std::fs::write(&stale, "{}").unwrap();
    set_mode(&stale, 0o666);
    server.restart();
    assert_eq!(mode(&jobs), 0o700);
    assert_eq!(mode(&record), 0o600);
    assert_eq!(mode(&stale), 0o600);
    assert_eq!(server.ok(&["list", "--name-only"]).trim(), "secret_job");
    // A file written after the restart is private from its creation on.
    assert!(server.submit_yaml("second_job", &job, &[]).success);
    assert_eq!(mode(&jobs.join("second_job.json")), 0o600);
    assert_eq!(server.ok(&["list", "--name-only"]).lines().collect::<Vec<_>>(), ["second_job", "secret_job"]);
}

/// A job file with `entries` mapping entries (about 30 bytes each).
fn big_job(entries: usize) -> String {
    let mapping: Vec<(String, String)> =
        (0..entries).map(|i| (format!("c{i:06}"), format!("value->>'k{i}'"))).collect();
    let mapping: Vec<(&str, &str)> = mapping.iter().map(|(c, e)| (c.as_str(), e.as_str())).collect();
    job_yaml(
        "t",
        &json_value("json"),
        "      consistency: exactly-once",
        "        interval_ms: 200",
        &insert_table("big_t", &mapping),
        "",
    )
}

#[test]
fn big_job_files_are_accepted_and_other_calls_answer_while_they_are_validated() {
    let server = Server::start();
    let small = simple_json_job("t", "t", "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml("small", &small, &[]).success);
    let job = big_job(100_000);
    assert!(job.len() > 2_500_000, "{} bytes", job.len());
    // As many submits as the control plane has workers: were validation run
    // on them, each would hold one, and nothing else would be answered.
    let workers = std::thread::available_parallelism().map_or(2, usize::from).min(4);
    let names: Vec<String> = (0..workers).map(|i| format!("big{i}")).collect();
    let submits: Vec<_> = names
        .iter()
        .map(|name| {
            let path = server.dir.path().join(format!("{name}.yaml"));
            std::fs::write(&path, &job).unwrap();
            let port = server.port;
            std::thread::spawn(move || cli_at(port, &["submit", &path.display().to_string()]))
        })
        .collect();
    let in_flight = || submits.iter().all(|submit| !submit.is_finished());
    // Every submit has reached validation (the registry logs it first thing).
    let log = server.dir.path().join("logs/flowserver.log");
    while std::fs::read_to_string(&log).unwrap_or_default().matches("validating the job file").count() < workers + 1 {
        assert!(in_flight(), "a submit returned before the others were validated:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut answered_during_validation = 0;
    while in_flight() {
        let listed = server.cli(&["list", "--name-only"]);
        assert!(listed.success, "{}", listed.stderr);
        assert!(listed.stdout.lines().any(|name| name == "small"), "{}", listed.stdout);
        if in_flight() {
            answered_during_validation += 1;
        }
    }
    for submit in submits {
        let submitted = submit.join().unwrap();
        assert!(submitted.success, "{}\n{}", submitted.stderr, server.output());
    }
    assert!(answered_during_validation > 0, "no list call was answered while the big files were validated");
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.push("small");
    assert_eq!(server.ok(&["list", "--name-only"]).lines().collect::<Vec<_>>(), expected);
}

#[test]
fn binary_and_out_of_range_job_files_are_refused_in_the_files_terms() {
    let server = Server::start();
    let write = |name: &str, bytes: &[u8]| {
        let path = server.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let nul = write("nul.yaml", &[0u8; 4096]);
    let out = server.cli(&["submit", &nul]);
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "flowcli: nul.yaml (line 1): not a YAML text file: a NUL byte at column 1")
    );
    let latin1 = write("latin1.yaml", b"version: v1.0\nsource:\n  kafka:\n    topic: caf\xe9\n");
    let out = server.cli(&["submit", &latin1]);
    assert_eq!(
        (out.code, out.stderr.trim().to_owned()),
        (2, format!("flowcli: {latin1} (line 4): not a YAML text file: invalid UTF-8 (byte 0xe9) at column 15"))
    );
    let job = simple_json_job(
        "t",
        "t",
        "exactly-once",
        "        interval_ms: 200",
        "    error_limit: 340282366920938463463374607431768211456\n",
    );
    let line = job.lines().position(|l| l.starts_with("    error_limit:")).unwrap() + 1;
    let out = server.submit_yaml("huge", &job, &[]);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "flowcli: huge.yaml: target.database.error_limit (line {line}): must be at most 18446744073709551615 \
             (or a percentage like \"5%\"); got 340282366920938463463374607431768211456"
        )
    );
    assert_eq!(server.ok(&["list", "--name-only"]).trim(), "");
}
