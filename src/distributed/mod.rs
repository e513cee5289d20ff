//! Scale-out on [Apache DataFusion Ballista](https://datafusion.apache.org/ballista/)
//! (cargo feature `ballista`).
//!
//! Ballista has no plugin loading: a cluster runs our functions only when its scheduler
//! and executors are built with them. This module is that wiring:
//!
//! - [`run_scheduler`]: Ballista's scheduler whose per-query session has every function of
//!   the crate on top of Ballista's built-ins, and reaches `s3://` lakes with the
//!   environment's credentials (the same [`LakeStoreRegistry`] as the CLI).
//! - [`run_executor`]: Ballista's executor whose function registry has every scalar,
//!   aggregate and window function (physical plans name functions; the executor looks
//!   them up there), with the same object-store access and a work folder for shuffle and
//!   spill files.
//! - [`cluster_context`]: a client [`SessionContext`] whose queries run on the cluster.
//!   Functions are registered after Ballista builds the context (its constructors reset
//!   the function lists). SQL — including the table functions, which expand into plans
//!   of our functions over the user's tables — is planned on the client; the optimized
//!   logical plan travels to the scheduler, which plans stages that the executors run.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::{
    ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::SessionBuilder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::lake::store::LakeStoreRegistry;

/// Default scheduler port (Ballista's).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Ballista's switch for adaptive query planning (off in our clients).
pub const ADAPTIVE_PLANNER: &str = "ballista.planner.adaptive.enabled";

/// How long a client waits for the scheduler's TCP port before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of [`run_scheduler`].
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on; port 0 picks a free port (announced by `ready`).
    pub bind: String,
    /// Host name executors and clients use to reach this scheduler (default: the bind host).
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks
    /// are re-run elsewhere.
    pub executor_timeout_seconds: u64,
    /// Times a task (and a stage) is retried before the job fails.
    pub max_failures: usize,
    /// When an executor is lost, fail the running jobs instead of letting Ballista re-run
    /// the lost work: Ballista 55's re-run counts some shuffle output twice (a wrong answer;
    /// see docs/distributed.md), a failed query can be run again.
    pub fail_on_executor_loss: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: format!("0.0.0.0:{DEFAULT_SCHEDULER_PORT}"),
            external_host: None,
            executor_timeout_seconds: 180,
            max_failures: 4,
            fail_on_executor_loss: true,
        }
    }
}

/// Options of [`run_executor`].
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's `HOST:PORT`.
    pub scheduler: String,
    /// Address of the executor's Arrow Flight service (shuffle and results); port 0 picks
    /// a free port.
    pub bind: String,
    /// Host name the scheduler and clients use to reach this executor (default: the bind
    /// host, or 127.0.0.1 when bound to all interfaces).
    pub external_host: Option<String>,
    /// Port of the executor's task service (0: a free port).
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core).
    pub concurrency: usize,
    /// Folder for shuffle and spill files (created if missing).
    pub work_dir: PathBuf,
    /// Memory pool of the executor in bytes, shared by its tasks (None: Ballista's
    /// default, 70 % of the machine's memory).
    pub memory_limit: Option<usize>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
    /// Seconds to keep trying to reach the scheduler at start.
    pub connect_timeout_seconds: u16,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            scheduler: format!("localhost:{DEFAULT_SCHEDULER_PORT}"),
            bind: "0.0.0.0:50051".to_string(),
            external_host: None,
            grpc_port: 50052,
            concurrency: 0,
            work_dir: std::env::temp_dir().join("datafusion-marketing-executor"),
            memory_limit: None,
            heartbeat_seconds: 60,
            connect_timeout_seconds: 30,
        }
    }
}

fn config_error(msg: String) -> DataFusionError {
    DataFusionError::Configuration(msg)
}

fn ballista_error(what: &str, e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(format!("{what}: {e}").into())
}

