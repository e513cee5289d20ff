//! `QuantileScoreExec`: `quantile_score(...) OVER ()` as a streaming operator within the
//! memory pool, and the physical optimizer rule that puts it in place of DataFusion's
//! `WindowAggExec`.
//!
//! DataFusion 55's `WindowAggExec` buffers its whole input, concatenates it into one
//! batch and returns one output batch of every row, none of it reserved from the memory
//! pool. For scores over a whole table (RFM over 50M customers) that is gigabytes outside
//! `--memory-limit`. A tie-aware quantile score depends only on the value's rank among all
//! values, so this operator needs only the values' 8-byte order keys in memory: it keeps
//! the keys of each scored column (reserved from the pool; counts per key for narrow
//! ranges, see [`KeyCollector`]), buffers the input batches as
//! they came (reserved; spilled to disk in arrival order when the pool says no), then
//! computes each column's [`KeyScores`] and streams the batches back out with their
//! scores appended. Output rows keep the input order, as `WindowAggExec`'s do.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::common::{ColumnStatistics, DataFusionError, Result, Statistics, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SpillFile, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::window::{
    StandardWindowExpr, StandardWindowFunctionExpr, WindowExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::execution_plan::{
    ChildrenPropertiesMode, ReplaceChildrenOptions, apply_expression_roots,
};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, SpillMetrics,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{WindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    InputDistributionRequirements, PlanProperties, SendableRecordBatchStream, SpillManager,
    StatisticsArgs,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::model::{KeyCollector, KeyScores};
use super::quantile::{QuantileScore, has_order_keys, non_null_keys, options, order_keys};

/// One scored column: the value expression and the score's options.
#[derive(Debug, Clone)]
struct Score {
    value: Arc<dyn PhysicalExpr>,
    bins: u64,
    descending: bool,
}

/// `quantile_score(...) OVER ()` expressions of one window node, computed within the
/// memory pool; see the module documentation.
#[derive(Debug, Clone)]
pub struct QuantileScoreExec {
    input: Arc<dyn ExecutionPlan>,
    /// the window expressions replaced (for display and the plan properties)
    window_expr: Vec<Arc<dyn WindowExpr>>,
    scores: Vec<Score>,
    cache: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// The `quantile_score` call of a window expression over the whole input (no
/// `PARTITION BY`, no `ORDER BY`) on a type with order keys, as a [`Score`].
fn whole_input_score(expr: &Arc<dyn WindowExpr>, input: &SchemaRef) -> Option<Score> {
    if !expr.partition_by().is_empty() || !expr.order_by().is_empty() {
        return None;
    }
    let standard = expr.as_any().downcast_ref::<StandardWindowExpr>()?;
    let udf = standard
        .get_standard_func_expr()
        .as_any()
        .downcast_ref::<WindowUDFExpr>()?;
    udf.fun().inner().downcast_ref::<QuantileScore>()?;
    let args = udf.expressions();
    let value = Arc::clone(args.first()?);
    // the value is evaluated twice (for the keys, then for the scores): it must not change
    if datafusion::physical_expr_common::physical_expr::is_volatile(&value)
        || !has_order_keys(&value.data_type(input).ok()?)
    {
        return None;
    }
    let literal = |i: usize| -> Option<Option<_>> {
        match args.get(i) {
            None => Some(None),
            Some(e) => e.downcast_ref::<Literal>().map(|l| Some(l.value())),
        }
    };
    let (bins, descending) = options(literal(1)?, literal(2)?).ok()?;
    Some(Score {
        value,
        bins,
        descending,
    })
}

impl QuantileScoreExec {
    /// The operator in place of `window`, when every one of its expressions is a
    /// `quantile_score(...) OVER ()` on a type with order keys; `None` otherwise.
    pub fn try_from_window(window: &WindowAggExec) -> Option<Self> {
        let input = window.input();
        let schema = input.schema();
        let scores = window
            .window_expr()
            .iter()
            .map(|e| whole_input_score(e, &schema))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            input: Arc::clone(input),
            window_expr: window.window_expr().to_vec(),
            scores,
            cache: Arc::clone(window.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for QuantileScoreExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.window_expr.iter().map(|e| e.name()).collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "QuantileScoreExec: scores=[{}]", names.join(", "))
            }
            DisplayFormatType::TreeRender => writeln!(f, "scores={}", names.join(", ")),
        }
    }
}

