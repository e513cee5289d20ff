//! The sample-lake generator: determinism, schema, and that the generated data has
//! the statistical properties the generator claims (the processes our models assume).

use std::collections::HashMap;
use std::path::Path;

use datafusion_marketing::generate::sim::{
    CustomerRow, EventRow, ItemRow, OrderRow, Sink, TouchRow, World, simulate_customer,
};
use datafusion_marketing::generate::world::{
    BG_A, BG_ALPHA, BG_B, BG_R, DAY_US, END_US, GG_GAMMA, GG_P, GG_Q, START_US,
};
use datafusion_marketing::generate::{GenerateOptions, generate};

use crate::common::{lake_context, pretty, query, scalar};

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    // small chunks (4 files per table) so several workers really write in parallel
    let opts = |threads, seed| GenerateOptions {
        customers: 400,
        seed,
        threads,
        progress: false,
        chunk_customers: 100,
    };
    generate(a.path(), &opts(1, 11)).unwrap();
    generate(b.path(), &opts(4, 11)).unwrap();
    generate(c.path(), &opts(1, 12)).unwrap();
    let fa = files(a.path());
    let fb = files(b.path());
    assert!(
        fa.len() >= 6,
        "{:?}",
        fa.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{} differs between runs", x.0);
    }
    let fc = files(c.path());
    let orders_a = fa.iter().find(|f| f.0.starts_with("orders")).unwrap();
    let orders_c = fc.iter().find(|f| f.0 == orders_a.0).map(|f| &f.1);
    assert!(
        orders_c != Some(&orders_a.1),
        "another seed gives other data"
    );
}

#[test]
fn refuses_to_overwrite_a_lake_and_zero_customers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenerateOptions {
        customers: 10,
        ..Default::default()
    };
    generate(dir.path(), &opts).unwrap();
    let err = generate(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("already contains"), "{err}");
    let err = generate(
        tempfile::tempdir().unwrap().path(),
        &GenerateOptions {
            customers: 0,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--customers must be at least 1"), "{err}");
}

#[tokio::test]
async fn schema_of_every_table() {
    let ctx = lake_context().await;
    let sql = "SELECT table_name, column_name, data_type FROM information_schema.columns \
               WHERE table_schema = 'public' ORDER BY table_name, ordinal_position";
    let text = pretty(&query(&ctx, sql).await);
    let expected = "\
+-------------+---------------------+---------------+
| table_name  | column_name         | data_type     |
+-------------+---------------------+---------------+
| customers   | customer_id         | Int64         |
| customers   | signup_ts           | Timestamp(µs) |
| customers   | country             | Utf8View      |
| customers   | acquisition_channel | Utf8View      |
| customers   | loyalty_member      | Boolean       |
| events      | customer_id         | Int64         |
| events      | session_id          | Int64         |
| events      | ts                  | Timestamp(µs) |
| events      | event_type          | Utf8View      |
| events      | product_id          | Int64         |
| events      | order_id            | Int64         |
| order_items | order_id            | Int64         |
| order_items | line_no             | Int32         |
| order_items | product_id          | Int64         |
| order_items | quantity            | Int32         |
| order_items | unit_price          | Float64       |
| orders      | order_id            | Int64         |
| orders      | customer_id         | Int64         |
| orders      | order_ts            | Timestamp(µs) |
| orders      | amount              | Float64       |
| orders      | channel             | Utf8View      |
| orders      | device              | Utf8View      |
| orders      | n_items             | Int32         |
| orders      | year                | Int64         |
| products    | product_id          | Int64         |
| products    | name                | Utf8View      |
| products    | category            | Utf8View      |
| products    | brand               | Utf8View      |
| products    | price               | Float64       |
| touchpoints | customer_id         | Int64         |
| touchpoints | ts                  | Timestamp(µs) |
| touchpoints | channel             | Utf8View      |
| touchpoints | campaign            | Utf8View      |
| touchpoints | cost                | Float64       |
+-------------+---------------------+---------------+";
    assert_eq!(text, expected);
}

#[tokio::test]
async fn lake_is_internally_consistent() {
    let ctx = lake_context().await;
    // every order's amount is the sum of its lines, to the cent
    let bad = scalar(
        &ctx,
        "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(quantity * unit_price) AS s \
         FROM order_items GROUP BY order_id) i USING (order_id) WHERE abs(o.amount - i.s) > 0.005",
    )
    .await;
    assert_eq!(bad, "0");
    // one purchase event per order, at the order's time
    let purchases = scalar(
        &ctx,
        "SELECT count(*) FROM events e JOIN orders o ON e.order_id = o.order_id \
         WHERE e.event_type = 'purchase' AND e.ts = o.order_ts",
    )
    .await;
    let orders = scalar(&ctx, "SELECT count(*) FROM orders").await;
    assert_eq!(purchases, orders);
    // the year partition matches the timestamp
    let wrong_year = scalar(
        &ctx,
        "SELECT count(*) FROM orders WHERE year <> date_part('year', order_ts)",
    )
    .await;
    assert_eq!(wrong_year, "0");
    // orders sit inside the observation window and belong to known customers
    let outside = scalar(
        &ctx,
        "SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id) \
         WHERE c.customer_id IS NULL OR o.order_ts < TIMESTAMP '2023-01-01' OR o.order_ts >= TIMESTAMP '2026-01-01'",
    )
    .await;
    assert_eq!(outside, "0");
    // every order has a touch on its attributed channel shortly before it
    let unexplained = scalar(
        &ctx,
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM touchpoints t \
         WHERE t.customer_id = o.customer_id AND t.channel = o.channel \
         AND t.ts < o.order_ts AND t.ts > o.order_ts - INTERVAL '1 day')",
    )
    .await;
    let orders_n: f64 = orders.parse().unwrap();
    let unexplained: f64 = unexplained.parse().unwrap();
    assert!(
        unexplained / orders_n < 0.01,
        "{unexplained} of {orders_n} orders lack a last touch"
    );
}

