//! Every flowcli verb against a real flowserver, and its failures.

use std::time::Duration;

use flowserver_tests::*;

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn every_verb_works_end_to_end() {
    let topic = unique("cli");
    let table = unique("cli_t");
    create_topic(&topic, 2);
    sql(&format!("CREATE TABLE {table} (id int, body text)"));
    produce(&topic, 2, id_messages(0..500));
    let mut server = Server::start();

    // submit a directory: one job per YAML file, named after the file.
    let dir = server.dir.path().join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let first = format!("{table}_a");
    let second = format!("{table}_b");
    for name in [&first, &second] {
        let job = simple_json_job(&topic, &table, "exactly-once", "        interval_ms: 200", "");
        std::fs::write(dir.join(format!("{name}.yaml")), job).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a job").unwrap();
    let out = server.ok(&["submit", dir.to_str().unwrap()]);
    assert_eq!(out, format!("submitted {first}\nsubmitted {second}\n"));

    let names = server.ok(&["list", "--name-only"]);
    assert_eq!(names, format!("{first}\n{second}\n"));
    let list: serde_json::Value = serde_json::from_str(&server.ok(&["list", "--output", "json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[0]["state"], "submitted");

    assert_eq!(server.ok(&["start", &first]), format!("started {first}\n"));
    wait_count(&format!("SELECT count(*) FROM {table}"), 500, TIMEOUT).unwrap();
    let status = server.wait_for(&first, TIMEOUT, |s| s["lag"] == 0 && s["rows_loaded"] == 500);
    assert_eq!(status["state"], "running");
    assert_eq!(status["rows_loaded"], 500);
    assert_eq!(status["messages_read"], 500);
    assert_eq!(status["consistency"], "exactly-once");
    let partitions = status["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    for p in partitions {
        assert_eq!(p["committed_offset"], 250);
        assert_eq!(p["end_offset"], 250);
        assert_eq!(p["lag"], 0);
    }
    // The text status names every field.
    let text = server.ok(&["status", &first]);
    assert!(text.contains(&format!("name: {first}\n")), "{text}");
    assert!(text.contains("state: running\n"), "{text}");
    assert!(text.contains("rows_loaded: 500\n"), "{text}");

    // monitor streams until the job leaves Running; stop it from the side.
    let port = server.port;
    let job = first.clone();
    let monitor =
        std::thread::spawn(move || cli_at(port, &["monitor", &job, "--output", "json", "--interval-ms", "200"]));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(server.ok(&["stop", &first]), format!("stopped {first}\n"));
    let monitored = monitor.join().unwrap();
    assert!(monitored.success, "{}", monitored.stderr);
    let lines: Vec<serde_json::Value> = monitored.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 2, "{}", monitored.stdout);
    assert_eq!(lines[0]["state"], "running");
    assert_eq!(lines.last().unwrap()["state"], "stopped");

    // start --all starts what is not running; stop --all stops everything.
    let out = server.ok(&["start", "--all"]);
    assert_eq!(out, format!("started {first}\nstarted {second}\n"));
    let out = server.ok(&["stop", "--all"]);
    assert_eq!(out, format!("stopped {first}\nstopped {second}\n"));

    // Jobs survive a restart of flowserver.
    server.terminate();
    server.restart();
    assert_eq!(server.ok(&["list", "--name-only"]), format!("{first}\n{second}\n"));
    assert_eq!(server.state(&first), "stopped");

    assert_eq!(server.ok(&["remove", &second]), format!("removed {second}\n"));
    assert_eq!(server.ok(&["list", "--name-only"]), format!("{first}\n"));
}

#[test]
fn failures_give_one_line_and_a_nonzero_exit() {
    let server = Server::start();
    let out = server.cli(&["status", "nosuchjob"]);
    assert_eq!((out.code, out.stderr.as_str()), (1, "flowcli: unknown job \"nosuchjob\"\n"));
    let out = server.cli(&["stop", "nosuchjob"]);
    assert_eq!((out.code, out.stderr.as_str()), (1, "flowcli: unknown job \"nosuchjob\"\n"));
    let out = server.cli(&["submit", "/nonexistent/job.yaml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("flowcli: cannot read /nonexistent/job.yaml: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);

    let topic = unique("dup");
    let job = simple_json_job(&topic, "t", "exactly-once", "        interval_ms: 200", "");
    assert!(server.submit_yaml("dup", &job, &[]).success);
    let out = server.submit_yaml("dup", &job, &[]);
    assert_eq!(out.stderr, "flowcli: job \"dup\" already exists; remove it first or submit with another --name\n");
    let out = server.cli(&["stop", "dup"]);
    assert_eq!(out.stderr, "flowcli: job \"dup\" is submitted; only a running job can be stopped\n");

    let port = free_port();
    let out = cli_at(port, &["list"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(&format!("flowcli: cannot reach flowserver at http://localhost:{port}: ")),
        "{}",
        out.stderr
    );
    let out = server.cli(&["start", "dup", "--reset-to-earliest", "--reset-to-latest"]);
    assert_eq!(out.code, 2);
}
