//! Recommendation similarity: scalars against numpy, item_similarity and recommend_items
//! against a dense reference computed here, association rules against mlxtend and Spark's
//! published example (fixtures from tests/data/make_similarity_fixture.py), and partition
//! independence on the sample lake.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::common::{pretty, query};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Every cell of a result as a string (NULL as "NULL").
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in query(ctx, sql).await {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "NULL".to_string()
                        } else {
                            array_value_to_string(c, r).unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= tol * want.abs().max(1.0)
}

fn ctx() -> SessionContext {
    datafusion_marketing::session_context().unwrap()
}

// ---------------------------------------------------------------------------
// Scalars against numpy

#[tokio::test]
async fn vector_scalars_match_numpy_on_random_vectors() {
    let text = std::fs::read_to_string(data("similarity_vectors.csv")).unwrap();
    let mut lines = text.lines();
    lines.next();
    let parse = |s: &str| -> Vec<Option<f64>> {
        s.split(' ')
            .map(|x| Some(x.parse::<f64>().unwrap()))
            .collect()
    };
    let (mut a, mut b, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        a.push(Some(parse(f[0])));
        b.push(Some(parse(f[1])));
        want.push([f[2], f[3], f[4]].map(|x| x.parse::<f64>().unwrap()));
    }
    let n = want.len();
    let a = ListArray::from_iter_primitive::<Float64Type, _, _>(a);
    let b = ListArray::from_iter_primitive::<Float64Type, _, _>(b);
    let id = Int64Array::from_iter_values(0..n as i64);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("a", a.data_type().clone(), true),
        Field::new("b", b.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(id), Arc::new(a) as ArrayRef, Arc::new(b)],
    )
    .unwrap();
    let ctx = ctx();
    ctx.register_table(
        "v",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    let got = rows(
        &ctx,
        "SELECT inner_product(a, b), cosine_similarity(a, b), cosine_distance(a, b), dot_product(b, a),
                cosine_similarity(arrow_cast(a, 'LargeList(Float32)'), arrow_cast(b, 'LargeList(Float32)'))
         FROM v ORDER BY id",
    )
    .await;
    assert_eq!(got.len(), n);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g: Vec<f64> = g.iter().map(|x| x.parse().unwrap()).collect();
        // the products are summed in element order as numpy does for short vectors;
        // allow for numpy's pairwise/BLAS summation order
        assert!(
            close(g[0], w[0], 1e-12),
            "row {i}: inner {} vs numpy {}",
            g[0],
            w[0]
        );
        assert!(
            close(g[1], w[1], 1e-12),
            "row {i}: cosine {} vs numpy {}",
            g[1],
            w[1]
        );
        assert!(
            close(g[2], w[2], 1e-12),
            "row {i}: distance {} vs numpy {}",
            g[2],
            w[2]
        );
        assert_eq!(g[3], g[0], "dot_product is inner_product and symmetric");
        // single precision input: the cast loses ~1e-7 relative per element
        assert!(
            (g[4] - w[1]).abs() < 1e-5,
            "row {i}: float32 cosine {}",
            g[4]
        );
    }
}

// ---------------------------------------------------------------------------
// item_similarity and recommend_items against a dense reference

/// Deterministic pseudo-random interactions: users with 0 to 9 picks (duplicates included)
/// from 25 items with skewed popularity, one user with a single item, one item with a
/// single user, and rows with NULL user or item.
fn interactions() -> Vec<(Option<i64>, Option<i64>)> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for u in 1..=70i64 {
        let picks = next() % 10;
        for _ in 0..picks {
            // skewed: min of two uniforms
            let item = (next() % 25).min(next() % 25) as i64;
            out.push((Some(u), Some(item)));
        }
    }
    out.push((Some(100), Some(3))); // a user with one item
    out.push((Some(101), Some(99))); // an item with one user ...
    out.push((Some(101), Some(0))); // ... who also has a popular item
    out.push((None, Some(1)));
    out.push((Some(5), None));
    out
}

fn interactions_context(config: SessionConfig) -> SessionContext {
    let ctx = datafusion_marketing::session_context_with_config(config).unwrap();
    register_interactions(&ctx);
    ctx
}

