//! `basket_rules(items, min_support [, min_confidence [, max_len]])`: association rules
//! (mlxtend's definitions) mined exactly from one row per basket. The aggregate state is the
//! multiset of distinct baskets (item ids) with an item dictionary; it merges, so partial
//! aggregation per partition and on Ballista executors applies.
//! `basket_rules_from_lines(basket, item, …)` gives the same rules from one row per
//! (basket, item) line; its state is the lines as ids with the basket and item dictionaries.
//! `frequent_itemsets` and `item_neighbors` share the distinct-basket state.

use datafusion::common::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, GenericListArray, Int64Array, ListArray,
    OffsetSizeTrait, StructArray, UInt32Array, UInt64Array, new_empty_array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, UInt32Type, UInt64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue, exec_err, internal_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::model::{Metric, MiningError, Neighbor, frequent_itemsets, item_neighbors, rules};
use crate::args::{aggregate_literal, doc_section, list_item, list_of, scalar_list, state_field};

const NAME: &str = "basket_rules";
/// Most frequent itemsets mined before giving up with an error.
pub const MAX_ITEMSETS: usize = 10_000_000;
/// Most rules kept before giving up with an error (a frequent itemset of k items gives up to
/// 2^k − 2 rules: without a bound a low `min_support` exhausts the memory).
pub const MAX_RULES: usize = 10_000_000;

/// What the mining aggregate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// `basket_rules`: association rules.
    Rules,
    /// `frequent_itemsets`: the frequent itemsets with their support.
    Itemsets,
    /// `item_neighbors`: every item's most similar items by co-occurrence.
    Neighbors,
}

impl Output {
    fn name(self) -> &'static str {
        match self {
            Self::Rules => NAME,
            Self::Itemsets => "frequent_itemsets",
            Self::Neighbors => "item_neighbors",
        }
    }

    fn params(self) -> &'static [&'static str] {
        match self {
            Self::Rules => &["items", "min_support", "min_confidence", "max_len"],
            Self::Itemsets => &["items", "min_support", "max_len"],
            Self::Neighbors => &["items", "metric", "top_k", "min_overlap"],
        }
    }
}

/// The `basket_rules`, `basket_rules_from_lines`, `frequent_itemsets` and `item_neighbors`
/// aggregate functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BasketRules {
    kind: Output,
    /// Input: one row per (basket, item) line instead of one list per basket.
    lines: bool,
    signature: Signature,
}

/// The name of the rules aggregate over (basket, item) lines.
const LINES_NAME: &str = "basket_rules_from_lines";

impl BasketRules {
    fn function_name(&self) -> &'static str {
        if self.lines {
            LINES_NAME
        } else {
            self.kind.name()
        }
    }

    fn params(&self) -> &'static [&'static str] {
        if self.lines {
            &["basket", "item", "min_support", "min_confidence", "max_len"]
        } else {
            self.kind.params()
        }
    }

    /// The index of the first argument after the input column(s).
    fn first_option(&self) -> usize {
        if self.lines { 2 } else { 1 }
    }

    /// The item type, from the argument types.
    fn item_type(&self, args: &[DataType]) -> DataType {
        if self.lines {
            args[1].clone()
        } else {
            list_item(&args[0]).cloned().unwrap_or(DataType::Null)
        }
    }
}

/// The fields of one neighbour.
pub fn neighbor_fields(item: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("item", item.clone(), false),
        Field::new("neighbor", item.clone(), false),
        Field::new("score", DataType::Float64, false),
        Field::new("overlap", DataType::Int64, false),
    ])
}

/// The fields of one frequent itemset.
pub fn itemset_fields(item: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("itemset", list_of(item.clone()), false),
        Field::new("support", DataType::Float64, false),
        Field::new("count", DataType::Int64, false),
    ])
}

/// The fields of one rule.
pub fn rule_fields(item: &DataType) -> Fields {
    let list = || list_of(item.clone());
    Fields::from(vec![
        Field::new("antecedent", list(), false),
        Field::new("consequent", list(), false),
        Field::new("antecedent_support", DataType::Float64, false),
        Field::new("consequent_support", DataType::Float64, false),
        Field::new("support", DataType::Float64, false),
        Field::new("confidence", DataType::Float64, false),
        Field::new("lift", DataType::Float64, false),
        Field::new("leverage", DataType::Float64, false),
        Field::new("conviction", DataType::Float64, false),
    ])
}

