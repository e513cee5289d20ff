//! `clv_summary(ts, amount, as_of [, period])`: lifetimes' `summary_data_from_transaction_data`
//! as an aggregate (one call per customer with `GROUP BY customer`).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int32Array,
    Int32Builder, Int64Array, ListBuilder, StringArray, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Fields, Float64Type, Int32Type, Int64Type, TimeUnit,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

use super::model::Period;
use crate::args::{
    Kind, Param, aggregate_literal, check_arg_types, doc_section, list_of, param, signature,
    state_field,
};

const NAME: &str = "clv_summary";

const PARAMS: [Param; 4] = [
    param("ts", Kind::Instant),
    param("amount", Kind::Number),
    param("as_of", Kind::Instant),
    param("period", Kind::String),
];

/// Amounts are summed exactly in units of 1e-9 (so sums do not depend on row order).
const SCALE: f64 = 1e9;
const DECIMAL: DataType = DataType::Decimal128(38, 9);

/// The struct `clv_summary` returns.
pub fn summary_fields() -> Fields {
    Fields::from(vec![
        Field::new("frequency", DataType::Int64, true),
        Field::new("recency", DataType::Int64, true),
        Field::new("T", DataType::Int64, true),
        Field::new("monetary_value", DataType::Float64, true),
        Field::new("period", DataType::Utf8, true),
    ])
}

/// The `clv_summary` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ClvSummary {
    signature: Signature,
}

impl Default for ClvSummary {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 3, Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Customer lifetime value"),
        "A customer's purchase history summarised for the buy-till-you-die models, with the \
         definitions of lifetimes' `summary_data_from_transaction_data`: purchase times and \
         `as_of` are floored to the period — `'day'` (default), `'week'` (weeks starting on \
         Monday, pandas' `W` periods) or `'month'` (calendar months) — as they read for dates and naive timestamps, in the zone's local time for zoned \
         timestamps; purchases in periods after \
         `as_of`'s are ignored. frequency = number of distinct periods with a purchase − 1; \
         recency = last − first period; T = as_of − first period (all whole periods); \
         monetary_value = mean over the repeat periods (all but the first) of the period's \
         amount sum, 0 when frequency is 0. Returns a struct {frequency, recency, T, \
         monetary_value, period}: the unit travels with the numbers into the model fits and \
         `customer_lifetime_value`. Amounts are summed exactly (in units of 1e-9), so results \
         are identical whatever the partitioning; negative amounts (refunds) are summed as \
         given. Rows with a NULL timestamp or as_of are skipped, a NULL amount counts the \
         purchase with amount 0; a customer with no purchase up to as_of gets NULL. `as_of` \
         must be the same for all rows of a group.",
        "clv_summary(ts, amount, as_of [, period])",
    )
    .with_argument("ts", "Purchase time, a timestamp or a date.")
    .with_argument("amount", "Purchase amount, a number.")
    .with_argument("as_of", "End of the observation period, a timestamp or a date (usually a constant or the latest purchase).")
    .with_argument("period", "`'day'`, `'week'` or `'month'`, a string literal; default `'day'`.")
    .with_sql_example(
        "```sql\n\
         > SELECT customer, clv_summary(ts, amount, DATE '2025-03-01') AS s\n\
         > FROM (VALUES (1, DATE '2025-01-01', 10.0), (1, DATE '2025-01-01', 5.0), (1, DATE '2025-01-11', 20.0),\n\
         >              (1, DATE '2025-02-01', 30.0), (2, DATE '2025-02-20', 8.0)) t(customer, ts, amount)\n\
         > GROUP BY customer ORDER BY customer;\n\
         +----------+-----------------------------------------------------------------------+\n\
         | customer | s                                                                     |\n\
         +----------+-----------------------------------------------------------------------+\n\
         | 1        | {frequency: 2, recency: 31, T: 59, monetary_value: 25.0, period: day} |\n\
         | 2        | {frequency: 0, recency: 0, T: 9, monetary_value: 0.0, period: day}    |\n\
         +----------+-----------------------------------------------------------------------+\n\
         ```",
    )
    .with_related_udf("bgnbd_fit")
    .with_related_udf("gamma_gamma_fit")
    .build()
});

fn period_arg(args: &AccumulatorArgs) -> Result<Period> {
    let Some(v) = aggregate_literal(NAME, args, 3, "period")? else {
        return Ok(Period::Day);
    };
    match v.try_as_str() {
        Some(None) => Ok(Period::Day),
        Some(Some(s)) => Period::parse(s).map_or_else(
            || plan_err!("{NAME}: argument 'period' must be 'day', 'week' or 'month', got '{s}'"),
            Ok,
        ),
        None => plan_err!("{NAME}: argument 'period' must be a string literal, got {v}"),
    }
}

