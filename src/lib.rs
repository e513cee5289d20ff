//! # datafusion-marketing
//!
//! Marketing analytics as SQL functions for [Apache DataFusion]: RFM scores and
//! segments, multi-touch attribution, customer lifetime value and recommendation
//! similarity, computed exactly and reproducibly inside the query engine.
//!
//! One call registers everything on a [`SessionContext`]:
//!
//! ```
//! use datafusion::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::new();
//! datafusion_marketing::register_on_context(&ctx)?;
//! let batches = ctx
//!     .sql("SELECT rfm_segment(5, 4, 5) AS segment")
//!     .await?
//!     .collect()
//!     .await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! or builds a ready context (information_schema on, URL tables enabled, every
//! function registered, the crate's physical optimizer rules added) with
//! [`session_context`]. Embedders that manage their own registry call [`register_all`]
//! and, when they build their own `SessionState`, add [`physical_optimizer_rules`]. Each function is also available on its own
//! ([`functions`]) and as an expression builder for the DataFrame API ([`expr_fn`]).
//!
//! [Apache DataFusion]: https://datafusion.apache.org

pub mod catalog;
pub mod cli;
#[cfg(feature = "ballista")]
pub mod distributed;
pub mod final_aggregate;
pub mod generate;
pub mod lake;
pub mod subqueries;

mod args;
mod attribution;
mod clv;
mod rfm;
mod simd;
mod similarity;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionConfig;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

/// The numerical kernels behind the SQL functions, exposed for the criterion benches
/// (`benches/kernels.rs`) so regressions show at the function level. Not a stable API.
#[doc(hidden)]
pub mod kernels {
    pub use crate::attribution::model::MarkovCounts;
    pub use crate::clv::model::{
        Pattern, Spend, Times, bg_family_curve, bgnbd_ll_gradient, bgnbd_ll_indexed,
        discounted_increments, gamma_gamma_ll, gamma_gamma_ll_gradient,
        gamma_gamma_ll_gradient_hessian, month_horizons, pareto_ll_gradient, pareto_row_ll,
        sort_patterns, sort_spends,
    };
    pub use crate::clv::real::{Dual, Real, ln_hyp2f1_a_b_a1};
    pub use crate::similarity::model::frequent_itemsets;
}

/// Singleton constructors for every function, as in DataFusion's own function crates.
pub mod functions {
    pub use crate::attribution::{
        attribution_weights, journey_path, markov_attribution, shapley_attribution,
        time_decay_weights,
    };
    pub use crate::clv::{
        bgnbd_expected_purchases, bgnbd_fit, bgnbd_p_alive, clv_summary, customer_lifetime_value,
        gamma_gamma_expected_spend, gamma_gamma_fit, mbgnbd_expected_purchases, mbgnbd_fit,
        mbgnbd_p_alive, pareto_nbd_expected_purchases, pareto_nbd_fit, pareto_nbd_p_alive,
    };
    pub use crate::rfm::{quantile_score, rfm_segment};
    pub use crate::similarity::{
        basket_rules, cosine_distance, cosine_similarity, frequent_itemsets, inner_product,
        item_neighbors, item_pair_keys, item_pairs, jaccard_similarity, overlap_coefficient,
        top_k_by,
    };
}

/// Expression builders for the DataFrame API.
pub mod expr_fn {
    pub use crate::attribution::expr_fn::*;
    pub use crate::clv::expr_fn::*;
    pub use crate::rfm::expr_fn::*;
    pub use crate::similarity::expr_fn::*;
}

/// Every scalar function of the crate.
pub fn all_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    [
        rfm::scalar_functions(),
        attribution::scalar_functions(),
        clv::scalar_functions(),
        similarity::scalar_functions(),
    ]
    .concat()
}

/// Every aggregate function of the crate.
pub fn all_aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    [
        rfm::aggregate_functions(),
        attribution::aggregate_functions(),
        clv::aggregate_functions(),
        similarity::aggregate_functions(),
    ]
    .concat()
}

/// Every window function of the crate.
pub fn all_window_functions() -> Vec<Arc<WindowUDF>> {
    rfm::window_functions()
}

/// Every table function of the crate, with its name.
pub fn all_table_functions() -> Vec<(&'static str, Arc<dyn TableFunctionImpl>)> {
    [
        rfm::table_functions(),
        attribution::table_functions(),
        clv::table_functions(),
        similarity::table_functions(),
    ]
    .concat()
    .into_iter()
    .map(|(name, f, _)| (name, f))
    .collect()
}

