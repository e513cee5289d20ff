//! `channel_attribution(table, journey_col, ts_col, channel_col, converted_col, value_col)`:
//! one row per channel with the conversions and value credited by every model side by side.
//!
//! A table macro in the literal sense: it writes the SQL an analyst would write with our
//! functions (see `sql/channel_attribution.sql`), plans it against the session and returns
//! the plan as a view, so the optimizer, spilling and Ballista apply.

use std::sync::{Arc, LazyLock};

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{Documentation, Expr};

use crate::args::{doc_section, quote_ident, quote_table, sql_view, string_literal_arg};

const NAME: &str = "channel_attribution";

/// The `channel_attribution` table function.
#[derive(Debug, Default)]
pub struct ChannelAttributionTable;

pub static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "One row per channel with the conversions and value credited by every model side by side: \
         `first_touch`, `last_touch`, `last_non_direct` (direct channel `'direct'`), `linear`, \
         `position_based` (0.4/0.4), `time_decay` (half-life 7 days, measured to the journey's last \
         touch), `markov` (order 1) and `shapley`, each with a `_value` column. Input: one row per \
         touch; `journey_col` groups touches into journeys, ordered by `ts_col`; a journey converts \
         when `converted_col` (boolean or number > 0) is true on any of its rows, and its value is \
         the largest `value_col` of its rows (repeat the conversion value on the rows). Rows with a \
         NULL journey, timestamp or channel are skipped. Every model's conversions sum to the number \
         of converting journeys. Column arguments are names as strings (exact case). It plans the \
         equivalent SQL (as in `sql/channel_attribution.sql`) against the session, so the session \
         must have this crate's functions registered.",
        "channel_attribution(table, journey_col, ts_col, channel_col, converted_col, value_col)",
    )
    .with_argument("table", "Name of a registered table or view with one row per touch, a string.")
    .with_argument("journey_col", "Column identifying the journey.")
    .with_argument("ts_col", "Column ordering the touches (a timestamp).")
    .with_argument("channel_col", "Column with the touch's channel.")
    .with_argument("converted_col", "Column saying whether the journey converted (boolean or number).")
    .with_argument("value_col", "Column with the journey's conversion value.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE t(j INT, ts TIMESTAMP, ch VARCHAR, conv BOOLEAN, val DOUBLE) AS VALUES\n\
         >   (1, '2025-01-01', 'A', true, 10), (1, '2025-01-02', 'B', true, 10), (2, '2025-01-03', 'B', false, 0);\n\
         > SELECT channel, first_touch, last_touch, linear, round(markov, 4) AS markov, shapley\n\
         > FROM channel_attribution('t', 'j', 'ts', 'ch', 'conv', 'val') ORDER BY channel;\n\
         +---------+-------------+------------+--------+--------+---------+\n\
         | channel | first_touch | last_touch | linear | markov | shapley |\n\
         +---------+-------------+------------+--------+--------+---------+\n\
         | A       | 1.0         | 0.0        | 0.5    | 0.3333 | 0.5     |\n\
         | B       | 0.0         | 1.0        | 0.5    | 0.6667 | 0.5     |\n\
         +---------+-------------+------------+--------+--------+---------+\n\
         ```",
    )
    .with_related_udf("markov_attribution")
    .with_related_udf("shapley_attribution")
    .with_related_udf("attribution_weights")
    .build()
});

fn string_arg(exprs: &[Expr], i: usize, what: &str) -> Result<String> {
    string_literal_arg(NAME, exprs, i, what)
}