impl AggregateUDFImpl for ClvSummary {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(NAME, &PARAMS, arg_types)?;
        Ok(DataType::Struct(summary_fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            state_field(args.name, "periods", list_of(DataType::Int32)),
            state_field(args.name, "first", DataType::Int32),
            state_field(args.name, "first_amount", DECIMAL),
            state_field(args.name, "total", DECIMAL),
            state_field(args.name, "as_of", DataType::Int32),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SummaryAccumulator(Summaries::new(period_arg(
            &args,
        )?))))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Summaries::new(period_arg(&args)?)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// One customer's state.
#[derive(Debug, Clone)]
struct State {
    /// Periods with a purchase (kept deduplicated when it would grow).
    periods: Vec<i32>,
    first: i32,
    first_amount: i128,
    total: i128,
    /// The as_of period (i32::MIN until set).
    as_of: i32,
}

impl Default for State {
    fn default() -> Self {
        Self {
            periods: Vec::new(),
            first: i32::MAX,
            first_amount: 0,
            total: 0,
            as_of: i32::MIN,
        }
    }
}

impl State {
    fn set_as_of(&mut self, as_of: i32) -> Result<()> {
        if self.as_of == i32::MIN {
            self.as_of = as_of;
        } else if self.as_of != as_of {
            return exec_err!("{NAME}: as_of must be the same for all rows of a group");
        }
        Ok(())
    }

    /// Add one purchase (or a merged partial state's periods). Returns the growth in bytes.
    fn add_period(&mut self, p: i32) -> usize {
        if self.periods.last() == Some(&p) {
            return 0;
        }
        let before = self.periods.capacity();
        if self.periods.len() == before && before >= 8 {
            self.periods.sort_unstable();
            self.periods.dedup();
        }
        self.periods.push(p);
        (self.periods.capacity() - before) * 4
    }

    fn add_amount(&mut self, first: i32, amount: i128) {
        if first < self.first {
            self.first = first;
            self.first_amount = amount;
        } else if first == self.first {
            self.first_amount += amount;
        }
    }

    fn finish(&mut self) {
        self.periods.sort_unstable();
        self.periods.dedup();
    }
}

/// The many-groups accumulator.
#[derive(Debug)]
struct Summaries {
    period: Period,
    groups: Vec<State>,
    heap: usize,
}

impl Summaries {
    fn new(period: Period) -> Self {
        Self {
            period,
            groups: Vec::new(),
            heap: 0,
        }
    }

    /// The period of every value of a date or timestamp column (any unit): dates and naive
    /// timestamps as they read, zoned timestamps in their zone's local time.
    fn periods(&self, a: &ArrayRef) -> Result<Vec<Option<i32>>> {
        use datafusion::arrow::array::timezone::Tz;
        use datafusion::arrow::datatypes::TimestampMicrosecondType;
        use datafusion::arrow::temporal_conversions::as_datetime_with_timezone;
        let zone: Option<Tz> = match a.data_type() {
            DataType::Timestamp(_, Some(tz)) => Some(tz.parse()?),
            _ => None,
        };
        // to naive microseconds: for a zoned column these are UTC
        let micros = cast(
            &cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
            &DataType::Int64,
        )?;
        let micros = micros.as_primitive::<Int64Type>();
        let mut out = Vec::with_capacity(micros.len());
        for i in 0..micros.len() {
            if micros.is_null(i) {
                out.push(None);
                continue;
            }
            let mut us = micros.value(i);
            if let Some(tz) = zone {
                let Some(local) = as_datetime_with_timezone::<TimestampMicrosecondType>(us, tz)
                else {
                    return exec_err!("{NAME}: timestamp out of range");
                };
                us = local.naive_local().and_utc().timestamp_micros();
            }
            match i32::try_from(self.period.of_micros(us)) {
                Ok(p) => out.push(Some(p)),
                Err(_) => return exec_err!("{NAME}: timestamp out of range"),
            }
        }
        Ok(out)
    }

