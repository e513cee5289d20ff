//! The same SQL on a Ballista cluster (feature `ballista`): a real scheduler and two
//! executor processes of our binary on 127.0.0.1, and an in-process cluster for speed.
//! Every `sql/` analysis and every function family must give the local answer (exact
//! for counts and strings, 1e-9 relative for doubles); a lost executor gives the right
//! answer (Ballista re-runs its tasks) or an error, never a partial result; an
//! unreachable scheduler is a clear error within a bounded time.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_marketing::cli::demo::ANALYSES;
use datafusion_marketing::distributed::{self, ExecutorOptions, SchedulerOptions};

use crate::common::{bin, sample_lake};

/// One process of the test cluster; killed when dropped (also when a test fails).
struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Wait for a stderr line containing `marker` and return the address after it.
    fn address_after(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(addr) = self.log.lock().unwrap().iter().find_map(|l| {
                l.split_once(marker)
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|a| a.parse().ok())
            }) {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}: {:?}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not start: {:?}", self.name, self.log());
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_port(addr: SocketAddr, who: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never listened on {addr}: {:?}",
            who.name,
            who.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scheduler and `executors` executor processes on 127.0.0.1 (ephemeral ports). An
/// executor that stops heart-beating for 3 s counts as lost.
struct Cluster {
    scheduler: Proc,
    executors: Vec<Proc>,
    addr: SocketAddr,
    _work: tempfile::TempDir,
}

impl Cluster {
    fn start(executors: usize) -> Self {
        let work = tempfile::tempdir().expect("work dir");
        let mut scheduler = Proc::spawn(
            "scheduler",
            &[
                "scheduler",
                "--bind",
                "127.0.0.1:0",
                "--executor-timeout",
                "3",
            ],
        );
        let addr = scheduler.address_after("listening on ");
        wait_for_port(addr, &scheduler);
        let scheduler_arg = addr.to_string();
        let executors = (0..executors)
            .map(|i| {
                let dir = work.path().join(format!("executor-{i}"));
                let mut e = Proc::spawn(
                    &format!("executor {i}"),
                    &[
                        "executor",
                        "--scheduler",
                        &scheduler_arg,
                        "--bind",
                        "127.0.0.1:0",
                        "--grpc-port",
                        "0",
                        "--concurrency",
                        "2",
                        "--heartbeat",
                        "1",
                        "--work-dir",
                        dir.to_str().unwrap(),
                    ],
                );
                // the Flight service starts after the executor registered with the scheduler
                let flight = e.address_after(" on ");
                wait_for_port(flight, &e);
                e
            })
            .collect();
        Self {
            scheduler,
            executors,
            addr,
            _work: work,
        }
    }

    fn url(&self) -> String {
        format!("df://{}", self.addr)
    }

    fn logs(&self) -> String {
        let mut out = format!("scheduler: {:?}\n", self.scheduler.log());
        for e in &self.executors {
            out += &format!("{}: {:?}\n", e.name, e.log());
        }
        out
    }
}

fn config() -> SessionConfig {
    datafusion_marketing::session_config().with_target_partitions(4)
}

async fn local_context() -> SessionContext {
    crate::common::lake_context_with(config()).await
}

/// A client of the cluster at `url` with the sample lake registered.
async fn cluster_client(url: &str) -> SessionContext {
    use datafusion::execution::session_state::SessionStateBuilder;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config())
        .build();
    let ctx = distributed::cluster_context(url, state)
        .await
        .expect("cluster context");
    datafusion_marketing::lake::register_lake(&ctx, sample_lake().to_str().unwrap())
        .await
        .expect("register lake");
    ctx
}

/// Run every statement of `sql`; the batches of the last one.
async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
    let mut last = Vec::new();
    for s in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        last = ctx.sql(s).await?.collect().await?;
    }
    Ok(last)
}

/// [`run`] on a cluster, bounded: a job Ballista never finishes fails the test instead of
/// hanging it.
async fn run_remote(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    match tokio::time::timeout(Duration::from_secs(180), run(ctx, sql)).await {
        Ok(result) => result,
        Err(_) => panic!("the cluster did not answer within 180 s: {sql}"),
    }
}

