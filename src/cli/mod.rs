//! The `datafusion-marketing` command line: an SQL shell and batch runner over a
//! lake (built on the `datafusion-cli` library: REPL, printing, object stores),
//! plus `generate` and `demo`.

pub mod demo;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::config::ConfigOptions;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, GreedyMemoryPool, MemoryPool, TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::ExplainFormat;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_cli::catalog::DynamicObjectStoreCatalog;
use datafusion_cli::cli_context::CliSessionContext;
use datafusion_cli::functions::ParquetMetadataFunc;
use datafusion_cli::object_storage::instrumented::InstrumentedObjectStoreRegistry;
use datafusion_cli::pool_type::PoolType;
use datafusion_cli::print_format::PrintFormat;
use datafusion_cli::print_options::{MaxRows, PrintOptions};
use object_store::ObjectStore;

use crate::generate::{Destination, GenerateOptions, generate_to, timed};

/// Marketing analytics in SQL on Apache DataFusion.
#[derive(Debug, Parser)]
#[command(
    name = "datafusion-marketing",
    version,
    about = "Marketing analytics (RFM, attribution, CLV, recommendations) in SQL over a Parquet lake",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub sql: SqlArgs,
}

/// Options of the SQL shell / batch runner (the default command).
#[derive(Debug, Args, Clone)]
pub struct SqlArgs {
    /// Register every table under this lake folder (repeatable). Each sub-folder of
    /// Parquet files is a table named after it; Hive key=value folders become columns.
    #[arg(long = "lake", value_name = "PATH")]
    pub lakes: Vec<String>,
    /// Run this SQL (repeatable), then exit. Without -c/-f an interactive shell starts.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// Run the SQL in this file (repeatable), then exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format. csv, tsv, json and nd-json print only the data (they imply -q).
    #[arg(long, value_enum, default_value_t = PrintFormat::Automatic)]
    pub format: PrintFormat,
    /// Print only results: no banner, row counts or timings.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Memory limit for query execution, e.g. '2g' or '512m'; operators that can spill do.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Memory pool: 'fair' (default: every spilling operator gets an equal share, so
    /// aggregates spill instead of starving each other) or 'greedy' (first come, first served).
    #[arg(long, default_value_t = PoolType::Fair)]
    pub mem_pool_type: PoolType,
    /// Folder for spill files (default: the system temporary folder).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Most disk space spill files may use, e.g. '20g'.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub disk_limit: Option<usize>,
    /// Rows per batch (DataFusion's default when absent).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// Most rows shown by the table format: a number or 'inf'.
    #[arg(long, default_value = "40")]
    pub maxrows: MaxRows,
    /// Colour the shell's syntax.
    #[arg(long)]
    pub color: bool,
    /// Run the queries on a Ballista cluster: the scheduler's address, `df://HOST:PORT`
    /// (needs a binary built with `--features ballista`, and a cluster started with the
    /// `scheduler` and `executor` commands). --memory-limit and the spill options then
    /// apply to the client only; each executor has its own.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a realistic, deterministic sample lake into OUT.
    Generate {
        /// Output folder (created if missing; must not already hold a lake), or an
        /// object-store prefix such as s3://bucket/lake (streamed as multipart uploads).
        out: String,
        /// Number of customers (about 9 orders each on average).
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Random seed: the same seed and customer count give the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Worker threads (default: all cores). Does not change the output.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Generate a small lake (if DIR has none) and print the showcase analyses.
    Demo {
        /// Lake folder.
        #[arg(long, default_value = "demo-lake")]
        dir: PathBuf,
        /// Customers in the generated lake.
        #[arg(long, default_value_t = 5_000)]
        customers: u64,
    },
    /// Print the function catalog (docs/functions.md) to stdout.
    FunctionsDoc,
    /// Run a Ballista scheduler with every function of this crate (feature `ballista`).
    Scheduler {
        /// Address to listen on (port 0: a free port, printed at start).
        #[arg(long, default_value = "0.0.0.0:50050", value_name = "HOST:PORT")]
        bind: String,
        /// Host name executors and clients use to reach this scheduler (default: the
        /// bind address, or localhost when bound to all interfaces).
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
        /// Seconds without a heartbeat after which an executor is lost and its tasks run
        /// elsewhere.
        #[arg(long, default_value_t = 180, value_name = "SECS")]
        executor_timeout: u64,
        /// Times a failed task or stage is retried before the query fails.
        #[arg(long, default_value_t = 4, value_name = "N")]
        max_failures: usize,
        /// When an executor is lost: 'fail' the running queries (default: Ballista 55's
        /// re-run of the lost work can count data twice) or 'retry' (Ballista's behaviour).
        #[arg(long, default_value = "fail", value_parser = ["fail", "retry"])]
        on_executor_loss: String,
    },
    /// Run a Ballista executor with every function of this crate (feature `ballista`).
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "localhost:50050", value_name = "HOST:PORT")]
        scheduler: String,
        /// Address of the executor's Arrow Flight service, which serves shuffle data and
        /// results (port 0: a free port).
        #[arg(long, default_value = "0.0.0.0:50051", value_name = "HOST:PORT")]
        bind: String,
        /// Port of the executor's task service (0: a free port).
        #[arg(long, default_value_t = 50052, value_name = "PORT")]
        grpc_port: u16,
        /// Host name the scheduler and clients use to reach this executor.
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
        /// Tasks run at once (default: one per core).
        #[arg(long, default_value_t = 0, value_name = "N")]
        concurrency: usize,
        /// Folder for shuffle and spill files.
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Memory pool shared by the executor's tasks, e.g. '4g' (default: 70 % of the
        /// machine's memory); operators that can spill do.
        #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size)]
        memory_limit: Option<usize>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        heartbeat: u64,
    },
}