    fn update(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<()> {
        let ts = self.periods(&values[0])?;
        let as_of = self.periods(&values[2])?;
        let amount = cast(&values[1], &DataType::Float64)?;
        let amount = amount.as_primitive::<Float64Type>();
        for (i, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                continue;
            }
            let (Some(p), Some(end)) = (ts[i], as_of[i]) else {
                continue;
            };
            let units = if amount.is_null(i) {
                0
            } else {
                to_units(amount.value(i))?
            };
            let state = &mut self.groups[g];
            state.set_as_of(end)?;
            if p > end {
                continue;
            }
            self.heap += state.add_period(p);
            state.add_amount(p, units);
            state.total += units;
        }
        Ok(())
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<State> {
        let mut taken = emit_to.take_needed(&mut self.groups);
        for s in &mut taken {
            self.heap = self.heap.saturating_sub(s.periods.capacity() * 4);
            s.finish();
        }
        taken
    }

    fn result(&self, states: &[State]) -> Result<ArrayRef> {
        let n = states.len();
        let mut frequency = Vec::with_capacity(n);
        let mut recency = Vec::with_capacity(n);
        let mut age = Vec::with_capacity(n);
        let mut monetary = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        for s in states {
            let Some(&last) = s.periods.last() else {
                frequency.push(0);
                recency.push(0);
                age.push(0);
                monetary.push(0.0);
                valid.push(false);
                continue;
            };
            let f = s.periods.len() as i64 - 1;
            frequency.push(f);
            recency.push(last as i64 - s.first as i64);
            age.push(s.as_of as i64 - s.first as i64);
            monetary.push(if f > 0 {
                (s.total - s.first_amount) as f64 / SCALE / f as f64
            } else {
                0.0
            });
            valid.push(true);
        }
        // the fields are NULL where the struct is (field access does not look at the parent)
        let nulls = Some(NullBuffer::from(valid));
        let int = |v: Vec<i64>| Arc::new(Int64Array::new(v.into(), nulls.clone())) as ArrayRef;
        let periods = StringArray::from_iter_values(std::iter::repeat_n(self.period.name(), n));
        let columns: Vec<ArrayRef> = vec![
            int(frequency),
            int(recency),
            int(age),
            Arc::new(Float64Array::new(monetary.into(), nulls.clone())),
            Arc::new(StringArray::new(
                periods.offsets().clone(),
                periods.values().clone(),
                nulls.clone(),
            )),
        ];
        Ok(Arc::new(StructArray::try_new(
            summary_fields(),
            columns,
            nulls,
        )?))
    }

    fn states(&self, states: &[State]) -> Result<Vec<ArrayRef>> {
        let mut periods = ListBuilder::new(Int32Builder::new());
        for s in states {
            periods.values().append_slice(&s.periods);
            periods.append(true);
        }
        let decimal = |f: &dyn Fn(&State) -> i128| -> Result<ArrayRef> {
            Ok(Arc::new(
                Decimal128Array::from_iter_values(states.iter().map(f)).with_data_type(DECIMAL),
            ))
        };
        Ok(vec![
            Arc::new(periods.finish()),
            Arc::new(Int32Array::from_iter_values(states.iter().map(|s| s.first))),
            decimal(&|s| s.first_amount)?,
            decimal(&|s| s.total)?,
            Arc::new(Int32Array::from_iter_values(states.iter().map(|s| s.as_of))),
        ])
    }

    fn merge(&mut self, values: &[ArrayRef], group_indices: &[usize]) -> Result<()> {
        let periods = values[0].as_list::<i32>();
        let items = periods.values().as_primitive::<Int32Type>();
        let first = values[1].as_primitive::<Int32Type>();
        let first_amount = values[2].as_primitive::<Decimal128Type>();
        let total = values[3].as_primitive::<Decimal128Type>();
        let as_of = values[4].as_primitive::<Int32Type>();
        for (i, &g) in group_indices.iter().enumerate() {
            let state = &mut self.groups[g];
            if as_of.value(i) != i32::MIN {
                state.set_as_of(as_of.value(i))?;
            }
            let (lo, hi) = (
                periods.value_offsets()[i] as usize,
                periods.value_offsets()[i + 1] as usize,
            );
            if lo == hi {
                continue;
            }
            for j in lo..hi {
                self.heap += state.add_period(items.value(j));
            }
            state.add_amount(first.value(i), first_amount.value(i));
            state.total += total.value(i);
        }
        Ok(())
    }
}

fn to_units(v: f64) -> Result<i128> {
    let units = (v * SCALE).round();
    if !units.is_finite() || units.abs() >= 1e29 {
        return exec_err!("{NAME}: amount {v} is not a finite number below 1e20 in magnitude");
    }
    Ok(units as i128)
}

impl GroupsAccumulator for Summaries {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, State::default);
        self.update(values, group_indices, opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to);
        self.result(&taken)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        self.states(&taken)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, State::default);
        self.merge(values, group_indices)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // one state per row: the same code path as a group of one row
        let mut single = Summaries::new(self.period);
        let n = values[0].len();
        single.groups.resize_with(n, State::default);
        let indices: Vec<usize> = (0..n).collect();
        single.update(values, &indices, opt_filter)?;
        single.states(&single.groups)
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<State>() + self.heap
    }
}

/// The single-group accumulator (no GROUP BY), sharing the groups code.
#[derive(Debug)]
struct SummaryAccumulator(Summaries);

impl Accumulator for SummaryAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values[0].len();
        self.0.groups.resize_with(1, State::default);
        self.0.update(values, &vec![0; n], None)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states[0].len();
        self.0.groups.resize_with(1, State::default);
        self.0.merge(states, &vec![0; n])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.groups.resize_with(1, State::default);
        let s = self.0.groups.clone();
        self.0
            .states(&s)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.groups.resize_with(1, State::default);
        let mut s = self.0.groups.clone();
        s.iter_mut().for_each(State::finish);
        ScalarValue::try_from_array(&self.0.result(&s)?, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }
}

/// The `clv_summary` aggregate (a shared singleton).
pub fn clv_summary() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(ClvSummary::default())));
    Arc::clone(&UDAF)
}
