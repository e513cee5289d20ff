//! Criterion benches per kernel. Run: `cargo bench --bench kernels`.
//! Speed targets live here (and in the end-to-end comparison), never in timed tests.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion_marketing::generate::sim::{
    CustomerRow, EventRow, ItemRow, OrderRow, Sink, TouchRow, World, simulate_customer,
};
use datafusion_marketing::kernels::{
    Dual, MarkovCounts, Pattern, Real, Spend, Times, bg_family_curve, bgnbd_ll_gradient,
    bgnbd_ll_indexed, discounted_increments, frequent_itemsets, gamma_gamma_ll,
    gamma_gamma_ll_gradient, gamma_gamma_ll_gradient_hessian, ln_hyp2f1_a_b_a1, month_horizons,
    pareto_ll_gradient, pareto_row_ll, sort_patterns, sort_spends,
};

struct Count(u64);

impl Sink for Count {
    fn customer(&mut self, _: CustomerRow) {}
    fn order(&mut self, _: OrderRow) {
        self.0 += 1;
    }
    fn item(&mut self, _: ItemRow) {}
    fn touch(&mut self, _: TouchRow) {}
    fn event(&mut self, _: EventRow) {}
}

fn generator(c: &mut Criterion) {
    let world = World::new(42, 1_000_000);
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("simulate_1000_customers", |b| {
        let mut next = 1;
        b.iter(|| {
            let mut sink = Count(0);
            for id in next..next + 1000 {
                simulate_customer(&world, id, &mut sink);
            }
            next += 1000;
            sink.0
        });
    });
    g.finish();
}

/// A context with our functions and one in-memory table, plus a runtime to query it.
fn context_with(name: &str, batch: RecordBatch) -> (tokio::runtime::Runtime, SessionContext) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    datafusion_marketing::register_on_context(&ctx).unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
    (rt, ctx)
}

fn run(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() })
}

fn rfm_segment(c: &mut Criterion) {
    const ROWS: usize = 1 << 20;
    let schema = Arc::new(Schema::new(vec![
        Field::new("r", DataType::Int64, false),
        Field::new("f", DataType::Int64, false),
        Field::new("m", DataType::Int64, false),
    ]));
    let col = |k: i64| {
        Arc::new(Int64Array::from_iter_values(
            (0..ROWS as i64).map(|i| 1 + (i * k) % 5),
        )) as _
    };
    let batch = RecordBatch::try_new(schema, vec![col(7), col(11), col(13)]).unwrap();
    let (rt, ctx) = context_with("scores", batch);
    let mut g = c.benchmark_group("rfm_segment");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("1M_rows", |b| {
        b.iter(|| {
            run(
                &rt,
                &ctx,
                "SELECT count(DISTINCT rfm_segment(r, f, m)) FROM scores",
            )
        });
    });
    g.finish();
}

/// `rfm`'s per-customer step: one `rfm_summary` accumulator against the three it replaced
/// (`max`, `count`, `exact_sum`), over 2M orders of 200k customers in random order.
fn rfm_summary(c: &mut Criterion) {
    const ROWS: usize = 2_000_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("c", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let mut rand = stream(17);
    let customers = Int64Array::from_iter_values((0..ROWS).map(|_| rand(200_000) as i64));
    let ts = Int64Array::from_iter_values(
        (0..ROWS).map(|_| 1_700_000_000_000_000 + rand(1 << 40) as i64),
    );
    let amounts = Float64Array::from_iter_values((0..ROWS).map(|_| rand(100_000) as f64 / 100.0));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(customers), Arc::new(ts), Arc::new(amounts)],
    )
    .unwrap();
    let (rt, ctx) = context_with("orders_raw", batch);
    run(
        &rt,
        &ctx,
        "CREATE VIEW orders AS SELECT c, to_timestamp_micros(ts) AS ts, amount FROM orders_raw",
    );
    let mut g = c.benchmark_group("rfm_summary");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    // the outer aggregates use every per-customer value (unused ones would be pruned)
    for (name, sql) in [
        (
            "2M_orders_200k_customers",
            "SELECT count(*), sum(s['frequency']), max(s['last_ts']), sum(s['monetary']) \
             FROM (SELECT c, rfm_summary(ts, amount) AS s FROM orders GROUP BY c)",
        ),
        (
            "2M_orders_200k_customers_max_count_exact_sum",
            "SELECT count(*), sum(f), max(l), sum(m) \
             FROM (SELECT c, max(ts) AS l, count(*) AS f, exact_sum(amount) AS m FROM orders GROUP BY c)",
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| run(&rt, &ctx, sql)));
    }
    g.finish();
}