fn result_type(item: &DataType) -> DataType {
    list_of(DataType::Struct(rule_fields(item)))
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Association rules mined exactly from baskets, one input row per basket holding its \
         items as a list (duplicates and NULL items ignored; a NULL list is not a basket, an \
         empty list — or one of NULLs only — is a basket without items: it counts in N, as an \
         empty transaction does in mlxtend). Returns a list of structs {antecedent, consequent, antecedent_support, \
         consequent_support, support, confidence, lift, leverage, conviction} with mlxtend's \
         definitions: supports are fractions of the N baskets, confidence = support / \
         antecedent_support, lift = confidence / consequent_support, leverage = support − \
         antecedent_support · consequent_support, conviction = (1 − consequent_support) / (1 − \
         confidence) computed as mlxtend does (so 1.4999999999999998 where exact arithmetic gives 1.5), `+inf` (IEEE infinity, printed `inf`) when confidence is 1.\n\n\
         Frequent itemsets (support ≥ `min_support`, at most `max_len` items) are mined by Eclat \
         over the distinct baskets, each frequent item's subtree on the next free core (the \
         result does not depend on the number of cores); every frequent itemset of two or more items gives one rule \
         per non-empty proper subset as antecedent, kept when confidence ≥ `min_confidence`. \
         Antecedents and consequents are sorted by item. The state holds each distinct basket \
         once with its count (memory ≈ the distinct baskets' items × 4 bytes, accounted in the \
         memory pool); more than 10,000,000 frequent itemsets, or more than 10,000,000 rules, is \
         an error asking for a higher `min_support` (or `min_confidence`) or a lower `max_len`. The `association_rules` table function builds the \
         baskets and unnests the rules.",
        "basket_rules(items, min_support [, min_confidence [, max_len]])",
    )
    .with_argument("items", "The basket's items, a list of any comparable type.")
    .with_argument("min_support", "Minimum itemset support, a number in (0, 1].")
    .with_argument("min_confidence", "Minimum rule confidence in [0, 1]; default 0.8 (mlxtend's default threshold).")
    .with_argument("max_len", "Largest itemset size, a positive integer; default (or NULL) no limit.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE baskets(items VARCHAR[]) AS VALUES\n\
         >   (['bread', 'milk']), (['bread', 'milk', 'jam']), (['milk', 'tea']), (['bread', 'jam']);\n\
         > SELECT r['antecedent'] AS antecedent, r['consequent'] AS consequent, r['support'] AS support,\n\
         >        r['confidence'] AS confidence, r['lift'] AS lift, r['conviction'] AS conviction\n\
         > FROM (SELECT unnest(basket_rules(items, 0.5, 0.6)) AS r FROM baskets) ORDER BY 1, 2;\n\
         +------------+------------+---------+--------------------+--------------------+--------------------+\n\
         | antecedent | consequent | support | confidence         | lift               | conviction         |\n\
         +------------+------------+---------+--------------------+--------------------+--------------------+\n\
         | [bread]    | [jam]      | 0.5     | 0.6666666666666666 | 1.3333333333333333 | 1.4999999999999998 |\n\
         | [bread]    | [milk]     | 0.5     | 0.6666666666666666 | 0.8888888888888888 | 0.7499999999999999 |\n\
         | [jam]      | [bread]    | 0.5     | 1.0                | 1.3333333333333333 | inf                |\n\
         | [milk]     | [bread]    | 0.5     | 0.6666666666666666 | 0.8888888888888888 | 0.7499999999999999 |\n\
         +------------+------------+---------+--------------------+--------------------+--------------------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .build()
});

static LINES_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "`basket_rules` over one input row per (basket, item) line instead of one list per \
         basket, with its definitions and output; the baskets are the distinct non-NULL \
         `basket` values with at least one non-NULL item (rows with a NULL basket or item are \
         ignored, so a basket of NULL items only is not counted, unlike a list of NULLs in \
         `basket_rules`; an item repeated in a basket counts once), N is their number. The \
         state is every line as two 4-byte ids plus the distinct baskets and items (memory \
         accounted in the pool, mergeable, not spilled; evaluating takes about as much again \
         for a moment), so no `GROUP BY` or list is built before mining: \
         when evaluated, items on fewer lines than `min_support` × N are left out (no frequent \
         itemset can hold them), the lines are gathered into baskets and mined as \
         `basket_rules` does. `association_rules` uses it unless the session has a memory \
         limit (then it gathers the baskets with DataFusion's spilling aggregate and calls \
         `basket_rules`).",
        "basket_rules_from_lines(basket, item, min_support [, min_confidence [, max_len]])",
    )
    .with_argument("basket", "The basket (order, session, user) of the line: a column of any comparable type.")
    .with_argument("item", "The item of the line: a column of any comparable type.")
    .with_argument("min_support", "Minimum itemset support, a number in (0, 1].")
    .with_argument("min_confidence", "Minimum rule confidence in [0, 1]; default 0.8 (mlxtend's default threshold).")
    .with_argument("max_len", "Largest itemset size, a positive integer; default (or NULL) no limit.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE lines(basket INT, item VARCHAR) AS VALUES\n\
         >   (1, 'bread'), (1, 'milk'), (2, 'bread'), (2, 'milk'), (2, 'jam'), (3, 'milk'), (3, 'tea'),\n\
         >   (4, 'bread'), (4, 'jam');\n\
         > SELECT r['antecedent'] AS antecedent, r['consequent'] AS consequent, r['support'] AS support,\n\
         >        r['confidence'] AS confidence, r['lift'] AS lift\n\
         > FROM (SELECT unnest(basket_rules_from_lines(basket, item, 0.5, 0.6)) AS r FROM lines) ORDER BY 1, 2;\n\
         +------------+------------+---------+--------------------+--------------------+\n\
         | antecedent | consequent | support | confidence         | lift               |\n\
         +------------+------------+---------+--------------------+--------------------+\n\
         | [bread]    | [jam]      | 0.5     | 0.6666666666666666 | 1.3333333333333333 |\n\
         | [bread]    | [milk]     | 0.5     | 0.6666666666666666 | 0.8888888888888888 |\n\
         | [jam]      | [bread]    | 0.5     | 1.0                | 1.3333333333333333 |\n\
         | [milk]     | [bread]    | 0.5     | 0.6666666666666666 | 0.8888888888888888 |\n\
         +------------+------------+---------+--------------------+--------------------+\n\
         ```",
    )
    .with_related_udf("basket_rules")
    .build()
});

static ITEMSETS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Frequent itemsets mined exactly from baskets (mlxtend's `fpgrowth` / `apriori` output): \
         one input row per basket holding its items as a list (duplicates and NULL items \
         ignored; a NULL list is not a basket, an empty list is a basket without items). \
         Returns a list of structs {itemset, support, count}: every set of at most `max_len` \
         items contained in a fraction ≥ `min_support` of the baskets, items sorted, itemsets \
         in depth-first order (each itemset followed by its extensions with larger items). \
         Mined by Eclat over the distinct baskets on all cores; the state is the one of `basket_rules` \
         (mergeable, memory accounted); more than 10,000,000 itemsets is an error.",
        "frequent_itemsets(items, min_support [, max_len])",
    )
    .with_argument("items", "The basket's items, a list of any comparable type.")
    .with_argument("min_support", "Minimum itemset support, a number in (0, 1].")
    .with_argument("max_len", "Largest itemset size, a positive integer; default (or NULL) no limit.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE baskets(items VARCHAR[]) AS VALUES\n\
         >   (['bread', 'milk']), (['bread', 'milk', 'jam']), (['milk', 'tea']), (['bread', 'jam']);\n\
         > SELECT s['itemset'] AS itemset, s['support'] AS support, s['count'] AS baskets\n\
         > FROM (SELECT unnest(frequent_itemsets(items, 0.5)) AS s FROM baskets);\n\
         +---------------+---------+---------+\n\
         | itemset       | support | baskets |\n\
         +---------------+---------+---------+\n\
         | [bread]       | 0.75    | 3       |\n\
         | [bread, jam]  | 0.5     | 2       |\n\
         | [bread, milk] | 0.5     | 2       |\n\
         | [jam]         | 0.5     | 2       |\n\
         | [milk]        | 0.75    | 3       |\n\
         +---------------+---------+---------+\n\
         ```",
    )
    .with_related_udf("basket_rules")
    .build()
});

