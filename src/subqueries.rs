//! Uncorrelated scalar subqueries computed side by side, each on its own task.
//!
//! DataFusion's `ScalarSubqueryExec` evaluates its subqueries "in parallel" with
//! `try_join_all`: concurrently, but inside one task. Their scans are spread over the
//! runtime's threads (each subquery plan gathers its partitions on spawned tasks), yet the
//! last, single-partition step of every subquery (typically the final aggregate, e.g. a
//! model fit) runs on the one thread that polls them all, one after the other.
//! `SELECT ... (SELECT bgnbd_fit(...) ...), (SELECT gamma_gamma_fit(...) ...)` thus fits
//! the two models in sequence on one core while the other core waits.
//!
//! [`ParallelSubqueriesRule`] puts a [`TaskExec`] on top of every single-partition subquery
//! plan of a `ScalarSubqueryExec` with at least two subqueries: each subquery then runs on a
//! task of its own, and the runtime's threads compute them at the same time. Answers are
//! unchanged (the node passes its input's batches through); only where the work runs changes.
//! Dropping the query's stream stops the tasks; as with DataFusion's own gathering of
//! partitions, a subquery already started runs on while the plan itself is kept alive.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{EvaluationType, SchedulingType};
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

/// Runs each partition of its input on a task of its own and passes the batches through
/// unchanged (a channel of two batches between the task and the consumer).
#[derive(Debug)]
pub struct TaskExec {
    input: Arc<dyn ExecutionPlan>,
    /// The input's properties, declared eager (it drives its input on a task of its own)
    /// and cooperative (a channel it waits on yields to the runtime).
    cache: Arc<PlanProperties>,
}

impl TaskExec {
    /// A node that runs `input`'s partitions on their own tasks.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let cache = Arc::new(
            input
                .properties()
                .as_ref()
                .clone()
                .with_evaluation_type(EvaluationType::Eager)
                .with_scheduling_type(SchedulingType::Cooperative),
        );
        Self { input, cache }
    }

    /// The plan whose partitions run on their own tasks.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for TaskExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(f, "TaskExec"),
            DisplayFormatType::TreeRender => Ok(()),
        }
    }
}

