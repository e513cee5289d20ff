//! `exact_sum(value)`: the sum of doubles that does not depend on the order rows arrive in
//! (partitioning, batch size, spilling), for money columns stored as floats. Each value is
//! rounded to 10 decimal places and the integers are added exactly — the same result, bit
//! for bit, as `CAST(sum(CAST(value AS DECIMAL(38, 10))) AS DOUBLE)`, without the per-row
//! cast kernel (`rfm` spends its largest share over the bare scan there).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Decimal128Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

use crate::args::{Kind, Param, check_arg_types, doc_section, param, signature, state_field};

const NAME: &str = "exact_sum";

const PARAMS: [Param; 1] = [param("value", Kind::Number)];

/// Values are added in units of 1e-10.
const UNITS_PER_ONE: f64 = 1e10;
pub(crate) const DECIMAL: DataType = DataType::Decimal128(38, 10);
/// The largest magnitude a DECIMAL(38, 10) holds, in units.
pub(crate) const MAX_UNITS: i128 = 10i128.pow(38) - 1;

/// The `exact_sum` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExactSum {
    signature: Signature,
}

impl Default for ExactSum {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 1, Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("RFM"),
        "Sum of a numeric column (coerced to DOUBLE) that is identical whatever the order rows \
         arrive in — partitioning, batch size, spilling, a distributed run: each value is rounded \
         to 10 decimal places (half away from zero) and the results are added exactly as 128-bit \
         integers, then returned as a DOUBLE. Bit for bit the same as \
         `CAST(sum(CAST(value AS DECIMAL(38, 10))) AS DOUBLE)`, faster. A plain `sum` of doubles \
         rounds after every addition, so its last digits change with the order. NULLs are \
         skipped; a group with no non-NULL value gives NULL. NaN, infinite values, values of \
         1e28 or more in magnitude and sums of 1e28 or more are errors naming the value. \
         `rfm_summary` (and so `rfm`) sums float amounts the same way.",
        "exact_sum(value)",
    )
    .with_argument(
        "value",
        "A number (integer, float or decimal; computed as a DOUBLE).",
    )
    .with_sql_example(
        "```sql\n\
         > SELECT exact_sum(x) = 0.6 AS exact_is_0_6, sum(x) = 0.6 AS float_sum_is_0_6\n\
         > FROM (VALUES (0.1::double), (0.2::double), (0.3::double)) t(x);\n\
         +--------------+------------------+\n\
         | exact_is_0_6 | float_sum_is_0_6 |\n\
         +--------------+------------------+\n\
         | true         | false            |\n\
         +--------------+------------------+\n\
         ```",
    )
    .with_related_udf("rfm_summary")
    .with_related_udf("rfm")
    .build()
});

impl AggregateUDFImpl for ExactSum {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(NAME, &PARAMS, arg_types)?;
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![state_field(args.name, "sum", DECIMAL)])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Ungrouped(Sums::default())))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Sums::default()))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// `v` in units of 1e-10, rounded half away from zero (as the Float64 → Decimal128 cast).
#[inline]
fn to_units(v: f64) -> Result<i128> {
    match small_units(v) {
        Some(u) => Ok(i128::from(u)),
        None => to_units_wide(NAME, v),
    }
}

/// [`to_units`] for values below ~9.2e8 in magnitude (`None` otherwise, and for NaN).
#[inline]
pub(crate) fn small_units(v: f64) -> Option<i64> {
    let y = UNITS_PER_ONE * v;
    // below 2^63 in magnitude: round through i64 with one truncating conversion instead of
    // libm's `round` and a 128-bit conversion. y − trunc(y) is exact (for |y| ≥ 2^52, y is
    // an integer and it is 0), so this is `y.round()` bit for bit.
    if y.abs() < 9.223_372_036_854_775e18 {
        let t = y as i64;
        let frac = y - t as f64;
        return Some(if frac >= 0.5 {
            t + 1
        } else if frac <= -0.5 {
            t - 1
        } else {
            t
        });
    }
    None
}

/// [`to_units`] for any value: an error naming it when it is not finite or 1e28 or more in
/// magnitude.
#[cold]
pub(crate) fn to_units_wide(function: &str, v: f64) -> Result<i128> {
    let units = (UNITS_PER_ONE * v).round();
    // below 1e38 units, i.e. values below 1e28 in magnitude
    if !units.is_finite() || units.abs() >= 1e38 {
        return exec_err!(
            "{function}: value {v} is not a finite number below 1e28 in magnitude (values are summed in units of 1e-10)"
        );
    }
    let units = units as i128;
    if units.abs() > MAX_UNITS {
        return exec_err!("{function}: value {v} is 1e28 or more in magnitude");
    }
    Ok(units)
}

#[inline]
fn add(sum: i128, units: i128) -> Result<i128> {
    match sum.checked_add(units) {
        Some(s) if s.abs() <= MAX_UNITS => Ok(s),
        _ => exec_err!("{NAME}: the sum reaches 1e28 in magnitude"),
    }
}

/// Per-group sums in units of 1e-10 and whether the group has seen a value.
#[derive(Debug, Default, Clone)]
struct Sums {
    sums: Vec<i128>,
    seen: Vec<bool>,
}

