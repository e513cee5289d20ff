//! Customer lifetime value: transaction summaries, buy-till-you-die model fits
//! (BG/NBD, Pareto/NBD, MBG/NBD, Gamma-Gamma), predictions and discounted CLV.

pub mod fit;
mod histogram;
pub mod model;
pub mod predict;
pub mod real;
pub mod summary;
pub mod table;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF};

pub use fit::{bgnbd_fit, gamma_gamma_fit, mbgnbd_fit, pareto_nbd_fit};
pub use predict::{
    bgnbd_expected_purchases, bgnbd_p_alive, customer_lifetime_value, gamma_gamma_expected_spend,
    mbgnbd_expected_purchases, mbgnbd_p_alive, pareto_nbd_expected_purchases, pareto_nbd_p_alive,
};
pub use summary::clv_summary;

/// The family's scalar functions.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        bgnbd_expected_purchases(),
        bgnbd_p_alive(),
        mbgnbd_expected_purchases(),
        mbgnbd_p_alive(),
        pareto_nbd_expected_purchases(),
        pareto_nbd_p_alive(),
        gamma_gamma_expected_spend(),
        customer_lifetime_value(),
    ]
}

/// The family's aggregate functions.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        clv_summary(),
        bgnbd_fit(),
        pareto_nbd_fit(),
        mbgnbd_fit(),
        gamma_gamma_fit(),
    ]
}

/// The family's table functions with their documentation.
pub fn table_functions() -> Vec<(
    &'static str,
    Arc<dyn TableFunctionImpl>,
    &'static Documentation,
)> {
    vec![("clv", Arc::new(table::ClvTable), &table::DOC)]
}

/// DataFrame API helpers.
pub mod expr_fn {
    use datafusion::logical_expr::Expr;

    /// `clv_summary(ts, amount, as_of, period)`.
    pub fn clv_summary(ts: Expr, amount: Expr, as_of: Expr, period: Expr) -> Expr {
        super::clv_summary().call(vec![ts, amount, as_of, period])
    }

    /// `bgnbd_fit(summary)`.
    pub fn bgnbd_fit(summary: Expr) -> Expr {
        super::bgnbd_fit().call(vec![summary])
    }

    /// `gamma_gamma_fit(summary)`.
    pub fn gamma_gamma_fit(summary: Expr) -> Expr {
        super::gamma_gamma_fit().call(vec![summary])
    }
}