/// A cell: doubles as numbers (compared to 1e-9 relative), everything else as text.
#[derive(Debug, Clone)]
enum Cell {
    Num(f64),
    Text(String),
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| match c.data_type() {
                        DataType::Float64 | DataType::Float32 if c.is_valid(r) => {
                            Cell::Num(array_value_to_string(c, r).unwrap().parse().unwrap())
                        }
                        _ => Cell::Text(array_value_to_string(c, r).unwrap()),
                    })
                    .collect(),
            );
        }
    }
    // order-insensitive (partitions may interleave rows the query leaves unordered):
    // sort on the text and on doubles rounded to 6 significant digits
    let key = |row: &Vec<Cell>| -> String {
        row.iter()
            .map(|c| match c {
                Cell::Num(v) => format!("{v:.5e}"),
                Cell::Text(t) => t.clone(),
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    out.sort_by_cached_key(key);
    out
}

fn assert_same(what: &str, local: &[RecordBatch], cluster: &[RecordBatch]) {
    let (a, b) = (rows(local), rows(cluster));
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    assert!(!a.is_empty(), "{what}: no rows");
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        assert_eq!(ra.len(), rb.len(), "{what}: row {i} widths differ");
        for (ca, cb) in ra.iter().zip(rb) {
            match (ca, cb) {
                (Cell::Num(x), Cell::Num(y)) => assert!(
                    x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                    "{what}: row {i}: {x} vs {y}\nlocal {ra:?}\ncluster {rb:?}"
                ),
                (Cell::Text(x), Cell::Text(y)) => {
                    assert_eq!(x, y, "{what}: row {i}\nlocal {ra:?}\ncluster {rb:?}")
                }
                _ => panic!("{what}: row {i}: types differ: {ca:?} vs {cb:?}"),
            }
        }
    }
}

/// Queries touching every function family: scalar, aggregate (partial states merged
/// across executors), window, and table functions.
const FAMILIES: &[(&str, &str)] = &[
    (
        "scalar",
        "SELECT rfm_segment(r, f, m) AS s, cosine_similarity([r, f], [m, 1.0]) AS c \
         FROM (VALUES (5, 5, 4), (1, 2, 1), (3, 3, 3)) AS t(r, f, m)",
    ),
    (
        "aggregate",
        "SELECT s.frequency, count(*) AS customers, sum(s.monetary_value) AS m \
         FROM (SELECT clv_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s \
               FROM orders GROUP BY customer_id) GROUP BY s.frequency",
    ),
    (
        "model fit",
        "SELECT m.r, m.alpha, m.a, m.b, m.customers FROM (SELECT bgnbd_fit(s.frequency, \
         s.recency, s.\"T\") AS m FROM (SELECT clv_summary(order_ts, amount, \
         TIMESTAMP '2025-01-01', 'week') AS s FROM orders GROUP BY customer_id))",
    ),
    (
        "window",
        "SELECT customer_id, quantile_score(sum(amount), 5) OVER () AS q \
         FROM orders GROUP BY customer_id",
    ),
    (
        "table function",
        "SELECT segment, count(*) AS n, sum(monetary) AS m FROM rfm('orders', \
         'customer_id', 'order_ts', 'amount') GROUP BY segment",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_file_and_function_family_on_a_cluster_of_processes_matches_local() {
    let cluster = Cluster::start(2);
    let remote = cluster_client(&cluster.url()).await;
    let local = local_context().await;
    let queries = ANALYSES
        .iter()
        .map(|(f, sql)| (*f, *sql))
        .chain(FAMILIES.iter().copied());
    for (name, sql) in queries {
        let expected = run(&local, sql)
            .await
            .unwrap_or_else(|e| panic!("{name} locally: {e}"));
        let got = run_remote(&remote, sql)
            .await
            .unwrap_or_else(|e| panic!("{name} on the cluster: {e}\n{}", cluster.logs()));
        assert_same(name, &expected, &got);
    }
    // an execution error inside our function reaches the client with its message
    let err = run(
        &remote,
        "SELECT rfm_segment(customer_id % 9, 1, 1) FROM orders",
    )
    .await
    .expect_err("score 6..8 must fail");
    assert!(err.to_string().contains("rfm_segment"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_cluster_runs_every_family() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(distributed::run_scheduler(
        SchedulerOptions {
            bind: "127.0.0.1:0".into(),
            ..Default::default()
        },
        move |addr| {
            let _ = tx.send(addr);
        },
    ));
    let addr = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("scheduler started")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (etx, erx) = tokio::sync::oneshot::channel();
    tokio::spawn(distributed::run_executor(
        ExecutorOptions {
            scheduler: addr.to_string(),
            bind: "127.0.0.1:0".into(),
            grpc_port: 0,
            concurrency: 2,
            work_dir: work.path().to_path_buf(),
            ..Default::default()
        },
        move |flight, _| {
            let _ = etx.send(flight);
        },
    ));
    let flight = erx.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(flight).await.is_err() {
        assert!(Instant::now() < deadline, "executor never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let remote = cluster_client(&format!("df://{addr}")).await;
    let local = local_context().await;
    for (name, sql) in FAMILIES {
        let expected = run(&local, sql).await.unwrap();
        let got = run_remote(&remote, sql)
            .await
            .unwrap_or_else(|e| panic!("{name} on the cluster: {e}"));
        assert_same(name, &expected, &got);
    }
}

/// Ballista 55.0.0 re-runs a lost executor's tasks but then counts some shuffle output
/// twice (measured: 137,878,110 or 166,527,829 pairs instead of 115,464,485, hash or
/// sort-merge joins, SIGKILL or SIGTERM). Our scheduler therefore fails the running jobs
/// when an executor is lost (`--on-executor-loss fail`, the default): the answer must be
/// the undisturbed one or an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_gives_the_right_answer_or_an_error_never_a_partial_one() {
    let mut cluster = Cluster::start(2);
    let remote = cluster_client(&cluster.url()).await;
    remote
        .sql("SET datafusion.execution.target_partitions = 8")
        .await
        .unwrap();
    // a join of 115 M pairs aggregated into 363 k groups, shuffled between the executors
    let sql = "SELECT count(*) AS groups, sum(n) AS pairs FROM (SELECT a.session_id, \
               b.event_type, count(*) AS n FROM events a JOIN events b \
               ON a.customer_id = b.customer_id GROUP BY a.session_id, b.event_type)";
    let local = local_context().await;
    let expected = rows(&run(&local, sql).await.unwrap());
    // once undisturbed: the answer and how long the cluster takes
    let started = Instant::now();
    assert_same(
        "undisturbed",
        &run(&local, sql).await.unwrap(),
        &run_remote(&remote, sql).await.unwrap(),
    );
    let took = started.elapsed();
    // again, killing one executor (SIGKILL: no goodbye, the scheduler must notice the
    // silence) a third of the way in
    let query = tokio::spawn(async move { run_remote(&remote, sql).await });
    tokio::time::sleep(took / 3).await;
    cluster.executors[1].kill();
    let outcome = query.await.unwrap();
    match outcome {
        Ok(batches) => {
            let got = rows(&batches);
            assert_eq!(
                format!("{got:?}"),
                format!("{expected:?}"),
                "a lost executor must not lose rows\n{}",
                cluster.logs()
            );
        }
        Err(e) => {
            // a clear failure is acceptable; a partial answer is not
            // (the undisturbed run proved the query plans and runs: this is the job failing)
            let msg = e.to_string();
            assert!(msg.contains("Cancelled") || msg.contains("failed"), "{msg}");
            eprintln!("query failed after the executor died (undisturbed run: {took:?}): {msg}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_scheduler_is_a_clear_error_within_seconds() {
    // a port nobody listens on (tcpmux; a freed ephemeral port could be taken by the
    // executors of a test running alongside)
    let port = 1;
    let started = Instant::now();
    let Err(err) = distributed::remote_session_context(&format!("df://127.0.0.1:{port}")).await
    else {
        panic!("nobody listens on {port}");
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = err.to_string();
    assert!(
        msg.contains("unreachable") && msg.contains(&port.to_string()),
        "{msg}"
    );

    // the CLI says so and exits non-zero
    let out = Command::new(bin())
        .args([
            "--cluster",
            &format!("df://127.0.0.1:{port}"),
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");

    let Err(err) = distributed::remote_session_context("localhost").await else {
        panic!("no port");
    };
    assert!(err.to_string().contains("HOST:PORT"), "{err}");
}

#[test]
fn the_cli_runs_sql_files_on_the_cluster() {
    let cluster = Cluster::start(1);
    let lake = sample_lake().to_str().unwrap().to_string();
    let out = Command::new(bin())
        .args(["--cluster", &cluster.url(), "--lake", &lake, "--format", "csv"])
        .args(["-c", "SELECT count(*) AS n, count(DISTINCT segment) AS s FROM rfm('orders', 'customer_id', 'order_ts', 'amount')"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    let local = std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let ctx = local_context().await;
            crate::common::scalar(
                &ctx,
                "SELECT concat(count(*), ',', count(DISTINCT segment)) FROM rfm('orders', 'customer_id', 'order_ts', 'amount')",
            )
            .await
        })
    })
    .join()
    .unwrap();
    assert_eq!(stdout.lines().nth(1), Some(local.as_str()), "{stdout}");
}
