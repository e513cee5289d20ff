//! `quantile_score(value, bins [, descending])`: tie-aware quantile scores as a
//! window function.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::make_comparator;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::{SortOptions, cast, sort_to_indices};
use datafusion::arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Field, FieldRef, Float64Type,
    Int64Type, UInt64Type,
};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::expressions::Literal;

use super::model::{f64_key, i64_key, quantile_scores, quantile_scores_by_key};
use crate::args::{Kind, Param, check_arg_fields, doc_section, param, signature};

const NAME: &str = "quantile_score";

const PARAMS: [Param; 3] = [
    param("value", Kind::Orderable),
    param("bins", Kind::Integer),
    param("descending", Kind::Boolean),
];

/// The `quantile_score` window function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantileScore {
    signature: Signature,
}

impl Default for QuantileScore {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantileScore {
    pub fn new() -> Self {
        Self {
            signature: signature(&PARAMS, 2, Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("RFM"),
        "A tie-aware quantile score in 1..bins for each row of the window partition. Equal values \
         always get equal scores (unlike `NTILE`, which splits ties across scores arbitrarily).\n\n\
         Definition: with n the number of non-NULL values in the partition and r the rank of the \
         value among them in ascending order, ties taking their lowest rank (as SQL `RANK`), \
         score = 1 + floor(bins·(r − 1)/n). For distinct values this gives equal-sized bins. \
         With `descending => true` values are ranked in descending order (for recency: fewer days \
         since the last order scores higher).\n\n\
         NULL values get a NULL score and are not counted in n. NaN ranks above every number \
         (IEEE total order, as in `ORDER BY`). A partition of one row scores 1. The value may be \
         any orderable type (numbers, decimals, strings, dates, timestamps). `bins` must be a \
         positive integer literal and `descending` a boolean literal; anything else is a planning \
         error. The window needs no `ORDER BY` and ignores any frame: the whole partition is \
         ranked (sorting it costs O(n log n)).\n\n\
         Memory: over the whole input (`OVER ()`) on integers, floats, decimals of up to 18 \
         digits, dates, times, timestamps or durations, sessions with the crate's physical optimizer rules (the command line, \
         `session_context()`) score in a streaming operator, `QuantileScoreExec`, within the \
         memory pool: 8 to 16 bytes per non-NULL value and scored column stay in memory (values \
         spanning a narrow range, such as day or order counts, as one count per value of the \
         range), the rows are spilled to disk when the pool is full. Otherwise (wider decimals, \
         strings, `PARTITION BY`, a volatile value) DataFusion's window operator holds the whole \
         partition, outside the memory limit.",
        "quantile_score(value, bins [, descending]) OVER ([PARTITION BY ...])",
    )
    .with_argument("value", "The value to score; NULLs are skipped.")
    .with_argument("bins", "Number of scores, a positive integer literal (5 for quintiles).")
    .with_argument(
        "descending",
        "Boolean literal, default false. When true the largest value gets score 1.",
    )
    .with_sql_example(
        "```sql\n\
         > SELECT x, quantile_score(x, 3) OVER () AS q, quantile_score(x, 3, descending => true) OVER () AS d\n\
         > FROM (VALUES (1), (2), (2), (2), (3), (4), (NULL)) t(x) ORDER BY x;\n\
         +------+------+------+\n\
         | x    | q    | d    |\n\
         +------+------+------+\n\
         | 1    | 1    | 3    |\n\
         | 2    | 1    | 2    |\n\
         | 2    | 1    | 2    |\n\
         | 2    | 1    | 2    |\n\
         | 3    | 3    | 1    |\n\
         | 4    | 3    | 1    |\n\
         | NULL | NULL | NULL |\n\
         +------+------+------+\n\
         ```",
    )
    .with_related_udf("rfm_segment")
    .with_related_udf("rfm")
    .build()
});

fn literal<'a>(
    args: &'a PartitionEvaluatorArgs,
    index: usize,
    what: &str,
) -> Result<Option<&'a ScalarValue>> {
    match args.input_exprs().get(index) {
        None => Ok(None),
        Some(e) => match e.downcast_ref::<Literal>() {
            Some(l) => Ok(Some(l.value())),
            None => {
                plan_err!("{NAME}: argument '{what}' must be a literal, got the expression {e}")
            }
        },
    }
}

impl WindowUDFImpl for QuantileScore {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        check_arg_fields(NAME, &PARAMS, field_args.input_fields())?;
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            true,
        )))
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        // DataFusion creates one evaluator while planning, so these are planning errors
        let (bins, descending) =
            options(literal(&args, 1, "bins")?, literal(&args, 2, "descending")?)?;
        Ok(Box::new(QuantileEvaluator { bins, descending }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// `bins` and `descending` from their literals (`descending` absent: false).
pub(crate) fn options(
    bins: Option<&ScalarValue>,
    descending: Option<&ScalarValue>,
) -> Result<(u64, bool)> {
    let bins = match bins {
        Some(v) if !v.is_null() => match v.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(b)) if b >= 1 => b as u64,
            other => {
                return plan_err!(
                    "{NAME}: argument 'bins' must be a positive integer, got {other}"
                );
            }
        },
        _ => return plan_err!("{NAME}: argument 'bins' must be a positive integer, got NULL"),
    };
    let descending = match descending {
        None => false,
        Some(ScalarValue::Boolean(Some(b))) => *b,
        Some(other) => {
            return plan_err!("{NAME}: argument 'descending' must be true or false, got {other}");
        }
    };
    Ok((bins, descending))
}