/// Parse sizes such as `512m`, `2g`, `1.5G`, `100k` or a plain number of bytes.
pub fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        format!("invalid size '{s}': expected a number with an optional k/m/g/t suffix, e.g. '2g'")
    })?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("invalid size '{s}': must be positive"));
    }
    Ok((n * mult as f64) as usize)
}

impl SqlArgs {
    fn batch_mode(&self) -> bool {
        !self.commands.is_empty() || !self.files.is_empty()
    }

    /// Machine-readable formats print only data.
    fn effective_quiet(&self) -> bool {
        self.quiet
            || (self.batch_mode()
                && !matches!(self.format, PrintFormat::Table | PrintFormat::Automatic))
    }
}

/// Build the CLI's session: memory pool, spill folder, object-store registry,
/// dynamic `s3://`/`file` URL tables, every function registered; on a Ballista cluster
/// with `--cluster`.
pub async fn build_context(args: &SqlArgs) -> Result<(SessionContext, PrintOptions)> {
    let mut options = ConfigOptions::from_env()?;
    if let Some(b) = args.batch_size {
        options.execution.batch_size = ConfigNonZeroUsize::try_new(b as usize)?;
    }
    if std::env::var_os("DATAFUSION_EXECUTION_PARQUET_MAX_ROW_GROUP_SIZE").is_none() {
        options.execution.parquet.max_row_group_size = COPY_ROW_GROUP_ROWS;
    }
    if std::env::var_os("DATAFUSION_EXECUTION_META_FETCH_CONCURRENCY").is_none()
        && !args.lakes.is_empty()
        && args.lakes.iter().all(|lake| !lake.contains("://"))
    {
        // Parquet footers are fetched this many at a time (at registration, and again for
        // statistics when a query plans). DataFusion's 32 hides object-store latency; local
        // files are read on the blocking pool (a few threads, see `Cli::blocking_threads`),
        // so 32 in flight only hold 32 footer buffers (up to `metadata_size_hint`, 512 KiB,
        // each) at once: one per core reads local footers as fast (`rfm` on the 10M-order
        // lake: about 20 MiB less resident, same time). Only when every lake is local: a
        // session without a lake keeps 32 for the `s3://` URLs and external tables it may
        // read (a session with a local lake reads those with fewer footers in flight)
        options.execution.meta_fetch_concurrency =
            ConfigNonZeroUsize::try_new(crate::clv::model::cores().max(2))?;
    }
    if std::env::var_os("DATAFUSION_EXPLAIN_FORMAT").is_none() {
        options.explain.format = ExplainFormat::Tree;
    }
    if std::env::var_os("DATAFUSION_FORMAT_NULL").is_none() {
        options.format.null = "NULL".to_string();
    }
    if let Some(limit) = args.memory_limit
        && std::env::var_os("DATAFUSION_EXECUTION_SORT_SPILL_RESERVATION_BYTES").is_none()
    {
        // a sort that spills reserves this much up front to merge its runs (10 MB by
        // default): more than a small limit holds, so scale it down with the limit
        let reserve = &mut options.execution.sort_spill_reservation_bytes;
        *reserve = (*reserve).min(limit / 16);
    }
    // (also for `--cluster`, whose session does not go through `session_state`)
    let config = crate::without_repartition_spill_hang(
        SessionConfig::from(options).with_information_schema(true),
    );

    let mut rt = RuntimeEnvBuilder::new();
    if let Some(limit) = args.memory_limit {
        let top = NonZeroUsize::new(5).expect("5 is not zero");
        let pool: Arc<dyn MemoryPool> = match args.mem_pool_type {
            PoolType::Fair => Arc::new(TrackConsumersPool::new(FairSpillPool::new(limit), top)),
            PoolType::Greedy => {
                Arc::new(TrackConsumersPool::new(GreedyMemoryPool::new(limit), top))
            }
        };
        rt = rt.with_memory_pool(pool);
    }
    if args.spill_dir.is_some() || args.disk_limit.is_some() {
        let mut dm = DiskManagerBuilder::default();
        if let Some(dir) = &args.spill_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                DataFusionError::Configuration(format!(
                    "cannot create spill folder '{}': {e}",
                    dir.display()
                ))
            })?;
            dm = dm.with_mode(DiskManagerMode::Directories(vec![dir.clone()]));
        } else {
            dm = dm.with_mode(DiskManagerMode::OsTmpDirectory);
        }
        if let Some(limit) = args.disk_limit {
            dm = dm.with_max_temp_directory_size(limit as u64);
        }
        rt = rt.with_disk_manager_builder(dm);
    }
    let registry = Arc::new(InstrumentedObjectStoreRegistry::new());
    rt = rt.with_object_store_registry(Arc::new(crate::lake::store::LakeStoreRegistry::new(
        registry.clone(),
    )));
    let ctx = match &args.cluster {
        None => SessionContext::new_with_state(crate::session_state(config, rt.build_arc()?)),
        Some(cluster) => cluster_context(cluster, config, rt.build_arc()?).await?,
    }
    .enable_url_table();
    ctx.register_catalog_list(Arc::new(DynamicObjectStoreCatalog::new(
        ctx.state().catalog_list().clone(),
        ctx.state_weak_ref(),
    )));
    ctx.register_udtf("parquet_metadata", Arc::new(ParquetMetadataFunc {}));
    crate::register_on_context(&ctx)?;
    let print = PrintOptions {
        format: args.format,
        quiet: args.effective_quiet(),
        maxrows: args.maxrows,
        color: args.color,
        instrumented_registry: registry,
    };
    Ok((ctx, print))
}

