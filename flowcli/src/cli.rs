//! Command line syntax of `flowcli` (clap derive).
//!
//! Parsing only: nothing here talks to the server. [`Cli::validate`] holds the
//! few rules clap cannot express declaratively; its errors are clap errors, so
//! they print and exit like every other usage error (exit code 2).

use std::path::PathBuf;

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Command line client of flowserver: submits, starts, stops, lists,
/// monitors and removes streaming load jobs.
#[derive(Debug, Parser)]
#[command(name = "flowcli", version, propagate_version = true)]
pub struct Cli {
    /// FlowServer host name or IP address.
    #[arg(long, global = true, default_value = "localhost", value_name = "HOST")]
    pub host: String,

    /// FlowServer gRPC port.
    #[arg(long, global = true, default_value_t = 6060, value_name = "PORT")]
    pub port: u16,

    /// Accepted for compatibility with FlowServer's flowcli and ignored:
    /// this flowcli writes no log files.
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job file, or every *.yaml / *.yml file of a directory as
    /// separate jobs.
    Submit(SubmitArgs),
    /// Start a job, or every job that is not running.
    #[command(group(ArgGroup::new("which").required(true).args(["job", "all"])))]
    Start {
        /// Name of the job to start.
        #[arg(value_name = "JOB")]
        job: Option<String>,
        /// Start every job that is not running.
        #[arg(long, conflicts_with = "job")]
        all: bool,
        #[command(flatten)]
        flags: StartFlags,
    },
    /// Write the open batch, then stop reading (state Stopped).
    #[command(group(ArgGroup::new("which").required(true).args(["job", "all"])))]
    Stop {
        /// Name of the job to stop.
        #[arg(value_name = "JOB")]
        job: Option<String>,
        /// Stop every running job.
        #[arg(long, conflicts_with = "job")]
        all: bool,
    },
    /// List all jobs with their state and counters.
    List {
        /// Print only the job names, one per line.
        #[arg(short = 'n', long)]
        name_only: bool,
        #[arg(long, value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
        output: Output,
    },
    /// Show every status field of one job.
    Status {
        #[arg(value_name = "JOB")]
        job: String,
        #[arg(long, value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
        output: Output,
    },
    /// Follow the progress of a job until it leaves the Running state
    /// (or Ctrl-C).
    Monitor {
        #[arg(value_name = "JOB")]
        job: String,
        /// Milliseconds between two updates.
        #[arg(long, default_value_t = 1000, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..))]
        interval_ms: u32,
        /// text: one line per update; json: one JSON object per line.
        #[arg(long, value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
        output: Output,
    },
    /// Stop a job if needed and forget it.
    Remove {
        #[arg(value_name = "JOB")]
        job: String,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A job file (YAML), or a directory whose *.yaml / *.yml files are
    /// submitted in name order.
    #[arg(value_name = "FILE|DIR")]
    pub path: PathBuf,
    /// Job name (default: the file name without its extension). Not allowed
    /// with a directory.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,
    /// Start the job right after submitting it; the start flags below
    /// require this flag.
    #[arg(short = 's', long)]
    pub start: bool,
    #[command(flatten)]
    pub flags: StartFlags,
}

/// Flags shared by `start` and `submit --start`.
#[derive(Debug, Clone, Default, Args)]
pub struct StartFlags {
    /// Read until every partition is at its end, then stop the job (state
    /// Success or Error); the command waits for that and exits 0 on
    /// Success, 1 otherwise.
    #[arg(long)]
    pub stop_at_eof: bool,
    #[command(flatten)]
    pub reset: ResetFlags,
    /// Skip the EXPLAIN check of the generated SQL when starting.
    #[arg(long)]
    pub skip_explain: bool,
}

/// Where the job starts reading (Kafka); at most one.
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub struct ResetFlags {
    /// Start from the earliest offset of every partition.
    #[arg(long)]
    pub reset_to_earliest: bool,
    /// Start from the end of every partition.
    #[arg(long)]
    pub reset_to_latest: bool,
    /// Start from the first message at or after TS: RFC 3339
    /// (2026-01-02T03:04:05Z) or milliseconds since the epoch.
    #[arg(long, value_name = "TS", value_parser = parse_timestamp)]
    pub reset_to_timestamp: Option<String>,
}

impl StartFlags {
    /// Whether any start flag was given.
    pub fn any(&self) -> bool {
        self.stop_at_eof
            || self.skip_explain
            || self.reset.reset_to_earliest
            || self.reset.reset_to_latest
            || self.reset.reset_to_timestamp.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl Cli {
    /// Checks the rules clap's derive cannot state; errors are clap usage errors.
    pub fn validate(&self) -> Result<(), clap::Error> {
        if let Command::Submit(args) = &self.command
            && !args.start
            && args.flags.any()
        {
            let mut command = Cli::command();
            command.build();
            let submit = command.find_subcommand_mut("submit").expect("submit is a subcommand");
            return Err(submit.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the start flags (--stop-at-eof, --reset-to-*, --skip-explain) of submit require --start",
            ));
        }
        Ok(())
    }
}

/// Value parser of `--reset-to-timestamp`: returns the text unchanged when it
/// is epoch milliseconds (digits only) or a valid RFC 3339 date-time.
pub fn parse_timestamp(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(_) => Ok(text.to_string()),
            Err(_) => Err("epoch milliseconds out of range".to_string()),
        };
    }
    validate_rfc3339(text)
        .map(|()| text.to_string())
        .map_err(|why| format!("expected RFC 3339 (e.g. 2026-01-02T03:04:05Z) or milliseconds since the epoch: {why}"))
}

