//! RFM against DuckDB's hand-written SQL (frozen fixture, see tests/data/make_rfm_fixture.py),
//! and determinism across partition counts and batch sizes.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::common::{pretty, query};

const RFM_SQL: &str =
    "SELECT * FROM rfm('orders', 'customer_id', 'order_ts', 'amount') ORDER BY customer";

async fn context(config: SessionConfig) -> SessionContext {
    crate::common::lake_context_with(config).await
}

#[tokio::test]
async fn rfm_matches_duckdb_hand_written_sql() {
    let fixture = include_str!("data/rfm_duckdb_seed7_3000.csv");
    let mut expected: HashMap<i64, (i64, i64, f64, [i64; 3])> = HashMap::new();
    for line in fixture.lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        let p = |i: usize| v[i].parse::<i64>().unwrap();
        expected.insert(
            p(0),
            (p(1), p(2), v[3].parse().unwrap(), [p(4), p(5), p(6)]),
        );
    }
    let ctx = context(SessionConfig::new()).await;
    let batches = query(&ctx, RFM_SQL).await;
    let mut seen = 0;
    for b in &batches {
        let customer = b.column(0).as_primitive::<Int64Type>();
        let recency = b.column(1).as_primitive::<Int64Type>();
        let frequency = b.column(2).as_primitive::<Int64Type>();
        let monetary = b.column(3).as_primitive::<Float64Type>();
        let scores = [4, 5, 6].map(|i| b.column(i).as_primitive::<Int64Type>().clone());
        for i in 0..b.num_rows() {
            let c = customer.value(i);
            let (r, f, m, s) = expected
                .get(&c)
                .unwrap_or_else(|| panic!("customer {c} not in DuckDB's answer"));
            assert_eq!(recency.value(i), *r, "recency of {c}");
            assert_eq!(frequency.value(i), *f, "frequency of {c}");
            let rel = (monetary.value(i) - m).abs() / m.abs().max(1.0);
            assert!(rel < 1e-9, "monetary of {c}: {} vs {m}", monetary.value(i));
            let got = [0, 1, 2].map(|k| scores[k].value(i));
            assert_eq!(&got, s, "scores of {c}");
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len(), "same customers as DuckDB");
}

#[tokio::test]
async fn same_answer_on_1_and_16_partitions_and_tiny_batches() {
    let base = pretty(
        &query(
            &context(SessionConfig::new().with_target_partitions(1)).await,
            RFM_SQL,
        )
        .await,
    );
    let wide = pretty(
        &query(
            &context(SessionConfig::new().with_target_partitions(16)).await,
            RFM_SQL,
        )
        .await,
    );
    let tiny = pretty(
        &query(
            &context(
                SessionConfig::new()
                    .with_target_partitions(4)
                    .with_batch_size(7),
            )
            .await,
            RFM_SQL,
        )
        .await,
    );
    assert!(base.lines().count() > 2000);
    assert!(base == wide, "16 partitions differ from 1");
    assert!(base == tiny, "batch size 7 differs");
}

#[tokio::test]
async fn segments_are_the_named_cells_and_cover_every_buyer() {
    let ctx = context(SessionConfig::new()).await;
    let batches = query(
        &ctx,
        "SELECT rfm_cell, segment, r_score, f_score, m_score FROM rfm('orders', 'customer_id', 'order_ts', 'amount')",
    )
    .await;
    let mut rows = 0;
    for b in &batches {
        let cell = b.column(0).as_string_view_opt().cloned();
        for i in 0..b.num_rows() {
            let s = [2, 3, 4].map(|k| b.column(k).as_primitive::<Int64Type>().value(i));
            assert!(s.iter().all(|x| (1..=5).contains(x)));
            let expected_cell = format!("{}{}{}", s[0], s[1], s[2]);
            let got = match &cell {
                Some(a) => a.value(i).to_string(),
                None => b.column(0).as_string::<i32>().value(i).to_string(),
            };
            assert_eq!(got, expected_cell);
            assert!(!b.column(1).is_null(i));
            rows += 1;
        }
    }
    assert!(rows > 2000);
}

/// `exact_sum` and `rfm_summary`'s `monetary` give the bits of the DECIMAL(38, 10) route for
/// every customer of the lake (amounts with cents, summed as doubles), and `rfm_summary`'s
/// `frequency` and `last_ts` are `count(*)` and `max(order_ts)`, on 1 and 16 partitions and
/// batches of 7 rows.
#[tokio::test]
async fn exact_sums_equal_the_decimal_route_bit_for_bit() {
    let sql = "SELECT customer_id, exact_sum(amount * 1.0001) AS e, \
               CAST(sum(CAST(amount * 1.0001 AS DECIMAL(38, 10))) AS DOUBLE) AS d, \
               rfm_summary(order_ts, amount * 1.0001)['monetary'] AS s, \
               rfm_summary(order_ts, amount * 1.0001)['frequency'] = count(*) \
                 AND rfm_summary(order_ts, amount * 1.0001)['last_ts'] = max(order_ts) AS same \
               FROM orders GROUP BY customer_id ORDER BY customer_id";
    let mut answers = Vec::new();
    for config in [
        SessionConfig::new().with_target_partitions(1),
        SessionConfig::new()
            .with_target_partitions(16)
            .with_batch_size(7),
    ] {
        let ctx = context(config).await;
        let mut bits = Vec::new();
        for b in query(&ctx, sql).await {
            let [e, d, s] = [1, 2, 3].map(|c| b.column(c).as_primitive::<Float64Type>().clone());
            let same = b.column(4).as_boolean();
            for i in 0..b.num_rows() {
                assert_eq!(e.value(i).to_bits(), d.value(i).to_bits(), "row {i}");
                assert_eq!(s.value(i).to_bits(), d.value(i).to_bits(), "row {i}");
                assert!(
                    same.is_valid(i) && same.value(i),
                    "row {i}: frequency or last_ts"
                );
                bits.push(e.value(i).to_bits());
            }
        }
        assert!(bits.len() > 1000);
        answers.push(bits);
    }
    assert!(
        answers[0] == answers[1],
        "partitioning changed an exact sum"
    );
}