/// Split `HOST:PORT` (the port is required).
fn host_port(s: &str, what: &str) -> Result<(String, u16)> {
    let s = s
        .trim()
        .trim_start_matches("df://")
        .trim_start_matches("http://");
    let s = s.trim_end_matches('/');
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(config_error(format!(
            "{what} '{s}': expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_SCHEDULER_PORT}"
        )));
    };
    let port: u16 = port.parse().map_err(|_| {
        config_error(format!(
            "{what} '{s}': invalid port '{port}' (expected 0-65535)"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(config_error(format!("{what} '{s}': missing host")));
    }
    Ok((host.to_string(), port))
}

/// The object-store registry of every process of a cluster: `s3://` and `gs://` buckets
/// from the environment's credentials, built on first use.
fn store_registry() -> Arc<dyn ObjectStoreRegistry> {
    Arc::new(LakeStoreRegistry::new(Arc::new(
        DefaultObjectStoreRegistry::new(),
    )))
}

/// A session state with Ballista's built-in functions and ours (the scheduler's per-query
/// session, and the source of the executors' registry).
fn ballista_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(crate::without_repartition_spill_hang(config))
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .with_physical_optimizer_rules(physical_rules())
        .build();
    crate::register_all(&mut state)?;
    Ok(state)
}

/// DataFusion's physical optimizer rules for the scheduler's plans, with two changes for
/// Ballista 55 (each measured on `sql/lake_overview.sql` on a two-executor cluster):
///
/// - without `aggregate_statistics`: a `UNION ALL` of aggregates answered from Parquet
///   statistics (`SELECT 'orders', count(*), min(ts) FROM orders UNION ALL ...`) becomes
///   placeholder rows, and Ballista's scheduler then rejects the tasks' status reports
///   ("task metrics array size 15 does not equal with the stage metrics array size 14"):
///   the job hangs, or — seen once in a dozen runs — returns without one branch's row.
///   Without the rule the counts are computed from the data (a scan, not a metadata
///   lookup) and every run is complete.
/// - with [`SortBeforeExchange`] last.
fn physical_rules()
-> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    rules.retain(|r| r.name() != "aggregate_statistics");
    rules.push(Arc::new(SortBeforeExchange));
    rules
}

/// Makes an order that holds only through constants explicit before Ballista cuts the
/// plan into stages.
///
/// DataFusion drops the sort under a `SortPreservingMergeExec` when every input partition
/// is already ordered by constants, e.g. `SELECT 'orders' AS t, count(*) ... UNION ALL
/// SELECT 'customers', count(*) ... ORDER BY t` (each branch is one row with a literal
/// label). Ballista then puts a shuffle between the merge and its input; the shuffle does
/// not carry constants, so the stage fails DataFusion's sanity check on the scheduler —
/// and Ballista 55 does not fail the job but leaves it hanging. The rule replaces such a
/// merge by a gather and one sort (the shape of any global ORDER BY), which Ballista
/// stages correctly; merges over explicitly sorted inputs are left alone.
#[derive(Debug)]
struct SortBeforeExchange;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for SortBeforeExchange {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
        use datafusion::physical_plan::sorts::sort::SortExec;
        use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
        use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
        plan.transform_up(|node| {
            let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = merge.input();
            let explicit = input.output_ordering().is_some_and(|have| {
                have.len() >= merge.expr().len()
                    && have.iter().zip(merge.expr().iter()).all(|(a, b)| a == b)
            });
            if explicit || input.is::<SortExec>() {
                return Ok(Transformed::no(node));
            }
            // gather, then sort once: the shape of any global ORDER BY
            let gathered = CoalescePartitionsExec::new(Arc::clone(input));
            let merged =
                SortExec::new(merge.expr().clone(), Arc::new(gathered)).with_fetch(merge.fetch());
            Ok(Transformed::yes(Arc::new(merged) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sort_before_exchange"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The scheduler's session builder: Ballista's default session (built-ins, optimizer
/// rules) plus every function of the crate, with one shared runtime whose object-store
/// registry reaches the lake.
pub fn scheduler_session_builder() -> Result<SessionBuilder> {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(store_registry())
        .build_arc()?;
    Ok(Arc::new(move |config: SessionConfig| {
        ballista_state(config, Arc::clone(&runtime))
    }))
}

/// The executors' function registry: DataFusion's and Ballista's built-ins (nested
/// functions included) and every scalar, aggregate and window function of the crate.
pub fn executor_function_registry() -> Result<BallistaFunctionRegistry> {
    let state = ballista_state(
        SessionConfig::new(),
        Arc::new(RuntimeEnvBuilder::new().build()?),
    )?;
    Ok(BallistaFunctionRegistry::from(&state))
}

/// Run a scheduler until it fails or the process is stopped. `ready` is called with the
/// bound address once the scheduler accepts connections.
pub async fn run_scheduler(
    opts: SchedulerOptions,
    ready: impl FnOnce(SocketAddr) + Send,
) -> Result<()> {
    let (host, port) = host_port(&opts.bind, "scheduler --bind")?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| config_error(format!("scheduler: cannot listen on {host}:{port}: {e}")))?;
    let addr = listener.local_addr()?;
    let external = opts.external_host.clone().unwrap_or_else(|| {
        if addr.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            addr.ip().to_string()
        }
    });
    let mut config = SchedulerConfig::default()
        .with_hostname(external)
        .with_port(addr.port())
        .with_scheduler_policy(TaskSchedulingPolicy::PushStaged)
        .with_override_session_builder(scheduler_session_builder()?);
    config.bind_host = addr.ip().to_string();
    config.executor_timeout_seconds = opts.executor_timeout_seconds;
    // check at least twice per timeout, so a silent executor is lost within it
    config.expire_dead_executor_interval_seconds = (opts.executor_timeout_seconds / 2).clamp(1, 15);
    config.task_max_failures = opts.max_failures;
    config.stage_max_failures = opts.max_failures;
    config
        .validate()
        .map_err(|e| ballista_error("scheduler configuration", e))?;
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ballista_error("scheduler", e))?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(|e| ballista_error("scheduler", e))?;
    if opts.fail_on_executor_loss {
        fail_jobs_on_executor_loss(&scheduler).await?;
    }
    ready(addr);
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(|e| ballista_error("scheduler", e))
}

/// Cancel every running job when an executor leaves the cluster (heartbeats stopped, or a
/// clean shutdown). The removal is announced before Ballista re-plans the lost work, and the
/// cancellation queues behind it on the scheduler's event loop, ahead of the re-run tasks'
/// completions, so the job ends as cancelled — an error for the client — rather than
/// finishing with re-run shuffle output counted twice.
async fn fail_jobs_on_executor_loss(
    scheduler: &ballista_scheduler::scheduler_server::SchedulerServer<
        LogicalPlanNode,
        PhysicalPlanNode,
    >,
) -> Result<()> {
    use ballista_scheduler::cluster::ClusterStateEvent;
    use futures::StreamExt;
    let mut events = scheduler
        .state
        .executor_manager
        .cluster_state_events()
        .await
        .map_err(|e| ballista_error("scheduler", e))?;
    let server = scheduler.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let ClusterStateEvent::RemovedExecutor { executor_id } = event else {
                continue;
            };
            let jobs: Vec<ballista_core::JobId> = server
                .state
                .task_manager
                .get_running_job_cache()
                .keys()
                .cloned()
                .collect();
            for job in jobs {
                log::warn!(
                    "executor {executor_id} lost: cancelling job {job} (its re-run is not \
                     reliable in Ballista 55; run the query again)"
                );
                if let Err(e) = server.cancel_job(job.clone()).await {
                    log::error!("cannot cancel job {job}: {e}");
                }
            }
        }
    });
    Ok(())
}

