//! Recommendation similarity: vector and set similarity scalars, the pair generator, item-item
//! neighbours, per-user recommendations and association rules.

pub mod model;
pub mod pairs;
pub mod rules;
pub mod sets;
pub mod table;
pub mod topk;
pub mod vector;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF};

pub use pairs::{item_pair_keys, item_pairs};
pub use rules::{
    basket_rules, basket_rules_from_lines, frequent_itemsets_udaf as frequent_itemsets,
    item_neighbors_udaf as item_neighbors,
};
pub use sets::{jaccard_similarity, overlap_coefficient};
pub use topk::top_k_by;
pub use vector::{cosine_distance, cosine_similarity, inner_product};

/// The family's scalar functions.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        cosine_similarity(),
        cosine_distance(),
        inner_product(),
        jaccard_similarity(),
        overlap_coefficient(),
        item_pairs(),
        item_pair_keys(),
    ]
}

/// The family's aggregate functions.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        basket_rules(),
        basket_rules_from_lines(),
        frequent_itemsets(),
        item_neighbors(),
        top_k_by(),
    ]
}

/// The family's table functions with their documentation.
pub fn table_functions() -> Vec<(
    &'static str,
    Arc<dyn TableFunctionImpl>,
    &'static Documentation,
)> {
    vec![
        (
            "item_similarity",
            Arc::new(table::ItemSimilarityTable),
            &table::ITEM_SIMILARITY_DOC,
        ),
        (
            "recommend_items",
            Arc::new(table::RecommendItemsTable),
            &table::RECOMMEND_ITEMS_DOC,
        ),
        (
            "association_rules",
            Arc::new(table::AssociationRulesTable),
            &table::ASSOCIATION_RULES_DOC,
        ),
    ]
}

/// DataFrame API helpers.
pub mod expr_fn {
    use datafusion::logical_expr::Expr;

    /// `cosine_similarity(a, b)`.
    pub fn cosine_similarity(a: Expr, b: Expr) -> Expr {
        super::cosine_similarity().call(vec![a, b])
    }

    /// `inner_product(a, b)`.
    pub fn inner_product(a: Expr, b: Expr) -> Expr {
        super::inner_product().call(vec![a, b])
    }

    /// `jaccard_similarity(a, b)`.
    pub fn jaccard_similarity(a: Expr, b: Expr) -> Expr {
        super::jaccard_similarity().call(vec![a, b])
    }

    /// `item_pairs(items)`.
    pub fn item_pairs(items: Expr) -> Expr {
        super::item_pairs().call(vec![items])
    }
}

/// The shared `invoke` of the two-list scalars (`cosine_similarity`, `jaccard_similarity`, …):
/// constant arguments broadcast (row 0), both lists List or both LargeList after coercion.
pub(crate) fn invoke_two_lists(
    name: &str,
    args: &datafusion::logical_expr::ScalarFunctionArgs,
    small: impl Fn(
        &datafusion::arrow::array::ListArray,
        &datafusion::arrow::array::ListArray,
        usize,
    ) -> datafusion::common::Result<datafusion::arrow::array::Float64Array>,
    large: impl Fn(
        &datafusion::arrow::array::LargeListArray,
        &datafusion::arrow::array::LargeListArray,
        usize,
    ) -> datafusion::common::Result<datafusion::arrow::array::Float64Array>,
) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::arrow::array::{ArrayRef, AsArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::{ScalarValue, exec_err};
    use datafusion::logical_expr::ColumnarValue;
    let all_scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if all_scalar { 1 } else { args.number_rows };
    let to_array = |v: &ColumnarValue| -> datafusion::common::Result<ArrayRef> {
        match v {
            ColumnarValue::Array(a) => Ok(Arc::clone(a)),
            ColumnarValue::Scalar(s) => s.to_array_of_size(1),
        }
    };
    let a = to_array(&args.args[0])?;
    let b = to_array(&args.args[1])?;
    let out = match (a.data_type(), b.data_type()) {
        (DataType::LargeList(_), DataType::LargeList(_)) => {
            large(a.as_list::<i64>(), b.as_list::<i64>(), n)?
        }
        (DataType::List(_), DataType::List(_)) => small(a.as_list::<i32>(), b.as_list::<i32>(), n)?,
        (x, y) => return exec_err!("{name}: unexpected argument types {x} and {y}"),
    };
    let out: ArrayRef = Arc::new(out);
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}
