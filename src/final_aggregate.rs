//! Model aggregates of one ungrouped `SELECT` evaluated side by side.
//!
//! An aggregate without `GROUP BY` ends in DataFusion's `AggregateExec` (mode `Final`, over
//! the partitions' partial states), which merges every state and then calls each
//! accumulator's `evaluate` in turn, on one thread. For most aggregates that last step is
//! nothing; for this crate's models it is the work: `bgnbd_fit` fits its model there (tens
//! of milliseconds for a million customers), and so do `gamma_gamma_fit`, the Markov and
//! Shapley attributions and the basket aggregates (`basket_rules`,
//! `frequent_itemsets`, `item_neighbors`). `SELECT bgnbd_fit(...), gamma_gamma_fit(...)
//! FROM summary` thus fitted its two models one after the other, with the second core
//! mostly idle (each fit uses it only for its full-data sums).
//!
//! [`ParallelFinalRule`] replaces such a final aggregate, when it computes two or more of
//! these models, by a [`ParallelFinalExec`]: the same merge of the states, then the models
//! evaluated at the same time, each but the last on a thread of its own (the other
//! aggregates, with nothing to compute, on the query's thread). Answers are unchanged (the same accumulators
//! merge the same states in the same order); only where the final step runs changes.
//! Measured on the benchmark's 880k-customer summary: see BENCHMARKS.md, "Session 26".

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::utils::evaluate_expressions_to_arrays;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    AccumulatorItem, AggregateExec, AggregateMode, aggregate_expressions, create_accumulators,
};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

/// Whether `f`'s `evaluate` does real work: a model fitted or solved from the merged state.
fn evaluates_a_model(f: &AggregateUDF) -> bool {
    let f = f.inner();
    f.is::<crate::clv::fit::ModelFit>()
        || f.is::<crate::attribution::markov::MarkovAttribution>()
        || f.is::<crate::attribution::shapley::ShapleyAttribution>()
        || f.is::<crate::similarity::rules::BasketRules>()
}

/// A final, ungrouped aggregate ([`AggregateExec`] in mode `Final`, no `GROUP BY`) whose
/// models are evaluated at the same time once every state is merged.
#[derive(Debug)]
pub struct ParallelFinalExec {
    /// The replaced aggregate: its expressions, input and output schema.
    aggregate: Arc<AggregateExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl ParallelFinalExec {
    /// The node for `aggregate`, if it is a final ungrouped aggregate over one partition of
    /// states whose aggregates keep no order and are not `DISTINCT`.
    pub fn try_new(aggregate: Arc<AggregateExec>) -> Option<Self> {
        let plain = aggregate
            .aggr_expr()
            .iter()
            .all(|a| a.order_bys().is_empty() && !a.is_distinct());
        let one_partition = aggregate
            .input()
            .properties()
            .output_partitioning()
            .partition_count()
            == 1;
        (*aggregate.mode() == AggregateMode::Final
            && aggregate.group_expr().is_empty()
            && plain
            && one_partition)
            .then(|| Self {
                aggregate,
                metrics: ExecutionPlanMetricsSet::new(),
            })
    }

    /// The aggregate this node computes.
    pub fn aggregate(&self) -> &Arc<AggregateExec> {
        &self.aggregate
    }
}

impl DisplayAs for ParallelFinalExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                let names: Vec<&str> = self
                    .aggregate
                    .aggr_expr()
                    .iter()
                    .map(|a| a.name())
                    .collect();
                write!(f, "ParallelFinalExec: aggr=[{}]", names.join(", "))
            }
            DisplayFormatType::TreeRender => Ok(()),
        }
    }
}