fn register_interactions(ctx: &SessionContext) {
    let data = interactions();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new("item", DataType::Int64, true),
    ]));
    // several batches in several partitions
    let batches: Vec<RecordBatch> = data
        .chunks(37)
        .map(|c| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter(c.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter(c.iter().map(|r| r.1))),
                ],
            )
            .unwrap()
        })
        .collect();
    let parts: Vec<Vec<RecordBatch>> = batches.chunks(3).map(<[_]>::to_vec).collect();
    ctx.register_table("ui", Arc::new(MemTable::try_new(schema, parts).unwrap()))
        .unwrap();
}

struct Reference {
    users: BTreeMap<i64, BTreeSet<i64>>,
    n: BTreeMap<i64, u64>,
    co: BTreeMap<(i64, i64), u64>,
}

impl Reference {
    fn new(cap: Option<usize>) -> Self {
        let mut users: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for (u, i) in interactions() {
            if let (Some(u), Some(i)) = (u, i) {
                users.entry(u).or_default().insert(i);
            }
        }
        if let Some(cap) = cap {
            users.retain(|_, s| s.len() <= cap);
        }
        let mut n = BTreeMap::new();
        let mut co = BTreeMap::new();
        for s in users.values() {
            for &i in s {
                *n.entry(i).or_insert(0) += 1;
                for &j in s {
                    if i != j {
                        *co.entry((i, j)).or_insert(0) += 1;
                    }
                }
            }
        }
        Self { users, n, co }
    }

    /// The same floating-point expressions as the SQL, so ties are ties in both.
    fn score(&self, metric: &str, i: i64, j: i64, c: u64) -> f64 {
        let (ni, nj, c) = (self.n[&i] as f64, self.n[&j] as f64, c as f64);
        match metric {
            "cosine" => c / (ni * nj).sqrt(),
            "jaccard" => c / (ni + nj - c),
            "lift" => c * self.users.len() as f64 / (ni * nj),
            "conditional" => c / ni,
            _ => unreachable!(),
        }
    }

    fn neighbours(
        &self,
        metric: &str,
        top_k: usize,
        min_overlap: u64,
    ) -> Vec<(i64, i64, f64, u64)> {
        let mut by_item: BTreeMap<i64, Vec<(i64, f64, u64)>> = BTreeMap::new();
        for (&(i, j), &c) in &self.co {
            if c >= min_overlap {
                by_item
                    .entry(i)
                    .or_default()
                    .push((j, self.score(metric, i, j, c), c));
            }
        }
        let mut out = Vec::new();
        for (i, mut v) in by_item {
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            out.extend(v.into_iter().take(top_k).map(|(j, s, c)| (i, j, s, c)));
        }
        out
    }
}

#[tokio::test]
async fn item_similarity_equals_the_dense_reference_for_every_metric() {
    let ctx = interactions_context(SessionConfig::new().with_target_partitions(4));
    for algorithm in ["memory", "spill"] {
        for (metric, top_k, min_overlap, cap) in [
            ("cosine", 20, 1, None),
            ("cosine", 3, 1, None),
            ("jaccard", 4, 1, None),
            ("lift", 5, 2, None),
            ("conditional", 2, 1, None),
            ("cosine", 5, 1, Some(6)),
            ("lift", 5, 1, Some(6)),
        ] {
            let reference = Reference::new(cap);
            let want = reference.neighbours(metric, top_k, min_overlap);
            let cap_sql = cap.map_or("NULL".to_string(), |c| c.to_string());
            let got = rows(
            &ctx,
            &format!(
                "SELECT item, neighbor, score, overlap FROM item_similarity('ui', 'user_id', 'item', '{metric}', {top_k}, {min_overlap}, {cap_sql}, '{algorithm}')
                 ORDER BY item, score DESC, neighbor"
            ),
        )
        .await;
            assert_eq!(
                got.len(),
                want.len(),
                "{algorithm} {metric} top {top_k}: row count"
            );
            assert!(want.len() > 20, "the reference is not trivial");
            for (g, w) in got.iter().zip(&want) {
                let what = format!(
                    "{algorithm} {metric} top {top_k} min_overlap {min_overlap} cap {cap:?}: {g:?} vs {w:?}"
                );
                assert_eq!(g[0].parse::<i64>().unwrap(), w.0, "{what}");
                assert_eq!(g[1].parse::<i64>().unwrap(), w.1, "{what}");
                assert_eq!(g[2].parse::<f64>().unwrap(), w.2, "{what}");
                assert_eq!(g[3].parse::<u64>().unwrap(), w.3, "{what}");
            }
        }
    }
    // the item with one user has exactly one neighbour (the other item of that user)
    let lone = rows(
        &ctx,
        "SELECT neighbor, overlap FROM item_similarity('ui', 'user_id', 'item') WHERE item = 99",
    )
    .await;
    assert_eq!(lone, vec![vec!["0".to_string(), "1".to_string()]]);
}