impl ExecutionPlan for TaskExec {
    fn name(&self) -> &'static str {
        "TaskExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("TaskExec takes one child, got {}", children.len());
        }
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, recompute())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // fail here, not on the task, when the input cannot start
        let mut input = self.input.execute(partition, context)?;
        let mut builder = RecordBatchReceiverStream::builder(self.schema(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            while let Some(item) = input.next().await {
                let failed = item.is_err();
                // a closed channel means the consumer is gone: stop quietly
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Children options that recompute a node's properties (what `with_new_children` did).
pub(crate) fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

/// Puts a [`TaskExec`] on every single-partition subquery of a `ScalarSubqueryExec` that has
/// two or more, so that they are computed at the same time (see the module documentation).
#[derive(Debug)]
pub struct ParallelSubqueriesRule;

impl PhysicalOptimizerRule for ParallelSubqueriesRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<ScalarSubqueryExec>() else {
                return Ok(Transformed::no(node));
            };
            let plans: Vec<_> = exec.subqueries().iter().map(|s| &s.plan).collect();
            // a plan of several partitions is gathered by DataFusion, on a task per partition
            let wrap = |p: &Arc<dyn ExecutionPlan>| {
                !p.is::<TaskExec>() && p.properties().output_partitioning().partition_count() == 1
            };
            if plans.len() < 2 || !plans.iter().any(|p| wrap(p)) {
                return Ok(Transformed::no(node));
            }
            let mut children = vec![Arc::clone(exec.input())];
            children.extend(plans.into_iter().map(|p| {
                if wrap(p) {
                    Arc::new(TaskExec::new(Arc::clone(p))) as Arc<dyn ExecutionPlan>
                } else {
                    Arc::clone(p)
                }
            }));
            Ok(Transformed::yes(
                Arc::clone(&node).replace_children(children, recompute())?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "parallel_scalar_subqueries"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use datafusion::arrow::array::{Array, BooleanArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    use super::*;

    use crate::test_context as context;

    /// `rendezvous(tag)`: each call counts itself, then waits up to `patience` for a second
    /// call to arrive; true when one did. Two subqueries that call it meet only when they
    /// run at the same time: run one after the other on one thread, the first gives up.
    fn register_rendezvous(ctx: &SessionContext, patience: Duration) {
        let meeting = Arc::new((Mutex::new(0_usize), Condvar::new()));
        let udf = create_udf(
            "rendezvous",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Volatile,
            Arc::new(move |_args: &[ColumnarValue]| {
                let (arrived, bell) = &*meeting;
                let mut arrived = arrived.lock().unwrap();
                *arrived += 1;
                bell.notify_all();
                let (arrived, _) = bell
                    .wait_timeout_while(arrived, patience, |n| *n < 2)
                    .unwrap();
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(
                    *arrived >= 2,
                ))))
            }),
        );
        ctx.register_udf(udf);
    }

    // the arguments differ so that the two subqueries are not merged into one
    const TWO_MEETINGS: &str = "SELECT (SELECT rendezvous(1)) AS a, (SELECT rendezvous(2)) AS b";

    async fn met(ctx: &SessionContext) -> Vec<bool> {
        let batches = ctx
            .sql(TWO_MEETINGS)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let row = batches.iter().find(|b| b.num_rows() == 1).unwrap();
        (0..2)
            .map(|c| {
                let col = row
                    .column(c)
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .unwrap();
                !col.is_null(0) && col.value(0)
            })
            .collect()
    }

    async fn plan_text(ctx: &SessionContext, sql: &str) -> String {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        displayable(plan.as_ref()).indent(false).to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_subqueries_run_at_the_same_time() {
        let ctx = context(true);
        register_rendezvous(&ctx, Duration::from_secs(60));
        let plan = plan_text(&ctx, TWO_MEETINGS).await;
        assert_eq!(plan.matches("TaskExec").count(), 2, "{plan}");
        assert_eq!(met(&ctx).await, [true, true]);
    }

    /// The control: without the rule DataFusion runs them one after the other, so the
    /// first call waits out its patience alone (the test above can fail).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_rule_the_first_subquery_waits_alone() {
        let ctx = context(false);
        register_rendezvous(&ctx, Duration::from_millis(300));
        let plan = plan_text(&ctx, TWO_MEETINGS).await;
        assert!(!plan.contains("TaskExec"), "{plan}");
        let mut met = met(&ctx).await;
        met.sort();
        assert_eq!(met, [false, true]);
    }

    #[tokio::test]
    async fn one_subquery_or_none_is_left_alone() {
        let ctx = context(true);
        for sql in [
            "SELECT 1 + (SELECT max(x) FROM (VALUES (1), (2)) t(x)) AS y",
            "SELECT x FROM (VALUES (1), (2)) t(x)",
        ] {
            let plan = plan_text(&ctx, sql).await;
            assert!(!plan.contains("TaskExec"), "{sql}\n{plan}");
        }
    }

    /// Same answers with and without the rule, on several partitions, including
    /// subqueries of zero rows (NULL) and a subquery used twice.
    #[tokio::test]
    async fn answers_are_unchanged() {
        let sql = "WITH t AS (SELECT i, i % 7 AS k FROM generate_series(1, 10000) s(i)) \
                   SELECT k, sum(i) * (SELECT max(i) FROM t) + (SELECT count(*) FROM t WHERE k = 3) \
                          AS v, (SELECT min(i) FROM t WHERE i < 0) AS none, \
                          (SELECT max(i) FROM t) AS again \
                   FROM t GROUP BY k ORDER BY k";
        let mut results = Vec::new();
        for with_rules in [true, false] {
            let ctx = context(with_rules);
            let plan = plan_text(&ctx, sql).await;
            assert_eq!(plan.contains("TaskExec"), with_rules, "{plan}");
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            assert_eq!(text.lines().count(), 7 + 4, "{text}");
            results.push(text);
        }
        assert_eq!(results[0], results[1]);
    }

    /// An error in one subquery reaches the caller; the other subquery's task is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_in_a_subquery_is_the_query_error() {
        let ctx = context(true);
        let sql = "WITH t AS (SELECT CASE WHEN i = 500 THEN 'x' ELSE CAST(i AS VARCHAR) END AS s \
                             FROM generate_series(1, 1000) g(i)) \
                   SELECT (SELECT max(CAST(s AS INT)) FROM t) AS a, \
                          (SELECT count(*) FROM t) AS b";
        let plan = plan_text(&ctx, sql).await;
        assert_eq!(plan.matches("TaskExec").count(), 2, "{plan}");
        let err = ctx.sql(sql).await.unwrap().collect().await.unwrap_err();
        assert!(err.to_string().contains("Cannot cast string 'x'"), "{err}");
    }
}