#[derive(Debug)]
struct QuantileEvaluator {
    bins: u64,
    descending: bool,
}

impl PartitionEvaluator for QuantileEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let values = values
            .first()
            .ok_or_else(|| exec_datafusion_err!("{NAME}: missing the value argument"))?;
        if let Some(keys) = order_keys(values)? {
            let nulls = values.logical_nulls();
            let valid: Option<Vec<bool>> = nulls.as_ref().map(|n| n.iter().collect());
            let scores =
                quantile_scores_by_key(&keys, valid.as_deref(), self.bins, self.descending);
            return Ok(Arc::new(Int64Array::new(scores.into(), nulls)));
        }
        // any other orderable type: arrow's sort and comparator
        let options = SortOptions {
            descending: self.descending,
            nulls_first: false,
        };
        let indices = sort_to_indices(values, Some(options), None)?;
        let non_null = num_rows - values.null_count();
        let sorted: Vec<usize> = indices.values()[..non_null]
            .iter()
            .map(|&i| i as usize)
            .collect();
        let cmp = make_comparator(values.as_ref(), values.as_ref(), options)?;
        let scores = quantile_scores(&sorted, |a, b| cmp(a, b).is_eq(), num_rows, self.bins);
        Ok(Arc::new(Int64Array::from(scores)))
    }
}

/// Whether [`order_keys`] gives keys for values of type `t`: numbers (decimals of up to
/// 18 digits, whose unscaled values fit an `i64` when they keep their declared
/// precision), dates, times, timestamps, durations.
pub(crate) fn has_order_keys(t: &DataType) -> bool {
    t.is_floating()
        || t.is_integer()
        || matches!(t, DataType::Decimal128(p, _) if *p <= 18)
        || matches!(t, DataType::Decimal32(_, _) | DataType::Decimal64(_, _))
        || matches!(
            t,
            DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Duration(_)
        )
}

/// Order-preserving u64 keys for integers, floats, decimals of up to 18 digits, dates,
/// times, timestamps and durations (the fast path; NULL slots get arbitrary keys); `None`
/// for other types.
pub(crate) fn order_keys(values: &ArrayRef) -> Result<Option<Vec<u64>>> {
    let t = values.data_type();
    if let DataType::Decimal128(p, _) = t {
        if *p > 18 {
            return Ok(None);
        }
        // one scale for the whole column: the unscaled values order as the values do, and
        // with at most 18 digits they fit an i64 — unless a value breaks its declared
        // precision (Arrow does not check): then no keys
        let v = values.as_primitive::<Decimal128Type>();
        let fits = |(i, &x): (usize, &i128)| v.is_null(i) || i64::try_from(x).is_ok();
        if !v.values().iter().enumerate().all(fits) {
            return Ok(None);
        }
        return Ok(Some(
            v.values().iter().map(|&x| i64_key(x as i64)).collect(),
        ));
    }
    if let DataType::Decimal64(_, _) = t {
        let v = values.as_primitive::<Decimal64Type>();
        return Ok(Some(v.values().iter().map(|&x| i64_key(x)).collect()));
    }
    if let DataType::Decimal32(_, _) = t {
        let v = values.as_primitive::<Decimal32Type>();
        return Ok(Some(
            v.values().iter().map(|&x| i64_key(i64::from(x))).collect(),
        ));
    }
    if t.is_floating() {
        let v = cast(values, &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        return Ok(Some(v.values().iter().map(|&x| f64_key(x)).collect()));
    }
    if t == &DataType::UInt64 {
        let v = values.as_primitive::<UInt64Type>();
        return Ok(Some(v.values().to_vec()));
    }
    // the other integers, dates, times, timestamps and durations
    if has_order_keys(t) {
        let v = match t {
            DataType::Date32 | DataType::Time32(_) => {
                cast(&cast(values, &DataType::Int32)?, &DataType::Int64)?
            }
            _ => cast(values, &DataType::Int64)?,
        };
        let v = v.as_primitive::<Int64Type>();
        return Ok(Some(v.values().iter().map(|&x| i64_key(x)).collect()));
    }
    Ok(None)
}

/// [`order_keys`] of the non-NULL values only (compacted in place).
pub(crate) fn non_null_keys(values: &ArrayRef) -> Result<Option<Vec<u64>>> {
    let Some(mut keys) = order_keys(values)? else {
        return Ok(None);
    };
    if let Some(nulls) = values.logical_nulls() {
        let mut kept = 0;
        for i in nulls.valid_indices() {
            keys[kept] = keys[i];
            kept += 1;
        }
        keys.truncate(kept);
    }
    Ok(Some(keys))
}

/// The `quantile_score` window function (a shared singleton).
pub fn quantile_score() -> Arc<WindowUDF> {
    static UDWF: LazyLock<Arc<WindowUDF>> =
        LazyLock::new(|| Arc::new(WindowUDF::new_from_impl(QuantileScore::new())));
    Arc::clone(&UDWF)
}
