//! Multi-touch attribution: heuristic weights and exact Markov removal effects.

mod input;
pub mod journey;
pub mod markov;
pub mod model;
pub mod shapley;
pub mod table;
pub mod weights;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF};

pub use journey::journey_path;
pub use markov::markov_attribution;
pub use shapley::shapley_attribution;
pub use weights::{attribution_weights, time_decay_weights_udf as time_decay_weights};

/// The family's scalar functions.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![attribution_weights(), time_decay_weights()]
}

/// The family's aggregate functions.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![journey_path(), markov_attribution(), shapley_attribution()]
}

/// The family's table functions with their documentation.
pub fn table_functions() -> Vec<(
    &'static str,
    Arc<dyn TableFunctionImpl>,
    &'static Documentation,
)> {
    vec![(
        "channel_attribution",
        Arc::new(table::ChannelAttributionTable),
        &table::DOC,
    )]
}

/// DataFrame API helpers.
pub mod expr_fn {
    use datafusion::logical_expr::Expr;

    /// `attribution_weights(path, model)`.
    pub fn attribution_weights(path: Expr, model: Expr) -> Expr {
        super::attribution_weights().call(vec![path, model])
    }

    /// `time_decay_weights(touch_times, conversion_time, half_life_days)`.
    pub fn time_decay_weights(
        touch_times: Expr,
        conversion_time: Expr,
        half_life_days: Expr,
    ) -> Expr {
        super::time_decay_weights().call(vec![touch_times, conversion_time, half_life_days])
    }

    /// `shapley_attribution(path, conversions, value)`.
    pub fn shapley_attribution(path: Expr, conversions: Expr, value: Expr) -> Expr {
        super::shapley_attribution().call(vec![path, conversions, value])
    }

    /// `markov_attribution(path, conversions, value)` (order 1).
    pub fn markov_attribution(path: Expr, conversions: Expr, value: Expr) -> Expr {
        super::markov_attribution().call(vec![path, conversions, value])
    }
}