/// A client context on the Ballista cluster at `cluster`.
#[cfg(feature = "ballista")]
async fn cluster_context(
    cluster: &str,
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext> {
    let state = datafusion::execution::session_state::SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build();
    crate::distributed::cluster_context(cluster, state).await
}

#[cfg(not(feature = "ballista"))]
async fn cluster_context(
    _cluster: &str,
    _config: SessionConfig,
    _runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext> {
    Err(without_ballista("--cluster"))
}

#[cfg(not(feature = "ballista"))]
fn without_ballista(what: &str) -> DataFusionError {
    DataFusionError::Configuration(format!(
        "{what} needs a binary built with the `ballista` feature: \
         cargo build --release --features ballista"
    ))
}

/// Run `scheduler`.
#[cfg(feature = "ballista")]
async fn run_scheduler(opts: crate::distributed::SchedulerOptions) -> Result<()> {
    crate::distributed::run_scheduler(opts, |addr| {
        eprintln!(
            "datafusion-marketing scheduler {} (Ballista {}) listening on {addr}",
            env!("CARGO_PKG_VERSION"),
            ballista_core::BALLISTA_VERSION
        );
    })
    .await
}

/// Run `executor`.
#[cfg(feature = "ballista")]
async fn run_executor(opts: crate::distributed::ExecutorOptions) -> Result<()> {
    let scheduler = opts.scheduler.clone();
    crate::distributed::run_executor(opts, |addr, grpc| {
        eprintln!(
            "datafusion-marketing executor {} on {addr} (tasks on port {grpc}), scheduler {scheduler}",
            env!("CARGO_PKG_VERSION"),
        );
    })
    .await
}

/// Where `generate OUT` writes: a local folder, or a prefix in an object store
/// (`s3://bucket/prefix`, `gs://...`) built from the environment.
fn generate_destination(out: &str) -> Result<Destination> {
    let Some((scheme, _)) = out.split_once("://") else {
        return Ok(Destination::Local(PathBuf::from(out)));
    };
    let url = url::Url::parse(out).map_err(|e| {
        DataFusionError::Configuration(format!("generate: invalid output URL '{out}': {e}"))
    })?;
    if scheme == "file" {
        let path = url.to_file_path().map_err(|()| {
            DataFusionError::Configuration(format!("generate: invalid file URL '{out}'"))
        })?;
        return Ok(Destination::Local(path));
    }
    let store = crate::lake::store::object_store_for(&url)?;
    let prefix = object_store::path::Path::from_url_path(url.path()).map_err(|e| {
        DataFusionError::Configuration(format!("generate: invalid output path '{out}': {e}"))
    })?;
    Ok(Destination::Store {
        store,
        url: out.trim_end_matches('/').to_string(),
        prefix,
        runtime: tokio::runtime::Handle::current(),
    })
}

/// The session as `datafusion-cli`'s executor sees it. Differs from the stock one in
/// one place: `CREATE EXTERNAL TABLE` and `COPY TO` on `s3://` start from the AWS
/// settings of the environment (keys, region, endpoint, allow-HTTP; see
/// [`crate::lake::store`]) instead of empty options, so they reach the same
/// S3-compatible server as `--lake` without a region lookup at AWS. Statement
/// `OPTIONS ('aws.*' ...)` still override them. And `COPY` runs through
/// [`crate::lake::execute_copy`], which removes the partial files of a failed copy.
struct MarketingCli<'a>(&'a SessionContext);

#[async_trait::async_trait]
impl CliSessionContext for MarketingCli<'_> {
    fn task_ctx(&self) -> Arc<TaskContext> {
        self.0.task_ctx()
    }

    fn session_state(&self) -> SessionState {
        self.0.state()
    }

    fn register_object_store(
        &self,
        url: &url::Url,
        object_store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore + 'static>> {
        self.0.register_object_store(url, object_store)
    }

    fn register_table_options_extension_from_scheme(&self, scheme: &str) {
        match scheme {
            "s3" | "s3a" => self
                .0
                .register_table_options_extension(crate::lake::store::aws_options_from_env()),
            _ => CliSessionContext::register_table_options_extension_from_scheme(self.0, scheme),
        }
    }

    async fn execute_logical_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        if matches!(plan, LogicalPlan::Copy(_)) {
            // run the copy here, so a failure can remove the partial files
            let batches = crate::lake::execute_copy(self.0, plan).await?;
            return self.0.read_batches(batches);
        }
        self.0.execute_logical_plan(plan).await
    }
}