fn quantile_score(c: &mut Criterion) {
    const ROWS: usize = 1 << 20;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    // many ties, as with order counts: values in 1..=50, pseudo-random order
    let values =
        Int64Array::from_iter_values((0..ROWS as i64).map(|i| 1 + (i * 2_654_435_761) % 50));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
    let (rt, ctx) = context_with("t", batch);
    let mut g = c.benchmark_group("quantile_score");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("1M_rows_over_all", |b| {
        b.iter(|| {
            run(
                &rt,
                &ctx,
                "SELECT count(*) FROM (SELECT quantile_score(v, 5) OVER () AS s FROM t) WHERE s = 5",
            )
        });
    });
    // distinct-ish amounts, as per-customer monetary sums: the sort path
    let schema = Arc::new(Schema::new(vec![Field::new("m", DataType::Float64, false)]));
    let mut rand = stream(13);
    let amounts =
        Float64Array::from_iter_values((0..ROWS).map(|_| (100 + rand(5_000_000)) as f64 / 100.0));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(amounts)]).unwrap();
    let (rt, ctx) = context_with("a", batch);
    g.bench_function("1M_amounts_over_all", |b| {
        b.iter(|| {
            run(
                &rt,
                &ctx,
                "SELECT count(*) FROM (SELECT quantile_score(m, 5) OVER () AS s FROM a) WHERE s = 5",
            )
        });
    });
    g.finish();
}

/// CDNOW-like customers (x, t_x, T) from a fixed arithmetic pattern: no RNG, same data every run.
fn customers(n: usize) -> RecordBatch {
    use datafusion::arrow::array::Float64Array;
    let mut x = Vec::with_capacity(n);
    let mut tx = Vec::with_capacity(n);
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let h = (i as u64).wrapping_mul(2_654_435_761) % 1000;
        let age = 27.0 + (h % 12) as f64; // weeks
        let freq = if h < 600 { 0 } else { (h % 7) + (h % 13) / 4 };
        let rec = if freq == 0 {
            0.0
        } else {
            age * ((h % 97) as f64 / 97.0)
        };
        x.push(freq as f64);
        tx.push((rec * 7.0).round() / 7.0);
        t.push(age);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("tx", DataType::Float64, false),
        Field::new("t", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(x)),
            Arc::new(Float64Array::from(tx)),
            Arc::new(Float64Array::from(t)),
        ],
    )
    .unwrap()
}

/// Model fits: the histogram aggregate plus the optimizer (likelihood + exact gradient per
/// iteration; Pareto/NBD adds the hypergeometric series or the quadrature).
fn clv_fits(c: &mut Criterion) {
    let (rt, ctx) = context_with("c", customers(100_000));
    let mut g = c.benchmark_group("clv_fit");
    g.sample_size(10);
    for f in ["bgnbd_fit", "mbgnbd_fit", "pareto_nbd_fit"] {
        g.bench_function(format!("{f}_100k_customers"), |b| {
            b.iter(|| run(&rt, &ctx, &format!("SELECT {f}(x, tx, t) FROM c")));
        });
    }
    g.finish();
}

