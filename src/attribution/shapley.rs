//! `shapley_attribution(path, conversions, value [, non_conversions [, ordered]])`: exact
//! Shapley values with the conversion-rate characteristic function, as an aggregate whose
//! state (statistics per distinct channel set, or sequence when ordered) merges.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, StringArray, StructArray,
};

use datafusion::arrow::datatypes::{DataType, Decimal128Type, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::input::JourneyRows;
use super::markov::{result_item_fields, result_type};
use super::model::{CoalitionStats, SHAPLEY_MAX_CHANNELS, shapley_credit, to_nanos};
use crate::args::{
    Kind, Param, aggregate_bool_literal, check_arg_types, doc_section, list_of, param, scalar_list,
    signature, state_field,
};

const NAME: &str = "shapley_attribution";
const SEP: char = '\u{1f}';

const PARAMS: [Param; 5] = [
    param("path", Kind::StringList),
    param("conversions", Kind::Number),
    param("value", Kind::Number),
    param("non_conversions", Kind::Number),
    param("ordered", Kind::Boolean),
];

/// The `shapley_attribution` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShapleyAttribution {
    signature: Signature,
}

impl Default for ShapleyAttribution {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 3, Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "Shapley-value attribution over the journeys' distinct channels (Dalessandro et al. 2012; DP6 \
         MAM's `attribution_shapley` with `order=False`, without its `max_size` truncation). A \
         journey's coalition is its set of distinct channels; v(T) = conversions / journeys of the \
         coalition T (0 if T never converted). For every converting coalition C the Shapley values \
         of the game restricted to C are computed exactly from the observed v(T), T ⊆ C (a sparse \
         subset sum, never a loop over permutations), and C's conversions and value are split in \
         proportion to them (equally if they sum to 0), so totals are conserved. Exact for up to 20 \
         distinct channels in one journey; more is an error naming the coalition size.\n\n\
         `ordered => true` is the ordered variant (DP6 MAM's `order=True`): a journey's coalition \
         is its distinct channels in the order of their first touch, so A > B and B > A are \
         different coalitions, and v(T) for T ⊆ C is the rate of T's channels in C's order; \
         computed exactly the same way.\n\n\
         Input as for `markov_attribution` (one row per journey, or per path with \
         `non_conversions`; `non_conversions => NULL, ordered => true` for one row per journey). Returns a list of structs {channel, removal_effect, conversions, value} \
         sorted by channel, where for Shapley `removal_effect` holds the channel's share of the \
         credited conversions. NULL paths are skipped; NULL channels are a channel named NULL.",
        "shapley_attribution(path, conversions, value [, non_conversions [, ordered]])",
    )
    .with_argument(
        "path",
        "The journey's channels in time order, a list of strings (repeats do not matter; order only when ordered).",
    )
    .with_argument("conversions", "Conversions of the journey (or of all journeys with this path).")
    .with_argument("value", "Conversion value of the journey (or total value of the path).")
    .with_argument("non_conversions", "Journeys with this path that did not convert (path-count input).")
    .with_argument(
        "ordered",
        "Boolean literal: coalitions keep the order of first touch (DP6 MAM's order=True); default false.",
    )
    .with_sql_example(
        "```sql\n\
         > SELECT c.channel AS channel, round(c.conversions, 4) AS conv\n\
         > FROM (SELECT unnest(shapley_attribution(path, 1, 3.0)) AS c\n\
         >       FROM (VALUES (['A']), (['A', 'B']), (['A', 'B', 'C']), (['B']), (['B', 'A']), (['B', 'C', 'A']),\n\
         >                    (['C']), (['C', 'A']), (['C', 'B', 'A'])) t(path))\n\
         > ORDER BY channel;\n\
         +---------+------+\n\
         | channel | conv |\n\
         +---------+------+\n\
         | A       | 4.5  |\n\
         | B       | 2.5  |\n\
         | C       | 2.0  |\n\
         +---------+------+\n\
         ```",
    )
    .with_related_udf("markov_attribution")
    .build()
});

