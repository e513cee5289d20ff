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
//! [`ParallelSubqueriesRule`] puts a [`TaskExec`] on top of every subquery plan of a
//! `ScalarSubqueryExec` with at least two subqueries: each subquery then runs on a task of
//! its own, and the runtime's threads compute them at the same time. Answers are unchanged
//! (the node passes its input's batches through); only where the work runs changes.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
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
}

impl TaskExec {
    /// A node that runs `input`'s partitions on their own tasks.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
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
        self.input.properties()
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
        // the properties are the child's own, so nothing to recompute
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

fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

/// Puts a [`TaskExec`] on every subquery of a `ScalarSubqueryExec` that has two or more,
/// so that they are computed at the same time (see the module documentation).
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
            if plans.len() < 2 || plans.iter().all(|p| p.is::<TaskExec>()) {
                return Ok(Transformed::no(node));
            }
            let mut children = vec![Arc::clone(exec.input())];
            children.extend(plans.into_iter().map(|p| {
                if p.is::<TaskExec>() {
                    Arc::clone(p)
                } else {
                    Arc::new(TaskExec::new(Arc::clone(p))) as Arc<dyn ExecutionPlan>
                }
            }));
            Ok(Transformed::yes(Arc::clone(&node).replace_children(children, recompute())?))
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