/// A free TCP port on `host` (bound, read, released; the executor binds it right after).
fn free_port(host: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))
        .map_err(|e| config_error(format!("executor: cannot bind {host}: {e}")))?;
    Ok(l.local_addr()?.port())
}

/// Run an executor until it fails, is stopped (Ctrl-C / SIGTERM, which also tells the
/// scheduler), or loses the scheduler. `ready` is called with the Flight and task
/// service addresses before it connects.
pub async fn run_executor(
    opts: ExecutorOptions,
    ready: impl FnOnce(SocketAddr, u16) + Send,
) -> Result<()> {
    let (scheduler_host, scheduler_port) = host_port(&opts.scheduler, "executor --scheduler")?;
    let (bind_host, mut port) = host_port(&opts.bind, "executor --bind")?;
    if port == 0 {
        port = free_port(&bind_host)?;
    }
    let grpc_port = if opts.grpc_port == 0 {
        free_port(&bind_host)?
    } else {
        opts.grpc_port
    };
    std::fs::create_dir_all(&opts.work_dir).map_err(|e| {
        config_error(format!(
            "executor: cannot create work folder '{}': {e}",
            opts.work_dir.display()
        ))
    })?;
    let work_dir = opts.work_dir.to_string_lossy().into_owned();
    let external_host = opts.external_host.clone().unwrap_or_else(|| {
        if matches!(bind_host.as_str(), "0.0.0.0" | "::") {
            "127.0.0.1".to_string()
        } else {
            bind_host.clone()
        }
    });
    let addr = (bind_host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| config_error(format!("executor: cannot resolve '{bind_host}'")))?;

    let registry = store_registry();
    let spill_dir = work_dir.clone();
    let runtime_producer: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        RuntimeEnvBuilder::new()
            .with_temp_file_path(spill_dir.clone())
            .with_object_store_registry(Arc::clone(&registry))
            .build_arc()
    });
    let config_producer: ConfigProducer = Arc::new(|| {
        use ballista::prelude::SessionConfigExt;
        // the tasks run under the executor's memory limit
        crate::without_repartition_spill_hang(SessionConfig::new_with_ballista())
    });
    let config = ExecutorProcessConfig {
        bind_host: bind_host.clone(),
        external_host: Some(external_host),
        port,
        grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: opts.connect_timeout_seconds,
        vcores: opts.concurrency,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir),
        executor_heartbeat_interval_seconds: opts.heartbeat_seconds.max(1),
        memory_pool_size: opts.memory_limit.map(|m| m as u64),
        override_function_registry: Some(Arc::new(executor_function_registry()?)),
        override_runtime_producer: Some(runtime_producer),
        override_config_producer: Some(config_producer),
        print_thread_info: false,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| ballista_error("executor configuration", e))?;
    ready(addr, grpc_port);
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ballista_error("executor", e))
}

