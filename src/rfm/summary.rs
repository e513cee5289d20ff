//! `rfm_summary(ts, amount)`: a customer's last order time, number of orders and exact
//! amount sum in one aggregate — `rfm`'s per-customer step.
//!
//! The same numbers as `max(ts)`, `count(ts)` and `coalesce(exact_sum(amount), 0)` (over the
//! rows with a timestamp), in one accumulator of three `i64` vectors (the three accumulators
//! held four vectors and a bitmap, 33 bytes per group; this one 24) whose values are emitted
//! without copying. Amount sums are held in units of 1e-10 in an `i64`; the rare group whose
//! sum leaves the `i64` range carries the excess in a side map as `i128` (the range of
//! DECIMAL(38, 10) — what the state serializes to).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, StructArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Fields, Int64Type, TimeUnit,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

use super::exact_sum::{DECIMAL, MAX_UNITS, OneGroup, Ungrouped, small_units, to_units_wide};
use crate::args::{
    Kind, Param, check_arg_types, doc_section, f64_column, param, signature, state_field,
};

const NAME: &str = "rfm_summary";

const PARAMS: [Param; 2] = [param("ts", Kind::Instant), param("amount", Kind::Amount)];

/// The `rfm_summary` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmSummary {
    signature: Signature,
    /// Aggregated in one phase by [`SummaryAggregateRule`]: the instance `rfm(...)` plans
    /// with when the session has no memory limit. The registered function is two-phase.
    one_phase: bool,
}