/// Run the SQL shell / batch runner.
pub async fn run_sql(args: SqlArgs) -> Result<()> {
    let (ctx, mut print) = build_context(&args).await?;
    for lake in &args.lakes {
        let tables = crate::lake::register_lake(&ctx, lake).await?;
        if !print.quiet {
            let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            eprintln!(
                "lake {lake}: {} table(s): {}",
                names.len(),
                names.join(", ")
            );
        }
    }
    if !args.batch_mode() {
        if !print.quiet {
            println!(
                "datafusion-marketing {} (DataFusion {}). \\? for help, \\q to quit.",
                env!("CARGO_PKG_VERSION"),
                datafusion::DATAFUSION_VERSION
            );
        }
        return datafusion_cli::exec::exec_from_repl(&MarketingCli(&ctx), &mut print)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)));
    }
    for file in &args.files {
        let sql = std::fs::read_to_string(file).map_err(|e| {
            DataFusionError::Configuration(format!(
                "cannot read SQL file '{}': {e}",
                file.display()
            ))
        })?;
        // the whole file goes through one parser call, so a failing statement stops
        // the run with a non-zero exit code (datafusion-cli's -f only logs it)
        datafusion_cli::exec::exec_from_commands(&MarketingCli(&ctx), vec![sql], &print).await?;
    }
    datafusion_cli::exec::exec_from_commands(&MarketingCli(&ctx), args.commands.clone(), &print)
        .await
}