impl ExecutionPlan for QuantileScoreExec {
    fn name(&self) -> &'static str {
        "QuantileScoreExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(self.scores.iter().map(|s| Arc::clone(&s.value)), f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![Distribution::SinglePartition])
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("QuantileScoreExec takes one child, got {}", children.len());
        }
        let input = children.swap_remove(0);
        let cache = match options.children_properties {
            ChildrenPropertiesMode::Keep => Arc::clone(&self.cache),
            ChildrenPropertiesMode::Recompute => Arc::clone(
                WindowAggExec::try_new(self.window_expr.clone(), Arc::clone(&input), true)?
                    .properties(),
            ),
        };
        Ok(Arc::new(Self {
            input,
            cache,
            metrics: ExecutionPlanMetricsSet::new(),
            ..Self::clone(&self)
        }))
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
        let input = self.input.execute(partition, Arc::clone(&context))?;
        // the keys must stay in memory; the rows can go to disk
        let keys = MemoryConsumer::new(format!("QuantileScoreExec[{partition}] keys"))
            .register(context.memory_pool());
        let rows = MemoryConsumer::new(format!("QuantileScoreExec[{partition}] rows"))
            .with_can_spill(true)
            .register(context.memory_pool());
        let spill = SpillManager::new(
            context.runtime_env(),
            SpillMetrics::new(&self.metrics, partition),
            self.input.schema(),
        )
        .with_compression_type(context.session_config().spill_compression());
        let state = Scoring {
            schema: self.schema(),
            scores: self.scores.clone(),
            key_reservation: keys,
            row_reservation: rows,
            spill,
            keys: self.scores.iter().map(|_| KeyCollector::new()).collect(),
            buffered: Vec::new(),
            buffered_bytes: 0,
            counter: RecordBatchMemoryCounter::new(),
            spilling: None,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let out = stream::once(state.run(input)).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    /// The input's statistics, plus unknown ones for the score columns (as
    /// `WindowAggExec`'s).
    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let Some(input) = input_stats.first() else {
            return internal_err!("QuantileScoreExec: no input statistics");
        };
        let mut column_statistics = input.column_statistics.clone();
        column_statistics.extend(self.scores.iter().map(|_| ColumnStatistics::new_unknown()));
        Ok(Arc::new(Statistics {
            num_rows: input.num_rows,
            column_statistics,
            total_byte_size: Precision::Absent,
        }))
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }
}

/// Appends a batch to a spill file (`Some`), or finishes the file (`None`). (DataFusion
/// 55 does not export the in-progress file's type.)
type SpillSink = Box<dyn FnMut(Option<&RecordBatch>) -> Result<Option<Arc<dyn SpillFile>>> + Send>;

fn spill_sink(spill: &SpillManager) -> Result<SpillSink> {
    let mut file = spill.create_in_progress_file("QuantileScoreExec")?;
    Ok(Box::new(move |batch| match batch {
        Some(b) => file.append_batch(b).map(|_| None),
        None => file.finish(),
    }))
}

/// The state of one execution.
struct Scoring {
    schema: SchemaRef,
    scores: Vec<Score>,
    /// the keys and the scores built from them (not spillable)
    key_reservation: MemoryReservation,
    /// the buffered rows (spillable)
    row_reservation: MemoryReservation,
    spill: SpillManager,
    /// the non-NULL order keys of each scored column (as counts for narrow ranges)
    keys: Vec<KeyCollector>,
    /// input batches held in memory, after those spilled
    buffered: Vec<RecordBatch>,
    /// bytes reserved for the buffered batches
    buffered_bytes: usize,
    /// counts each buffer of the input once: an aggregate emits one large batch as
    /// zero-copy slices, each of which would otherwise count as the whole
    counter: RecordBatchMemoryCounter,
    /// the spill file (one, appended to in input order), once rows have been spilled
    spilling: Option<SpillSink>,
    metrics: BaselineMetrics,
}

