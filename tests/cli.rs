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
fn copy_writes_row_groups_of_the_generated_lake_size_unless_set() {
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
    assert_eq!(row_groups(&default), [262_144, 262_144, 75_712]);
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