/// Register every scalar, aggregate and window function on `registry`.
///
/// Table functions are not part of [`FunctionRegistry`]; [`register_on_context`]
/// registers them too.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in all_scalar_functions() {
        registry.register_udf(f)?;
    }
    for f in all_aggregate_functions() {
        registry.register_udaf(f)?;
    }
    for f in all_window_functions() {
        registry.register_udwf(f)?;
    }
    Ok(())
}

/// The crate's physical optimizer rules, to append to DataFusion's with
/// `SessionStateBuilder::with_physical_optimizer_rule`. They make plans leaner without
/// changing answers: plans are correct without them.
///
/// - `quantile_score_exec`: `quantile_score(...) OVER ()` (no `PARTITION BY`) on integers,
///   floats, decimals of up to 18 digits, dates, times, timestamps or durations runs in a streaming operator that keeps
///   8 to 16 bytes per value and scored column in memory, reserved from the memory pool,
///   and spills the rows it buffers, instead of DataFusion's `WindowAggExec`, which holds
///   the whole input twice outside the pool. `rfm(...)` scores this way.
/// - `rfm_summary_single_phase`: the per-customer step of `rfm(...)` (its one-phase
///   `rfm_summary`, planned when the session has no memory limit; `rfm_summary` called in
///   SQL is not rewritten) hash-partitions the rows on the customer and aggregates in one
///   phase, holding each customer once instead of in a partial and a final hash table;
///   see [`rfm::summary::SummaryAggregateRule`].
/// - `parallel_final_aggregates`: an ungrouped `SELECT` computing two or more models
///   (`bgnbd_fit(...), gamma_gamma_fit(...)`, attributions, basket aggregates) evaluates them on
///   threads of their own once the partitions' states are merged, instead of one after the
///   other on one thread; see [`final_aggregate`].
/// - `parallel_scalar_subqueries`: the single-partition subqueries of a query with two or
///   more uncorrelated scalar subqueries (e.g. two model fits feeding
///   `customer_lifetime_value`) run on tasks of their own, so they are computed at the same
///   time instead of one after the other on one thread; see [`subqueries`].
pub fn physical_optimizer_rules()
-> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    vec![
        Arc::new(rfm::quantile_exec::QuantileScoreRule),
        Arc::new(rfm::summary::SummaryAggregateRule),
        Arc::new(final_aggregate::ParallelFinalRule),
        Arc::new(subqueries::ParallelSubqueriesRule),
    ]
}

/// The size at which a spill file of `RepartitionExec` is finished
/// (`datafusion.execution.max_spill_file_size_bytes`) in the sessions the crate builds: one
/// byte, so each spilled batch is a file of its own, finished as it is written.
///
/// Under a memory limit, DataFusion 55's `RepartitionExec` writes a batch it cannot reserve
/// memory for to a pool of spill files, which its reader drains oldest file first. When two
/// inputs spill at the same moment the pool holds two open files; the reader can then wait
/// on the older one while the batch it needs went to the newer one, and the query never
/// ends, every thread parked (apache/datafusion#24883, fixed after 55.2 by
/// apache/datafusion#24891). A file holding one batch is finished before its writer lets
/// go of it, so no file stays open and the reader always finds its batch. Without a memory
/// limit `RepartitionExec` never spills and the setting does nothing; with one, it costs a
/// file per spilled batch (DataFusion's default is 128 MiB).
pub const REPARTITION_SPILL_FILE_BYTES: usize = 1;

/// `config` with [`REPARTITION_SPILL_FILE_BYTES`], unless it sets a size of its own
/// (anything but DataFusion's default).
pub fn without_repartition_spill_hang(mut config: SessionConfig) -> SessionConfig {
    let default = datafusion::common::config::ExecutionOptions::default()
        .max_spill_file_size_bytes
        .get();
    let size = &mut config.options_mut().execution.max_spill_file_size_bytes;
    if size.get() == default {
        *size =
            datafusion::common::config::ConfigNonZeroUsize::try_new(REPARTITION_SPILL_FILE_BYTES)
                .expect("one byte is not zero");
    }
    config
}

