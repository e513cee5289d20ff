//! RFM: recency / frequency / monetary scoring and segments.

pub mod model;
pub mod segment;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub use segment::rfm_segment;

/// The family's scalar functions.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![rfm_segment()]
}

/// DataFrame API helpers.
pub mod expr_fn {
    use datafusion::logical_expr::Expr;

    /// `rfm_segment(r, f, m)` with the default `'rfm11'` scheme.
    pub fn rfm_segment(r_score: Expr, f_score: Expr, m_score: Expr) -> Expr {
        super::rfm_segment().call(vec![r_score, f_score, m_score])
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