impl Scoring {
    /// Reads the whole input, then returns the scored output as a stream.
    async fn run(
        mut self,
        mut input: SendableRecordBatchStream,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
        while let Some(batch) = input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let elapsed = self.metrics.elapsed_compute().clone();
            let timer = elapsed.timer();
            self.add_keys(&batch)?;
            // a buffer seen before (another slice of it was buffered or spilled) counts 0:
            // it is alive anyway while its producer emits its other slices
            let bytes = self.counter.count_batch(&batch);
            self.buffered.push(batch);
            if self.row_reservation.try_grow(bytes).is_ok() {
                self.buffered_bytes += bytes;
            } else {
                // the batch goes to disk with the others
                self.spill_buffered()?;
            }
            timer.done();
        }
        let elapsed = self.metrics.elapsed_compute().clone();
        let timer = elapsed.timer();
        let scorers = self.key_scores()?;
        timer.done();
        self.output(scorers)
    }

    /// Adds the batch's non-NULL keys of every scored column and reserves what the
    /// collectors grew by.
    fn add_keys(&mut self, batch: &RecordBatch) -> Result<()> {
        for (score, keys) in self.scores.iter().zip(self.keys.iter_mut()) {
            let values = score.value.evaluate(batch)?.into_array(batch.num_rows())?;
            let Some(batch_keys) = non_null_keys(&values)? else {
                return no_keys(values.data_type());
            };
            keys.extend(&batch_keys);
        }
        // during the input, the key reservation holds exactly the collectors
        let bytes: usize = self.keys.iter().map(KeyCollector::heap_bytes).sum();
        let held = self.key_reservation.size();
        if bytes > held {
            self.reserve_for_keys(bytes - held, "their order keys")?;
        }
        Ok(())
    }

    /// Reserves `bytes` that must stay in memory, spilling the buffered batches first
    /// if the pool says no.
    fn reserve_for_keys(&mut self, bytes: usize, what: &str) -> Result<()> {
        if self.key_reservation.try_grow(bytes).is_ok() {
            return Ok(());
        }
        self.spill_buffered()?;
        self.key_reservation.try_grow(bytes).map_err(|e| {
            DataFusionError::ResourcesExhausted(format!(
                "quantile_score over the whole input keeps the order keys of each scored column \
                 in memory (8 to 16 bytes per non-NULL value); {bytes} more bytes for {what} did not fit after \
                 spilling the buffered rows: {e}"
            ))
        })
    }

    /// Appends the buffered batches to the spill file, in order, and releases them.
    fn spill_buffered(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let file = match &mut self.spilling {
            Some(file) => file,
            None => self.spilling.insert(spill_sink(&self.spill)?),
        };
        for batch in &self.buffered {
            file(Some(batch))?;
        }
        self.buffered.clear();
        self.row_reservation.shrink(self.buffered_bytes);
        self.buffered_bytes = 0;
        Ok(())
    }

    /// Each column's scores from its keys; the keys are consumed.
    fn key_scores(&mut self) -> Result<Vec<KeyScores>> {
        let mut out = Vec::with_capacity(self.scores.len());
        for i in 0..self.scores.len() {
            let keys = std::mem::take(&mut self.keys[i]);
            let held = keys.heap_bytes();
            let extra = keys.build_bytes();
            self.reserve_for_keys(extra, "the score table")?;
            let scores =
                KeyScores::from_collector(keys, self.scores[i].bins, self.scores[i].descending);
            // what the scores hold replaces the keys and the building space
            let now = scores.heap_bytes();
            if now > held + extra {
                self.reserve_for_keys(now - held - extra, "the score table")?;
            } else {
                self.key_reservation.shrink(held + extra - now);
            }
            out.push(scores);
        }
        Ok(out)
    }

    /// The spilled batches, then the buffered ones, each with its scores appended.
    fn output(
        self,
        scorers: Vec<KeyScores>,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
        let Scoring {
            schema,
            scores,
            key_reservation,
            row_reservation,
            spill,
            buffered,
            spilling,
            metrics,
            ..
        } = self;
        let spilled = match spilling {
            Some(mut file) => file(None)?,
            None => None,
        };
        let from_disk = match spilled {
            Some(file) => spill.read_spill_as_stream(file, None)?.boxed(),
            None => stream::empty().boxed(),
        };
        let from_memory = stream::iter(buffered.into_iter().map(Ok));
        // the memory of the scores and of the buffered rows (whose buffers may be shared
        // slices) is released with the stream
        let held = (scorers, key_reservation, row_reservation);
        Ok(from_disk
            .chain(from_memory)
            .map(move |batch| {
                let (scorers, _, _) = &held;
                let batch = batch?;
                let timer = metrics.elapsed_compute().timer();
                let scored = score_batch(&schema, &scores, scorers, &batch);
                timer.done();
                metrics.record_output(batch.num_rows());
                scored
            })
            .boxed())
    }
}

