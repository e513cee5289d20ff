//! Lakes on a real S3-compatible server: s3s-fs (an S3 server over a local folder,
//! checking signatures) started on 127.0.0.1 for each test and stopped when it
//! ends. `.ci/run` installs it, and so does this harness when it is missing; if it
//! cannot be had, these tests fail, loudly.
//!
//! Covered: every `sql/*.sql` analysis gives the same result on the lake read
//! locally and from the server; `generate` straight to `s3://` writes the same
//! bytes as to a folder; `COPY TO` (Hive-partitioned), `CREATE EXTERNAL TABLE` and
//! URL tables on `s3://`; and the faults: wrong credentials, missing bucket, missing
//! prefix, server gone (before and in the middle of a query, bounded in time), an
//! object that is not Parquet, and a `COPY TO` that fails half way.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use datafusion_cli::object_storage::AwsOptions;
use datafusion_marketing::cli::demo::ANALYSES;
use datafusion_marketing::lake::{register_lake, store};

use crate::common::{bin, sample_lake};

const KEY: &str = "dfm-test-access-key";
const SECRET: &str = "dfm-test-secret-key";

/// The s3s-fs binary: `$S3S_FS`, then `PATH`, then `~/.cargo/bin`, then the copy
/// this harness installs under the target folder (with `cargo install`, about two
/// minutes once; a file lock keeps parallel test processes from racing).
fn s3s_fs_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(find_or_install_s3s_fs).clone()
}

fn find_or_install_s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("s3s-fs"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return found;
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("s3s-fs-0.14.1");
    let binary = root.join("bin/s3s-fs");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join("install.lock")).unwrap();
    lock.lock().unwrap();
    if !binary.is_file() {
        eprintln!("installing s3s-fs 0.14.1 for the S3 tests (once, about two minutes)");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "--locked",
                "s3s-fs@0.14.1",
                "--features",
                "binary",
                "--root",
            ])
            .arg(&root)
            .env("CARGO_TARGET_DIR", root.join("build"))
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()) && binary.is_file(),
            "the S3 tests need the s3s-fs server and installing it failed ({status:?}): \
             run `cargo install --locked s3s-fs@0.14.1 --features binary`, or point S3S_FS at the binary"
        );
    }
    binary
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An s3s-fs server on 127.0.0.1 over a temporary folder; every folder under the
/// root is a bucket. Killed on drop.
struct S3Server {
    child: Option<Child>,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start() -> Self {
        let binary = s3s_fs_binary();
        let root = tempfile::tempdir().expect("server root");
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", KEY, "--secret-key", SECRET])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break; // lost the port to someone else: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child: Some(child),
                        port,
                        root,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start on 127.0.0.1 after 5 attempts");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket and return its folder.
    fn bucket(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).expect("bucket folder");
        dir
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Library settings for this server, with another endpoint (a proxy) if given.
    fn aws_options(&self, endpoint: Option<String>) -> AwsOptions {
        AwsOptions {
            access_key_id: Some(KEY.into()),
            secret_access_key: Some(SECRET.into()),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.unwrap_or_else(|| self.endpoint())),
            allow_http: Some(true),
            ..Default::default()
        }
    }