impl Sums {
    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, 0);
        self.seen.resize(groups, false);
    }

    fn decimals(sums: Vec<i128>, seen: Vec<bool>) -> Result<Decimal128Array> {
        Ok(Decimal128Array::new(sums.into(), Some(NullBuffer::from(seen))).with_data_type(DECIMAL))
    }
}

impl GroupsAccumulator for Sums {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let values = cast(&values[0], &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let no_nulls = values.null_count() == 0 && opt_filter.is_none();
        if no_nulls {
            for (&g, &v) in group_indices.iter().zip(values.values()) {
                self.sums[g] = add(self.sums[g], to_units(v)?)?;
                self.seen[g] = true;
            }
            return Ok(());
        }
        for (i, (&g, &v)) in group_indices.iter().zip(values.values()).enumerate() {
            if values.is_null(i) || opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                continue;
            }
            self.sums[g] = add(self.sums[g], to_units(v)?)?;
            self.seen[g] = true;
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
        let partial = values[0].as_primitive::<Decimal128Type>();
        for (i, &g) in group_indices.iter().enumerate() {
            if partial.is_valid(i) {
                self.sums[g] = add(self.sums[g], partial.value(i))?;
                self.seen[g] = true;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let decimals = Self::decimals(
            emit_to.take_needed(&mut self.sums),
            emit_to.take_needed(&mut self.seen),
        )?;
        // arrow's own conversion, so the doubles equal the DECIMAL route's bit for bit
        Ok(cast(&decimals, &DataType::Float64)?)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(Self::decimals(
            emit_to.take_needed(&mut self.sums),
            emit_to.take_needed(&mut self.seen),
        )?)])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // one group per row: the same code path
        let n = values[0].len();
        let mut single = Sums::default();
        single.update_batch(values, &(0..n).collect::<Vec<_>>(), opt_filter, n)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<i128>() + self.seen.capacity()
    }
}

/// A [`GroupsAccumulator`] that also serves as the ungrouped form ([`Ungrouped`]): it can
/// create group 0 without input and is cheap to copy when it holds one group.
pub(crate) trait OneGroup:
    GroupsAccumulator + Clone + std::fmt::Debug + Sync + 'static
{
    /// Make group 0 exist (an input without rows still has its one group).
    fn ensure_one_group(&mut self);
}

impl OneGroup for Sums {
    fn ensure_one_group(&mut self) {
        self.resize(1);
    }
}

/// The ungrouped [`Accumulator`] of a [`OneGroup`] accumulator: every row in group 0. Its
/// state and result are taken from a copy, so they can be asked for again (a window
/// evaluates after every row).
#[derive(Debug)]
pub(crate) struct Ungrouped<G>(pub G);

impl<G: OneGroup> Accumulator for Ungrouped<G> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0
            .update_batch(values, &vec![0; values[0].len()], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.merge_batch(states, &vec![0; states[0].len()], 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.ensure_one_group();
        self.0
            .clone()
            .state(EmitTo::All)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.ensure_one_group();
        ScalarValue::try_from_array(&self.0.clone().evaluate(EmitTo::All)?, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.size()
    }
}

/// The `exact_sum` aggregate (a shared singleton).
pub fn exact_sum() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(ExactSum::default())));
    Arc::clone(&UDAF)
}

#[cfg(test)]
mod tests {
    use super::{NAME, UNITS_PER_ONE, to_units, to_units_wide};

    /// The i64 fast path rounds exactly as `f64::round` through i128 (the route the
    /// Float64 → Decimal128 cast takes): halves, the largest value below a half, the
    /// 2^52 and 2^63 boundaries, negatives, and pseudo-random values over 40 decades.
    #[test]
    fn fast_rounding_is_the_wide_rounding_bit_for_bit() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            0.25e-10,
            0.5e-10,
            1.5e-10,
            2.5e-10,
            -2.5e-10,
            0.49999999999999994e-10,
            -0.49999999999999994e-10,
            4_503_599_627_370_496.0 / UNITS_PER_ONE,
            4_503_599_627_370_497.0 / UNITS_PER_ONE,
            9.223_372_036_854_775e8,
            9.223_372_036_854_776e8,
            -9.223_372_036_854_775e8,
            123_456_789.123_456_79,
            f64::MIN_POSITIVE,
        ];
        for y in [
            0.5,
            1.5,
            2.5,
            1e6 + 0.5,
            2f64.powi(51) + 0.5,
            2f64.powi(52) - 0.5,
        ] {
            values.push(y / UNITS_PER_ONE);
            values.push(-y / UNITS_PER_ONE);
        }
        let mut x = 7u64;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64;
            let exponent = ((x >> 3) % 40) as i32 - 14;
            let sign = if x & 1 == 0 { 1.0 } else { -1.0 };
            values.push(sign * mantissa * 10f64.powi(exponent));
        }
        for v in values {
            assert_eq!(
                to_units(v).unwrap(),
                to_units_wide(NAME, v).unwrap(),
                "{v:e}"
            );
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30] {
            assert!(to_units(bad).is_err(), "{bad}");
        }
    }
}