impl AggregateUDFImpl for ShapleyAttribution {
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
        Ok(vec![
            list("coalition", DataType::Utf8),
            list("conversions", DataType::Float64),
            list("journeys", DataType::Float64),
            list("value", DataType::Decimal128(38, 9)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let ordered = aggregate_bool_literal(NAME, &args, 4, PARAMS[4].name)?;
        Ok(Box::new(ShapleyAccumulator {
            coalitions: HashMap::new(),
            has_non_conversions: args.exprs.len() >= 4,
            ordered,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Coalitions keyed by their distinct channel names (sorted, or in first-touch order
/// when `ordered`) joined with U+001F.
#[derive(Debug)]
struct ShapleyAccumulator {
    coalitions: HashMap<String, CoalitionStats>,
    has_non_conversions: bool,
    ordered: bool,
}

impl Accumulator for ShapleyAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = if self.has_non_conversions { 4 } else { 3 };
        let rows = JourneyRows::new(NAME, &values[..n])?;
        let mut set: Vec<&str> = Vec::new();
        for i in 0..rows.len() {
            let Some(c) = rows.counts(i)? else { continue };
            rows.channels(i, &mut set)?;
            if set.is_empty() {
                continue;
            }
            if self.ordered {
                // keep each channel's first touch (n ≤ a few dozen: quadratic is fine)
                let mut kept = 0;
                for j in 0..set.len() {
                    if !set[..kept].contains(&set[j]) {
                        set[kept] = set[j];
                        kept += 1;
                    }
                }
                set.truncate(kept);
            } else {
                set.sort_unstable();
                set.dedup();
            }
            if set.len() > SHAPLEY_MAX_CHANNELS {
                return exec_err!(
                    "{NAME}: a journey has {} distinct channels; exact Shapley values support at most {SHAPLEY_MAX_CHANNELS}",
                    set.len()
                );
            }
            let e = self.coalitions.entry(set.join("\u{1f}")).or_default();
            e.conversions += c.conversions;
            e.journeys += c.conversions + c.non_conversions;
            e.value_nanos += to_nanos(c.value);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let keys = states[0].as_list::<i32>();
        let conv = states[1].as_list::<i32>();
        let journeys = states[2].as_list::<i32>();
        let value = states[3].as_list::<i32>();
        for i in 0..keys.len() {
            if keys.is_null(i) {
                continue;
            }
            let k = keys.value(i);
            let k = k.as_string::<i32>();
            let c = conv.value(i);
            let c = c.as_primitive::<Float64Type>();
            let j = journeys.value(i);
            let j = j.as_primitive::<Float64Type>();
            let v = value.value(i);
            let v = v.as_primitive::<Decimal128Type>();
            for r in 0..k.len() {
                let e = self.coalitions.entry(k.value(r).to_string()).or_default();
                e.conversions += c.value(r);
                e.journeys += j.value(r);
                e.value_nanos += v.value(r);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut keys: Vec<&String> = self.coalitions.keys().collect();
        keys.sort();
        let list = scalar_list;
        let values =
            Decimal128Array::from_iter_values(keys.iter().map(|k| self.coalitions[*k].value_nanos))
                .with_precision_and_scale(38, 9)?;
        Ok(vec![
            list(Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| k.as_str()),
            ))),
            list(Arc::new(Float64Array::from_iter_values(
                keys.iter().map(|k| self.coalitions[*k].conversions),
            ))),
            list(Arc::new(Float64Array::from_iter_values(
                keys.iter().map(|k| self.coalitions[*k].journeys),
            ))),
            list(Arc::new(values)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // channel ids in name order, so coalitions (sorted id lists unless ordered) are canonical
        let mut names: Vec<&str> = self.coalitions.keys().flat_map(|k| k.split(SEP)).collect();
        names.sort_unstable();
        names.dedup();
        let id: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32))
            .collect();
        let coalitions: HashMap<Vec<u32>, CoalitionStats> = self
            .coalitions
            .iter()
            .map(|(k, s)| (k.split(SEP).map(|n| id[n]).collect(), *s))
            .collect();
        let credit = match shapley_credit(&coalitions, names.len(), self.ordered) {
            Ok(c) => c,
            Err(n) => {
                return exec_err!(
                    "{NAME}: a coalition has {n} channels; at most {SHAPLEY_MAX_CHANNELS} are supported"
                );
            }
        };
        let total: f64 = credit.iter().map(|c| c.0).sum();
        let items = StructArray::new(
            result_item_fields(),
            vec![
                Arc::new(StringArray::from_iter_values(names.iter().copied())),
                Arc::new(Float64Array::from_iter_values(
                    credit
                        .iter()
                        .map(|c| if total > 0.0 { c.0 / total } else { 0.0 }),
                )),
                Arc::new(Float64Array::from_iter_values(credit.iter().map(|c| c.0))),
                Arc::new(Float64Array::from_iter_values(
                    credit.iter().map(|c| c.1 / 1e9),
                )),
            ],
            None,
        );
        Ok(scalar_list(Arc::new(items)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.coalitions.keys().map(|k| k.len() + 96).sum::<usize>()
    }
}

/// The `shapley_attribution` aggregate (a shared singleton).
pub fn shapley_attribution() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(ShapleyAttribution::default())));
    Arc::clone(&UDAF)
}