/// Rows per row group of the Parquet files `COPY` writes (unless set): 64Ki, not DataFusion's
/// 1Mi. A scan splits a file across partitions by whole row groups, so a million-row summary
/// written as one row group would be read, aggregated and scored on one core, and an
/// 880k-customer summary in four row groups of 256Ki split 2 + 2 over two cores as 524k + 356k
/// rows: the larger half decides the time. With 64Ki rows the halves differ by at most one
/// group. (The files are larger, 10.2 MB instead of 9.0 MB for that summary: each group has
/// its own dictionaries.)
pub const COPY_ROW_GROUP_ROWS: usize = 65_536;

/// Turn transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set (then
/// mimalloc decides, as it documents; `MIMALLOC_ALLOW_THP=0` makes this same call). With
/// huge pages allowed, resident memory grows in 2 MiB steps and, where THP defrag is
/// `madvise` (a common default), a fresh query process can wait in the kernel compacting
/// memory. Measured on the benchmark machine (10M orders): the bare `GROUP BY customer` peaks
/// at 350–394 MiB with huge pages and 221–237 MiB without, `rfm(...)` at 531 vs 363 MiB, and
/// runs spent up to 1 s of system time compacting. The binary calls it first thing in `main`,
/// before the runtime starts (pages already backed by huge pages stay so). Returns whether
/// THP is now off.
pub fn prefer_small_pages() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_thp_disable(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    false
}

impl Cli {
    /// The command line of this process (exits with the usage text on `--help` or an error).
    pub fn from_args() -> Self {
        Cli::parse()
    }

    /// The most threads tokio's blocking pool may start for this command (`None`: tokio's
    /// default, 512).
    ///
    /// Local file reads (Parquet footers and pages) run on that pool. Uncapped, a lake
    /// registration reading footers 32 at a time starts ~20 threads that stay for the
    /// queries, each with its own allocator heap holding freed memory (`rfm` on a 10M-order
    /// lake: 25 threads and ~20 MiB more resident than with the cap, 7 threads). Two per core
    /// keep the disks busy; the SQL commands and `generate` only run short blocking tasks (or
    /// one long one). A Ballista scheduler or executor is left uncapped: an executor holds a
    /// blocking thread for the life of each shuffle write and each Flight stream it serves,
    /// and those wait on reads that need blocking threads of their own.
    pub fn blocking_threads(&self) -> Option<usize> {
        match self.command {
            Some(Command::Scheduler { .. } | Command::Executor { .. }) => None,
            _ => Some((2 * crate::clv::model::cores()).max(4)),
        }
    }
}