/// Predictions: one customer's 12-month BG/NBD curve (the hypergeometric series per month,
/// computed once per distinct (frequency, T)), and `customer_lifetime_value` over 100k
/// customers once those curves are cached (the per-row work: lookup, denominator, spend).
fn clv_predict(c: &mut Criterion) {
    let p = [1.2635, 18.25, 1.4532, 13.406]; // the large benchmark's day-unit fit
    let mut horizons = Vec::new();
    month_horizons(12, 30.0, &mut horizons);
    let mut g = c.benchmark_group("clv_predict");
    // young customers need the longest series (z = 360/(α + T + 360) near 1)
    for t in [30.0, 365.0, 1000.0] {
        g.bench_function(format!("bgnbd_curve_12_months_t{t}"), |b| {
            let mut out = [0.0; 12];
            b.iter(|| {
                bg_family_curve(false, &p, &horizons, 4.0, t, &mut out);
                discounted_increments(&out, 0.01)
            });
        });
    }
    let (rt, ctx) = context_with("c", customers(100_000));
    let sql = "SELECT sum(customer_lifetime_value(named_struct('model', 'bgnbd', 'r', 0.2426, \
               'alpha', 4.4136, 'a', 0.7929, 'b', 2.4259, 'period', 'week'), \
               named_struct('model', 'gamma_gamma', 'p', 6.25, 'q', 3.74, 'v', 15.44), x, tx, t, 20.0)) FROM c";
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("customer_lifetime_value_100k_customers_cached", |b| {
        b.iter(|| run(&rt, &ctx, sql));
    });
    g.finish();
}

/// Baskets of 2 to 17 items from 2,000 items with a skew, no RNG: the same data every run.
fn baskets(n: usize) -> RecordBatch {
    use datafusion::arrow::array::{Array, ListArray};
    use datafusion::arrow::datatypes::Int64Type;
    let lists = (0..n as u64).map(|b| {
        let len = 2 + (b.wrapping_mul(2_654_435_761) % 16);
        Some(
            (0..len)
                .map(|k| {
                    let h = (b * 31 + k * 17).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    Some(((h % 2000) * (h % 2000) / 2000) as i64)
                })
                .collect::<Vec<_>>(),
        )
    });
    let items = ListArray::from_iter_primitive::<Int64Type, _, _>(lists);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "items",
        items.data_type().clone(),
        true,
    )]));
    RecordBatch::try_new(schema, vec![Arc::new(items)]).unwrap()
}

/// Similarity kernels: pair generation, vector and set scalars, rule mining.
fn similarity(c: &mut Criterion) {
    const ROWS: usize = 100_000;
    let (rt, ctx) = context_with("b", baskets(ROWS));
    run(
        &rt,
        &ctx,
        "CREATE TABLE v AS SELECT items, CAST(items AS DOUBLE[]) AS x FROM b",
    );
    let mut g = c.benchmark_group("similarity");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let cases = [
        (
            "item_pairs_100k_baskets",
            "SELECT sum(cardinality(item_pairs(items))) FROM b",
        ),
        (
            "item_pair_keys_100k_baskets",
            "SELECT sum(cardinality(item_pair_keys(items))) FROM b",
        ),
        (
            "cosine_similarity_100k_rows",
            "SELECT sum(cosine_similarity(x, x)) FROM v",
        ),
        (
            "jaccard_similarity_100k_rows",
            "SELECT sum(jaccard_similarity(items, [1, 2, 3, 5, 8])) FROM b",
        ),
        (
            "basket_rules_100k_baskets",
            "SELECT cardinality(basket_rules(items, 0.005, 0.1)) FROM b",
        ),
    ];
    for (name, sql) in cases {
        g.bench_function(name, |bch| bch.iter(|| run(&rt, &ctx, sql)));
    }
    g.finish();
}

/// A deterministic pseudo-random stream (no RNG crate: the same data every run).
fn stream(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |m| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    }
}

