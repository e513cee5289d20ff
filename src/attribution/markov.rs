//! `markov_attribution(path, conversions, value [, non_conversions [, order [, collapse_repeats]]])`:
//! exact Markov-chain removal effects as an aggregate whose state (transition counts) merges.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, StructArray};

use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Fields, Float64Type,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::input::JourneyRows;
use super::model::MarkovCounts;
use crate::args::{
    Kind, Param, aggregate_bool_literal, aggregate_literal, check_arg_types, doc_section, list_of,
    param, scalar_list, signature, state_field,
};

const NAME: &str = "markov_attribution";
/// Highest supported order.
pub const MAX_ORDER: i64 = 8;

const PARAMS: [Param; 6] = [
    param("path", Kind::StringList),
    param("conversions", Kind::Number),
    param("value", Kind::Number),
    param("non_conversions", Kind::Number),
    param("order", Kind::Integer),
    param("collapse_repeats", Kind::Boolean),
];

/// The `markov_attribution` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MarkovAttribution {
    signature: Signature,
}

impl Default for MarkovAttribution {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 3, Volatility::Immutable),
        }
    }
}

pub fn result_item_fields() -> Fields {
    Fields::from(vec![
        Field::new("channel", DataType::Utf8, true),
        Field::new("removal_effect", DataType::Float64, false),
        Field::new("conversions", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ])
}

pub fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(result_item_fields()),
        true,
    )))
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "Data-driven attribution by Markov-chain removal effects, computed exactly. One row per \
         journey (`conversions` > 0 means it converted; without `non_conversions` a row with 0 \
         conversions is one non-converting journey) or one row per distinct path with counts \
         (ChannelAttribution's input format: `conversions`, `non_conversions`, total `value`). A \
         NULL `non_conversions` also means one journey, so `non_conversions => NULL, order => 2` \
         sets the order for one-row-per-journey input (DataFusion needs every parameter before a \
         named one).\n\n\
         The chain's states are the last `order` channels (default 1, up to 8), plus start, \
         conversion and null. Removal effect of channel c = 1 − P(conversion | every state \
         containing c redirects to null) / P(conversion). Absorption probabilities are solved \
         exactly (Gauss-Seidel on the absorbing chain to 1e-14, in a canonical state order so results are bit-identical whatever the partitioning; never by simulation, so the same \
         input always gives the same numbers); a solve that does not converge is an error. \
         Attributed conversions and value are the removal-effect shares of the total conversions \
         and total value (value is shared like conversions; the total value is summed exactly in units of 1e-9, so \
         results are bit-identical whatever the partitioning for integer counts). Consecutive repeats of a channel are \
         kept as self-loops unless `collapse_repeats => true`.\n\n\
         Returns a list of structs {channel, removal_effect, conversions, value}, one per channel \
         seen, sorted by channel; `unnest` it to get rows. NULL paths are skipped; NULL channels \
         are a channel named NULL; NULL counts and values count as 0; negative counts are an \
         error. With no conversions at all every removal effect and credit is 0 (never NaN). The \
         state is the transition counts, so it merges across partitions and works with GROUP BY.",
        "markov_attribution(path, conversions, value [, non_conversions [, order [, collapse_repeats]]])",
    )
    .with_argument("path", "The journey's channels in time order, a list of strings.")
    .with_argument("conversions", "Conversions of the journey (or of all journeys with this path).")
    .with_argument("value", "Conversion value of the journey (or total value of the path).")
    .with_argument("non_conversions", "Journeys with this path that did not convert (path-count input).")
    .with_argument("order", "Markov order k, an integer literal in 1..8; default 1.")
    .with_argument("collapse_repeats", "Boolean literal: merge consecutive repeats of a channel; default false.")
    .with_sql_example(
        "```sql\n\
         > SELECT c.channel AS channel, round(c.removal_effect, 4) AS re, round(c.conversions, 4) AS conv\n\
         > FROM (SELECT unnest(markov_attribution(path, conv, val)) AS c\n\
         >       FROM (VALUES (['A', 'B'], 1, 10.0), (['B'], 0, 0.0)) t(path, conv, val))\n\
         > ORDER BY channel;\n\
         +---------+-----+--------+\n\
         | channel | re  | conv   |\n\
         +---------+-----+--------+\n\
         | A       | 0.5 | 0.3333 |\n\
         | B       | 1.0 | 0.6667 |\n\
         +---------+-----+--------+\n\
         ```",
    )
    .with_related_udf("attribution_weights")
    .build()
});

