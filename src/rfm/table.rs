//! `rfm(table, customer_col, ts_col, amount_col [, as_of [, bins]])`: one row per
//! customer with recency, frequency, monetary, their scores, the cell and the segment.
//!
//! A table macro: it returns a view over a logical plan built from DataFusion's own
//! aggregate and our window/scalar functions, so the optimizer, memory pool,
//! spilling hash aggregate, partitioning and Ballista all apply.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, TableReference, plan_err};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::session_state::SessionState;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions::string::expr_fn::concat_ws;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::expr_fn::scalar_subquery;
use datafusion::logical_expr::{Documentation, Expr, LogicalPlanBuilder, cast, ident, lit};
use futures::FutureExt;

use super::{quantile_score, rfm_segment, rfm_summary, summary};
use crate::args::{doc_section, string_literal_arg};

const NAME: &str = "rfm";

/// The `rfm` table function.
#[derive(Debug, Default)]
pub struct RfmTableFunction;

pub static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("RFM"),
        "One row per customer of `table` with `customer`, `recency_days`, `frequency`, `monetary`, \
         `r_score`, `f_score`, `m_score`, `rfm_cell` and `segment`.\n\n\
         - `recency_days`: whole days (24-hour periods, rounded down) from the customer's last order to `as_of`.\n\
         - `frequency`: number of orders (rows); `monetary`: sum of `amount`, added exactly in \
           DECIMAL(38, 10) (so it does not depend on partitioning or batch size) and returned as a \
           double; NaN or infinite amounts are an error.\n\
         - scores: `quantile_score(…, bins)` over all customers — recency descending (recent = high), \
           frequency and monetary ascending; equal values always get equal scores.\n\
         - `rfm_cell`: the three scores concatenated (`'545'`; joined with `-` when bins > 9).\n\
         - `segment`: `rfm_segment(r, f, m)` (rfm11) when bins = 5, otherwise NULL.\n\n\
         `as_of` defaults to the latest timestamp in the table (NULL also means the default); rows \
         after `as_of` are ignored. `bins` defaults to 5. Rows with a NULL customer or NULL \
         timestamp are skipped. A NULL amount counts as an order but adds nothing to `monetary`; \
         negative amounts (refunds) reduce it — filter them in a view first if they are not \
         orders. `table` is any registered table or view name; the column arguments are column \
         names as strings (exact case). Table functions take positional arguments only.\n\n\
         The per-customer values come from one `rfm_summary` per customer. In sessions with \
         this crate's physical optimizer rules (the command line, `session_context`) and no \
         memory limit, that aggregate runs in one phase over the order rows hash-partitioned by \
         customer (less memory, faster); otherwise in DataFusion's two spilling phases.",
        "rfm(table, customer_col, ts_col, amount_col [, as_of [, bins]])",
    )
    .with_argument("table", "Name of a registered table or view, a string.")
    .with_argument("customer_col", "Name of the customer id column (any type).")
    .with_argument("ts_col", "Name of the order timestamp (or date) column.")
    .with_argument("amount_col", "Name of the order amount column (numeric).")
    .with_argument(
        "as_of",
        "Reference time for recency (a timestamp or a string such as '2026-01-01'); NULL or absent = latest order.",
    )
    .with_argument("bins", "Number of score levels, a positive integer; default 5.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE o(c INT, ts TIMESTAMP, amt DOUBLE) AS VALUES\n\
         >   (1, '2025-01-01', 10), (1, '2025-03-01', 30), (2, '2025-02-15', 5), (3, '2024-12-01', 100);\n\
         > SELECT customer, recency_days, frequency, monetary, rfm_cell FROM rfm('o', 'c', 'ts', 'amt', NULL, 3) ORDER BY customer;\n\
         +----------+--------------+-----------+----------+----------+\n\
         | customer | recency_days | frequency | monetary | rfm_cell |\n\
         +----------+--------------+-----------+----------+----------+\n\
         | 1        | 0            | 2         | 40.0     | 332      |\n\
         | 2        | 14           | 1         | 5.0      | 211      |\n\
         | 3        | 90           | 1         | 100.0    | 113      |\n\
         +----------+--------------+-----------+----------+----------+\n\
         ```",
    )
    .with_related_udf("quantile_score")
    .with_related_udf("rfm_segment")
    .with_related_udf("rfm_summary")
    .build()
});

fn string_arg(exprs: &[Expr], i: usize, what: &str) -> Result<String> {
    string_literal_arg(NAME, exprs, i, what)
}

fn is_null_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(v, _) if v.is_null())
}