    /// The CLI with this server's settings in its environment (and nothing else
    /// of the AWS kind from ours).
    fn cli(&self) -> Command {
        let mut cmd = Command::new(bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("DFM_S3_RETRY_TIMEOUT", "5");
        cmd
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Visible files under a folder (s3s-fs keeps its own metadata in hidden files).
fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(p) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// A context whose `s3://` stores point at `server` (through `endpoint` if given).
fn s3_context(server: &S3Server, bucket: &str, endpoint: Option<String>) -> SessionContext {
    let ctx = datafusion_marketing::session_context().unwrap();
    let url = url::Url::parse(&format!("s3://{bucket}/")).unwrap();
    let s3 = store::object_store_with(&url, &server.aws_options(endpoint)).unwrap();
    ctx.register_object_store(&url, s3);
    ctx
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Rows as strings, sorted, so plans that emit rows in another order still compare.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

/// Equal cell by cell; numbers that differ only in the last bits (parallel float
/// sums add in another order) agree to 1e-9 relative.
fn assert_same(file: &str, local: &[Vec<String>], remote: &[Vec<String>]) {
    assert_eq!(local.len(), remote.len(), "{file}: row counts differ");
    for (a, b) in local.iter().zip(remote) {
        for (x, y) in a.iter().zip(b) {
            if x == y {
                continue;
            }
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) if (p - q).abs() <= 1e-9 * p.abs().max(q.abs()) => {}
                _ => panic!("{file}: '{x}' (local) differs from '{y}' (S3)\n{a:?}\n{b:?}"),
            }
        }
    }
}

async fn run_file(ctx: &SessionContext, file: &str, sql: &str) -> Vec<Vec<String>> {
    let mut last = Vec::new();
    for s in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        let df = ctx.sql(s).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        last = df.collect().await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    rows(&last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_file_gives_the_same_result_from_s3() {
    let server = S3Server::start();
    copy_dir(sample_lake(), &server.bucket("lake-bucket").join("sample"));
    let local = crate::common::lake_context().await;
    let remote = s3_context(&server, "lake-bucket", None);
    let tables = register_lake(&remote, "s3://lake-bucket/sample")
        .await
        .unwrap();
    let orders = tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(
        orders.partitions,
        vec![(
            "year".to_string(),
            datafusion::arrow::datatypes::DataType::Int64
        )]
    );
    for (file, sql) in ANALYSES {
        let a = run_file(&local, file, sql).await;
        let b = run_file(&remote, file, sql).await;
        assert!(!a.is_empty(), "{file} returned no rows");
        assert_same(file, &a, &b);
    }
    // Hive partitions prune on S3 as locally: one partition's rows only
    let pruned = "SELECT count(*) FROM orders WHERE year = 2024";
    assert_eq!(
        rows(&local.sql(pruned).await.unwrap().collect().await.unwrap()),
        rows(&remote.sql(pruned).await.unwrap().collect().await.unwrap())
    );
}

#[test]
fn generate_to_s3_writes_the_same_lake_as_to_a_folder() {
    let server = S3Server::start();
    let bucket = server.bucket("gen");
    let local = tempfile::tempdir().unwrap();
    let out = server
        .cli()
        .args([
            "generate",
            "s3://gen/lakes/small",
            "--customers",
            "1200",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new(bin())
        .args([
            "generate",
            local.path().to_str().unwrap(),
            "--customers",
            "1200",
        ])
        .args(["--seed", "5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let remote_root = bucket.join("lakes/small");
    let remote_files = files_under(&remote_root);
    let local_files = files_under(local.path());
    assert_eq!(remote_files.len(), local_files.len());
    assert!(local_files.len() >= 8, "{local_files:?}");
    for (r, l) in remote_files.iter().zip(&local_files) {
        assert_eq!(
            r.strip_prefix(&remote_root).unwrap(),
            l.strip_prefix(local.path()).unwrap()
        );
        assert!(
            std::fs::read(r).unwrap() == std::fs::read(l).unwrap(),
            "{r:?}"
        );
    }
    // a second run refuses to mix lakes
    let out = server
        .cli()
        .args(["generate", "s3://gen/lakes/small", "--customers", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("already contains a"), "{}", text(&out));
}

#[test]
fn copy_to_create_external_table_and_url_tables_on_s3() {
    let server = S3Server::start();
    let bucket = server.bucket("work");
    copy_dir(sample_lake(), &bucket.join("lake"));
    let out = server
        .cli()
        .args(["--lake", "s3://work/lake", "--format", "csv"])
        .args([
            "-c",
            "COPY (SELECT customer_id, amount, year FROM orders) TO 's3://work/exports/orders/' \
             STORED AS PARQUET PARTITIONED BY (year)",
            "-c",
            "CREATE EXTERNAL TABLE exported STORED AS PARQUET LOCATION 's3://work/exports/orders/'",
            "-c",
            "SELECT year, count(*) AS n, round(sum(amount), 2) AS revenue FROM exported GROUP BY year ORDER BY year",
            "-c",
            "SELECT year, count(*) AS n, round(sum(amount), 2) AS revenue FROM orders GROUP BY year ORDER BY year",
            "-c",
            "SELECT count(*) FROM 's3://work/exports/orders/year=2024/'",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let blocks: Vec<&str> = stdout.split("year,n,revenue\n").collect();
    assert_eq!(blocks.len(), 3, "{stdout}");
    let exported = blocks[1].trim();
    let original = blocks[2].lines().take(3).collect::<Vec<_>>().join("\n");
    assert_eq!(exported, original, "{stdout}");
    // one folder per year, Parquet files in each
    let written = files_under(&bucket.join("exports/orders"));
    for year in ["year=2023", "year=2024", "year=2025"] {
        assert!(
            written.iter().any(|p| p.to_string_lossy().contains(year)),
            "{written:?}"
        );
    }
}

/// Runs the CLI against the server and returns (success, combined output, seconds).
fn cli_run(cmd: &mut Command) -> (bool, String, f64) {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        text(&out),
        start.elapsed().as_secs_f64(),
    )
}

#[test]
fn storage_faults_give_actionable_errors() {
    let mut server = S3Server::start();
    let bucket = server.bucket("faults");
    copy_dir(sample_lake(), &bucket.join("lake"));
    std::fs::create_dir_all(bucket.join("broken/orders")).unwrap();
    std::fs::write(
        bucket.join("broken/orders/part-0.parquet"),
        b"PAR1 truncated, not parquet",
    )
    .unwrap();

    // wrong credentials
    let (ok, out, _) = cli_run(server.cli().env("AWS_SECRET_ACCESS_KEY", "wrong").args([
        "--lake",
        "s3://faults/lake",
        "-c",
        "SELECT 1",
    ]));
    assert!(!ok);
    assert!(out.contains("403 Forbidden"), "{out}");
    assert!(out.contains("check AWS_ACCESS_KEY_ID"), "{out}");

    // missing bucket
    let (ok, out, _) = cli_run(
        server
            .cli()
            .args(["--lake", "s3://nope/lake", "-c", "SELECT 1"]),
    );
    assert!(!ok);
    assert!(out.contains("NoSuchBucket"), "{out}");
    assert!(out.contains("the bucket does not exist"), "{out}");

    // missing prefix
    let (ok, out, _) =
        cli_run(
            server
                .cli()
                .args(["--lake", "s3://faults/lakee", "-c", "SELECT 1"]),
        );
    assert!(!ok);
    assert!(
        out.contains("lake 's3://faults/lakee' is empty: no objects under the prefix 'lakee/'"),
        "{out}"
    );

    // an object that is not Parquet: named, with its size
    let (ok, out, _) =
        cli_run(
            server
                .cli()
                .args(["--lake", "s3://faults/broken", "-c", "SELECT 1"]),
        );
    assert!(!ok);
    assert!(
        out.contains(
            "object 'broken/orders/part-0.parquet' (27 bytes) is not a readable Parquet file"
        ),
        "{out}"
    );

    // a COPY that fails half way leaves nothing behind on the server
    let (ok, out, _) = cli_run(server.cli().args([
        "-c",
        "COPY (SELECT value, value % 3 AS p, random() AS r, \
         CASE WHEN value > 3500000 THEN value / (value - value) ELSE value END AS x \
         FROM generate_series(1, 4000000)) TO 's3://faults/half/' STORED AS PARQUET PARTITIONED BY (p)",
    ]));
    assert!(!ok);
    assert!(out.contains("Divide by zero"), "{out}");
    assert!(out.contains("removed the 3 partial file(s)"), "{out}");
    assert_eq!(files_under(&bucket.join("half")), Vec::<PathBuf>::new());

    // server gone: an error within the retry budget (DFM_S3_RETRY_TIMEOUT=5 here)
    server.stop();
    let (ok, out, secs) =
        cli_run(
            server
                .cli()
                .args(["--lake", "s3://faults/lake", "-c", "SELECT 1"]),
        );
    assert!(!ok);
    assert!(out.contains("did not answer"), "{out}");
    assert!(secs < 30.0, "took {secs:.1}s\n{out}");
}

/// A TCP proxy that forwards to `target` until `budget` bytes have come back from
/// it after [`Proxy::arm`], then drops every connection and refuses new ones: a
/// server dying in the middle of a response.
struct Proxy {
    port: u16,
    armed: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
    dead: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            armed: Arc::new(AtomicBool::new(false)),
            budget: Arc::new(AtomicU64::new(0)),
            dead: Arc::new(AtomicBool::new(false)),
            streams: Arc::new(Mutex::new(Vec::new())),
        };
        let (armed, budget, dead, streams) = (
            proxy.armed.clone(),
            proxy.budget.clone(),
            proxy.dead.clone(),
            proxy.streams.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if dead.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                streams
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2, None));
                let meter = (armed.clone(), budget.clone(), dead.clone(), streams.clone());
                std::thread::spawn(move || pump(server, client, Some(meter)));
            }
        });
        proxy
    }

    /// From now on, let `bytes` more bytes through from the server, then die.
    fn arm(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }
}

type Meter = (
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    Arc<AtomicBool>,
    Arc<Mutex<Vec<TcpStream>>>,
);

fn pump(mut from: TcpStream, mut to: TcpStream, meter: Option<Meter>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((armed, budget, dead, streams)) = &meter
            && armed.load(Ordering::SeqCst)
        {
            let left = budget.fetch_sub(
                (n as u64).min(budget.load(Ordering::SeqCst)),
                Ordering::SeqCst,
            );
            if left <= n as u64 {
                dead.store(true, Ordering::SeqCst);
                for s in streams.lock().unwrap().iter() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dying_in_the_middle_of_a_query_fails_in_bounded_time() {
    let server = S3Server::start();
    copy_dir(sample_lake(), &server.bucket("mid").join("lake"));
    let proxy = Proxy::start(server.port);
    let ctx = s3_context(
        &server,
        "mid",
        Some(format!("http://127.0.0.1:{}", proxy.port)),
    );
    register_lake(&ctx, "s3://mid/lake").await.unwrap();
    let events_bytes: u64 = files_under(&server.root.path().join("mid/lake/events"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(events_bytes > 1_000_000, "{events_bytes}");
    // the scan needs every byte of the table; the server dies a tenth of the way in
    proxy.arm(events_bytes / 10);
    let start = Instant::now();
    let result = async {
        ctx.sql("SELECT event_type, count(*), count(DISTINCT session_id) FROM events GROUP BY event_type")
            .await?
            .collect()
            .await
    }
    .await;
    let secs = start.elapsed().as_secs_f64();
    let err = result.expect_err("the query must fail, not return partial counts");
    let msg = err.to_string();
    assert!(
        msg.contains("error") || msg.contains("Error"),
        "unexpected error text: {msg}"
    );
    // retries: at most 4 within 20 s by default, each connection refused at once
    assert!(
        secs < (store::RETRY_TIMEOUT + store::CONNECT_TIMEOUT).as_secs_f64() + 10.0,
        "took {secs:.1}s: {msg}"
    );
    eprintln!("server died mid-query after {secs:.2}s: {msg}");
}

#[test]
fn storage_hints_read_the_status_not_the_timings() {
    // a latency of "1.240305ms" holds the digits 403: the hint must not blame credentials
    let not_found = "Error performing GET http://h/b?list-type=2 in 1.240305ms - \
                     Server returned non-2xx status code: 404 Not Found: ";
    assert!(store::storage_hint(not_found).contains("404 Not Found"));
    let forbidden =
        "Server returned non-2xx status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>";
    assert!(store::storage_hint(forbidden).contains("refused the credentials"));
    let gone = "Error performing GET http://h/b in 2ms, after 4 retries - HTTP error: error sending request";
    assert!(store::storage_hint(gone).contains("did not answer"));
    assert_eq!(store::storage_hint("Parquet error: bad footer"), "");
}