fn literal_arg(args: &AccumulatorArgs, i: usize) -> Result<Option<ScalarValue>> {
    aggregate_literal(NAME, args, i, PARAMS[i].name)
}

impl AggregateUDFImpl for MarkovAttribution {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(NAME, &PARAMS, arg_types)?;
        Ok(result_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, t: DataType| state_field(args.name, name, list_of(t));
        let num = |name: &str| state_field(args.name, name, DataType::Float64);
        Ok(vec![
            list("from", DataType::Utf8),
            list("to", DataType::Utf8),
            list("weight", DataType::Float64),
            num("conversions"),
            state_field(args.name, "value", DataType::Decimal128(38, 9)),
            num("journeys"),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let order = match literal_arg(&args, 4)? {
            None => 1,
            Some(v) if v.is_null() => 1,
            Some(v) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(k)) if (1..=MAX_ORDER).contains(&k) => k as usize,
                other => {
                    return plan_err!(
                        "{NAME}: argument 'order' must be an integer in 1..{MAX_ORDER}, got {other}"
                    );
                }
            },
        };
        let collapse = aggregate_bool_literal(NAME, &args, 5, PARAMS[5].name)?;
        Ok(Box::new(MarkovAccumulator {
            counts: MarkovCounts::new(order),
            collapse,
            has_non_conversions: args.exprs.len() >= 4,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[derive(Debug)]
struct MarkovAccumulator {
    counts: MarkovCounts,
    collapse: bool,
    has_non_conversions: bool,
}

impl Accumulator for MarkovAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = if self.has_non_conversions { 4 } else { 3 };
        let rows = JourneyRows::new(NAME, &values[..n])?;
        let mut path: Vec<&str> = Vec::new();
        for i in 0..rows.len() {
            let Some(c) = rows.counts(i)? else { continue };
            rows.channels(i, &mut path)?;
            self.counts.add_path(
                &path,
                c.conversions,
                c.non_conversions,
                c.value,
                self.collapse,
            );
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let from = states[0].as_list::<i32>();
        let to = states[1].as_list::<i32>();
        let weight = states[2].as_list::<i32>();
        let conversions = states[3].as_primitive::<Float64Type>();
        let value = states[4].as_primitive::<Decimal128Type>();
        let journeys = states[5].as_primitive::<Float64Type>();
        for i in 0..from.len() {
            if from.is_null(i) {
                continue;
            }
            let f = from.value(i);
            let f = f.as_string::<i32>();
            let t = to.value(i);
            let t = t.as_string::<i32>();
            let w = weight.value(i);
            let w = w.as_primitive::<Float64Type>();
            for j in 0..f.len() {
                self.counts.add_encoded(f.value(j), t.value(j), w.value(j));
            }
            self.counts.total_conversions += conversions.value(i);
            self.counts.value_nanos += value.value(i);
            self.counts.journeys += journeys.value(i);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut entries: Vec<(String, String, f64)> = self
            .counts
            .transitions
            .iter()
            .map(|(&(f, t), &w)| (self.counts.encode_state(f), self.counts.encode_state(t), w))
            .collect();
        entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let list = scalar_list;
        Ok(vec![
            list(Arc::new(StringArray::from_iter_values(
                entries.iter().map(|e| e.0.as_str()),
            ))),
            list(Arc::new(StringArray::from_iter_values(
                entries.iter().map(|e| e.1.as_str()),
            ))),
            list(Arc::new(Float64Array::from_iter_values(
                entries.iter().map(|e| e.2),
            ))),
            ScalarValue::Float64(Some(self.counts.total_conversions)),
            ScalarValue::Decimal128(Some(self.counts.value_nanos), 38, 9),
            ScalarValue::Float64(Some(self.counts.journeys)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (effects, converged) = self.counts.removal_effects();
        if !converged {
            return exec_err!(
                "{NAME}: the absorbing-chain solve did not converge to 1e-14 (100000 sweeps)"
            );
        }
        let total: f64 = effects.iter().sum();
        let mut rows: Vec<(String, f64, f64, f64)> = self
            .counts
            .channels
            .iter()
            .zip(&effects)
            .map(|(c, &re)| {
                let share = if total > 0.0 { re / total } else { 0.0 };
                (
                    c.clone(),
                    re,
                    share * self.counts.total_conversions,
                    share * self.counts.total_value(),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let items = StructArray::new(
            result_item_fields(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
            None,
        );
        Ok(scalar_list(Arc::new(items)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.size()
    }
}

/// The `markov_attribution` aggregate (a shared singleton).
pub fn markov_attribution() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(MarkovAttribution::default())));
    Arc::clone(&UDAF)
}
