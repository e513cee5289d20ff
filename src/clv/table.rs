//! `clv(table, customer_col, ts_col, amount_col [, as_of [, horizon_months [, period]]])`: one
//! row per customer with the summary, P(alive), expected purchases, expected spend and CLV
//! from BG/NBD + Gamma-Gamma fitted on the same table. A view over the SQL an analyst would
//! write with this family's functions (see `sql/customer_lifetime_value.sql`).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{Documentation, Expr};

use super::model::Period;
use crate::args::{
    doc_section, integer_literal_arg, quote_ident, quote_table, sql_view, string_literal_arg,
};

const NAME: &str = "clv";

/// The `clv` table function.
#[derive(Debug, Default)]
pub struct ClvTable;

pub static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Customer lifetime value"),
        "One row per customer of a transactions table: its `clv_summary` (frequency, recency, T, \
         monetary_value), `p_alive` and `expected_purchases` over the horizon from a BG/NBD model, \
         `expected_spend` from a Gamma-Gamma model (both fitted on the same table; Gamma-Gamma on \
         customers with repeat purchases and monetary_value > 0), and `clv`, the discounted \
         value over `horizon_months` at 1% a month (30-day months). `as_of` defaults to the \
         latest purchase; purchases after it are ignored and customers without any purchase up \
         to it are left out. Column arguments are names as strings (exact case). It plans the \
         equivalent SQL (as in `sql/customer_lifetime_value.sql`) against the session, so the \
         session must have this crate's functions registered. The fitted models themselves: \
         `SELECT bgnbd_fit(s) ...` as in that file.",
        "clv(table, customer_col, ts_col, amount_col [, as_of [, horizon_months [, period]]])",
    )
    .with_argument("table", "Name of a registered table or view with one row per purchase, a string.")
    .with_argument("customer_col", "Column identifying the customer.")
    .with_argument("ts_col", "Column with the purchase time (timestamp or date).")
    .with_argument("amount_col", "Column with the purchase amount.")
    .with_argument("as_of", "End of observation: a timestamp or date literal, or a string such as '2025-06-30'; default (or NULL) the latest purchase.")
    .with_argument("horizon_months", "Months ahead for expected purchases and CLV, an integer literal; default 12.")
    .with_argument("period", "'day' (default), 'week' or 'month': the unit purchases are summarised in.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE purchases(customer INT, ts DATE, amount DOUBLE) AS VALUES\n\
         >   (1, '2025-01-01', 20), (1, '2025-01-20', 35), (1, '2025-02-10', 25), (1, '2025-03-02', 30),\n\
         >   (1, '2025-04-01', 22), (1, '2025-06-12', 41), (2, '2025-01-15', 40), (3, '2025-01-05', 10),\n\
         >   (3, '2025-01-25', 12), (4, '2025-02-03', 50), (4, '2025-06-01', 70), (5, '2025-04-10', 15),\n\
         >   (6, '2025-01-20', 30), (6, '2025-02-20', 28), (6, '2025-03-25', 31), (7, '2025-01-02', 60),\n\
         >   (8, '2025-03-01', 25), (8, '2025-03-09', 20);\n\
         > SELECT customer, frequency, recency, \"T\", round(p_alive, 3) AS p_alive,\n\
         >        round(expected_purchases, 2) AS purchases_12m, round(clv, 2) AS clv\n\
         > FROM clv('purchases', 'customer', 'ts', 'amount', '2025-06-30') ORDER BY customer;\n\
         +----------+-----------+---------+-----+---------+---------------+--------+\n\
         | customer | frequency | recency | T   | p_alive | purchases_12m | clv    |\n\
         +----------+-----------+---------+-----+---------+---------------+--------+\n\
         | 1        | 5         | 162     | 180 | 0.921   | 6.68          | 197.09 |\n\
         | 2        | 0         | 0       | 166 | 1.0     | 1.04          | 30.73  |\n\
         | 3        | 1         | 20      | 176 | 0.164   | 0.38          | 11.24  |\n\
         | 4        | 1         | 118     | 147 | 0.499   | 1.29          | 38.09  |\n\
         | 5        | 0         | 0       | 81  | 1.0     | 1.44          | 42.58  |\n\
         | 6        | 2         | 64      | 161 | 0.534   | 2.02          | 59.73  |\n\
         | 7        | 0         | 0       | 179 | 1.0     | 1.0           | 29.52  |\n\
         | 8        | 1         | 8       | 121 | 0.197   | 0.57          | 16.73  |\n\
         +----------+-----------+---------+-----+---------+---------------+--------+\n\
         ```",
    )
    .with_related_udf("clv_summary")
    .with_related_udf("bgnbd_fit")
    .with_related_udf("customer_lifetime_value")
    .build()
});

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL the table function plans. `as_of` is an SQL expression (or None for the latest
/// purchase).
pub fn clv_sql(
    table: &str,
    customer: &str,
    ts: &str,
    amount: &str,
    as_of: Option<&str>,
    horizon_months: u32,
    period: Period,
) -> String {
    let table = quote_table(table);
    let (c, t, a) = (quote_ident(customer), quote_ident(ts), quote_ident(amount));
    let as_of = as_of.map_or_else(|| "(SELECT max(ts) FROM tx)".to_string(), str::to_string);
    let p = period.name();
    let horizon_periods = f64::from(horizon_months) * period.per_month(30.0);
    format!(
        "WITH tx AS (
  SELECT {c} AS customer, {t} AS ts, CAST({a} AS DOUBLE) AS amount
  FROM {table} WHERE {c} IS NOT NULL AND {t} IS NOT NULL
),
s AS (
  SELECT customer, clv_summary(ts, amount, {as_of}, '{p}') AS s FROM tx GROUP BY customer
),
f AS (
  SELECT customer, s.frequency AS frequency, s.recency AS recency, s.\"T\" AS \"T\",
         s.monetary_value AS monetary_value
  FROM s WHERE s IS NOT NULL
),
m AS (
  SELECT bgnbd_fit(frequency, recency, \"T\", 0, '{p}') AS bg,
         gamma_gamma_fit(frequency, monetary_value) FILTER (WHERE monetary_value > 0) AS gg
  FROM f
)
SELECT customer, frequency, recency, \"T\", monetary_value,
  bgnbd_p_alive(bg, frequency, recency, \"T\") AS p_alive,
  bgnbd_expected_purchases(bg, {horizon_periods:?}, frequency, recency, \"T\") AS expected_purchases,
  gamma_gamma_expected_spend(gg, frequency, monetary_value) AS expected_spend,
  customer_lifetime_value(bg, gg, frequency, recency, \"T\", monetary_value, {horizon_months}) AS clv
FROM f CROSS JOIN m"
    )
}

fn as_of_arg(exprs: &[Expr]) -> Result<Option<String>> {
    let Some(e) = exprs.get(4) else {
        return Ok(None);
    };
    let Expr::Literal(v, _) = e else {
        return plan_err!("{NAME}: argument 5 'as_of' must be a literal, got {e}");
    };
    if v.is_null() {
        return Ok(None);
    }
    match v.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = v.try_as_str().flatten().unwrap_or_default();
            Ok(Some(format!("CAST({} AS TIMESTAMP)", sql_string(s))))
        }
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            let ScalarValue::Utf8(Some(s)) = v.cast_to(&DataType::Utf8)? else {
                return plan_err!("{NAME}: argument 5 'as_of' cannot be read: {v}");
            };
            Ok(Some(format!("CAST({} AS TIMESTAMP)", sql_string(&s))))
        }
        other => plan_err!(
            "{NAME}: argument 5 'as_of' must be a timestamp, a date or a string, got {other}"
        ),
    }
}

impl TableFunctionImpl for ClvTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(4..=7).contains(&exprs.len()) {
            return plan_err!(
                "{NAME}: expected 4 to 7 arguments (table, customer_col, ts_col, amount_col [, as_of [, horizon_months [, period]]]), got {}",
                exprs.len()
            );
        }
        let names = ["table", "customer_col", "ts_col", "amount_col"];
        let mut a = Vec::with_capacity(4);
        for (i, n) in names.iter().enumerate() {
            a.push(string_literal_arg(NAME, exprs, i, n)?);
        }
        let as_of = as_of_arg(exprs)?;
        let horizon =
            integer_literal_arg(NAME, exprs, 5, "horizon_months", 0, 1200)?.unwrap_or(12) as u32;
        let period = if exprs.len() > 6 {
            let s = string_literal_arg(NAME, exprs, 6, "period")?;
            match Period::parse(&s) {
                Some(p) => p,
                None => {
                    return plan_err!(
                        "{NAME}: argument 7 'period' must be 'day', 'week' or 'month', got '{s}'"
                    );
                }
            }
        } else {
            Period::Day
        };
        let sql = clv_sql(
            &a[0],
            &a[1],
            &a[2],
            &a[3],
            as_of.as_deref(),
            horizon,
            period,
        );
        sql_view(NAME, args.session(), sql, &a[0])
    }
}