/// The error for values planned to have order keys that have none: a decimal value
/// outside its declared precision (the only way; Arrow does not check precision).
fn no_keys<T>(t: &datafusion::arrow::datatypes::DataType) -> Result<T> {
    datafusion::common::exec_err!(
        "quantile_score: a {t} value does not fit its declared precision, so it cannot be \
         ranked exactly; cast the column to a wider decimal or to DOUBLE"
    )
}

/// `batch` with the score columns appended.
fn score_batch(
    schema: &SchemaRef,
    scores: &[Score],
    scorers: &[KeyScores],
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (score, scorer) in scores.iter().zip(scorers) {
        let values = score.value.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(keys) = order_keys(&values)? else {
            return no_keys(values.data_type());
        };
        let out: Vec<i64> = keys.iter().map(|&k| scorer.score(k)).collect();
        columns.push(Arc::new(Int64Array::new(
            out.into(),
            values.logical_nulls(),
        )));
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Puts [`QuantileScoreExec`] in place of every `WindowAggExec` whose expressions are all
/// `quantile_score(...) OVER ()` on integers, floats, decimals of up to 18 digits, dates,
/// times, timestamps or durations, of a value that is not volatile (it is evaluated
/// twice). Other window nodes are left alone. Add it with
/// `SessionStateBuilder::with_physical_optimizer_rule`; [`crate::session_context`] and the
/// command line do.
#[derive(Debug, Default)]
pub struct QuantileScoreRule;

impl PhysicalOptimizerRule for QuantileScoreRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let replaced = node
                .downcast_ref::<WindowAggExec>()
                .and_then(QuantileScoreExec::try_from_window);
            Ok(match replaced {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "quantile_score_exec"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::Result;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// `SessionContext::new()` + the functions: DataFusion's `WindowAggExec`, no rule.
    fn plain() -> SessionContext {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
        crate::register_on_context(&ctx).unwrap();
        ctx
    }

    /// With the rule, `target_partitions` and batch size as given and an optional pool.
    fn with_rule(partitions: usize, batch: usize, pool_bytes: Option<usize>) -> SessionContext {
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(b) = pool_bytes {
            rt = rt.with_memory_pool(Arc::new(GreedyMemoryPool::new(b)));
        }
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(batch);
        let ctx =
            SessionContext::new_with_state(crate::session_state(config, rt.build_arc().unwrap()));
        crate::register_on_context(&ctx).unwrap();
        ctx
    }

    /// Rows 1..=n with ties, NULLs, negatives, NaN, wide and narrow key ranges.
    fn table(n: usize) -> String {
        format!(
            "SELECT i, \
               CASE WHEN i % 11 = 0 THEN NULL ELSE (i * 7919) % 101 END AS narrow, \
               CASE WHEN i % 13 = 0 THEN NULL WHEN i % 97 = 0 THEN 'NaN'::double \
                    ELSE ((i * 2654435761) % 1000003) / 7.0 - 50000 END AS wide, \
               to_timestamp_seconds(1700000000 + (i * 40503) % 86400 * 3600) AS ts \
             FROM generate_series(1, {n}) t(i)"
        )
    }

    fn query(n: usize, bins: u64) -> String {
        format!(
            "SELECT i, \
               quantile_score(narrow, {bins}) OVER () AS a, \
               quantile_score(wide, {bins}, descending => true) OVER () AS b, \
               quantile_score(ts, {bins}) OVER () AS c, \
               quantile_score(wide, {bins}) OVER () AS d \
             FROM ({}) ORDER BY i",
            table(n)
        )
    }

    async fn plan_and_run(
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<(Arc<dyn ExecutionPlan>, Vec<RecordBatch>)> {
        let df = ctx.sql(sql).await?;
        let plan = df.create_physical_plan().await?;
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await?;
        Ok((plan, batches))
    }

    fn text(batches: &[RecordBatch]) -> String {
        pretty_format_batches(batches).unwrap().to_string()
    }

    /// Runs `sql` on `ctx` and checks that it used the operator (or not) and gave
    /// [`plain`]'s answer.
    async fn same_as_plain(ctx: &SessionContext, sql: &str, uses_exec: bool) -> Result<()> {
        let (plan, got) = plan_and_run(ctx, sql).await?;
        assert_eq!(
            find(&plan, "QuantileScoreExec").is_some(),
            uses_exec,
            "{sql}"
        );
        let (_, expected) = plan_and_run(&plain(), sql).await?;
        assert_eq!(text(&got), text(&expected), "{sql}");
        Ok(())
    }

    /// The node named `name` in `plan`'s tree, if any.
    fn find(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Option<Arc<dyn ExecutionPlan>> {
        if plan.name() == name {
            return Some(Arc::clone(plan));
        }
        plan.children().into_iter().find_map(|c| find(c, name))
    }

    #[tokio::test]
    async fn the_operator_gives_the_window_functions_answers() -> Result<()> {
        for (n, bins) in [
            (3000, 5),
            (3000, 1),
            (3000, 256),
            (3000, 257),
            (500, 1000),
            (1, 5),
        ] {
            let sql = query(n, bins);
            let (before_plan, expected) = plan_and_run(&plain(), &sql).await?;
            assert!(find(&before_plan, "WindowAggExec").is_some());
            for (partitions, batch) in [(1, 8192), (4, 7), (16, 100)] {
                let (plan, got) = plan_and_run(&with_rule(partitions, batch, None), &sql).await?;
                let shown = displayable(plan.as_ref()).indent(false).to_string();
                assert!(shown.contains("QuantileScoreExec"), "{shown}");
                assert!(!shown.contains("WindowAggExec"), "{shown}");
                assert_eq!(
                    text(&got),
                    text(&expected),
                    "n {n} bins {bins} partitions {partitions} batch {batch}"
                );
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn windows_it_cannot_take_stay() -> Result<()> {
        let ctx = with_rule(4, 8192, None);
        for sql in [
            // PARTITION BY, a string value, a mix with another window function
            "SELECT quantile_score(x, 2) OVER (PARTITION BY g) FROM (VALUES (1, 'a'), (2, 'a')) t(x, g)",
            "SELECT quantile_score(g, 2) OVER () FROM (VALUES (1, 'a'), (2, 'b')) t(x, g)",
            "SELECT quantile_score(x, 2) OVER (), max(x) OVER () FROM (VALUES (1), (2)) t(x)",
            // a volatile value would be evaluated twice (the answer itself is random)
            "SELECT count(q) FROM (SELECT quantile_score(random(), 2) OVER () AS q FROM (VALUES (1), (2)) t(x))",
        ] {
            same_as_plain(&ctx, sql, false).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn rows_spill_in_order_when_the_pool_is_small() -> Result<()> {
        let n = 200_000;
        let sql = query(n, 5);
        let (_, expected) = plan_and_run(&plain(), &sql).await?;
        // the keys: two wide columns of 8 bytes × 200k values (4.2 MB of vector capacity)
        // and two narrow ones as counts (1.6 MB); the buffered rows ≥ 6.4 MB more: 10 MiB
        // holds the keys, not the rows
        let ctx = with_rule(1, 4096, Some(10 << 20));
        let unordered = format!("SELECT * FROM ({sql}) LIMIT {n}").replace(" ORDER BY i", "");
        let (plan, got) = plan_and_run(&ctx, &unordered).await?;
        let exec = find(&plan, "QuantileScoreExec").expect("the rule applied");
        let spilled = exec.metrics().and_then(|m| m.spill_count()).unwrap_or(0);
        assert!(
            spilled > 0,
            "expected spills, metrics: {:?}",
            exec.metrics()
        );
        // the rows come back in input order (`i` ascending from the single-partition
        // scan), and the answer is the window function's
        let ids: Vec<i64> = got
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids.len(), n);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "rows out of order");
        let sorted = datafusion::arrow::compute::concat_batches(&got[0].schema(), &got)?;
        assert_eq!(text(&[sorted]), text(&expected));
        Ok(())
    }

    /// Decimals of up to 18 digits score by their unscaled values, as their exact doubles
    /// do; wider ones keep DataFusion's operator (and the generic sort).
    #[tokio::test]
    async fn decimals_score_as_their_values() -> Result<()> {
        let values = "SELECT i, CAST(((i * 7919) % 2003) / 8.0 - 100 AS DECIMAL(12, 3)) AS d \
                      FROM generate_series(1, 5000) t(i)";
        for (ty, uses_exec) in [("DECIMAL(12, 3)", true), ("DECIMAL(30, 3)", false)] {
            let sql = format!(
                "SELECT count(*) FILTER (WHERE a = b AND c = e) AS same, count(*) AS n FROM \
                 (SELECT quantile_score(x, 7) OVER () AS a, quantile_score(y, 7) OVER () AS b, \
                         quantile_score(x, 300, true) OVER () AS c, \
                         quantile_score(y, 300, true) OVER () AS e \
                  FROM (SELECT CAST(d AS {ty}) AS x, CAST(d AS DOUBLE) AS y FROM ({values})))"
            );
            for ctx in [with_rule(2, 100, None), plain()] {
                let (_, got) = plan_and_run(&ctx, &sql).await?;
                assert_eq!(
                    text(&got).lines().nth(3).map(str::trim),
                    Some("| 5000 | 5000 |")
                );
            }
            let inner = format!(
                "SELECT i, quantile_score(CAST(d AS {ty}), 7) OVER () AS q FROM ({values}) ORDER BY i"
            );
            same_as_plain(&with_rule(2, 100, None), &inner, uses_exec).await?;
        }
        Ok(())
    }

    /// Arrow does not check a decimal's declared precision: a value beyond it has no i64
    /// key. The window function then ranks by Arrow's sort; the operator says so.
    #[tokio::test]
    async fn decimals_beyond_their_precision_are_not_misranked() -> Result<()> {
        use datafusion::arrow::array::Decimal128Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let values =
            Decimal128Array::from(vec![Some(5_i128), None, Some(10_i128.pow(20)), Some(-7)])
                .with_precision_and_scale(18, 2)?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(18, 2),
            true,
        )]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)])?;
        let sql = "SELECT d, quantile_score(d, 3) OVER () AS q FROM t ORDER BY d";
        let ctx = plain();
        ctx.register_batch("t", batch.clone())?;
        let (_, got) = plan_and_run(&ctx, sql).await?;
        let shown = text(&got);
        // -0.07 < 0.05 < 1e18: scores 1, 2, 3
        let scores: Vec<&str> = shown
            .lines()
            .skip(3)
            .filter_map(|l| l.split('|').nth(2))
            .map(str::trim)
            .collect();
        assert_eq!(scores, ["1", "2", "3", ""], "{shown}");
        let ctx = with_rule(1, 8192, None);
        ctx.register_batch("t", batch)?;
        let err = plan_and_run(&ctx, sql).await.unwrap_err().to_string();
        assert!(err.contains("does not fit its declared precision"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn empty_and_all_null_inputs() -> Result<()> {
        for sql in [
            "SELECT i, quantile_score(i, 5) OVER () AS q FROM generate_series(1, 10) t(i) WHERE i > 100",
            "SELECT i, quantile_score(CASE WHEN i > 0 THEN NULL ELSE 1.5 END, 5) OVER () AS q, \
               quantile_score(i, 3, true) OVER () AS d FROM generate_series(1, 10) t(i) ORDER BY i",
        ] {
            same_as_plain(&with_rule(2, 3, None), sql, true).await?;
        }
        Ok(())
    }

    /// An aggregate emits its result as zero-copy slices of one large batch: counted per
    /// slice, the buffered rows would claim many times their memory and spill for nothing.
    #[tokio::test]
    async fn slices_of_one_batch_count_once() -> Result<()> {
        let sql = "SELECT k, quantile_score(s, 5) OVER () AS q FROM \
                   (SELECT i % 200000 AS k, sum(i) AS s FROM generate_series(1, 400000) t(i) GROUP BY k)";
        let config = SessionConfig::new().with_target_partitions(1);
        let rt = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(
                datafusion::execution::memory_pool::FairSpillPool::new(48 << 20),
            ))
            .build_arc()?;
        let ctx = SessionContext::new_with_state(crate::session_state(config, rt));
        crate::register_on_context(&ctx)?;
        let (plan, got) = plan_and_run(&ctx, sql).await?;
        let exec = find(&plan, "QuantileScoreExec").expect("the rule applied");
        assert_eq!(exec.metrics().and_then(|m| m.spill_count()), Some(0));
        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 200_000);
        let ordered = format!("SELECT * FROM ({sql}) ORDER BY k");
        let (_, got) = plan_and_run(&ctx, &ordered).await?;
        let (_, expected) = plan_and_run(&plain(), &ordered).await?;
        assert_eq!(text(&got), text(&expected));
        Ok(())
    }

    #[tokio::test]
    async fn keys_that_do_not_fit_are_a_clear_error() {
        let ctx = with_rule(1, 8192, Some(256 << 10));
        let err = plan_and_run(&ctx, &query(200_000, 5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "quantile_score over the whole input keeps the order keys of each scored column"
            ),
            "{err}"
        );
    }
}
