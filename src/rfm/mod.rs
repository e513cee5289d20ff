//! RFM: recency / frequency / monetary scoring and segments.

pub mod exact_sum;
pub mod model;
pub mod quantile;
pub mod quantile_exec;
pub mod segment;
pub mod summary;
pub mod table;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF, WindowUDF};

pub use exact_sum::exact_sum;
pub use quantile::quantile_score;
pub use segment::rfm_segment;
pub use summary::rfm_summary;

/// The family's scalar functions.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![rfm_segment()]
}

/// The family's aggregate functions.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![exact_sum(), rfm_summary()]
}

/// The family's window functions.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![quantile_score()]
}

/// The family's table functions with their documentation.
pub fn table_functions() -> Vec<(
    &'static str,
    Arc<dyn TableFunctionImpl>,
    &'static Documentation,
)> {
    vec![("rfm", Arc::new(table::RfmTableFunction), &table::DOC)]
}

/// DataFrame API helpers.
pub mod expr_fn {
    use datafusion::logical_expr::Expr;

    /// `exact_sum(value)`: an order-independent sum of a float column.
    pub fn exact_sum(value: Expr) -> Expr {
        super::exact_sum().call(vec![value])
    }

    /// `rfm_summary(ts, amount)`: a struct of `last_ts`, `frequency` and `monetary`.
    pub fn rfm_summary(ts: Expr, amount: Expr) -> Expr {
        super::rfm_summary().call(vec![ts, amount])
    }

    /// `rfm_segment(r, f, m)` with the default `'rfm11'` scheme.
    pub fn rfm_segment(r_score: Expr, f_score: Expr, m_score: Expr) -> Expr {
        super::rfm_segment().call(vec![r_score, f_score, m_score])
    }

    /// `quantile_score(value, bins)` as a window expression over the whole input
    /// (add `PARTITION BY` with `ExprFunctionExt::partition_by`).
    pub fn quantile_score(value: Expr, bins: Expr) -> Expr {
        super::quantile_score().call(vec![value, bins])
    }

    /// `quantile_score(value, bins, descending)`.
    pub fn quantile_score_with_order(value: Expr, bins: Expr, descending: Expr) -> Expr {
        super::quantile_score().call(vec![value, bins, descending])
    }

    /// `rfm_segment(r, f, m, scheme)`.
    pub fn rfm_segment_with_scheme(
        r_score: Expr,
        f_score: Expr,
        m_score: Expr,
        scheme: Expr,
    ) -> Expr {
        super::rfm_segment().call(vec![r_score, f_score, m_score, scheme])
    }
}