/// Entry point of the binary, with its parsed command line. Returns the process exit code.
pub async fn main(cli: Cli) -> std::process::ExitCode {
    // RUST_LOG overrides; servers say what they do (connections, lost executors, retries)
    let default_log = match cli.command {
        Some(Command::Scheduler { .. } | Command::Executor { .. }) => "info",
        _ => "error",
    };
    let _ =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_log))
            .try_init();
    let result = match cli.command {
        None => run_sql(cli.sql).await,
        Some(Command::Generate {
            out,
            customers,
            seed,
            threads,
        }) => {
            let opts = GenerateOptions {
                customers,
                seed,
                threads,
                progress: true,
                ..Default::default()
            };
            match generate_destination(&out) {
                Err(e) => Err(e),
                Ok(dest) => {
                    let (r, elapsed) = match tokio::task::spawn_blocking(move || {
                        timed(|| generate_to(&dest, &opts))
                    })
                    .await
                    {
                        Ok(done) => done,
                        Err(e) => (
                            Err(DataFusionError::Execution(format!("generate failed: {e}"))),
                            Default::default(),
                        ),
                    };
                    r.map(|s| {
                        eprintln!(
                            "wrote {out} in {:.1}s ({:.0} orders/s): {s}",
                            elapsed.as_secs_f64(),
                            s.orders as f64 / elapsed.as_secs_f64().max(1e-9)
                        );
                    })
                }
            }
        }
        Some(Command::Demo { dir, customers }) => demo::run(&dir, customers).await,
        Some(Command::FunctionsDoc) => crate::catalog::render_markdown()
            .map(|md| print!("{md}"))
            .map_err(DataFusionError::Internal),
        #[cfg(feature = "ballista")]
        Some(Command::Scheduler {
            bind,
            external_host,
            executor_timeout,
            max_failures,
            on_executor_loss,
        }) => {
            run_scheduler(crate::distributed::SchedulerOptions {
                bind,
                external_host,
                executor_timeout_seconds: executor_timeout,
                max_failures,
                fail_on_executor_loss: on_executor_loss == "fail",
            })
            .await
        }
        #[cfg(feature = "ballista")]
        Some(Command::Executor {
            scheduler,
            bind,
            grpc_port,
            external_host,
            concurrency,
            work_dir,
            memory_limit,
            heartbeat,
        }) => {
            let defaults = crate::distributed::ExecutorOptions::default();
            run_executor(crate::distributed::ExecutorOptions {
                scheduler,
                bind,
                external_host,
                grpc_port,
                concurrency,
                work_dir: work_dir.unwrap_or(defaults.work_dir),
                memory_limit,
                heartbeat_seconds: heartbeat,
                ..defaults
            })
            .await
        }
        #[cfg(not(feature = "ballista"))]
        Some(Command::Scheduler { .. }) => Err(without_ballista("the scheduler command")),
        #[cfg(not(feature = "ballista"))]
        Some(Command::Executor { .. }) => Err(without_ballista("the executor command")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL commands cap tokio's blocking pool; a Ballista scheduler or executor does not.
    #[test]
    fn only_the_cluster_commands_keep_the_blocking_pool_uncapped() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("datafusion-marketing").chain(args.iter().copied()))
                .unwrap()
        };
        for args in [&["-c", "SELECT 1"][..], &["demo"], &["functions-doc"]] {
            let n = parse(args).blocking_threads();
            assert!(n.is_some_and(|n| n >= 4), "{args:?}: {n:?}");
        }
        for args in [&["executor"][..], &["scheduler"]] {
            assert_eq!(parse(args).blocking_threads(), None, "{args:?}");
        }
    }

    /// Local lakes fetch Parquet footers one per core at a time; object-store lakes, and
    /// sessions without a lake, keep DataFusion's 32 (the lakes are only named here:
    /// registering them is separate).
    #[tokio::test]
    async fn local_lakes_fetch_footers_one_per_core() {
        let fetches = |args: &'static [&'static str]| async move {
            let cli = Cli::try_parse_from(
                std::iter::once("datafusion-marketing").chain(args.iter().copied()),
            )
            .unwrap();
            let (ctx, _) = build_context(&cli.sql).await.unwrap();
            ctx.state()
                .config_options()
                .execution
                .meta_fetch_concurrency
                .get()
        };
        if std::env::var_os("DATAFUSION_EXECUTION_META_FETCH_CONCURRENCY").is_some() {
            // the environment decides then (as DataFusion documents); nothing to check here
            return;
        }
        assert_eq!(
            fetches(&["--lake", "some/folder"]).await,
            crate::clv::model::cores().max(2)
        );
        assert_eq!(fetches(&[]).await, 32);
        assert_eq!(fetches(&["--lake", "s3://bucket/lake"]).await, 32);
        assert_eq!(
            fetches(&["--lake", "some/folder", "--lake", "s3://bucket/lake"]).await,
            32
        );
    }
}