static NEIGHBORS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Item-item neighbours computed in memory from one row per user (or basket) holding its \
         items as a list: a list of structs {item, neighbor, score, overlap}, for every item its \
         `top_k` most similar items best first (ties by neighbour, ascending), with the metrics \
         and exact definitions of `item_similarity` (duplicates and NULL items ignored; a NULL \
         list is not a user; an empty list is a user without items, counted in U for 'lift'). \
         The state is the distinct baskets with counts (≈ 4 bytes per item, memory accounted, \
         mergeable); evaluation accumulates each item's row of XᵀX densely on all cores, so \
         the work is Σ over users of n² for n items. `item_similarity(..., 'memory')` is this \
         aggregate over the per-user lists; under a memory limit too small for the baskets use \
         the spilling `'spill'` algorithm instead.",
        "item_neighbors(items [, metric [, top_k [, min_overlap]]])",
    )
    .with_argument("items", "The user's items, a list of any comparable type.")
    .with_argument("metric", "'cosine' (default), 'jaccard', 'lift' or 'conditional'.")
    .with_argument("top_k", "Neighbours kept per item, a positive integer; default 20.")
    .with_argument("min_overlap", "Least number of common users for a neighbour; default 1.")
    .with_sql_example(
        "```sql\n\
         > SELECT n['item'] AS item, n['neighbor'] AS neighbor, round(n['score'], 4) AS score, n['overlap'] AS overlap\n\
         > FROM (SELECT unnest(item_neighbors(items, 'cosine', 1)) AS n\n\
         >       FROM (VALUES (['tea', 'milk']), (['tea', 'milk', 'jam']), (['jam', 'bread'])) AS t(items));\n\
         +-------+----------+--------+---------+\n\
         | item  | neighbor | score  | overlap |\n\
         +-------+----------+--------+---------+\n\
         | bread | jam      | 0.7071 | 1       |\n\
         | jam   | bread    | 0.7071 | 1       |\n\
         | milk  | tea      | 1.0    | 2       |\n\
         | tea   | milk     | 1.0    | 2       |\n\
         +-------+----------+--------+---------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .with_related_udf("top_k_by")
    .build()
});