#[tokio::test]
async fn recommend_items_equals_the_reference_and_excludes_owned_items() {
    // no memory limit: the in-memory algorithm; with one: the spilling one
    for limited in [false, true] {
        let ctx = if limited {
            limited_interactions_context()
        } else {
            interactions_context(SessionConfig::new().with_target_partitions(3))
        };
        let reference = Reference::new(None);
        let (k, neighbors) = (4usize, 5usize);
        let mut top: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for (i, j, s, _) in reference.neighbours("cosine", neighbors, 1) {
            top.entry(i).or_default().push((j, s));
        }
        let mut want = Vec::new();
        for (&u, owned) in &reference.users {
            // exact sums of the scores rounded to 18 decimals, as the SQL does in DECIMAL
            let mut score: BTreeMap<i64, i128> = BTreeMap::new();
            for i in owned {
                for &(j, s) in top.get(i).map_or(&[][..], |v| v.as_slice()) {
                    if !owned.contains(&j) {
                        *score.entry(j).or_insert(0) += (s * 1e18).round() as i128;
                    }
                }
            }
            let mut v: Vec<(i64, i128)> = score.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (r, (j, s)) in v.into_iter().take(k).enumerate() {
                want.push((u, j, s as f64 / 1e18, r as i64 + 1));
            }
        }
        let got = rows(
        &ctx,
        &format!(
            "SELECT \"user\", item, score, \"rank\" FROM recommend_items('ui', 'user_id', 'item', {k}, {neighbors}) ORDER BY \"user\", \"rank\""
        ),
    )
    .await;
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            let u: i64 = g[0].parse().unwrap();
            let j: i64 = g[1].parse().unwrap();
            assert_eq!(
                (u, j, g[3].parse::<i64>().unwrap()),
                (w.0, w.1, w.3),
                "{g:?} vs {w:?}"
            );
            assert!(close(g[2].parse().unwrap(), w.2, 1e-15), "{g:?} vs {w:?}");
            assert!(
                !reference.users[&u].contains(&j),
                "recommended an owned item: {g:?}"
            );
        }
    }
}

/// The interactions under a 512 MiB memory pool (so 'auto' picks the spilling algorithm).
fn limited_interactions_context() -> SessionContext {
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(512 << 20, 1.0)
        .build_arc()
        .unwrap();
    let ctx =
        SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(3), runtime);
    datafusion_marketing::register_on_context(&ctx).unwrap();
    register_interactions(&ctx);
    ctx
}

// ---------------------------------------------------------------------------
// Association rules against mlxtend and Spark

async fn check_rules_fixture(name: &str) {
    let ctx = ctx();
    let baskets = data(&format!("similarity_{name}_baskets.csv"));
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE b(basket BIGINT, item VARCHAR) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        baskets.display()
    ))
    .await
    .unwrap();
    let text = std::fs::read_to_string(data(&format!("similarity_{name}_rules.csv"))).unwrap();
    let want: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let (ms, mc, ml, n_sets) = (want[0][0], want[0][1], want[0][2], want[0][3]);
    let ml = if ml.is_empty() { "NULL" } else { ml };
    let itemsets = rows(
        &ctx,
        &format!(
            "SELECT cardinality(frequent_itemsets(items, {ms}, {ml})) FROM (SELECT array_agg(item) AS items FROM b GROUP BY basket)"
        ),
    )
    .await;
    assert_eq!(
        itemsets[0][0], n_sets,
        "{name}: number of frequent itemsets"
    );
    for algorithm in ["memory", "spill"] {
        let got = rows(
            &ctx,
            &format!(
                "SELECT array_to_string(antecedent, '|'), array_to_string(consequent, '|'), antecedent_support,
                        consequent_support, support, confidence, lift, leverage, conviction
                 FROM association_rules('b', 'basket', 'item', {ms}, {mc}, {ml}, '{algorithm}')"
            ),
        )
        .await;
        assert_eq!(got.len(), want.len(), "{name} {algorithm}: number of rules");
        let by_key: BTreeMap<(String, String), &Vec<String>> = got
            .iter()
            .map(|r| ((r[0].clone(), r[1].clone()), r))
            .collect();
        assert_eq!(
            by_key.len(),
            got.len(),
            "{name} {algorithm}: duplicate rules"
        );
        for w in &want {
            let key = (w[4].to_string(), w[5].to_string());
            let g = by_key
                .get(&key)
                .unwrap_or_else(|| panic!("{name} {algorithm}: rule {key:?} missing"));
            for k in 0..7 {
                let (gv, wv): (f64, f64) = (g[2 + k].parse().unwrap(), w[6 + k].parse().unwrap());
                assert!(
                    close(gv, wv, 1e-12),
                    "{name} {algorithm} {key:?} column {k}: {gv} vs mlxtend {wv}"
                );
            }
        }
    }
}

