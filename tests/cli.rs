//! The built `datafusion-marketing` binary: the `--lake DIR --format csv -c SQL`
//! contract, files, errors and exit codes, `generate`, `functions-doc`.

use std::process::{Command, Output, Stdio};

use crate::common::{bin, sample_lake};

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the CLI")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn csv_contract_prints_only_csv_with_a_header() {
    let lake = sample_lake().to_str().unwrap();
    let o = run(&[
        "--lake",
        lake,
        "--format",
        "csv",
        "-c",
        "SELECT year, count(*) AS orders FROM orders GROUP BY year ORDER BY year",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "year,orders", "{out}");
    assert_eq!(lines.len(), 4, "header + 3 years and nothing else: {out}");
    for (line, year) in lines[1..].iter().zip(["2023", "2024", "2025"]) {
        let (y, n) = line.split_once(',').unwrap();
        assert_eq!(y, year);
        assert!(n.parse::<u64>().unwrap() > 0);
    }
}

#[test]
fn several_commands_and_a_file_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.sql");
    std::fs::write(
        &file,
        "-- two statements\nCREATE VIEW v AS SELECT 41 AS x;\nSELECT x + 1 AS y FROM v;\n",
    )
    .unwrap();
    let o = run(&[
        "--format",
        "csv",
        "-f",
        file.to_str().unwrap(),
        "-c",
        "SELECT rfm_segment(5, 5, 5) AS s",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "y\n42\ns\nChampions\n");
}

#[test]
fn sql_errors_exit_non_zero_with_the_message_on_stderr() {
    let o = run(&["--format", "csv", "-c", "SELECT * FROM no_such_table"]);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains("no_such_table"), "{}", stderr(&o));

    // a failing statement inside -f also fails the run
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.sql");
    std::fs::write(&file, "SELECT 1;\nSELECT rfm_segment(9, 1, 1);\n").unwrap();
    let o = run(&["--format", "csv", "-f", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("r_score must be in 1..5, got 9"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lake_errors_exit_non_zero() {
    let o = run(&["--lake", "/no/such/lake", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("lake path '/no/such/lake' does not exist"),
        "{}",
        stderr(&o)
    );
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["--lake", empty.path().to_str().unwrap(), "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("holds no Parquet tables"),
        "{}",
        stderr(&o)
    );
    // the same lake twice: duplicate table names
    let lake = sample_lake().to_str().unwrap();
    let o = run(&["--lake", lake, "--lake", lake, "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already registered"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_rejected_by_the_parser() {
    let o = run(&["--memory-limit", "lots", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid size 'lots'"), "{}", stderr(&o));
    let o = run(&["--format", "xml", "-c", "SELECT 1"]);
    assert!(!o.status.success());
}

#[test]
fn other_formats_and_memory_limit() {
    let o = run(&[
        "--format",
        "json",
        "--memory-limit",
        "256m",
        "-c",
        "SELECT 1 AS a, 'x' AS b",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), r#"[{"a":1,"b":"x"}]"#);
    let o = run(&["--format", "tsv", "-c", "SELECT 1 AS a, 2 AS b"]);
    assert_eq!(stdout(&o), "a\tb\n1\t2\n");
    let o = run(&[
        "--format",
        "nd-json",
        "-c",
        "SELECT 1 AS a UNION ALL SELECT 2 ORDER BY a",
    ]);
    assert_eq!(stdout(&o), "{\"a\":1}\n{\"a\":2}\n");
    // the table format prints a table and, unless -q, the row count
    let o = run(&["--format", "table", "-c", "SELECT 1 AS a"]);
    let out = stdout(&o);
    assert!(
        out.contains("| a |") && out.contains("1 row(s) fetched"),
        "{out}"
    );
}

#[test]
fn repl_reads_sql_from_stdin() {
    use std::io::Write;
    let lake = sample_lake().to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["--lake", lake, "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n FROM products;\n\\q\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("| n "), "{}", stdout(&o));
}

#[test]
fn generate_writes_a_lake_the_shell_can_query() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let o = run(&[
        "generate",
        out.to_str().unwrap(),
        "--customers",
        "200",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("customers 200"), "{}", stderr(&o));
    let o = run(&[
        "--lake",
        out.to_str().unwrap(),
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM customers",
    ]);
    assert_eq!(stdout(&o), "n\n200\n");
    // generating into an existing lake is refused
    let o = run(&["generate", out.to_str().unwrap(), "--customers", "10"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already contains"), "{}", stderr(&o));
}

#[test]
fn functions_doc_prints_the_catalog() {
    let o = run(&["functions-doc"]);
    assert!(o.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/functions.md")).unwrap();
    assert_eq!(stdout(&o), committed);
}

/// Row counts of each row group of a Parquet file.
fn row_groups(path: &std::path::Path) -> Vec<i64> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

#[test]
fn copy_writes_64ki_row_groups_unless_set() {
    let dir = tempfile::tempdir().unwrap();
    let (default, set) = (
        dir.path().join("default.parquet"),
        dir.path().join("set.parquet"),
    );
    let copy = |path: &std::path::Path| {
        format!(
            "COPY (SELECT value FROM generate_series(1, 600000)) TO '{}' STORED AS PARQUET",
            path.display()
        )
    };
    let o = run(&["-q", "-c", &copy(&default)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut expected = vec![65_536; 9];
    expected.push(600_000 - 9 * 65_536);
    assert_eq!(row_groups(&default), expected);
    let o = run(&[
        "-q",
        "-c",
        "SET datafusion.execution.parquet.max_row_group_size = 500000",
        "-c",
        &copy(&set),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(row_groups(&set), [500_000, 100_000]);
}

/// `THP_enabled` of a running process's status (Linux ≥ 5.0).
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
}

/// The binary turns transparent huge pages off for itself, unless MIMALLOC_ALLOW_THP says
/// otherwise: read from the kernel while the shell waits for input.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_runs_without_transparent_huge_pages_unless_told() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(ours) = thp_enabled(std::process::id()) else {
        eprintln!("this kernel does not report THP_enabled; nothing to check");
        return;
    };
    // a child inherits THP off from its parent: then only the default can be checked
    let cases: &[(Option<&str>, &str)] = if ours == "0" {
        &[(None, "0")]
    } else {
        &[(None, "0"), (Some("1"), "1")]
    };
    for &(allow, want) in cases {
        let mut cmd = Command::new(bin());
        cmd.arg("-q")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("MIMALLOC_ALLOW_THP");
        if let Some(a) = allow {
            cmd.env("MIMALLOC_ALLOW_THP", a);
        }
        let mut child = cmd.spawn().unwrap();
        // a shell that never answers must not hang the suite
        let (pid, done) = (child.id().to_string(), Arc::new(AtomicBool::new(false)));
        let finished = Arc::clone(&done);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(120));
            if !finished.load(Ordering::SeqCst) {
                let _ = Command::new("kill").arg(&pid).status();
            }
        });
        // the shell is up once it answers a query
        let stdin = child.stdin.as_mut().unwrap();
        std::io::Write::write_all(stdin, b"SELECT 41 + 1 AS answer;\n").unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("42") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(n > 0, "the shell ended before answering");
        }
        let got = thp_enabled(child.id());
        drop(child.stdin.take());
        child.wait().unwrap();
        done.store(true, Ordering::SeqCst);
        assert_eq!(got.as_deref(), Some(want), "MIMALLOC_ALLOW_THP {allow:?}");
    }
}