impl TableFunctionImpl for RfmTableFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(4..=6).contains(&exprs.len()) {
            return plan_err!(
                "{NAME}: expected 4 to 6 arguments (table, customer_col, ts_col, amount_col [, as_of [, bins]]), got {}",
                exprs.len()
            );
        }
        let table = string_arg(exprs, 0, "table")?;
        let customer = string_arg(exprs, 1, "customer_col")?;
        let ts = string_arg(exprs, 2, "ts_col")?;
        let amount = string_arg(exprs, 3, "amount_col")?;
        let as_of = exprs.get(4).filter(|e| !is_null_literal(e)).cloned();
        let bins = match exprs.get(5) {
            None => 5,
            Some(Expr::Literal(v, _)) if !v.is_null() => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(b))) if b >= 1 => b,
                _ => {
                    return plan_err!(
                        "{NAME}: argument 6 'bins' must be a positive integer, got {v}"
                    );
                }
            },
            Some(e) => {
                return plan_err!(
                    "{NAME}: argument 6 'bins' must be a positive integer literal, got {e}"
                );
            }
        };

        // resolve the table through the session
        let Some(state) = args.session().as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{NAME}: needs a DataFusion SessionState to resolve table '{table}'");
        };
        let table_ref = TableReference::from(table.as_str());
        let schema = state.schema_for_ref(table_ref.clone())?;
        if !schema.table_exist(table_ref.table()) {
            return plan_err!("{NAME}: table '{table}' not found");
        }
        let provider = match schema.table(table_ref.table()).now_or_never() {
            Some(Ok(Some(p))) => p,
            Some(Ok(None)) => return plan_err!("{NAME}: table '{table}' not found"),
            Some(Err(e)) => return Err(e),
            None => {
                return plan_err!(
                    "{NAME}: table '{table}' cannot be resolved without blocking; register it first"
                );
            }
        };

        let scan = LogicalPlanBuilder::scan(
            table_ref.clone(),
            provider_as_source(Arc::clone(&provider)),
            None,
        )?;
        let input_schema = Arc::clone(scan.schema());
        let field = |name: &str, what: &str, pos: usize| match input_schema
            .fields()
            .iter()
            .find(|f| f.name() == name)
        {
            Some(f) => Ok(f.data_type().clone()),
            None => plan_err!(
                "{NAME}: argument {pos} '{what}': table '{table}' has no column '{name}' (columns: {})",
                input_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        field(&customer, "customer_col", 2)?;
        let ts_type = field(&ts, "ts_col", 3)?;
        if !matches!(
            ts_type,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
        ) {
            return plan_err!(
                "{NAME}: argument 3 'ts_col': column '{ts}' must be a timestamp or date, got {ts_type}"
            );
        }
        let amount_type = field(&amount, "amount_col", 4)?;
        if !amount_type.is_numeric() && !amount_type.is_null() {
            return plan_err!(
                "{NAME}: argument 4 'amount_col': column '{amount}' must be numeric, got {amount_type}"
            );
        }

        let mut keep = ident(&customer).is_not_null().and(ident(&ts).is_not_null());
        let as_of = as_of.map(|e| cast(e, ts_type.clone()));
        if let Some(a) = &as_of {
            keep = keep.and(ident(&ts).lt_eq(a.clone()));
        }
        // the last order, the order count and the exact amount sum in one accumulator
        // (`rfm_summary`: the values of max, count and a DECIMAL(38, 10) sum)
        // in one phase (hash-partitioned order rows) unless the session has a memory limit:
        // see `SummaryAggregateRule`
        // (a pool that does not report its limit counts as limited: a hang is worse than
        // the slower plan)
        let summary = match state.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Infinite => summary::rfm_summary_one_phase(),
            MemoryLimit::Finite(_) | MemoryLimit::Unknown => rfm_summary(),
        };
        let per_customer = scan
            .filter(keep)?
            .aggregate(
                vec![ident(&customer).alias("customer")],
                vec![
                    summary
                        .call(vec![ident(&ts), ident(&amount)])
                        .alias("summary"),
                ],
            )?
            .project(vec![
                ident("customer"),
                get_field(ident("summary"), "last_ts").alias("last_ts"),
                get_field(ident("summary"), "frequency").alias("frequency"),
                get_field(ident("summary"), "monetary").alias("monetary"),
            ])?;
        // recency in whole days, in exact integer microseconds; the default as_of is
        // the latest timestamp of the rows kept, a scalar subquery over the table (a
        // second, streaming scan of two columns: a window `max(...) OVER ()` over the
        // per-customer rows would buffer all of them outside the memory pool)
        let tz = match &ts_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let micros = move |e: Expr| {
            cast(
                cast(e, DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
                DataType::Int64,
            )
        };
        let recency = |as_of: Expr| {
            ((micros(as_of) - micros(ident("last_ts"))) / lit(86_400_000_000_i64))
                .alias("recency_days")
        };
        let as_of = match as_of {
            Some(a) => a,
            None => scalar_subquery(Arc::new(
                LogicalPlanBuilder::scan(table_ref, provider_as_source(provider), None)?
                    .filter(ident(&customer).is_not_null().and(ident(&ts).is_not_null()))?
                    .aggregate(Vec::<Expr>::new(), vec![max(ident(&ts)).alias("as_of")])?
                    .build()?,
            )),
        };
        let with_recency = per_customer.project(vec![
            ident("customer"),
            ident("frequency"),
            ident("monetary"),
            recency(as_of),
        ])?;
        let q = |e: Expr, descending: bool| {
            Expr::from(WindowFunction::new(
                quantile_score(),
                vec![e, lit(bins), lit(descending)],
            ))
        };
        let scored = with_recency.window(vec![
            q(ident("recency_days"), true).alias("r_score"),
            q(ident("frequency"), false).alias("f_score"),
            q(ident("monetary"), false).alias("m_score"),
        ])?;
        let sep = if bins > 9 { "-" } else { "" };
        let cell = concat_ws(
            lit(sep),
            vec![
                cast(ident("r_score"), DataType::Utf8),
                cast(ident("f_score"), DataType::Utf8),
                cast(ident("m_score"), DataType::Utf8),
            ],
        )
        .alias("rfm_cell");
        let segment = if bins == 5 {
            rfm_segment().call(vec![ident("r_score"), ident("f_score"), ident("m_score")])
        } else {
            lit(ScalarValue::Utf8(None))
        }
        .alias("segment");
        let plan = scored
            .project(vec![
                ident("customer"),
                ident("recency_days"),
                ident("frequency"),
                ident("monetary"),
                ident("r_score"),
                ident("f_score"),
                ident("m_score"),
                cell,
                segment,
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