/// A session state with DataFusion's defaults and `config` and `runtime`, plus the
/// crate's [`physical_optimizer_rules`]. Unless `config` sets its own
/// `max_spill_file_size_bytes`, it is [`REPARTITION_SPILL_FILE_BYTES`], which keeps
/// queries under a memory limit from hanging in DataFusion 55's `RepartitionExec`.
pub fn session_state(
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> datafusion::execution::session_state::SessionState {
    let mut builder = datafusion::execution::session_state::SessionStateBuilder::new()
        .with_default_features()
        .with_config(without_repartition_spill_hang(config))
        .with_runtime_env(runtime);
    for rule in physical_optimizer_rules() {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    builder.build()
}

/// A context of two partitions with the crate's functions, with or without the crate's
/// physical rules (for the rules' tests).
#[cfg(test)]
fn test_context(with_rules: bool) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = if with_rules {
        SessionContext::new_with_state(session_state(config, Default::default()))
    } else {
        SessionContext::new_with_config(config)
    };
    register_on_context(&ctx).unwrap();
    ctx
}

/// Register every function, including table functions, on an existing context.
///
/// A context's physical optimizer rules cannot be changed after it is built: contexts
/// built with [`session_context`] or from [`session_state`] also get
/// [`physical_optimizer_rules`].
pub fn register_on_context(ctx: &SessionContext) -> Result<()> {
    for f in all_scalar_functions() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in all_aggregate_functions() {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in all_window_functions() {
        ctx.register_udwf(f.as_ref().clone());
    }
    for (name, f) in all_table_functions() {
        ctx.register_udtf(name, f);
    }
    Ok(())
}

/// The session configuration the CLI and [`session_context`] use: information_schema
/// on (for `SHOW FUNCTIONS`) and [`REPARTITION_SPILL_FILE_BYTES`], everything else
/// DataFusion's defaults.
pub fn session_config() -> SessionConfig {
    without_repartition_spill_hang(SessionConfig::new().with_information_schema(true))
}

/// A ready [`SessionContext`]: information_schema on, URL tables enabled
/// (`SELECT * FROM 'file.parquet'`), every function and table function registered.
pub fn session_context() -> Result<SessionContext> {
    session_context_with_config(session_config())
}

/// Like [`session_context`] with a caller-provided configuration (information_schema
/// is switched on regardless).
///
/// `s3://` and `gs://` buckets are reached with the environment's credentials on
/// first use (see [`lake::store`]).
pub fn session_context_with_config(config: SessionConfig) -> Result<SessionContext> {
    let registry = lake::store::LakeStoreRegistry::new(Arc::new(
        datafusion::execution::object_store::DefaultObjectStoreRegistry::new(),
    ));
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(registry))
        .build_arc()?;
    let ctx = SessionContext::new_with_state(session_state(
        config.with_information_schema(true),
        runtime,
    ))
    .enable_url_table();
    register_on_context(&ctx)?;
    Ok(ctx)
}

/// Documentation of every table function (table functions carry no
/// `Documentation` in DataFusion, so the crate keeps it beside them).
pub fn all_table_function_docs() -> Vec<(
    &'static str,
    &'static datafusion::logical_expr::Documentation,
)> {
    [
        rfm::table_functions(),
        attribution::table_functions(),
        clv::table_functions(),
        similarity::table_functions(),
    ]
    .concat()
    .into_iter()
    .map(|(name, _, doc)| (name, doc))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session the crate builds finishes a `RepartitionExec` spill file per batch
    /// (see [`REPARTITION_SPILL_FILE_BYTES`]; the hang it prevents is tested in
    /// `rfm::summary`), unless its configuration chose another size.
    #[tokio::test]
    async fn sessions_finish_a_spill_file_per_batch() {
        use clap::Parser;
        let size =
            |config: &SessionConfig| config.options().execution.max_spill_file_size_bytes.get();
        let runtime = || Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default());
        assert_eq!(size(&session_config()), REPARTITION_SPILL_FILE_BYTES);
        let state = session_state(SessionConfig::new(), runtime());
        assert_eq!(size(state.config()), REPARTITION_SPILL_FILE_BYTES);
        assert_eq!(
            size(&session_context().unwrap().copied_config()),
            REPARTITION_SPILL_FILE_BYTES
        );
        let cli = cli::Cli::try_parse_from(["dfm", "--memory-limit", "1g"]).unwrap();
        let (ctx, _) = cli::build_context(&cli.sql).await.unwrap();
        assert_eq!(size(&ctx.copied_config()), REPARTITION_SPILL_FILE_BYTES);
        // a size of the caller's own is kept
        let mut own = SessionConfig::new();
        own.options_mut().execution.max_spill_file_size_bytes =
            datafusion::common::config::ConfigNonZeroUsize::try_new(64 << 20).unwrap();
        assert_eq!(size(session_state(own, runtime()).config()), 64 << 20);
    }
}