#[tokio::test]
async fn association_rules_reproduce_mlxtends_documented_example() {
    // 11 itemsets at min_support 0.6, 9 rules at confidence >= 0.8
    check_rules_fixture("mlxtend").await;
}

#[tokio::test]
async fn association_rules_reproduce_sparks_fpgrowth_example() {
    check_rules_fixture("spark").await;
    let ctx = ctx();
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE b(basket BIGINT, item VARCHAR) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        data("similarity_spark_baskets.csv").display()
    ))
    .await
    .unwrap();
    // Spark's published first rules: [p] => [r] confidence 1.0, lift 2.0, support 1/3; [p] => [z] lift 1.2
    let got = rows(
        &ctx,
        "SELECT array_to_string(consequent, ''), confidence, lift, support FROM association_rules('b', 'basket', 'item', 0.2, 0.7)
         WHERE antecedent = ['p'] AND cardinality(consequent) = 1 ORDER BY 1",
    )
    .await;
    assert_eq!(got[0][..3], ["r", "1.0", "2.0"]);
    assert!(close(got[0][3].parse().unwrap(), 1.0 / 3.0, 1e-15));
    assert_eq!(got[1][0], "z");
    assert!(close(got[1][2].parse().unwrap(), 1.2, 1e-15));
}

#[tokio::test]
async fn association_rules_match_mlxtend_on_random_baskets_with_max_len() {
    check_rules_fixture("random").await;
}

// ---------------------------------------------------------------------------
// Partition independence on the sample lake

const LAKE_SQL: [&str; 5] = [
    "SELECT * FROM item_similarity('interactions', 'customer_id', 'product_id', 'cosine', 5) ORDER BY item, score DESC, neighbor",
    "SELECT * FROM item_similarity('interactions', 'customer_id', 'product_id', 'cosine', 5, 1, NULL, 'spill') ORDER BY item, score DESC, neighbor",
    "SELECT * FROM recommend_items('interactions', 'customer_id', 'product_id', 3) ORDER BY \"user\", \"rank\"",
    "SELECT * FROM association_rules('lines', 'order_id', 'product_id', 0.002, 0.1) ORDER BY lift DESC, antecedent, consequent",
    "SELECT * FROM association_rules('lines', 'order_id', 'product_id', 0.002, 0.1, NULL, 'spill') ORDER BY lift DESC, antecedent, consequent",
];

async fn lake_results(config: SessionConfig) -> Vec<String> {
    let ctx = crate::common::lake_context_with(config).await;
    query(
        &ctx,
        "CREATE VIEW interactions AS SELECT o.customer_id, i.product_id FROM order_items i JOIN orders o USING (order_id)",
    )
    .await;
    query(
        &ctx,
        "CREATE VIEW lines AS SELECT order_id, product_id FROM order_items",
    )
    .await;
    let mut out = Vec::new();
    for sql in LAKE_SQL {
        out.push(pretty(&query(&ctx, sql).await));
    }
    out
}

#[tokio::test]
async fn lake_results_are_identical_on_1_and_16_partitions() {
    let one = lake_results(SessionConfig::new().with_target_partitions(1)).await;
    let many = lake_results(
        SessionConfig::new()
            .with_target_partitions(16)
            .with_batch_size(100),
    )
    .await;
    for (k, (a, b)) in one.iter().zip(&many).enumerate() {
        assert!(
            a.lines().count() > 10,
            "query {k} returned too little:\n{a}"
        );
        assert!(a == b, "query {k} differs between 1 and 16 partitions");
    }
    assert!(
        one[0] == one[1],
        "item_similarity's memory and spill algorithms differ on the lake"
    );
    assert!(
        one[3] == one[4],
        "association_rules' memory and spill algorithms differ on the lake"
    );
}