/// Strict RFC 3339 `date-time`: `YYYY-MM-DD(T|t| )hh:mm:ss[.fraction](Z|z|±hh:mm)`,
/// with calendar checks (days per month, leap years); second 60 is allowed
/// (leap second), as RFC 3339 allows.
pub fn validate_rfc3339(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Result<u32, String> {
        let part = b.get(from..from + len).ok_or_else(|| "too short".to_string())?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("expected {len} digits at position {}", from + 1));
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let expect = |at: usize, what: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if what.contains(c) => Ok(()),
            _ => {
                // u8 → char is lossless (and these are ASCII).
                let alternatives: Vec<String> = what.iter().map(|c| format!("'{}'", char::from(*c))).collect();
                Err(format!("expected {} at position {}", alternatives.join(" or "), at + 1))
            }
        }
    };

    let year = digits(0, 4)?;
    expect(4, b"-")?;
    let month = digits(5, 2)?;
    expect(7, b"-")?;
    let day = digits(8, 2)?;
    expect(10, b"Tt ")?;
    let hour = digits(11, 2)?;
    expect(13, b":")?;
    let minute = digits(14, 2)?;
    expect(16, b":")?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("day {day:02} out of range for {year:04}-{month:02}"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("time {hour:02}:{minute:02}:{second:02} out of range"));
    }

    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(format!("expected digits after '.' at position {}", at + 1));
        }
    }
    match b.get(at) {
        Some(b'Z' | b'z') => at += 1,
        Some(b'+' | b'-') => {
            let off_hour = digits(at + 1, 2)?;
            expect(at + 3, b":")?;
            let off_minute = digits(at + 4, 2)?;
            if off_hour > 23 || off_minute > 59 {
                return Err(format!("offset {off_hour:02}:{off_minute:02} out of range"));
            }
            at += 6;
        }
        _ => {
            return Err(format!("expected 'Z' or a UTC offset (+hh:mm) at position {}", at + 1));
        }
    }
    if at != b.len() {
        return Err(format!("unexpected text after position {at}"));
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("flowcli").chain(args.iter().copied()))?;
        cli.validate()?;
        Ok(cli)
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&["list"]).unwrap();
        assert_eq!(cli.host, "localhost");
        assert_eq!(cli.port, 6060);
        assert!(cli.log_dir.is_none());
        assert!(matches!(cli.command, Command::List { name_only: false, output: Output::Text }));
    }

    #[test]
    fn global_flags_before_and_after_subcommand() {
        for args in [
            &["--host", "db1", "--port", "7000", "status", "job"][..],
            &["status", "job", "--host", "db1", "--port", "7000"][..],
            &["--host", "db1", "status", "--port", "7000", "job"][..],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.host, "db1");
            assert_eq!(cli.port, 7000);
            assert!(matches!(cli.command, Command::Status { ref job, .. } if job == "job"));
        }
        let cli = parse(&["list", "--log-dir", "/tmp/logs"]).unwrap();
        assert_eq!(cli.log_dir.as_deref(), Some(std::path::Path::new("/tmp/logs")));
    }

    #[test]
    fn conflicting_reset_flags_are_rejected() {
        let err = parse(&["start", "j", "--reset-to-earliest", "--reset-to-latest"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err = parse(&["start", "j", "--reset-to-latest", "--reset-to-timestamp", "1700000000000"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err =
            parse(&["submit", "a.yaml", "-s", "--reset-to-earliest", "--reset-to-timestamp", "2026-01-02T03:04:05Z"])
                .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn start_flags() {
        let cli =
            parse(&["start", "j", "--stop-at-eof", "--reset-to-timestamp", "2026-01-02T03:04:05Z", "--skip-explain"])
                .unwrap();
        let Command::Start { job, all, flags } = cli.command else { panic!("not start") };
        assert_eq!(job.as_deref(), Some("j"));
        assert!(!all);
        assert!(flags.stop_at_eof && flags.skip_explain);
        assert_eq!(flags.reset.reset_to_timestamp.as_deref(), Some("2026-01-02T03:04:05Z"));
        let cli = parse(&["start", "--all"]).unwrap();
        assert!(matches!(cli.command, Command::Start { job: None, all: true, .. }));
    }

    #[test]
    fn start_and_stop_need_exactly_one_of_job_and_all() {
        for verb in ["start", "stop"] {
            assert_eq!(parse(&[verb]).unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
            assert_eq!(parse(&[verb, "j", "--all"]).unwrap_err().kind(), clap::error::ErrorKind::ArgumentConflict);
        }
        assert!(matches!(parse(&["stop", "--all"]).unwrap().command, Command::Stop { job: None, all: true }));
    }

    #[test]
    fn submit_flags() {
        let cli = parse(&["submit", "jobs/a.yaml", "-n", "x", "-s", "--stop-at-eof"]).unwrap();
        let Command::Submit(args) = cli.command else { panic!("not submit") };
        assert_eq!(args.path, PathBuf::from("jobs/a.yaml"));
        assert_eq!(args.name.as_deref(), Some("x"));
        assert!(args.start && args.flags.stop_at_eof);

        let err = parse(&["submit", "a.yaml", "--stop-at-eof"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn list_monitor_output_flags() {
        assert!(matches!(
            parse(&["list", "-n", "--output", "json"]).unwrap().command,
            Command::List { name_only: true, output: Output::Json }
        ));
        assert!(matches!(
            parse(&["monitor", "j", "--interval-ms", "250"]).unwrap().command,
            Command::Monitor { interval_ms: 250, output: Output::Text, .. }
        ));
        assert!(parse(&["monitor", "j", "--interval-ms", "0"]).is_err());
        assert!(parse(&["list", "--output", "yaml"]).is_err());
    }

    #[test]
    fn timestamp_values() {
        for good in [
            "0",
            "1767323045000",
            "2026-01-02T03:04:05Z",
            "2026-01-02t03:04:05z",
            "2026-01-02 03:04:05Z",
            "2026-01-02T03:04:05.123456Z",
            "2026-01-02T03:04:05+05:30",
            "2026-01-02T03:04:05.5-08:00",
            "2024-02-29T00:00:00Z",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(parse_timestamp(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "-5",
            "+5",
            "12.5",
            "99999999999999999999",
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-01-02T03:04Z",
            "2026-1-02T03:04:05Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:60:00Z",
            "2026-01-02T03:04:61Z",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+0530",
            "2026-01-02T03:04:05+24:00",
            "2026-01-02T03:04:05Zjunk",
            "2026-01-02X03:04:05Z",
            "yesterday",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_timestamp_is_a_usage_error() {
        let err = parse(&["start", "j", "--reset-to-timestamp", "2026-02-30T00:00:00Z"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("day 30 out of range for 2026-02"), "{err}");
    }

    /// The client checks `--reset-to-timestamp` before sending it: multi-byte
    /// characters anywhere (the issue's `…+€ab` included) are usage errors.
    #[test]
    fn multi_byte_characters_in_a_timestamp_are_refused_not_panics() {
        let err = parse_timestamp("2026-01-02T03:04:05+\u{20ac}ab").unwrap_err();
        assert_eq!(
            err,
            "expected RFC 3339 (e.g. 2026-01-02T03:04:05Z) or milliseconds since the epoch: expected 2 digits at position 21"
        );
        for valid in ["2026-01-02T03:04:05.5+01:30", "1767323045000"] {
            for at in 0..=valid.len() {
                for wide in ["\u{e9}", "\u{20ac}", "\u{1f600}"] {
                    let text = format!("{}{wide}{}", &valid[..at], &valid[at..]);
                    assert!(parse_timestamp(&text).is_err(), "{text}");
                    for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
                        let _ = parse_timestamp(&text[..end]);
                    }
                }
            }
        }
    }
}