/// Check that something listens at the scheduler's address, within [`CONNECT_TIMEOUT`]
/// (Ballista itself only finds out when a query runs, after its 20 s gRPC timeout).
pub async fn check_scheduler(cluster: &str) -> Result<()> {
    let (host, port) = host_port(cluster, "--cluster")?;
    let attempt = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(DataFusionError::Execution(format!(
            "cluster scheduler at {host}:{port} is unreachable: {e} (start one with \
             `datafusion-marketing scheduler --bind {host}:{port}`)"
        ))),
        Err(_) => Err(DataFusionError::Execution(format!(
            "cluster scheduler at {host}:{port} did not answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A client context whose queries run on the cluster at `cluster` (`df://HOST:PORT`),
/// built from `state` (its configuration, catalogs, table functions and runtime are
/// kept; Ballista replaces the function lists, so every function of the crate is
/// registered again afterwards). Checks that the scheduler answers first.
pub async fn cluster_context(cluster: &str, state: SessionState) -> Result<SessionContext> {
    check_scheduler(cluster).await?;
    let (host, port) = host_port(cluster, "--cluster")?;
    let ctx = SessionContext::remote_with_state(&format!("df://{host}:{port}"), state).await?;
    // Two Ballista 55 defaults changed, each for a bug measured on `sql/` (both can be
    // switched back with SET):
    // - its adaptive planner re-plans stages with DataFusion's rules, which turn an order
    //   held by constants back into a bare merge over a shuffle (see `SortBeforeExchange`);
    //   the job then hangs. The static planner keeps our plan.
    // - with the static planner, its sort-merge joins declare a LEFT JOIN's right-side
    //   columns non-nullable across a shuffle ("Column 'order_ts' is declared as
    //   non-nullable but contains null values"); hash joins, DataFusion's own default,
    //   are right.
    {
        let state_ref = ctx.state_ref();
        let mut state = state_ref.write();
        let options = state.config_mut().options_mut();
        options.set(ADAPTIVE_PLANNER, "false")?;
        options.set("datafusion.optimizer.prefer_hash_join", "true")?;
    }
    crate::register_on_context(&ctx)?;
    Ok(ctx)
}

/// A ready client context for `cluster`: like [`crate::session_context`] (information
/// schema, URL tables, every function, object stores from the environment), running on
/// the cluster.
pub async fn remote_session_context(cluster: &str) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(store_registry())
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(crate::session_config())
        .with_runtime_env(runtime)
        .build();
    Ok(cluster_context(cluster, state).await?.enable_url_table())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_and_explains() {
        assert_eq!(
            host_port("df://10.0.0.1:50050", "x").unwrap(),
            ("10.0.0.1".to_string(), 50050)
        );
        assert_eq!(
            host_port("localhost:0", "x").unwrap(),
            ("localhost".to_string(), 0)
        );
        let e = host_port("localhost", "--cluster").unwrap_err().to_string();
        assert!(e.contains("expected HOST:PORT"), "{e}");
        let e = host_port("h:99999", "--cluster").unwrap_err().to_string();
        assert!(e.contains("invalid port '99999'"), "{e}");
    }

    #[test]
    fn registry_has_our_functions_and_the_nested_builtins() {
        let r = executor_function_registry().unwrap();
        for f in [
            "rfm_segment",
            "cosine_similarity",
            "make_array",
            "array_length",
        ] {
            assert!(r.scalar_functions.contains_key(f), "{f}");
        }
        for f in ["markov_attribution", "bgnbd_fit", "clv_summary", "sum"] {
            assert!(r.aggregate_functions.contains_key(f), "{f}");
        }
        assert!(r.window_functions.contains_key("quantile_score"));
        assert!(r.window_functions.contains_key("rank"));
    }
}