impl AggregateUDFImpl for BasketRules {
    fn name(&self) -> &str {
        self.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.function_name();
        let params = self.params();
        let required = match self.kind {
            Output::Neighbors => 1,
            _ => self.first_option() + 1,
        };
        if !(required..=params.len()).contains(&arg_types.len()) {
            return plan_err!(
                "{name}: expected {required} to {} arguments ({}), got {}",
                params.len(),
                params.join(", "),
                arg_types.len()
            );
        }
        let comparable = |t: &DataType| RowConverter::supports_fields(&[SortField::new(t.clone())]);
        let mut out = Vec::with_capacity(arg_types.len());
        if self.lines {
            for (i, t) in arg_types.iter().take(2).enumerate() {
                // dictionary-encoded columns (hive partitions) are cast to their values
                let t = match t {
                    DataType::Dictionary(_, v) => v.as_ref(),
                    t => t,
                };
                if t.is_null() || !comparable(t) {
                    return plan_err!(
                        "{name}: argument {} '{}' must be a column of comparable values, got {t}",
                        i + 1,
                        params[i]
                    );
                }
                out.push(t.clone());
            }
        } else {
            out.push(match &arg_types[0] {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
                if comparable(f.data_type()) =>
            {
                match f.data_type() {
                    // dictionary-encoded items are cast to their values
                    DataType::Dictionary(_, v) => list_of(v.as_ref().clone()),
                    _ => DataType::List(Arc::clone(f)),
                }
            }
            other => {
                return plan_err!(
                    "{name}: argument 1 'items' must be a list of comparable values, got {other}"
                );
            }
            });
        }
        for (i, t) in arg_types.iter().enumerate().skip(self.first_option()) {
            if params[i] == "metric" {
                if !matches!(
                    t,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                ) {
                    return plan_err!(
                        "{name}: argument {} 'metric' must be a string, got {t}",
                        i + 1
                    );
                }
                out.push(DataType::Utf8);
                continue;
            }
            let integer = matches!(params[i], "max_len" | "top_k" | "min_overlap");
            let ok = t.is_null()
                || if integer {
                    t.is_integer()
                } else {
                    t.is_numeric()
                };
            if !ok {
                return plan_err!(
                    "{name}: argument {} '{}' must be {}, got {t}",
                    i + 1,
                    params[i],
                    if integer { "an integer" } else { "a number" }
                );
            }
            out.push(if integer {
                DataType::Int64
            } else {
                DataType::Float64
            });
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let item = self.item_type(arg_types);
        Ok(match self.kind {
            Output::Rules => result_type(&item),
            Output::Itemsets => list_of(DataType::Struct(itemset_fields(&item))),
            Output::Neighbors => list_of(DataType::Struct(neighbor_fields(&item))),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let types: Vec<DataType> = args
            .input_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let item = self.item_type(&types);
        if self.lines {
            return Ok(vec![
                state_field(args.name, "items", list_of(item)),
                state_field(args.name, "baskets", list_of(types[0].clone())),
                state_field(args.name, "line_baskets", list_of(DataType::UInt32)),
                state_field(args.name, "line_items", list_of(DataType::UInt32)),
            ]);
        }
        Ok(vec![
            state_field(args.name, "items", list_of(item)),
            state_field(args.name, "basket_items", list_of(DataType::UInt32)),
            state_field(args.name, "basket_lens", list_of(DataType::UInt32)),
            state_field(args.name, "basket_counts", list_of(DataType::UInt64)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let name = self.function_name();
        let types = args
            .exprs
            .iter()
            .map(|e| e.data_type(args.schema))
            .collect::<Result<Vec<_>>>()?;
        let item = self.item_type(&types);
        if self.kind == Output::Neighbors {
            let metric = match aggregate_literal(name, &args, 1, "metric")? {
                None => Metric::Cosine,
                Some(v) if v.is_null() => Metric::Cosine,
                Some(v) => {
                    let s = v.try_as_str().flatten().unwrap_or_default().to_string();
                    match Metric::parse(&s) {
                        Some(m) => m,
                        None => {
                            return plan_err!(
                                "{name}: argument 2 'metric' must be one of {}, got '{s}'",
                                Metric::NAMES.map(|n| format!("'{n}'")).join(", ")
                            );
                        }
                    }
                }
            };
            let int = |i: usize, what: &str, default: i64, max: i64| -> Result<i64> {
                match aggregate_literal(name, &args, i, what)? {
                    None => Ok(default),
                    Some(v) if v.is_null() => Ok(default),
                    Some(v) => match v.cast_to(&DataType::Int64)? {
                        ScalarValue::Int64(Some(k)) if (1..=max).contains(&k) => Ok(k),
                        other => plan_err!(
                            "{name}: argument {} '{what}' must be an integer in 1..={max}, got {other}",
                            i + 1
                        ),
                    },
                }
            };
            let top_k = int(2, "top_k", 20, i64::from(i32::MAX))? as usize;
            let min_overlap = int(3, "min_overlap", 1, i64::MAX)? as u64;
            let mut acc = RulesAccumulator::new(self.kind, item, 1.0, 0.0, usize::MAX)?;
            acc.neighbors = Some((metric, top_k, min_overlap));
            return Ok(Box::new(acc));
        }
        let max_len_at = self.params().len() - 1;
        let at = self.first_option();
        let number = |i: usize, what: &str| -> Result<Option<f64>> {
            match aggregate_literal(name, &args, i, what)? {
                None => Ok(None),
                Some(v) if v.is_null() => Ok(None),
                Some(v) => match v.cast_to(&DataType::Float64)? {
                    ScalarValue::Float64(x) => Ok(x),
                    _ => plan_err!("{name}: argument {} '{what}' must be a number", i + 1),
                },
            }
        };
        let min_support = match number(at, "min_support")? {
            Some(s) if s > 0.0 && s <= 1.0 => s,
            other => {
                return plan_err!(
                    "{name}: argument {} 'min_support' must be a number in (0, 1], got {}",
                    at + 1,
                    other.map_or("NULL".to_string(), |v| v.to_string())
                );
            }
        };
        let min_confidence = match (self.kind == Output::Rules)
            .then(|| number(at + 1, "min_confidence"))
            .transpose()?
            .flatten()
        {
            None => 0.8,
            Some(c) if (0.0..=1.0).contains(&c) => c,
            Some(c) => {
                return plan_err!(
                    "{name}: argument {} 'min_confidence' must be a number in [0, 1], got {c}",
                    at + 2
                );
            }
        };
        let max_len = match aggregate_literal(name, &args, max_len_at, "max_len")? {
            None => usize::MAX,
            Some(v) if v.is_null() => usize::MAX,
            Some(v) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(k)) if k >= 1 => k as usize,
                other => {
                    return plan_err!(
                        "{name}: argument {} 'max_len' must be a positive integer, got {other}",
                        max_len_at + 1
                    );
                }
            },
        };
        let acc = RulesAccumulator::new(self.kind, item, min_support, min_confidence, max_len)?;
        Ok(Box::new(if self.lines {
            acc.over_lines(&types[0])?
        } else {
            acc
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.kind {
            Output::Rules if self.lines => &LINES_DOC,
            Output::Rules => &DOC,
            Output::Itemsets => &ITEMSETS_DOC,
            Output::Neighbors => &NEIGHBORS_DOC,
        })
    }
}

/// Values of one type numbered 0, 1, … in order of arrival.
#[derive(Debug)]
struct Dictionary {
    data_type: DataType,
    values: Values,
}

#[derive(Debug)]
enum Values {
    /// Integer types exactly representable as i64 (all but UInt64): the values by id and a
    /// value → id map (≈ 28 bytes per value).
    Ints {
        values: Vec<i64>,
        ids: HashMap<i64, u32>,
    },
    /// Any other comparable type: row-encoded keys by id and a key → id map.
    Rows {
        converter: Box<RowConverter>,
        keys: Vec<Box<[u8]>>,
        ids: HashMap<Box<[u8]>, u32>,
        key_bytes: usize,
    },
}

/// The id [`Dictionary::intern_where`] gives a NULL element or one left out.
const NO_ID: u32 = u32::MAX;

/// The id of the `n`-th distinct value, or an error past the 4,294,967,294 ids a u32 holds.
fn id_for(n: usize) -> Result<u32> {
    match u32::try_from(n) {
        Ok(id) if id != NO_ID => Ok(id),
        _ => {
            exec_err!("more than {NO_ID} distinct values (baskets or items) in one aggregate state")
        }
    }
}

impl Dictionary {
    fn new(t: &DataType) -> Result<Self> {
        let values = if t.is_integer() && *t != DataType::UInt64 {
            Values::Ints {
                values: Vec::new(),
                ids: HashMap::new(),
            }
        } else {
            Values::Rows {
                converter: Box::new(RowConverter::new(vec![SortField::new(t.clone())])?),
                keys: Vec::new(),
                ids: HashMap::new(),
                key_bytes: 0,
            }
        };
        Ok(Self {
            data_type: t.clone(),
            values,
        })
    }

    fn len(&self) -> usize {
        match &self.values {
            Values::Ints { values, .. } => values.len(),
            Values::Rows { keys, .. } => keys.len(),
        }
    }

    /// The id of every element of `values`, interning new ones; [`NO_ID`] for NULLs.
    fn intern_all(&mut self, values: &ArrayRef) -> Result<Vec<u32>> {
        self.intern_where(values, |_| true)
    }

    /// The id of every element of `values` at an index `keep` accepts, interning new ones;
    /// [`NO_ID`] for NULLs and the indexes left out (never interned).
    fn intern_where(&mut self, array: &ArrayRef, keep: impl Fn(usize) -> bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(array.len());
        match &mut self.values {
            Values::Ints { values, ids } => {
                let wide = datafusion::arrow::compute::cast(array, &DataType::Int64)?;
                let wide = wide.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                for j in 0..array.len() {
                    if array.is_null(j) || !keep(j) {
                        out.push(NO_ID);
                        continue;
                    }
                    let v = wide.value(j);
                    let next = id_for(values.len())?;
                    let id = *ids.entry(v).or_insert(next);
                    if id == next {
                        values.push(v);
                    }
                    out.push(id);
                }
            }
            Values::Rows {
                converter,
                keys,
                ids,
                key_bytes,
            } => {
                let rows = converter.convert_columns(&[Arc::clone(array)])?;
                for j in 0..array.len() {
                    if array.is_null(j) || !keep(j) {
                        out.push(NO_ID);
                        continue;
                    }
                    let key = rows.row(j);
                    let key = key.as_ref();
                    let id = match ids.get(key) {
                        Some(&id) => id,
                        None => {
                            let id = id_for(keys.len())?;
                            let boxed: Box<[u8]> = key.into();
                            *key_bytes += 2 * key.len();
                            keys.push(boxed.clone());
                            ids.insert(boxed, id);
                            id
                        }
                    };
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Every id, in the order of the values (the type's order).
    fn sorted_ids(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        match &self.values {
            Values::Ints { values, .. } => order.sort_unstable_by_key(|&id| values[id as usize]),
            Values::Rows { keys, .. } => {
                order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]))
            }
        }
        order
    }

    /// The values of `ids`, as an array of the dictionary's type.
    fn array(&self, ids: &[u32]) -> Result<ArrayRef> {
        match &self.values {
            Values::Ints { values, .. } => {
                let wide = Int64Array::from_iter_values(ids.iter().map(|&id| values[id as usize]));
                // exact: every value came from this type
                Ok(datafusion::arrow::compute::cast(&wide, &self.data_type)?)
            }
            Values::Rows {
                converter, keys, ..
            } => {
                let parser = converter.parser();
                let rows = ids.iter().map(|&id| parser.parse(&keys[id as usize]));
                let mut columns = converter.convert_rows(rows)?;
                Ok(columns.remove(0))
            }
        }
    }

    /// Every value, in id order.
    fn all(&self) -> Result<ArrayRef> {
        let ids: Vec<u32> = (0..self.len() as u32).collect();
        self.array(&ids)
    }

    fn size(&self) -> usize {
        match &self.values {
            Values::Ints { values, ids } => values.capacity() * 8 + ids.capacity() * 20,
            Values::Rows {
                keys,
                ids,
                key_bytes,
                ..
            } => key_bytes + keys.capacity() * 16 + ids.capacity() * 24,
        }
    }
}

/// `basket_rules_from_lines`' input: every (basket, item) line with both non-NULL, as ids.
#[derive(Debug)]
struct Lines {
    baskets: Dictionary,
    basket_of: Vec<u32>,
    item_of: Vec<u32>,
}

/// The smallest basket count whose support reaches `min_support` among `n` baskets, compared
/// as mlxtend does (count / n ≥ min_support in floating point).
fn min_count(n: u64, min_support: f64) -> u64 {
    let nf = n as f64;
    let mut min_count = (min_support * nf).ceil().max(1.0) as u64;
    while min_count > 1 && (min_count - 1) as f64 / nf >= min_support {
        min_count -= 1;
    }
    while (min_count as f64 / nf) < min_support {
        min_count += 1;
    }
    min_count
}

/// Distinct baskets with counts over an interned item dictionary.
#[derive(Debug)]
struct RulesAccumulator {
    kind: Output,
    item: DataType,
    items: Dictionary,
    baskets: HashMap<Box<[u32]>, u64>,
    basket_items: usize,
    min_support: f64,
    min_confidence: f64,
    max_len: usize,
    /// `item_neighbors`' metric, top_k and min_overlap.
    neighbors: Option<(Metric, usize, u64)>,
    /// `basket_rules_from_lines`: the lines, gathered into baskets when evaluated.
    lines: Option<Lines>,
}

impl RulesAccumulator {
    fn new(
        kind: Output,
        item: DataType,
        min_support: f64,
        min_confidence: f64,
        max_len: usize,
    ) -> Result<Self> {
        Ok(Self {
            kind,
            items: Dictionary::new(&item)?,
            item,
            baskets: HashMap::new(),
            basket_items: 0,
            min_support,
            min_confidence,
            max_len,
            neighbors: None,
            lines: None,
        })
    }

    /// `basket_rules_from_lines`' accumulator: (basket, item) lines with `basket` keys.
    fn over_lines(mut self, basket: &DataType) -> Result<Self> {
        self.lines = Some(Lines {
            baskets: Dictionary::new(basket)?,
            basket_of: Vec::new(),
            item_of: Vec::new(),
        });
        Ok(self)
    }

    /// The SQL function's name, for errors.
    fn name(&self) -> &'static str {
        if self.lines.is_some() {
            LINES_NAME
        } else {
            self.kind.name()
        }
    }

    fn add_basket(&mut self, basket: &mut Vec<u32>, count: u64) {
        basket.sort_unstable();
        basket.dedup();
        if count == 0 {
            return;
        }
        if let Some(c) = self.baskets.get_mut(basket.as_slice()) {
            *c += count;
        } else {
            self.basket_items += basket.len();
            self.baskets.insert(basket.as_slice().into(), count);
        }
    }

    /// Add each non-NULL list as a basket of its non-NULL items.
    fn add_lists<O: OffsetSizeTrait>(&mut self, lists: &GenericListArray<O>) -> Result<()> {
        // Only the elements of these lists: a batch is often a slice of a larger list array
        // whose values hold every batch's elements (interning them all per batch was
        // quadratic), and the elements under a NULL list are no items.
        let offsets = lists.value_offsets();
        let (lo, hi) = (offsets[0].as_usize(), offsets[lists.len()].as_usize());
        let values = lists.values().slice(lo, hi - lo);
        let ids = if lists.null_count() == 0 {
            self.items.intern_all(&values)?
        } else {
            let mut keep = vec![false; hi - lo];
            for i in (0..lists.len()).filter(|&i| lists.is_valid(i)) {
                keep[offsets[i].as_usize() - lo..offsets[i + 1].as_usize() - lo].fill(true);
            }
            self.items.intern_where(&values, |j| keep[j])?
        };
        let mut basket = Vec::new();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            basket.clear();
            basket.extend(
                ids[offsets[i].as_usize() - lo..offsets[i + 1].as_usize() - lo]
                    .iter()
                    .copied()
                    .filter(|&id| id != NO_ID),
            );
            self.add_basket(&mut basket, 1);
        }
        Ok(())
    }

    /// The lines gathered into baskets of items numbered by `rank`: N is the number of
    /// distinct baskets, and items on fewer lines than N × min_support (an upper bound of
    /// their baskets) are left out, as no frequent itemset can hold them; a basket left
    /// without items still counts in N. Each basket comes once with count 1 (its items sorted,
    /// without repeats): equal baskets are not merged, which mining does not need.
    fn line_baskets(&self, lines: &Lines, rank: &[u32]) -> Vec<(Vec<u32>, u64)> {
        let n = lines.baskets.len();
        if n == 0 {
            return Vec::new();
        }
        let min_count = min_count(n as u64, self.min_support);
        let mut per_item = vec![0u64; self.items.len()];
        for &i in &lines.item_of {
            per_item[i as usize] += 1;
        }
        let keep: Vec<bool> = per_item.iter().map(|&c| c >= min_count).collect();
        // the kept items grouped by basket (a counting sort)
        let mut start = vec![0usize; n + 1];
        for (&b, &i) in lines.basket_of.iter().zip(&lines.item_of) {
            if keep[i as usize] {
                start[b as usize + 1] += 1;
            }
        }
        for b in 0..n {
            start[b + 1] += start[b];
        }
        let mut next = start.clone();
        let mut flat = vec![0u32; start[n]];
        for (&b, &i) in lines.basket_of.iter().zip(&lines.item_of) {
            if keep[i as usize] {
                flat[next[b as usize]] = rank[i as usize];
                next[b as usize] += 1;
            }
        }
        drop(next);
        (0..n)
            .map(|b| {
                let mut items = flat[start[b]..start[b + 1]].to_vec();
                items.sort_unstable();
                items.dedup();
                (items, 1)
            })
            .collect()
    }
}

impl Accumulator for RulesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(lines) = &mut self.lines {
            // a line counts only with both its basket and its item: a basket whose items are
            // all NULL is no basket (not in N), and an item of a NULL basket is not seen
            let (b, i) = (&values[0], &values[1]);
            let both = |j: usize| b.is_valid(j) && i.is_valid(j);
            let baskets = lines.baskets.intern_where(b, both)?;
            let items = self.items.intern_where(i, both)?;
            for (b, i) in baskets.into_iter().zip(items) {
                if b != NO_ID && i != NO_ID {
                    lines.basket_of.push(b);
                    lines.item_of.push(i);
                }
            }
            return Ok(());
        }
        match values[0].data_type() {
            DataType::List(_) => self.add_lists(values[0].as_list::<i32>()),
            DataType::LargeList(_) => self.add_lists(values[0].as_list::<i64>()),
            other => exec_err!("{}: unexpected input type {other}", self.name()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let items = states[0].as_list::<i32>();
        for s in 0..items.len() {
            if items.is_null(s) {
                continue;
            }
            let map = self.items.intern_all(&items.value(s))?;
            let list = |k: usize| states[k].as_list::<i32>().value(s);
            if let Some(lines) = &mut self.lines {
                let baskets = lines.baskets.intern_all(&list(1))?;
                let (basket_of, item_of) = (list(2), list(3));
                let basket_of = basket_of.as_primitive::<UInt32Type>().values();
                let item_of = item_of.as_primitive::<UInt32Type>().values();
                lines
                    .basket_of
                    .extend(basket_of.iter().map(|&b| baskets[b as usize]));
                lines
                    .item_of
                    .extend(item_of.iter().map(|&i| map[i as usize]));
                continue;
            }
            let (flat, lens, counts) = (list(1), list(2), list(3));
            let flat = flat.as_primitive::<UInt32Type>().values();
            let counts = counts.as_primitive::<UInt64Type>().values();
            let mut pos = 0usize;
            let mut basket = Vec::new();
            for (k, &len) in lens
                .as_primitive::<UInt32Type>()
                .values()
                .iter()
                .enumerate()
            {
                basket.clear();
                basket.extend(
                    flat[pos..pos + len as usize]
                        .iter()
                        .map(|&l| map[l as usize]),
                );
                pos += len as usize;
                self.add_basket(&mut basket, counts[k]);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let items = scalar_list(self.items.all()?);
        if let Some(lines) = &self.lines {
            if lines.item_of.len() > i32::MAX as usize {
                return exec_err!(
                    "{}: more than {} lines in one partition's state; use more partitions or association_rules' 'spill' algorithm",
                    self.name(),
                    i32::MAX
                );
            }
            return Ok(vec![
                items,
                scalar_list(lines.baskets.all()?),
                scalar_list(Arc::new(UInt32Array::from(lines.basket_of.clone()))),
                scalar_list(Arc::new(UInt32Array::from(lines.item_of.clone()))),
            ]);
        }
        let mut flat = Vec::with_capacity(self.basket_items);
        let mut lens = Vec::with_capacity(self.baskets.len());
        let mut counts = Vec::with_capacity(self.baskets.len());
        for (b, &c) in &self.baskets {
            flat.extend_from_slice(b);
            lens.push(b.len() as u32);
            counts.push(c);
        }
        Ok(vec![
            items,
            scalar_list(Arc::new(UInt32Array::from(flat))),
            scalar_list(Arc::new(UInt32Array::from(lens))),
            scalar_list(Arc::new(UInt64Array::from(counts))),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // number items in their type's order, so the result does not depend on arrival order
        let order = self.items.sorted_ids();
        let mut rank = vec![0u32; order.len()];
        for (r, &id) in order.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        // Results depend only on the multiset of baskets (integer counts), not on their order
        // or the order of items within one, so the relabelled baskets are used as they come.
        let baskets: Vec<(Vec<u32>, u64)> = match &self.lines {
            Some(lines) => self.line_baskets(lines, &rank),
            None => self
                .baskets
                .iter()
                .map(|(b, &c)| (b.iter().map(|&i| rank[i as usize]).collect(), c))
                .collect(),
        };
        let n: u64 = baskets.iter().map(|b| b.1).sum();
        let fields = match self.kind {
            Output::Rules => rule_fields(&self.item),
            Output::Itemsets => itemset_fields(&self.item),
            Output::Neighbors => neighbor_fields(&self.item),
        };
        if n == 0 {
            return Ok(scalar_list(new_empty_array(&DataType::Struct(fields))));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some((metric, top_k, min_overlap)) = self.neighbors {
            let found = item_neighbors(&baskets, order.len(), metric, top_k, min_overlap, threads);
            let items = self.items.array(&order)?;
            let pick = |f: fn(&Neighbor) -> u32| -> Result<ArrayRef> {
                let idx = UInt32Array::from_iter_values(found.iter().map(f));
                Ok(take(items.as_ref(), &idx, None)?)
            };
            let out = StructArray::try_new(
                fields,
                vec![
                    pick(|x| x.item)?,
                    pick(|x| x.neighbor)?,
                    Arc::new(Float64Array::from_iter_values(
                        found.iter().map(|x| x.score),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        found.iter().map(|x| x.overlap as i64),
                    )),
                ],
                None,
            )?;
            return Ok(scalar_list(Arc::new(out)));
        }
        let nf = n as f64;
        let min_count = min_count(n, self.min_support);
        let sets = match frequent_itemsets(
            &baskets,
            order.len(),
            min_count,
            self.max_len,
            MAX_ITEMSETS,
            threads,
        ) {
            Ok(s) => s,
            Err(MiningError::TooMany(limit)) => {
                return exec_err!(
                    "{}: more than {limit} frequent itemsets at min_support {}; raise min_support or set max_len",
                    self.name(),
                    self.min_support
                );
            }
            Err(e) => return internal_err!("{}: {e:?}", self.name()),
        };
        let items = self.items.array(&order)?;
        let list_field = Arc::new(Field::new("item", self.item.clone(), true));
        if self.kind == Output::Itemsets {
            let idx: Vec<u32> = sets.iter().flat_map(|s| s.items.iter().copied()).collect();
            let values = take(items.as_ref(), &UInt32Array::from(idx), None)?;
            let lists = ListArray::try_new(
                list_field,
                OffsetBuffer::from_lengths(sets.iter().map(|s| s.items.len())),
                values,
                None,
            )?;
            let out = StructArray::try_new(
                fields,
                vec![
                    Arc::new(lists),
                    Arc::new(Float64Array::from_iter_values(
                        sets.iter().map(|s| s.count as f64 / nf),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        sets.iter().map(|s| s.count as i64),
                    )),
                ],
                None,
            )?;
            return Ok(scalar_list(Arc::new(out)));
        }
        let found = match rules(&sets, n, self.min_confidence, MAX_RULES) {
            Ok(found) => found,
            Err(MiningError::TooManyRules(limit)) => {
                return exec_err!(
                    "{}: more than {limit} rules at min_support {} and min_confidence {}; raise either or set max_len",
                    self.name(),
                    self.min_support,
                    self.min_confidence
                );
            }
            Err(e) => return internal_err!("{}: {e:?}", self.name()),
        };
        let side = |pick: &dyn Fn(&super::model::Rule) -> &[u32]| -> Result<ArrayRef> {
            let idx: Vec<u32> = found.iter().flat_map(|r| pick(r).iter().copied()).collect();
            let values = take(items.as_ref(), &UInt32Array::from(idx), None)?;
            Ok(Arc::new(ListArray::try_new(
                Arc::clone(&list_field),
                OffsetBuffer::from_lengths(found.iter().map(|r| pick(r).len())),
                values,
                None,
            )?))
        };
        let num = |f: fn(&super::model::Rule) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(found.iter().map(f)))
        };
        let out = StructArray::try_new(
            fields,
            vec![
                side(&|r| r.antecedent.as_slice())?,
                side(&|r| r.consequent.as_slice())?,
                num(|r| r.antecedent_support),
                num(|r| r.consequent_support),
                num(|r| r.support),
                num(|r| r.confidence),
                num(|r| r.lift),
                num(|r| r.leverage),
                num(|r| r.conviction),
            ],
            None,
        )?;
        Ok(scalar_list(Arc::new(out)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.items.size()
            + self.baskets.capacity() * 32
            + self.basket_items * 4
            + self.lines.as_ref().map_or(0, |l| {
                l.baskets.size() + (l.basket_of.capacity() + l.item_of.capacity()) * 4
            })
    }
}

fn udaf(kind: Output, lines: bool) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(BasketRules {
        kind,
        lines,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// The `basket_rules` aggregate (a shared singleton).
pub fn basket_rules() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf(Output::Rules, false));
    Arc::clone(&UDAF)
}

/// The `basket_rules_from_lines` aggregate (a shared singleton).
pub fn basket_rules_from_lines() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf(Output::Rules, true));
    Arc::clone(&UDAF)
}

/// The `item_neighbors` aggregate (a shared singleton).
pub fn item_neighbors_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf(Output::Neighbors, false));
    Arc::clone(&UDAF)
}

/// The `frequent_itemsets` aggregate (a shared singleton).
pub fn frequent_itemsets_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| udaf(Output::Itemsets, false));
    Arc::clone(&UDAF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    /// Lines (basket, item) from a fixed stream: repeats, NULL baskets and NULL items, a few
    /// popular items and many rare ones.
    fn random_lines(n: usize) -> Vec<(Option<i64>, Option<i64>)> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        (0..n)
            .map(|_| {
                let basket = (next(50) != 0).then(|| next(450) as i64);
                // baskets 400..440 hold only rare items: they count in N without a frequent
                // item; baskets 440.. only NULL items: they are no baskets
                let b = basket.unwrap_or(0);
                let item = match (next(20), b >= 400) {
                    _ if b >= 440 => None,
                    (0, _) => None,
                    (1..=12, false) => Some(next(8) as i64),
                    _ => Some(8 + next(3000) as i64),
                };
                (basket, item)
            })
            .collect()
    }

    fn rules_accumulator(lines: bool, item: &DataType, basket: &DataType) -> RulesAccumulator {
        let acc =
            RulesAccumulator::new(Output::Rules, item.clone(), 0.02, 0.3, usize::MAX).unwrap();
        if lines {
            acc.over_lines(basket).unwrap()
        } else {
            acc
        }
    }

    fn column(values: &[Option<i64>], strings: bool) -> ArrayRef {
        if strings {
            Arc::new(StringArray::from_iter(
                values.iter().map(|v| v.map(|v| format!("i{v:03}"))),
            ))
        } else {
            Arc::new(Int64Array::from(values.to_vec()))
        }
    }

    /// The rules from the lines split over three partial accumulators merged into a final one
    /// equal `basket_rules` over one list per basket, for integer and string items.
    #[test]
    fn lines_merged_from_partitions_give_the_rules_of_the_baskets() {
        let lines = random_lines(6000);
        for strings in [false, true] {
            let item = if strings {
                DataType::Utf8
            } else {
                DataType::Int64
            };
            // reference: one list per non-NULL basket of its items, NULL items left in
            let mut by_basket: std::collections::BTreeMap<i64, Vec<Option<i64>>> =
                Default::default();
            for &(b, i) in &lines {
                if let Some(b) = b {
                    by_basket.entry(b).or_default().push(i);
                }
            }
            // a basket whose lines all have NULL items is no basket
            by_basket.retain(|_, items| items.iter().any(Option::is_some));
            let mut reference = rules_accumulator(false, &item, &DataType::Int64);
            let flat: Vec<Option<i64>> = by_basket.values().flatten().copied().collect();
            let lists = ListArray::try_new(
                Arc::new(Field::new("item", item.clone(), true)),
                OffsetBuffer::from_lengths(by_basket.values().map(Vec::len)),
                column(&flat, strings),
                None,
            )
            .unwrap();
            reference.update_batch(&[Arc::new(lists)]).unwrap();
            let want = reference.evaluate().unwrap();
            let ScalarValue::List(found) = &want else {
                panic!("not a list: {want:?}")
            };
            assert!(
                found.value(0).len() > 20,
                "too few rules to compare: {want:?}"
            );

            let mut states: Vec<Vec<ScalarValue>> = Vec::new();
            for part in lines.chunks(2500) {
                let mut acc = rules_accumulator(true, &item, &DataType::Int64);
                for batch in part.chunks(700) {
                    let b: Vec<Option<i64>> = batch.iter().map(|l| l.0).collect();
                    let i: Vec<Option<i64>> = batch.iter().map(|l| l.1).collect();
                    acc.update_batch(&[column(&b, false), column(&i, strings)])
                        .unwrap();
                }
                states.push(acc.state().unwrap());
            }
            let mut merged = rules_accumulator(true, &item, &DataType::Int64);
            let columns: Vec<ArrayRef> = (0..4)
                .map(|k| ScalarValue::iter_to_array(states.iter().map(|s| s[k].clone())).unwrap())
                .collect();
            merged.merge_batch(&columns).unwrap();
            assert_eq!(merged.evaluate().unwrap(), want, "strings: {strings}");
        }
    }

    /// A batch that is a slice of a larger list array interns only its own lists' items (not
    /// every element of the shared values, which made each batch cost the whole array), and
    /// nothing under a NULL list.
    #[test]
    fn a_sliced_batch_interns_only_its_own_items() {
        for strings in [false, true] {
            let item = if strings {
                DataType::Utf8
            } else {
                DataType::Int64
            };
            let values: Vec<Option<i64>> = (0..10).map(Some).collect();
            // lists [0, 1], [2, 3, 4], NULL over [5, 6], [7], [8, 9]
            let lists = ListArray::try_new(
                Arc::new(Field::new("item", item.clone(), true)),
                OffsetBuffer::from_lengths([2, 3, 2, 1, 2]),
                column(&values, strings),
                Some(vec![true, true, false, true, true].into()),
            )
            .unwrap();
            let mut acc = rules_accumulator(false, &item, &DataType::Int64);
            acc.update_batch(&[Arc::new(lists.slice(1, 3))]).unwrap();
            // [2, 3, 4] and [7]: four items, two baskets
            assert_eq!(acc.items.len(), 4, "strings: {strings}");
            assert_eq!(acc.baskets.len(), 2, "strings: {strings}");
            assert_eq!(acc.basket_items, 4, "strings: {strings}");
        }
    }

    #[test]
    fn min_count_is_the_least_count_reaching_the_support() {
        assert_eq!(min_count(4, 0.5), 2);
        assert_eq!(min_count(3, 0.5), 2);
        assert_eq!(min_count(100, 0.01), 1);
        assert_eq!(min_count(1000, 0.001), 1);
        // 0.7 * 10 = 7.000000000000001 in floating point; 7 / 10 = 0.7 reaches it
        assert_eq!(min_count(10, 0.7), 7);
        for n in 1..200u64 {
            for s in [0.01, 0.1, 0.3, 1.0 / 3.0, 0.7, 1.0] {
                let c = min_count(n, s);
                assert!(c as f64 / n as f64 >= s && (c == 1 || ((c - 1) as f64 / n as f64) < s));
            }
        }
    }
}