/// The Markov solve alone (transition counts already aggregated): 50,000 journeys over 15
/// channels, orders 1 and 3 — one absorbing-chain solve per channel plus the base one.
fn markov_solve(c: &mut Criterion) {
    const CHANNELS: [&str; 15] = [
        "paid_search",
        "organic_search",
        "direct",
        "email",
        "display",
        "social",
        "affiliate",
        "referral",
        "video",
        "push",
        "sms",
        "retargeting",
        "partner",
        "podcast",
        "tv",
    ];
    let mut g = c.benchmark_group("markov_solve");
    g.sample_size(10);
    for order in [1, 3] {
        let mut rand = stream(7);
        let mut counts = MarkovCounts::new(order);
        let mut path: Vec<&str> = Vec::new();
        for _ in 0..50_000 {
            path.clear();
            let len = 1 + rand(4) + rand(4);
            for _ in 0..len {
                let k = rand(15) * rand(15) / 14; // skewed towards the first channels
                path.push(CHANNELS[k as usize]);
            }
            let converted = (rand(100) < 5 + 2 * len) as u64 as f64;
            counts.add_path(&path, converted, 1.0 - converted, 50.0 * converted, false);
        }
        g.bench_function(format!("removal_effects_order_{order}_15_channels"), |b| {
            b.iter(|| counts.removal_effects())
        });
    }
    g.finish();
}

/// 100,000 customer patterns (x, t_x, T) in days, as a summary of a year of orders gives.
fn patterns(n: usize) -> Vec<Pattern> {
    let mut rand = stream(11);
    let mut rows: Vec<Pattern> = (0..n)
        .map(|_| {
            let t = 30.0 + rand(700) as f64;
            let x = if rand(3) == 0 {
                0.0
            } else {
                (rand(8) * rand(8) / 7) as f64
            };
            let tx = if x == 0.0 {
                0.0
            } else {
                (rand(t as u64) + 1).min(t as u64) as f64
            };
            Pattern { x, tx, t, w: 1.0 }
        })
        .collect();
    sort_patterns(&mut rows);
    rows
}