/// Collects what the simulation emits, without Parquet.
#[derive(Default)]
struct Collect {
    customers: Vec<CustomerRow>,
    orders: Vec<OrderRow>,
    items: Vec<ItemRow>,
    touches: Vec<TouchRow>,
    events: usize,
}

impl Sink for Collect {
    fn customer(&mut self, row: CustomerRow) {
        self.customers.push(row);
    }
    fn order(&mut self, row: OrderRow) {
        self.orders.push(row);
    }
    fn item(&mut self, row: ItemRow) {
        self.items.push(row);
    }
    fn touch(&mut self, row: TouchRow) {
        self.touches.push(row);
    }
    fn event(&mut self, _row: EventRow) {
        self.events += 1;
    }
}

fn simulate(n: i64, seed: u64) -> Collect {
    let world = World::new(seed, n as u64);
    let mut sink = Collect::default();
    for id in 1..=n {
        simulate_customer(&world, id, &mut sink);
    }
    sink
}

/// Gauss hypergeometric 2F1(a, b; c; z) by its power series (|z| < 1).
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 0..100_000 {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

/// BG/NBD expected number of repeat purchases in (0, t] (Fader, Hardie & Lee 2005, eq. 7).
fn bgnbd_expected(t: f64) -> f64 {
    let (r, alpha, a, b) = (BG_R, BG_ALPHA, BG_A, BG_B);
    (a + b - 1.0) / (a - 1.0)
        * (1.0 - (alpha / (alpha + t)).powf(r) * hyp2f1(r, b, a + b - 1.0, t / (alpha + t)))
}

#[test]
fn repeat_purchases_follow_bgnbd() {
    let sim = simulate(30_000, 5);
    let mut per_customer: HashMap<i64, (i64, u64)> = HashMap::new();
    for o in &sim.orders {
        let e = per_customer.entry(o.customer_id).or_insert((i64::MAX, 0));
        e.0 = e.0.min(o.order_ts);
        e.1 += 1;
    }
    let mut observed = 0.0;
    let mut expected = 0.0;
    for (first, n) in per_customer.values() {
        observed += (*n - 1) as f64;
        expected += bgnbd_expected((END_US - first) as f64 / DAY_US as f64);
    }
    let ratio = observed / expected;
    // the seasonal multiplier averages 1 only over whole years, and rounding the
    // first purchase into the window costs a little: 4% covers both and sampling noise
    // (about 1.5% standard error with 22k buyers)
    assert!(
        (ratio - 1.0).abs() < 0.04,
        "observed {observed} vs BG/NBD {expected} (ratio {ratio})"
    );
    // a fifth of customers are prospects who never buy
    let buyers = per_customer.len() as f64 / 30_000.0;
    assert!((buyers - 0.8).abs() < 0.02, "buyer share {buyers}");
}

#[test]
fn order_values_follow_gamma_gamma() {
    let sim = simulate(30_000, 6);
    let mean: f64 = sim.orders.iter().map(|o| o.amount).sum::<f64>() / sim.orders.len() as f64;
    let expected = GG_P * GG_GAMMA / (GG_Q - 1.0);
    assert!(
        (mean / expected - 1.0).abs() < 0.05,
        "mean order value {mean} vs {expected}"
    );
    // realised unit prices stay near catalog prices for most lines
    let world = World::new(6, 30_000);
    let price: HashMap<i64, f64> = world
        .catalog
        .products
        .iter()
        .map(|p| (p.id, p.price))
        .collect();
    let near = sim
        .items
        .iter()
        .filter(|i| {
            let f = i.unit_price / price[&i.product_id];
            (0.5..=2.0).contains(&f)
        })
        .count() as f64
        / sim.items.len() as f64;
    assert!(
        near > 0.6,
        "share of lines within 0.5–2× catalog price: {near}"
    );
}

#[test]
fn weekly_and_yearly_seasonality() {
    let sim = simulate(20_000, 8);
    let mut by_weekday = [0u64; 7];
    let mut q4 = 0u64;
    let mut q2 = 0u64;
    for o in &sim.orders {
        let day = (o.order_ts - START_US).div_euclid(DAY_US);
        by_weekday[day.rem_euclid(7) as usize] += 1; // 0 = Sunday
        let doy = day.rem_euclid(365);
        if (273..365).contains(&doy) {
            q4 += 1;
        } else if (90..181).contains(&doy) {
            q2 += 1;
        }
    }
    let saturday_over_tuesday = by_weekday[6] as f64 / by_weekday[2] as f64;
    assert!(saturday_over_tuesday > 1.08, "{by_weekday:?}");
    assert!(q4 as f64 / q2 as f64 > 1.15, "q4 {q4} q2 {q2}");
}

#[test]
fn journeys_and_products_have_structure() {
    let sim = simulate(5_000, 9);
    let world = World::new(9, 5_000);
    // channels convert differently: paid search carries far more last touches than display
    let share = |c: &str| {
        sim.orders.iter().filter(|o| o.channel == c).count() as f64 / sim.orders.len() as f64
    };
    assert!(
        share("paid_search") > 3.0 * share("display"),
        "{} vs {}",
        share("paid_search"),
        share("display")
    );
    // several touches per order on average, plus non-converting journeys
    let per_order = sim.touches.len() as f64 / sim.orders.len() as f64;
    assert!(
        (1.5..8.0).contains(&per_order),
        "touches per order {per_order}"
    );
    assert!(sim.events > 3 * sim.orders.len());
    // long tail: the top 1% of products take a large share of item lines
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for i in &sim.items {
        *counts.entry(i.product_id).or_default() += 1;
    }
    let mut v: Vec<usize> = counts.values().copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    let top = world.catalog.products.len() / 100;
    let share_top = v[..top].iter().sum::<usize>() as f64 / sim.items.len() as f64;
    assert!(share_top > 0.15, "top-1% share {share_top}");
    // co-purchase: consecutive lines are complements far more often than chance
    let complements: HashMap<i64, [i64; 2]> = world
        .catalog
        .products
        .iter()
        .map(|p| {
            (
                p.id,
                p.complements.map(|c| world.catalog.products[c as usize].id),
            )
        })
        .collect();
    let (mut pairs, mut hits) = (0usize, 0usize);
    for w in sim.items.windows(2) {
        if w[0].order_id == w[1].order_id {
            pairs += 1;
            if complements[&w[0].product_id].contains(&w[1].product_id) {
                hits += 1;
            }
        }
    }
    assert!(pairs > 1000);
    assert!(hits as f64 / pairs as f64 > 0.2, "{hits} of {pairs}");
    assert_eq!(sim.customers.len(), 5_000);
}

#[tokio::test]
async fn rows_do_not_depend_on_the_file_layout() {
    let small = tempfile::tempdir().unwrap();
    let one = tempfile::tempdir().unwrap();
    let opts = |chunk| GenerateOptions {
        customers: 300,
        seed: 21,
        threads: 2,
        progress: false,
        chunk_customers: chunk,
    };
    generate(small.path(), &opts(70)).unwrap();
    generate(one.path(), &opts(50_000)).unwrap();
    let mut dumps = Vec::new();
    for dir in [small.path(), one.path()] {
        let ctx = datafusion_marketing::session_context().unwrap();
        datafusion_marketing::lake::register_lake(&ctx, dir.to_str().unwrap())
            .await
            .unwrap();
        let mut text = String::new();
        for sql in [
            "SELECT * FROM orders ORDER BY order_id",
            "SELECT * FROM touchpoints ORDER BY customer_id, ts, channel",
            "SELECT count(*), sum(session_id), sum(product_id) FROM events",
        ] {
            text.push_str(&pretty(&query(&ctx, sql).await));
        }
        dumps.push(text);
    }
    assert!(dumps[0].len() > 1000);
    assert!(
        dumps[0] == dumps[1],
        "5 chunks and 1 chunk give different rows"
    );
}