impl ExecutionPlan for ParallelFinalExec {
    fn name(&self) -> &'static str {
        "ParallelFinalExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let aggregate = Arc::clone(&self.aggregate).replace_children(children, options)?;
        let Some(aggregate) = aggregate.downcast_ref::<AggregateExec>() else {
            return internal_err!("ParallelFinalExec: the aggregate is no longer an AggregateExec");
        };
        match Self::try_new(Arc::new(aggregate.clone())) {
            Some(node) => Ok(Arc::new(node)),
            // (an input of several partitions: DataFusion's own node then)
            None => Ok(Arc::new(aggregate.clone())),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, crate::subqueries::recompute())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ParallelFinalExec has one partition, asked for {partition}");
        }
        let aggregate = &self.aggregate;
        let mut input = aggregate.input().execute(0, Arc::clone(&context))?;
        let expressions = aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0)?;
        let mut accumulators = create_accumulators(aggregate.aggr_expr())?;
        // every model but the last on a thread of its own; the rest (the last model, and
        // aggregates with nothing to compute) on this one
        let mut own_thread: Vec<bool> = aggregate
            .aggr_expr()
            .iter()
            .map(|a| evaluates_a_model(a.fun()))
            .collect();
        if let Some(last) = own_thread.iter().rposition(|&own| own) {
            own_thread[last] = false;
        }
        let reservation = MemoryConsumer::new("ParallelFinalExec").register(context.memory_pool());
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let schema = aggregate.schema();
        let out_schema = Arc::clone(&schema);
        let stream = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = metrics.elapsed_compute().timer();
                let grown = merge(&mut accumulators, &expressions, &batch)?;
                reservation.try_grow(grown)?;
            }
            let _timer = metrics.elapsed_compute().timer();
            let columns = evaluate_side_by_side(&mut accumulators, &own_thread)?;
            let batch = RecordBatch::try_new(out_schema, columns)?;
            (&batch).record_output(&metrics);
            drop(reservation);
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Merge a batch of partial states into the accumulators (as DataFusion's final aggregate
/// does); the bytes the accumulators grew by.
fn merge(
    accumulators: &mut [AccumulatorItem],
    expressions: &[Vec<Arc<dyn PhysicalExpr>>],
    batch: &RecordBatch,
) -> Result<usize> {
    let mut grown = 0;
    for (accumulator, expressions) in accumulators.iter_mut().zip(expressions) {
        let before = accumulator.size();
        let states = evaluate_expressions_to_arrays(expressions, batch)?;
        accumulator.merge_batch(&states)?;
        grown += accumulator.size().saturating_sub(before);
    }
    Ok(grown)
}

/// Each accumulator's value as a one-row array: those marked in `own_thread` each on a
/// thread of its own (on this thread when a thread cannot be started), the others on this
/// thread, in order, meanwhile; a panic in one is resumed here. The first error, in the
/// aggregates' order, is the result's.
fn evaluate_side_by_side(
    accumulators: &mut [AccumulatorItem],
    own_thread: &[bool],
) -> Result<Vec<ArrayRef>> {
    // (behind a lock so that an accumulator whose thread did not start is still reachable)
    let accumulators: Vec<Mutex<&mut AccumulatorItem>> =
        accumulators.iter_mut().map(Mutex::new).collect();
    let evaluate = |a: &Mutex<&mut AccumulatorItem>| {
        let mut a = a.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        a.evaluate().and_then(|v| v.to_array())
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = accumulators
            .iter()
            .zip(own_thread)
            .map(|(a, &own)| {
                own.then(|| std::thread::Builder::new().spawn_scoped(scope, move || evaluate(a)))
                    .and_then(Result::ok)
            })
            .collect();
        // this thread's share first, then the others' as they finish
        let mut values: Vec<Option<Result<ArrayRef>>> = accumulators
            .iter()
            .zip(&threads)
            .map(|(a, thread)| thread.is_none().then(|| evaluate(a)))
            .collect();
        for (value, thread) in values.iter_mut().zip(threads) {
            if let Some(thread) = thread {
                *value = Some(
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
        }
        // (every value is there: from this thread or from its own)
        values.into_iter().flatten().collect()
    })
}

/// Replaces each final ungrouped aggregate computing two or more models by a
/// [`ParallelFinalExec`] (see the module documentation).
#[derive(Debug)]
pub struct ParallelFinalRule;

impl PhysicalOptimizerRule for ParallelFinalRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let models = aggregate
                .aggr_expr()
                .iter()
                .filter(|a| evaluates_a_model(a.fun()))
                .count();
            if models < 2 {
                return Ok(Transformed::no(node));
            }
            match ParallelFinalExec::try_new(Arc::new(aggregate.clone())) {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "parallel_final_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;
    use std::time::Duration;

    use datafusion::arrow::array::{Array, BooleanArray};
    use datafusion::logical_expr::Accumulator;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    use super::*;

    use crate::test_context as context;

    /// 4,000 customers' summaries: every fourth with no repeat purchase.
    const CUSTOMERS: &str = "(SELECT f, CASE WHEN f = 0 THEN 0 ELSE t - v % 10 END AS r, t, \
         CASE WHEN f = 0 THEN 0 ELSE 5 + (v % 17) * 1.5 END AS m \
         FROM (SELECT value AS v, value % 4 * (value % 5) AS f, 40 + value % 50 AS t \
         FROM range(1, 4001)))";

    async fn plan_and_rows(ctx: &SessionContext, sql: &str) -> (String, Vec<String>) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        let batches = df.collect().await.unwrap();
        let rows = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_string)
            .collect();
        (plan, rows)
    }

    /// Two fits in one ungrouped `SELECT` are evaluated by the node, with the answers of
    /// DataFusion's own final aggregate (bit for bit: the printed doubles are exact).
    #[tokio::test]
    async fn two_models_are_evaluated_side_by_side_with_the_same_answers() {
        let sql = format!(
            "SELECT bgnbd_fit(f, r, t) AS bg, count(*) AS n, \
             gamma_gamma_fit(f, m) FILTER (WHERE f > 0) AS gg FROM {CUSTOMERS}"
        );
        let (plan, rows) = plan_and_rows(&context(true), &sql).await;
        assert!(
            plan.contains(
                "ParallelFinalExec: aggr=[bgnbd_fit(f,r,t), count(Int64(1)), gamma_gamma_fit"
            ),
            "{plan}"
        );
        let (plain_plan, plain_rows) = plan_and_rows(&context(false), &sql).await;
        assert!(!plain_plan.contains("ParallelFinalExec"), "{plain_plan}");
        assert!(rows.iter().any(|r| r.contains("bgnbd")), "{rows:?}");
        assert!(rows.iter().any(|r| r.contains("gamma_gamma")), "{rows:?}");
        assert_eq!(rows, plain_rows);
        // EXPLAIN ANALYZE shows the node's output
        let (_, analyzed) = plan_and_rows(&context(true), &format!("EXPLAIN ANALYZE {sql}")).await;
        let node = analyzed
            .iter()
            .find(|l| l.contains("ParallelFinalExec"))
            .unwrap();
        assert!(
            node.contains("output_rows=1") && node.contains("output_batches=1"),
            "{node}"
        );
    }

    /// One model, a `GROUP BY`, or no model at all: DataFusion's node stays.
    #[tokio::test]
    async fn fewer_than_two_models_or_groups_keep_datafusions_node() {
        let ctx = context(true);
        for sql in [
            format!("SELECT bgnbd_fit(f, r, t), count(*), sum(m) FROM {CUSTOMERS}"),
            format!("SELECT count(*), sum(m), avg(t) FROM {CUSTOMERS}"),
            format!(
                "SELECT f % 2 AS g, bgnbd_fit(f, r, t), gamma_gamma_fit(f, m) \
                 FILTER (WHERE f > 0) FROM {CUSTOMERS} GROUP BY f % 2 ORDER BY g"
            ),
        ] {
            let (plan, rows) = plan_and_rows(&ctx, &sql).await;
            assert!(!plan.contains("ParallelFinalExec"), "{sql}\n{plan}");
            assert_eq!(rows, plan_and_rows(&context(false), &sql).await.1, "{sql}");
        }
    }

    /// A test accumulator: `evaluate` counts itself, then waits up to `patience` for the
    /// other one to arrive, and gives whether it did (or `fail`'s error).
    #[derive(Debug)]
    struct Meeting {
        meeting: Arc<(Mutex<usize>, Condvar)>,
        patience: Duration,
        fail: Option<&'static str>,
    }

    impl Accumulator for Meeting {
        fn update_batch(&mut self, _: &[ArrayRef]) -> Result<()> {
            Ok(())
        }
        fn merge_batch(&mut self, _: &[ArrayRef]) -> Result<()> {
            Ok(())
        }
        fn state(&mut self) -> Result<Vec<ScalarValue>> {
            Ok(vec![])
        }
        fn size(&self) -> usize {
            size_of::<Self>()
        }
        fn evaluate(&mut self) -> Result<ScalarValue> {
            let (arrived, bell) = &*self.meeting;
            let mut arrived = arrived.lock().unwrap();
            *arrived += 1;
            bell.notify_all();
            let (arrived, _) = bell
                .wait_timeout_while(arrived, self.patience, |n| *n < 2)
                .unwrap();
            if let Some(why) = self.fail {
                return datafusion::common::exec_err!("{why}");
            }
            Ok(ScalarValue::Boolean(Some(*arrived >= 2)))
        }
    }

    fn meetings(fail: [Option<&'static str>; 2], patience: Duration) -> Vec<AccumulatorItem> {
        let meeting = Arc::new((Mutex::new(0), Condvar::new()));
        fail.map(|fail| {
            Box::new(Meeting {
                meeting: Arc::clone(&meeting),
                patience,
                fail,
            }) as AccumulatorItem
        })
        .into()
    }

    /// The two evaluations run at the same time: each sees the other arrive (evaluated one
    /// after the other, the first would give up after its patience).
    #[test]
    fn accumulators_are_evaluated_at_the_same_time() {
        let mut accumulators = meetings([None, None], Duration::from_secs(60));
        let values = evaluate_side_by_side(&mut accumulators, &[true, false]).unwrap();
        assert_eq!(values.len(), 2);
        for v in values {
            let v = v.as_any().downcast_ref::<BooleanArray>().unwrap();
            assert_eq!((v.len(), v.value(0)), (1, true));
        }
        // in turn, the first waits its patience out alone
        let mut accumulators = meetings([None, None], Duration::from_millis(50));
        let in_turn: Vec<bool> = accumulators
            .iter_mut()
            .map(|a| a.evaluate().unwrap() == ScalarValue::Boolean(Some(true)))
            .collect();
        assert_eq!(in_turn, [false, true]);
    }

    /// An error is the result's, the first in the aggregates' order when both fail.
    #[test]
    fn the_first_error_in_order_is_reported() {
        let patience = Duration::from_secs(60);
        let err = |fail| {
            evaluate_side_by_side(&mut meetings(fail, patience), &[true, false])
                .unwrap_err()
                .strip_backtrace()
        };
        assert!(err([None, Some("second")]).contains("second"));
        assert!(err([Some("first"), None]).contains("first"));
        assert!(err([Some("first"), Some("second")]).contains("first"));
        assert!(evaluate_side_by_side(&mut [], &[]).unwrap().is_empty());
    }
}