/// One evaluation of the BG/NBD log-likelihood with its exact gradient (dual numbers), the
/// unit of work of every BFGS step; and the Pareto/NBD one, whose hypergeometric term
/// dominates; and that ₂F₁(a, b; a+1; z) alone at small and large z.
fn clv_likelihoods(c: &mut Criterion) {
    let rows = patterns(100_000);
    let times = Times::new(&rows);
    let vars = |p: [f64; 4]| -> [Dual<4>; 4] { std::array::from_fn(|i| Dual::var(p[i], i, 1.0)) };
    let mut g = c.benchmark_group("clv_likelihood");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.sample_size(20);
    let bg = vars([0.8, 20.0, 0.9, 3.0]);
    g.bench_function("bgnbd_ll_gradient_100k_patterns", |b| {
        b.iter(|| bgnbd_ll_indexed(&bg, &rows, &times))
    });
    // the hand-written gradient the fits use
    let bg_values = [0.8, 20.0, 0.9, 3.0];
    g.bench_function("bgnbd_ll_hand_gradient_100k_patterns", |b| {
        b.iter(|| bgnbd_ll_gradient(&bg_values, &times))
    });
    // Gamma-Gamma on the repeat customers' (x, mean spend): dual numbers vs by hand
    let mut rand = stream(12);
    let mut spends: Vec<Spend> = rows
        .iter()
        .filter(|r| r.x > 0.0)
        .map(|r| Spend {
            x: r.x,
            m: (100 + rand(20_000)) as f64 / 100.0,
            w: 1.0,
        })
        .collect();
    sort_spends(&mut spends);
    let ln_m: Vec<f64> = spends.iter().map(|s| s.m.ln()).collect();
    let gg = [6.25, 3.74, 15.44];
    let gg_vars: [Dual<3>; 3] = std::array::from_fn(|i| Dual::var(gg[i], i, 1.0));
    g.throughput(Throughput::Elements(spends.len() as u64));
    g.bench_function("gamma_gamma_ll_gradient_dual", |b| {
        b.iter(|| gamma_gamma_ll(&gg_vars, &spends))
    });
    g.bench_function("gamma_gamma_ll_hand_gradient", |b| {
        b.iter(|| gamma_gamma_ll_gradient(&gg, &spends, &ln_m))
    });
    // with the Hessian (the Newton steps on the full data): one more sum per row
    g.bench_function("gamma_gamma_ll_hand_gradient_hessian", |b| {
        b.iter(|| gamma_gamma_ll_gradient_hessian(&gg, &spends, &ln_m))
    });
    g.throughput(Throughput::Elements(rows.len() as u64));
    let pareto_rows = &rows[..10_000];
    for (label, beta) in [("near_alpha", 22.0), ("far_from_alpha", 200.0)] {
        let p = vars([0.8, 20.0, 0.6, beta]);
        g.bench_function(
            format!("pareto_nbd_ll_gradient_10k_patterns_beta_{label}"),
            |b| {
                b.iter(|| {
                    pareto_rows.iter().fold(Dual::<4>::cst(0.0), |s, r| {
                        s + pareto_row_ll(&p, r.x, r.tx, r.t)
                    })
                })
            },
        );
        // the hand-written gradient the fits use (whole rows, time table built once)
        let pareto_times = Times::new(pareto_rows);
        let values = [0.8, 20.0, 0.6, beta];
        g.bench_function(
            format!("pareto_nbd_ll_hand_gradient_10k_patterns_beta_{label}"),
            |b| b.iter(|| pareto_ll_gradient(&values, pareto_rows, &pareto_times)),
        );
    }
    g.finish();
    let mut g = c.benchmark_group("hyp2f1");
    for z in [0.1, 0.5, 0.9] {
        g.bench_function(format!("ln_hyp2f1_a_b_a1_f64_z{z}"), |b| {
            b.iter(|| ln_hyp2f1_a_b_a1(std::hint::black_box(12.5), 1.6, std::hint::black_box(z)))
        });
        let [a, bb, zz] = [
            Dual::<4>::var(12.5, 0, 1.0),
            Dual::var(1.6, 1, 1.0),
            Dual::var(z, 2, 1.0),
        ];
        g.bench_function(format!("ln_hyp2f1_a_b_a1_dual4_z{z}"), |b| {
            b.iter(|| ln_hyp2f1_a_b_a1(std::hint::black_box(a), bb, std::hint::black_box(zz)))
        });
    }
    g.finish();
}

/// Eclat alone on 200,000 distinct baskets (weights 1-3) over 2,000 skewed items.
fn eclat(c: &mut Criterion) {
    let mut rand = stream(5);
    let baskets: Vec<(Vec<u32>, u64)> = (0..200_000)
        .map(|_| {
            let mut items: Vec<u32> = (0..2 + rand(12))
                .map(|_| (rand(2000) * rand(2000) / 2000) as u32)
                .collect();
            items.sort_unstable();
            items.dedup();
            (items, 1 + rand(3))
        })
        .collect();
    let mut g = c.benchmark_group("eclat");
    g.sample_size(10);
    for threads in [1, 2] {
        g.bench_function(
            format!("frequent_itemsets_200k_baskets_support_0.005_{threads}_threads"),
            |b| {
                b.iter(|| {
                    frequent_itemsets(&baskets, 2000, 2000, usize::MAX, 10_000_000, threads)
                        .unwrap()
                        .len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    generator,
    rfm_segment,
    rfm_summary,
    quantile_score,
    clv_fits,
    clv_likelihoods,
    clv_predict,
    markov_solve,
    similarity,
    eclat
);
criterion_main!(benches);