impl Default for RfmSummary {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 2, Volatility::Immutable),
            one_phase: false,
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("RFM"),
        "A customer's order summary in one pass: a struct of `last_ts` (the latest `ts`), \
         `frequency` (the number of rows with a non-NULL `ts`) and `monetary` (the sum of \
         `amount` over those rows, a DOUBLE). The same values as `max(ts)`, `count(ts)` and \
         `coalesce(exact_sum(amount), 0)` over the rows with a timestamp, in one accumulator, \
         faster and with less memory per group; `rfm` computes its per-customer values with it.\n\n\
         - Rows with a NULL `ts` are ignored. A NULL `amount` counts as an order and adds \
           nothing; a group without any amount has `monetary` 0.\n\
         - `monetary` is exact and independent of the order rows arrive in (partitioning, \
           batch size, spilling): float amounts are rounded to 10 decimal places as in \
           `exact_sum`; integer and decimal amounts are converted to DECIMAL(38, 10) as by \
           `CAST` (an error naming the function if they do not fit). NaN, infinite values and \
           values of 1e28 or more in magnitude are errors naming the function, and so is a \
           sum of 1e28 or more; a partial sum along the way that reaches 1e28 may be one too, \
           depending on the order of the rows (as with `exact_sum`).\n\
         - A group without any row with a timestamp has `last_ts` NULL and `frequency` 0.\n\
         - `last_ts` has the type of `ts` (a timestamp of any unit and time zone, or a date).",
        "rfm_summary(ts, amount)",
    )
    .with_argument("ts", "The order time: a timestamp or a date.")
    .with_argument(
        "amount",
        "The order amount: an integer, float or decimal (not rounded through a DOUBLE).",
    )
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE o(c INT, ts TIMESTAMP, amt DOUBLE) AS VALUES\n\
         >   (1, '2025-01-01', 10.1), (1, '2025-03-01', 20.2), (2, '2025-02-15', NULL), (2, NULL, 5);\n\
         > SELECT c, s['last_ts'] AS last_ts, s['frequency'] AS frequency, s['monetary'] AS monetary\n\
         > FROM (SELECT c, rfm_summary(ts, amt) AS s FROM o GROUP BY c) ORDER BY c;\n\
         +---+---------------------+-----------+----------+\n\
         | c | last_ts             | frequency | monetary |\n\
         +---+---------------------+-----------+----------+\n\
         | 1 | 2025-03-01T00:00:00 | 2         | 30.3     |\n\
         | 2 | 2025-02-15T00:00:00 | 1         | 0.0      |\n\
         +---+---------------------+-----------+----------+\n\
         ```",
    )
    .with_related_udf("rfm")
    .with_related_udf("exact_sum")
    .build()
});

/// The type of `last_ts` for an argument of type `ts` (a NULL literal gives microseconds).
fn last_ts_type(ts: &DataType) -> DataType {
    match ts {
        DataType::Null => DataType::Timestamp(TimeUnit::Microsecond, None),
        t => t.clone(),
    }
}

/// The fields of the result struct.
fn fields(last_ts: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("last_ts", last_ts.clone(), true),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary", DataType::Float64, false),
    ])
}

/// The `last_ts` type of a result struct type.
fn last_ts_of(result: &DataType) -> Result<DataType> {
    match result {
        DataType::Struct(f) if !f.is_empty() => Ok(f[0].data_type().clone()),
        t => exec_err!("{NAME}: expected a struct result type, got {t}"),
    }
}

impl AggregateUDFImpl for RfmSummary {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(NAME, &PARAMS, arg_types)?;
        Ok(DataType::Struct(fields(&last_ts_type(&arg_types[0]))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let last_ts = last_ts_of(args.return_field.data_type())?;
        Ok(vec![
            state_field(args.name, "last_ts", last_ts),
            state_field(args.name, "frequency", DataType::Int64),
            state_field(args.name, "monetary", DECIMAL),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Ungrouped(Summaries::new(last_ts_of(
            args.return_field.data_type(),
        )?))))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Summaries::new(last_ts_of(
            args.return_field.data_type(),
        )?)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Per-group summaries, one vector per value so that they are emitted without copying: the
/// latest time (as i64 in the unit of `ts`; meaningful when the group has orders), the number
/// of orders and the amount sum in units of 1e-10 (plus the group's carry, if any).
#[derive(Debug, Clone)]
struct Summaries {
    /// The type of `last_ts` (and of the state's first column).
    last_ts: DataType,
    last: Vec<i64>,
    orders: Vec<i64>,
    units: Vec<i64>,
    /// Units beyond a group's `i64` sum, by group index (rare: sums above ~9.2e8).
    carries: HashMap<usize, i128>,
}

/// Groups taken out of [`Summaries`] to be emitted (carries re-indexed from 0).
struct Taken {
    last: Vec<i64>,
    orders: Vec<i64>,
    units: Vec<i64>,
    carries: HashMap<usize, i128>,
}

/// The amount column, as floats (rounded to units per value) or as exact units.
enum Amounts {
    Floats(Float64Array),
    Units(Decimal128Array),
}

impl Amounts {
    fn of(a: &ArrayRef) -> Result<Self> {
        let t = a.data_type();
        Ok(if t.is_floating() || t.is_null() {
            Self::Floats(f64_column(a)?)
        } else {
            // integers and decimals: exactly as `CAST(amount AS DECIMAL(38, 10))` (an error,
            // not a NULL, when a value does not fit)
            let exact = CastOptions {
                safe: false,
                ..Default::default()
            };
            let units = cast_with_options(a, &DECIMAL, &exact).or_else(|e| {
                exec_err!("{NAME}: argument 2 'amount' does not fit DECIMAL(38, 10): {e}")
            })?;
            Self::Units(units.as_primitive::<Decimal128Type>().clone())
        })
    }

    fn null_count(&self) -> usize {
        match self {
            Self::Floats(a) => a.null_count(),
            Self::Units(a) => a.null_count(),
        }
    }

    fn is_valid(&self, i: usize) -> bool {
        match self {
            Self::Floats(a) => a.is_valid(i),
            Self::Units(a) => a.is_valid(i),
        }
    }
}

#[cold]
fn sum_too_large<T>() -> Result<T> {
    exec_err!("{NAME}: the sum reaches 1e28 in magnitude")
}

/// Adds `units` beyond the `i64` range to group `g`'s carry, together with its `i64` sum
/// (which becomes 0).
#[cold]
fn carry(carries: &mut HashMap<usize, i128>, g: usize, sum: &mut i64, units: i128) -> Result<()> {
    let c = carries.entry(g).or_insert(0);
    // checked throughout: a DECIMAL(38, 10) input is not re-checked against its precision
    match units
        .checked_add(i128::from(*sum))
        .and_then(|u| c.checked_add(u))
    {
        Some(s) if s.abs() <= MAX_UNITS => *c = s,
        _ => return sum_too_large(),
    }
    *sum = 0;
    Ok(())
}

#[inline]
fn add_units(
    carries: &mut HashMap<usize, i128>,
    g: usize,
    sum: &mut i64,
    units: i128,
) -> Result<()> {
    if let Ok(u) = i64::try_from(units)
        && let Some(s) = sum.checked_add(u)
    {
        *sum = s;
        return Ok(());
    }
    carry(carries, g, sum, units)
}

#[inline]
fn add_float(carries: &mut HashMap<usize, i128>, g: usize, sum: &mut i64, v: f64) -> Result<()> {
    if let Some(u) = small_units(v)
        && let Some(s) = sum.checked_add(u)
    {
        *sum = s;
        return Ok(());
    }
    let units = match small_units(v) {
        Some(u) => i128::from(u),
        None => to_units_wide(NAME, v)?,
    };
    carry(carries, g, sum, units)
}

/// A sum in units as a double: arrow's DECIMAL(38, 10) → DOUBLE cast (`x as f64 / 10^10`),
/// so `monetary` has the bits of the DECIMAL route (a test compares the two).
#[inline]
fn units_to_f64(units: i128) -> f64 {
    units as f64 / 10_f64.powi(10)
}

/// A group's whole sum in units, its `i64` sum plus its carry, checked to fit
/// DECIMAL(38, 10).
fn with_carry(units: i64, carry: i128) -> Result<i128> {
    let total = i128::from(units) + carry;
    if total.abs() > MAX_UNITS {
        return sum_too_large();
    }
    Ok(total)
}

impl Taken {
    /// The sums in units, each checked to fit DECIMAL(38, 10).
    fn totals(&self) -> Result<Vec<i128>> {
        let mut totals: Vec<i128> = self.units.iter().map(|&u| i128::from(u)).collect();
        for (&g, &c) in &self.carries {
            totals[g] = with_carry(self.units[g], c)?;
        }
        Ok(totals)
    }

    /// `last_ts` (NULL for a group without orders), without copying the values.
    fn last_ts(last: Vec<i64>, orders: &[i64], t: &DataType) -> Result<ArrayRef> {
        let valid = NullBuffer::new(BooleanBuffer::collect_bool(orders.len(), |i| orders[i] > 0));
        let nulls = (valid.null_count() > 0).then_some(valid);
        instants_as(&Int64Array::new(last.into(), nulls), t)
    }

    /// The aggregate's result: the struct of `last_ts`, `frequency` and `monetary`.
    fn result(self, last_ts: &DataType) -> Result<ArrayRef> {
        let Taken {
            last,
            orders,
            units,
            carries,
        } = self;
        let mut carried = Vec::with_capacity(carries.len());
        for (&g, &c) in &carries {
            carried.push((g, units_to_f64(with_carry(units[g], c)?)));
        }
        // in place: the i64 sums become the doubles
        let mut monetary: Vec<f64> = units
            .into_iter()
            .map(|u| units_to_f64(i128::from(u)))
            .collect();
        for (g, m) in carried {
            monetary[g] = m;
        }
        let last = Self::last_ts(last, &orders, last_ts)?;
        Ok(Arc::new(StructArray::try_new(
            fields(last_ts),
            vec![
                last,
                Arc::new(Int64Array::new(orders.into(), None)),
                Arc::new(Float64Array::new(monetary.into(), None)),
            ],
            None,
        )?))
    }

    /// The state columns: `last_ts`, the order count and the sum as DECIMAL(38, 10).
    fn state(self, last_ts: &DataType) -> Result<Vec<ArrayRef>> {
        let sums = Decimal128Array::new(self.totals()?.into(), None).with_data_type(DECIMAL);
        let Taken { last, orders, .. } = self;
        Ok(vec![
            Self::last_ts(last, &orders, last_ts)?,
            Arc::new(Int64Array::new(orders.into(), None)),
            Arc::new(sums),
        ])
    }
}

/// `ts` values as i64 in their own unit (a Date32 widened; NULL type: all NULL).
fn instants(a: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(a, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// The inverse of [`instants`] for values of type `t` (timestamps and Date64 reinterpret
/// the buffer).
fn instants_as(values: &Int64Array, t: &DataType) -> Result<ArrayRef> {
    Ok(match t {
        // i32 values (they came from a Date32), reinterpreted
        DataType::Date32 => cast(&cast(values, &DataType::Int32)?, t)?,
        _ => cast(values, t)?,
    })
}

impl Summaries {
    fn new(last_ts: DataType) -> Self {
        Self {
            last_ts,
            last: Vec::new(),
            orders: Vec::new(),
            units: Vec::new(),
            carries: HashMap::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.last.resize(groups, i64::MIN);
        self.orders.resize(groups, 0);
        self.units.resize(groups, 0);
    }

    /// The groups `emit_to` takes, with their carries (re-indexed from 0); the remaining
    /// groups' carries are re-indexed to follow.
    fn take(&mut self, emit_to: EmitTo) -> Taken {
        let carries = match emit_to {
            EmitTo::All => std::mem::take(&mut self.carries),
            EmitTo::First(n) => {
                let (taken, kept): (HashMap<_, _>, HashMap<_, _>) =
                    std::mem::take(&mut self.carries)
                        .into_iter()
                        .partition(|&(g, _)| g < n);
                self.carries = kept.into_iter().map(|(g, c)| (g - n, c)).collect();
                taken
            }
        };
        Taken {
            last: emit_to.take_needed(&mut self.last),
            orders: emit_to.take_needed(&mut self.orders),
            units: emit_to.take_needed(&mut self.units),
            carries,
        }
    }
}

impl GroupsAccumulator for Summaries {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let ts = instants(&values[0])?;
        let amounts = Amounts::of(&values[1])?;
        let (last, orders, units) = (&mut self.last, &mut self.orders, &mut self.units);
        let carries = &mut self.carries;
        let dense = ts.null_count() == 0 && amounts.null_count() == 0 && opt_filter.is_none();
        match &amounts {
            Amounts::Floats(a) if dense => {
                for ((&g, &t), &v) in group_indices.iter().zip(ts.values()).zip(a.values()) {
                    last[g] = last[g].max(t);
                    orders[g] += 1;
                    add_float(carries, g, &mut units[g], v)?;
                }
            }
            Amounts::Units(a) if dense => {
                for ((&g, &t), &u) in group_indices.iter().zip(ts.values()).zip(a.values()) {
                    last[g] = last[g].max(t);
                    orders[g] += 1;
                    add_units(carries, g, &mut units[g], u)?;
                }
            }
            _ => {
                for (i, &g) in group_indices.iter().enumerate() {
                    if ts.is_null(i) || opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                        continue;
                    }
                    last[g] = last[g].max(ts.value(i));
                    orders[g] += 1;
                    if !amounts.is_valid(i) {
                        continue;
                    }
                    match &amounts {
                        Amounts::Floats(a) => add_float(carries, g, &mut units[g], a.value(i))?,
                        Amounts::Units(a) => add_units(carries, g, &mut units[g], a.value(i))?,
                    }
                }
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let last = instants(&values[0])?;
        let orders = values[1].as_primitive::<Int64Type>();
        let units = values[2].as_primitive::<Decimal128Type>();
        for (i, &g) in group_indices.iter().enumerate() {
            if orders.is_valid(i) {
                self.orders[g] += orders.value(i);
            }
            if last.is_valid(i) {
                self.last[g] = self.last[g].max(last.value(i));
            }
            if units.is_valid(i) {
                add_units(&mut self.carries, g, &mut self.units[g], units.value(i))?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.take(emit_to).result(&self.last_ts)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.take(emit_to).state(&self.last_ts)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // one group per row: the same code path
        let n = values[0].len();
        let mut single = Summaries::new(self.last_ts.clone());
        single.update_batch(values, &(0..n).collect::<Vec<_>>(), opt_filter, n)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        (self.last.capacity() + self.orders.capacity() + self.units.capacity())
            * std::mem::size_of::<i64>()
            + self.carries.capacity() * (std::mem::size_of::<(usize, i128)>() + 1)
    }
}

impl OneGroup for Summaries {
    fn ensure_one_group(&mut self) {
        self.resize(1);
    }
}

/// Aggregates `rfm_summary` per key in one phase: the input rows are hash-partitioned on the
/// key and each partition aggregates its keys (`SinglePartitioned`), instead of a partial
/// aggregate per input partition whose states are then partitioned and merged.
///
/// The key of `rfm_summary` is a customer: there are many, and each input partition holds
/// most of them (a 10M-order lake of 880k customers: 1.05M partial groups on two partitions).
/// The two phases then hold both stages' hash tables and the partial states between them,
/// and merge a state per customer and partition; one phase holds each customer once.
/// DataFusion's own switch (skip the partial aggregation when it does not reduce the rows)
/// looks at the first 100k rows, which lakes written customer by customer reduce well.
/// Answers are unchanged: the accumulator is the same, and the sums are exact.
///
/// The rule rewrites `FinalPartitioned ← hash RepartitionExec ← Partial` where every
/// aggregate is the one-phase instance of `rfm_summary` ([`rfm_summary_one_phase`]; no
/// grouping sets; not when the exchange preserves an order or the final aggregate's output
/// is ordered, since the new exchange does not). `rfm(...)` plans with that instance when
/// the session's memory pool reports no limit (`MemoryLimit::Infinite`).
/// Under a limit it keeps the two phases: the one-phase exchange carries every order row,
/// and spills them when it cannot hold them (DataFusion 55's `RepartitionExec` could then
/// deadlock, apache/datafusion#24883: `rfm` on a 540k-order lake under 2 MB hung in 4 of 12
/// runs, and no longer does with [`crate::REPARTITION_SPILL_FILE_BYTES`]). The registered
/// SQL function is two-phase. The rule is one of
/// [`crate::physical_optimizer_rules`]; a Ballista cluster plans without it, so partial
/// states, not order rows, cross the network.
#[derive(Debug)]
pub struct SummaryAggregateRule;

impl SummaryAggregateRule {
    fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(last) = node.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let Some(exchange) = last.input().downcast_ref::<RepartitionExec>() else {
            return Ok(None);
        };
        let Some(first) = exchange.input().downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let Partitioning::Hash(_, partitions) = exchange.partitioning() else {
            return Ok(None);
        };
        let only_summaries = !first.aggr_expr().is_empty()
            && first.aggr_expr().iter().all(|a| {
                a.fun()
                    .inner()
                    .downcast_ref::<RfmSummary>()
                    .is_some_and(|s| s.one_phase)
            })
            && last.aggr_expr().len() == first.aggr_expr().len();
        // an order-preserving exchange (a sorted input the plan above may rely on) stays
        if exchange.preserve_order()
            || last.properties().output_ordering().is_some()
            || *last.mode() != AggregateMode::FinalPartitioned
            || *first.mode() != AggregateMode::Partial
            || !only_summaries
            || first.group_expr().is_empty()
            || first.group_expr().has_grouping_set()
        {
            return Ok(None);
        }
        let rows = RepartitionExec::try_new(
            Arc::clone(first.input()),
            Partitioning::Hash(first.group_expr().input_exprs(), *partitions),
        )?;
        let single = AggregateExec::try_new(
            AggregateMode::SinglePartitioned,
            first.group_expr().clone(),
            first.aggr_expr().to_vec(),
            first.filter_expr().to_vec(),
            Arc::new(rows),
            first.input_schema(),
        )?
        .with_limit_options(last.limit_options());
        Ok(Some(Arc::new(single)))
    }
}

impl PhysicalOptimizerRule for SummaryAggregateRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            Ok(match Self::rewrite(&node)? {
                Some(single) => Transformed::yes(single),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "rfm_summary_single_phase"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The `rfm_summary` aggregate (a shared singleton).
pub fn rfm_summary() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(RfmSummary::default())));
    Arc::clone(&UDAF)
}

/// `rfm_summary` as [`SummaryAggregateRule`] aggregates it in one phase (not registered:
/// `rfm(...)` plans with it when the session has no memory limit).
pub fn rfm_summary_one_phase() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::new_from_impl(RfmSummary {
            one_phase: true,
            ..RfmSummary::default()
        }))
    });
    Arc::clone(&UDAF)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::PrimitiveArray;
    use datafusion::arrow::datatypes::Float64Type;

    use super::*;

    fn ts(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(
            PrimitiveArray::<Int64Type>::from(values.to_vec())
                .reinterpret_cast::<datafusion::arrow::datatypes::TimestampMicrosecondType>(),
        )
    }

    fn floats(values: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }

    fn micros() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    }

    /// (last_ts, frequency, monetary) per group.
    fn rows(result: &ArrayRef) -> Vec<(Option<i64>, i64, f64)> {
        let s = result.as_struct();
        let last = cast(s.column(0), &DataType::Int64).unwrap();
        let last = last.as_primitive::<Int64Type>();
        let orders = s.column(1).as_primitive::<Int64Type>();
        let monetary = s.column(2).as_primitive::<Float64Type>();
        (0..s.len())
            .map(|i| {
                (
                    last.is_valid(i).then(|| last.value(i)),
                    orders.value(i),
                    monetary.value(i),
                )
            })
            .collect()
    }

    /// Sums that leave the i64 range carry into i128, also across `EmitTo::First` (which
    /// shifts the remaining groups' indices), and come back exactly.
    #[test]
    fn carries_survive_large_sums_and_partial_emits() {
        let mut acc = Summaries::new(micros());
        // 5e8 is 5e18 units: two of them pass i64::MAX (~9.2e18)
        let big = 5e8;
        acc.update_batch(
            &[
                ts(&[Some(1), Some(2), Some(3), Some(4), Some(5), None]),
                floats(&[
                    Some(big),
                    Some(big),
                    Some(1.5),
                    Some(big),
                    Some(2e9),
                    Some(7.0),
                ]),
            ],
            &[0, 0, 1, 2, 2, 2],
            None,
            3,
        )
        .unwrap();
        assert_eq!(acc.carries.len(), 2, "groups 0 and 2 carry");
        let first = acc.evaluate(EmitTo::First(1)).unwrap();
        assert_eq!(rows(&first), vec![(Some(2), 2, 1e9)]);
        // group 2 is now group 1; add to it after the shift
        acc.update_batch(&[ts(&[Some(9)]), floats(&[Some(0.25)])], &[1], None, 2)
            .unwrap();
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            rows(&rest),
            vec![(Some(3), 1, 1.5), (Some(9), 3, 2.5e9 + 0.25)]
        );
    }

    /// Partial states merged give the single accumulator's result; a group with only NULL
    /// timestamps has no orders and NULL `last_ts`.
    #[test]
    fn merged_states_equal_one_pass() {
        let t = ts(&[Some(10), None, Some(30), Some(20), Some(5), None]);
        let a = floats(&[Some(0.1), Some(100.0), None, Some(0.2), Some(-0.3), None]);
        let g = [0, 0, 0, 1, 1, 2];
        let mut one = Summaries::new(micros());
        one.update_batch(&[Arc::clone(&t), Arc::clone(&a)], &g, None, 3)
            .unwrap();
        let expected = rows(&one.evaluate(EmitTo::All).unwrap());
        assert_eq!(
            expected,
            vec![(Some(30), 2, 0.1), (Some(20), 2, -0.1), (None, 0, 0.0)]
        );
        let mut merged = Summaries::new(micros());
        for range in [0..2, 2..6] {
            let mut part = Summaries::new(micros());
            part.update_batch(
                &[
                    t.slice(range.start, range.len()),
                    a.slice(range.start, range.len()),
                ],
                &g[range.clone()],
                None,
                3,
            )
            .unwrap();
            let state = part.state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        }
        assert_eq!(rows(&merged.evaluate(EmitTo::All).unwrap()), expected);
    }

    #[test]
    fn a_sum_past_the_decimal_range_is_an_error() {
        let mut acc = Summaries::new(micros());
        let err = acc
            .update_batch(
                &[ts(&[Some(1), Some(2)]), floats(&[Some(9e27), Some(9e27)])],
                &[0, 0],
                None,
                1,
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("rfm_summary: the sum reaches 1e28 in magnitude"),
            "{err}"
        );
        let err = acc
            .update_batch(&[ts(&[Some(1)]), floats(&[Some(f64::NAN)])], &[0], None, 1)
            .unwrap_err();
        assert!(err.to_string().contains("rfm_summary: value NaN"), "{err}");
    }

    /// `monetary` is computed without building a DECIMAL column: the same bits as arrow's
    /// DECIMAL(38, 10) → DOUBLE cast, for sums over 30 decades and both signs.
    #[test]
    fn monetary_has_the_bits_of_arrows_decimal_cast() {
        let mut x = 11u64;
        let mut units: Vec<i128> = vec![
            0,
            1,
            -1,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            MAX_UNITS,
            -MAX_UNITS,
        ];
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let digits = (x >> 58) as u32 % 38;
            let v = i128::from(x >> 1) * i128::from(x >> 33) % 10i128.pow(digits).max(2);
            units.push(if x & 1 == 0 { v } else { -v });
        }
        let decimals = Decimal128Array::from(units.clone()).with_data_type(DECIMAL);
        let arrow = cast(&decimals, &DataType::Float64).unwrap();
        let arrow = arrow.as_primitive::<Float64Type>();
        for (i, &u) in units.iter().enumerate() {
            assert_eq!(units_to_f64(u).to_bits(), arrow.value(i).to_bits(), "{u}");
        }
    }

    /// The rule's one-phase plan gives the two-phase answer (NULL timestamps and amounts,
    /// a FILTER, many small batches over four partitions); a GROUP BY with another
    /// aggregate beside `rfm_summary`, and the registered (two-phase) `rfm_summary`, keep
    /// their two phases; `rfm(...)` is one-phase without a memory limit, two-phase under one.
    #[tokio::test]
    async fn one_phase_plan_gives_the_two_phase_answer() {
        use datafusion::arrow::util::pretty::pretty_format_batches;
        use datafusion::execution::memory_pool::GreedyMemoryPool;
        use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
        use datafusion::physical_plan::{collect, displayable};
        use datafusion::prelude::{SessionConfig, SessionContext};

        let config = || {
            SessionConfig::new()
                .with_target_partitions(4)
                .with_batch_size(64)
        };
        let with_rule = |runtime: Arc<RuntimeEnv>| {
            SessionContext::new_with_state(crate::session_state(config(), runtime))
        };
        let one_phase = with_rule(Arc::new(RuntimeEnv::default()));
        let registered = with_rule(Arc::new(RuntimeEnv::default()));
        let limited = with_rule(
            RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(GreedyMemoryPool::new(1 << 30)))
                .build_arc()
                .unwrap(),
        );
        let without = SessionContext::new_with_config(config());
        let table = "CREATE TABLE o AS SELECT (i * 7919) % 701 AS c, \
                       CASE WHEN i % 17 = 0 THEN NULL ELSE to_timestamp_seconds(1700000000 + i * 3600) END AS ts, \
                       CASE WHEN i % 13 = 0 THEN NULL ELSE (i % 1000) / 100.0 END AS amount \
                     FROM generate_series(1, 20000) t(i)";
        for ctx in [&one_phase, &registered, &limited, &without] {
            crate::register_on_context(ctx).unwrap();
            ctx.sql(table).await.unwrap().collect().await.unwrap();
        }
        // SQL's `rfm_summary` is the one-phase instance in this context
        one_phase.register_udaf(rfm_summary_one_phase().as_ref().clone());
        let run = |ctx: &SessionContext, sql: &str| {
            let (ctx, sql) = (ctx.clone(), sql.to_string());
            async move {
                let plan = ctx
                    .sql(&sql)
                    .await
                    .unwrap()
                    .create_physical_plan()
                    .await
                    .unwrap();
                let shape = displayable(plan.as_ref()).indent(false).to_string();
                let batches = collect(plan, ctx.task_ctx()).await.unwrap();
                (shape, pretty_format_batches(&batches).unwrap().to_string())
            }
        };
        let one = "SELECT c, rfm_summary(ts, amount) AS s, \
                     rfm_summary(ts, amount) FILTER (WHERE c % 2 = 0) AS e \
                   FROM o GROUP BY c ORDER BY c";
        let (shape, got) = run(&one_phase, one).await;
        assert!(shape.contains("mode=SinglePartitioned"), "{shape}");
        assert!(!shape.contains("mode=Partial"), "{shape}");
        let (shape, expected) = run(&without, one).await;
        assert!(shape.contains("mode=Partial"), "{shape}");
        assert_eq!(got, expected);
        assert_eq!(got.lines().count(), 701 + 4, "one row per key");
        let (shape, got) = run(&registered, one).await;
        assert!(shape.contains("mode=Partial"), "{shape}");
        assert_eq!(got, expected);

        let two =
            "SELECT c, rfm_summary(ts, amount) AS s, count(*) AS n FROM o GROUP BY c ORDER BY c";
        let (shape, got) = run(&one_phase, two).await;
        assert!(shape.contains("mode=Partial"), "{shape}");
        assert_eq!(got, run(&without, two).await.1);

        let rfm = "SELECT * FROM rfm('o', 'c', 'ts', 'amount') ORDER BY customer";
        let (shape, expected) = run(&registered, rfm).await;
        assert!(shape.contains("mode=SinglePartitioned"), "{shape}");
        let (shape, got) = run(&limited, rfm).await;
        assert!(
            shape.contains("gby=[c@0 as customer], aggr=[rfm_summary"),
            "{shape}"
        );
        assert!(shape.contains("mode=Partial"), "{shape}");
        assert!(!shape.contains("mode=SinglePartitioned"), "{shape}");
        assert_eq!(got, expected);
    }

    /// Under a memory limit DataFusion 55's `RepartitionExec` writes the batches it cannot
    /// reserve memory for to spill files; when two inputs spilled at once its reader could
    /// wait on one open file while the batch it needed was in another, and the query never
    /// ended (apache/datafusion#24883; `item_similarity`'s 'spill' plan hung so in CI). The
    /// sessions the crate builds finish a spill file per batch
    /// ([`crate::REPARTITION_SPILL_FILE_BYTES`]), which leaves no file open.
    ///
    /// The most exposed plan is this rule's, the reason `rfm(...)` keeps two phases under a
    /// limit: every order row hash-partitioned on the customer into a spilling aggregate.
    /// Here `rfm(...)` plans it under a fair 2 MB pool that does not report its limit, on
    /// the memory tests' lake (540k orders), as the command line's session would (two
    /// partitions, 8192-row batches, a spill folder). With DataFusion's 128 MiB files this
    /// test hung in its second run (and the same plan in the command line's session in 4 of
    /// 12 runs); with a file per batch, in none of 36 (nor 60 in that session). Each run here
    /// must end, with the answer or the pool's error, and the exchange must have spilled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_phase_exchange_spills_without_hanging() {
        use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
        use datafusion::execution::memory_pool::{
            FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
        };
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
        use datafusion::prelude::SessionContext;

        /// A fair pool that reports no limit, so that `rfm(...)` plans one phase.
        #[derive(Debug)]
        struct HiddenLimit(FairSpillPool);
        impl std::fmt::Display for HiddenLimit {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "hidden_limit({})", self.0)
            }
        }
        impl MemoryPool for HiddenLimit {
            fn name(&self) -> &str {
                "hidden_limit"
            }
            fn register(&self, consumer: &MemoryConsumer) {
                self.0.register(consumer)
            }
            fn unregister(&self, consumer: &MemoryConsumer) {
                self.0.unregister(consumer)
            }
            fn grow(&self, reservation: &MemoryReservation, additional: usize) {
                self.0.grow(reservation, additional)
            }
            fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
                self.0.shrink(reservation, shrink)
            }
            fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
                self.0.try_grow(reservation, additional)
            }
            fn reserved(&self) -> usize {
                self.0.reserved()
            }
            fn memory_limit(&self) -> MemoryLimit {
                MemoryLimit::Infinite
            }
        }

        fn exchange_spills(plan: &dyn ExecutionPlan) -> usize {
            let own = match plan.name() {
                "RepartitionExec" => plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0),
                _ => 0,
            };
            own + plan
                .children()
                .into_iter()
                .map(|c| exchange_spills(c.as_ref()))
                .sum::<usize>()
        }

        let dir = tempfile::tempdir().unwrap();
        let (spill, lake) = (dir.path().join("spill"), dir.path().join("lake"));
        std::fs::create_dir(&spill).unwrap();
        let config = crate::session_config()
            .with_target_partitions(2)
            .with_batch_size(8192);
        let size = config.options().execution.max_spill_file_size_bytes;
        assert_eq!(size.get(), crate::REPARTITION_SPILL_FILE_BYTES);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(HiddenLimit(FairSpillPool::new(2 << 20))))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill])),
            )
            .build_arc()
            .unwrap();
        let ctx = SessionContext::new_with_state(crate::session_state(config, runtime));
        crate::register_on_context(&ctx).unwrap();
        let options = crate::generate::GenerateOptions {
            customers: 60_000,
            seed: 11,
            ..Default::default()
        };
        crate::generate::generate(&lake, &options).unwrap();
        crate::lake::register_lake(&ctx, lake.to_str().unwrap())
            .await
            .unwrap();
        let sql = "SELECT segment, count(*), sum(monetary) FROM \
                     rfm('orders', 'customer_id', 'order_ts', 'amount', TIMESTAMP '2026-01-01') \
                   GROUP BY segment";
        let (mut spilled, mut completed) = (0, 0);
        for run in 0..12 {
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let shape = displayable(plan.as_ref()).indent(false).to_string();
            assert!(shape.contains("mode=SinglePartitioned"), "{shape}");
            let hung = std::time::Duration::from_secs(60);
            match tokio::time::timeout(hung, collect(Arc::clone(&plan), ctx.task_ctx())).await {
                Ok(Ok(_)) => completed += 1,
                Ok(Err(e)) => assert!(e.to_string().contains("Resources exhausted"), "{e}"),
                Err(_) => panic!("run {run}: no result after {hung:?}: hung"),
            }
            spilled += exchange_spills(plan.as_ref());
        }
        eprintln!("12 runs: {completed} completed, {spilled} exchange spills");
        assert!(
            spilled > 0,
            "the exchange never spilled: the test no longer covers the hang"
        );
    }
}