/// The SQL the table function plans.
pub fn attribution_sql(
    table: &str,
    journey: &str,
    ts: &str,
    channel: &str,
    converted: &str,
    value: &str,
) -> String {
    let table = quote_table(table);
    let (j, t, c, cv, v) = (
        quote_ident(journey),
        quote_ident(ts),
        quote_ident(channel),
        quote_ident(converted),
        quote_ident(value),
    );
    let models = [
        "first_touch",
        "last_touch",
        "last_non_direct",
        "linear",
        "position_based",
    ];
    let heuristic_cols: String = models
        .iter()
        .map(|m| {
            format!(
                "sum(CASE WHEN model = '{m}' THEN w * converted ELSE 0 END) AS {m}, \
                 sum(CASE WHEN model = '{m}' THEN w * value ELSE 0 END) AS {m}_value"
            )
        })
        .collect::<Vec<_>>()
        .join(",\n  ");
    let outer_cols: String = [
        "first_touch",
        "last_touch",
        "last_non_direct",
        "linear",
        "position_based",
        "time_decay",
    ]
    .iter()
    .map(|m| format!("coalesce(h.{m}, 0.0) AS {m}, coalesce(h.{m}_value, 0.0) AS {m}_value"))
    .collect::<Vec<_>>()
    .join(",\n  ");
    format!(
        "WITH touches AS (
  SELECT {j} AS journey, {t} AS ts, CAST({c} AS VARCHAR) AS channel,
         CASE WHEN CAST({cv} AS DOUBLE) > 0 THEN 1 ELSE 0 END AS conv,
         coalesce(CAST({v} AS DOUBLE), 0.0) AS val
  FROM {table}
  WHERE {j} IS NOT NULL AND {t} IS NOT NULL AND {c} IS NOT NULL
),
journeys AS (
  SELECT journey, journey_path(channel, ts) AS path, array_sort(array_agg(ts)) AS times,
         max(ts) AS last_ts, max(conv) AS converted, max(val) AS value
  FROM touches GROUP BY journey
),
credits AS (
  SELECT m.model AS model, converted, value, unnest(path) AS ch, unnest(attribution_weights(path, m.model)) AS w
  FROM journeys, (VALUES ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'), ('position_based')) m(model)
  WHERE converted = 1
  UNION ALL
  SELECT 'time_decay' AS model, converted, value, unnest(path) AS ch, unnest(time_decay_weights(times, last_ts)) AS w
  FROM journeys WHERE converted = 1
),
heuristic AS (
  SELECT ch AS channel,
  {heuristic_cols},
  sum(CASE WHEN model = 'time_decay' THEN w * converted ELSE 0 END) AS time_decay,
  sum(CASE WHEN model = 'time_decay' THEN w * value ELSE 0 END) AS time_decay_value
  FROM credits GROUP BY ch
),
markov AS (
  SELECT c.channel AS channel, c.conversions AS markov, c.value AS markov_value
  FROM (SELECT unnest(markov_attribution(path, converted, value)) AS c FROM journeys)
),
shapley AS (
  SELECT c.channel AS channel, c.conversions AS shapley, c.value AS shapley_value
  FROM (SELECT unnest(shapley_attribution(path, converted, value)) AS c FROM journeys)
)
SELECT k.channel AS channel,
  {outer_cols},
  k.markov AS markov, k.markov_value AS markov_value,
  coalesce(s.shapley, 0.0) AS shapley, coalesce(s.shapley_value, 0.0) AS shapley_value
FROM markov k
LEFT JOIN heuristic h ON h.channel = k.channel
LEFT JOIN shapley s ON s.channel = k.channel"
    )
}

impl TableFunctionImpl for ChannelAttributionTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() != 6 {
            return plan_err!(
                "{NAME}: expected 6 arguments (table, journey_col, ts_col, channel_col, converted_col, value_col), got {}",
                exprs.len()
            );
        }
        let names = [
            "table",
            "journey_col",
            "ts_col",
            "channel_col",
            "converted_col",
            "value_col",
        ];
        let mut a = Vec::with_capacity(6);
        for (i, n) in names.iter().enumerate() {
            a.push(string_arg(exprs, i, n)?);
        }
        let sql = attribution_sql(&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]);
        sql_view(NAME, args.session(), sql, &a[0])
    }
}
