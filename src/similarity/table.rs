//! The family's table functions, each a view over the SQL an analyst would write with its
//! scalar and aggregate functions:
//! - `item_similarity(table, user_col, item_col [, metric [, top_k [, min_overlap [, max_items_per_user [, algorithm]]]]])`
//! - `recommend_items(table, user_col, item_col [, k [, neighbors]])`
//! - `association_rules(table, basket_col, item_col [, min_support [, min_confidence [, max_len [, algorithm]]]])`

use std::sync::{Arc, LazyLock};

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{Documentation, Expr};

use crate::args::{
    doc_section, integer_literal_arg, number_literal_arg, quote_ident, quote_table, sql_view,
    string_literal_arg,
};

pub use super::model::Metric;

/// The SQL plan's score expression for a metric.
fn metric_sql(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "CAST(x.c AS DOUBLE) / sqrt(CAST(x.ni AS DOUBLE) * CAST(x.nj AS DOUBLE))",
        Metric::Jaccard => "CAST(x.c AS DOUBLE) / CAST(x.ni + x.nj - x.c AS DOUBLE)",
        Metric::Lift => {
            "CAST(x.c AS DOUBLE) * CAST(u.n AS DOUBLE) / (CAST(x.ni AS DOUBLE) * CAST(x.nj AS DOUBLE))"
        }
        Metric::Conditional => "CAST(x.c AS DOUBLE) / CAST(x.ni AS DOUBLE)",
    }
}

/// How `item_similarity` counts co-occurrences and `association_rules` gathers baskets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// In memory (accounted), fastest: `item_neighbors` over per-user lists;
    /// `basket_rules_from_lines` over the lines.
    Memory,
    /// DataFusion's spilling hash aggregates: pairs packed into integers counted, top-k by
    /// `top_k_by`; baskets of the frequent items gathered by `array_agg` for `basket_rules`.
    Spill,
}

impl Algorithm {
    /// 'auto': spill when the session's memory pool has a limit, otherwise memory.
    fn auto(session: &dyn datafusion::catalog::Session) -> Self {
        use datafusion::execution::memory_pool::MemoryLimit;
        match session.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(_) => Self::Spill,
            MemoryLimit::Infinite | MemoryLimit::Unknown => Self::Memory,
        }
    }
}

/// Options of `item_similarity`.
#[derive(Debug, Clone, Copy)]
pub struct SimilarityOptions {
    pub metric: Metric,
    pub top_k: i64,
    pub min_overlap: i64,
    pub max_items_per_user: Option<i64>,
    pub algorithm: Algorithm,
}

/// The CTEs (without `WITH`) computing `sim(item, neighbor, score, overlap)` and
/// `baskets(u, items)`, `owned(u, i)` from `table`.
fn similarity_ctes(table: &str, user: &str, item: &str, o: SimilarityOptions) -> String {
    let table = quote_table(table);
    let (u, i) = (quote_ident(user), quote_ident(item));
    // the interactions read: rows with a user and an item
    let rows = format!("{table} WHERE {u} IS NOT NULL AND {i} IS NOT NULL");
    if o.algorithm == Algorithm::Memory {
        let cap = o.max_items_per_user.map_or(String::new(), |m| {
            format!(" HAVING count(DISTINCT {i}) <= {m}")
        });
        let metric = o.metric.name();
        let (top_k, min_overlap) = (o.top_k, o.min_overlap);
        // item_neighbors drops repeated items itself: the lists need no DISTINCT first
        return format!(
            "owned AS (
  SELECT DISTINCT {u} AS u, {i} AS i FROM {rows}
),
baskets AS (
  SELECT array_agg({i}) AS items FROM {rows} GROUP BY {u}{cap}
),
sim AS (
  SELECT n['item'] AS item, n['neighbor'] AS neighbor, n['score'] AS score, n['overlap'] AS overlap
  FROM (SELECT unnest(item_neighbors(items, '{metric}', {top_k}, {min_overlap})) AS n FROM baskets)
)"
        );
    }
    let kept = match o.max_items_per_user {
        None => "SELECT u, i FROM owned".to_string(),
        Some(m) => format!(
            "SELECT o.u, o.i FROM owned o JOIN (SELECT u FROM owned GROUP BY u HAVING count(*) <= {m}) k ON k.u = o.u"
        ),
    };
    let score = metric_sql(o.metric);
    // lift's number of users: without a cap, the table's distinct users (an aggregate by user,
    // not another pass over the (user, item) pairs); with one, the users it keeps
    let users_join = match (o.metric, o.max_items_per_user) {
        (Metric::Lift, None) => {
            format!(" CROSS JOIN (SELECT count(DISTINCT {u}) AS n FROM {rows}) u")
        }
        (Metric::Lift, Some(_)) => " CROSS JOIN (SELECT count(DISTINCT u) AS n FROM kept) u".into(),
        _ => String::new(),
    };
    let (top_k, min_overlap) = (o.top_k, o.min_overlap);
    // DataFusion computes a CTE again for every reference, and the (user, item) pairs
    // (`owned`, `kept`) are the costly part: a spilling aggregate over the whole table. So
    // the items are numbered from the table's distinct items (an aggregate by item, cheap),
    // and only the baskets and the two item-count lookups go through the pairs (three times,
    // not four: the numbering used to come from the counts).
    format!(
        "owned AS (
  SELECT DISTINCT {u} AS u, {i} AS i FROM {rows}
),
kept AS (
  {kept}
),
ids AS (
  -- the table's items numbered 0, 1, ... in their order (items of users that max_items_per_user
  -- leaves out too: they get a number that no basket uses)
  SELECT i, CAST(row_number() OVER (ORDER BY i) - 1 AS BIGINT) AS id
  FROM (SELECT DISTINCT {i} AS i FROM {rows})
),
ids_n AS (
  -- with the number of (kept) users having each item
  SELECT ids.i, ids.id, k.n FROM ids JOIN (SELECT i, count(*) AS n FROM kept GROUP BY i) k ON k.i = ids.i
),
-- joins put the small item table on the left: DataFusion builds the hash table of the left
-- input and cannot spill it, so the build side must be the one bounded by the item count
baskets AS (
  SELECT k.u, array_agg(ids.id) AS items FROM ids JOIN kept k ON ids.i = k.i GROUP BY k.u
  HAVING count(*) >= 2
),
co AS (
  -- pairs a < b packed as a * 2^32 + b: counting groups by one integer
  SELECT key / 4294967296 AS a, key % 4294967296 AS b, c
  FROM (SELECT key, count(*) AS c FROM (SELECT unnest(item_pair_keys(items)) AS key FROM baskets) GROUP BY key)
  WHERE c >= {min_overlap}
),
co_n AS (
  SELECT x.a, ib.i AS b, x.c, x.na, ib.n AS nb
  FROM ids_n ib JOIN (SELECT ia.i AS a, co.b, co.c, ia.n AS na FROM ids_n ia JOIN co ON ia.id = co.a) x
    ON ib.id = x.b
),
both_ways AS (
  -- each pair in both directions (parallel unnest zips the lists)
  SELECT unnest(make_array(a, b)) AS item, unnest(make_array(b, a)) AS neighbor, c,
         unnest(make_array(na, nb)) AS ni, unnest(make_array(nb, na)) AS nj
  FROM co_n
),
scored AS (
  SELECT x.item, x.neighbor, {score} AS score, x.c AS overlap FROM both_ways x{users_join}
),
top AS (
  SELECT top_k_by(named_struct('item', item, 'neighbor', neighbor, 'score', score, 'overlap', overlap), score, {top_k}) AS t
  FROM scored GROUP BY item
),
sim AS (
  -- the item is read back from the struct, not the GROUP BY column: DataFusion would otherwise
  -- treat it as a key of the unnested rows and drop ORDER BY terms after it
  SELECT n['item'] AS item, n['neighbor'] AS neighbor, n['score'] AS score, n['overlap'] AS overlap
  FROM (SELECT unnest(t) AS n FROM top)
)"
    )
}

/// The SQL of `item_similarity`.
pub fn item_similarity_sql(table: &str, user: &str, item: &str, o: SimilarityOptions) -> String {
    format!(
        "WITH {}\nSELECT item, neighbor, score, overlap FROM sim",
        similarity_ctes(table, user, item, o)
    )
}

/// The SQL of `recommend_items`.
pub fn recommend_items_sql(
    table: &str,
    user: &str,
    item: &str,
    k: i64,
    neighbors: i64,
    algorithm: Algorithm,
) -> String {
    let o = SimilarityOptions {
        metric: Metric::Cosine,
        top_k: neighbors,
        min_overlap: 1,
        max_items_per_user: None,
        algorithm,
    };
    format!(
        "WITH {},
candidates AS (
  SELECT o.u AS u, s.neighbor AS item, sum(CAST(s.score AS DECIMAL(38, 18))) AS score
  FROM owned o JOIN sim s ON s.item = o.i GROUP BY o.u, s.neighbor
),
fresh AS (
  SELECT c.u, c.item, c.score FROM candidates c LEFT ANTI JOIN owned o ON o.u = c.u AND o.i = c.item
),
user_ranked AS (
  SELECT u, item, score, row_number() OVER (PARTITION BY u ORDER BY score DESC, item) AS r FROM fresh
)
SELECT u AS \"user\", item, CAST(score AS DOUBLE) AS score, r AS \"rank\" FROM user_ranked WHERE r <= {k}",
        similarity_ctes(table, user, item, o)
    )
}

/// The SQL of `association_rules`.
pub fn association_rules_sql(
    table: &str,
    basket: &str,
    item: &str,
    min_support: f64,
    min_confidence: f64,
    max_len: Option<i64>,
    algorithm: Algorithm,
) -> String {
    let table = quote_table(table);
    let (b, i) = (quote_ident(basket), quote_ident(item));
    let max_len = max_len.map_or("NULL".to_string(), |m| m.to_string());
    let fields = [
        "antecedent",
        "consequent",
        "antecedent_support",
        "consequent_support",
        "support",
        "confidence",
        "lift",
        "leverage",
        "conviction",
    ]
    .map(|f| format!("r['{f}'] AS {f}"))
    .join(", ");
    if algorithm == Algorithm::Memory {
        // every line straight into one aggregate: no GROUP BY, join or lists before mining
        return format!(
            "WITH rules AS (
  SELECT unnest(basket_rules_from_lines(b, i, {min_support:?}, {min_confidence:?}, {max_len})) AS r
  FROM (SELECT {b} AS b, {i} AS i FROM {table} WHERE {b} IS NOT NULL AND {i} IS NOT NULL)
)
SELECT {fields} FROM rules"
        );
    }
    // Items below min_support cannot be in a frequent itemset: they are blanked (NULL) before
    // the baskets reach basket_rules, which keeps every basket in N but stores only the
    // frequent items. The pre-filter is a slightly looser superset; basket_rules applies the
    // exact threshold.
    let loose = min_support * (1.0 - 1e-9);
    format!(
        "WITH lines AS (
  SELECT {b} AS b, {i} AS i FROM {table} WHERE {b} IS NOT NULL AND {i} IS NOT NULL
),
frequent AS (
  -- rows per item bound its baskets from above (repeats count twice here, once in mining)
  SELECT i FROM lines GROUP BY i
  HAVING CAST(count(*) AS DOUBLE) >= {loose:?} * (SELECT CAST(count(DISTINCT b) AS DOUBLE) FROM lines)
),
baskets AS (
  SELECT array_agg(f.i) AS items FROM lines l LEFT JOIN frequent f ON f.i = l.i GROUP BY l.b
),
rules AS (
  SELECT unnest(basket_rules(items, {min_support:?}, {min_confidence:?}, {max_len})) AS r FROM baskets
)
SELECT {fields} FROM rules"
    )
}

/// The optional `algorithm` argument at `i`: 'auto' (or absent, or NULL), 'memory' or 'spill'.
fn algorithm_arg(
    function: &str,
    exprs: &[Expr],
    i: usize,
    session: &dyn datafusion::catalog::Session,
) -> Result<Algorithm> {
    match exprs.get(i) {
        None => Ok(Algorithm::auto(session)),
        Some(Expr::Literal(v, _)) if v.is_null() => Ok(Algorithm::auto(session)),
        Some(_) => match string_literal_arg(function, exprs, i, "algorithm")?
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" => Ok(Algorithm::auto(session)),
            "memory" => Ok(Algorithm::Memory),
            "spill" => Ok(Algorithm::Spill),
            other => plan_err!(
                "{function}: argument {} 'algorithm' must be 'auto', 'memory' or 'spill', got '{other}'",
                i + 1
            ),
        },
    }
}

fn column_args(function: &str, exprs: &[Expr], names: [&str; 3]) -> Result<[String; 3]> {
    Ok([
        string_literal_arg(function, exprs, 0, names[0])?,
        string_literal_arg(function, exprs, 1, names[1])?,
        string_literal_arg(function, exprs, 2, names[2])?,
    ])
}

fn arity(function: &str, exprs: &[Expr], max: usize, usage: &str) -> Result<()> {
    if !(3..=max).contains(&exprs.len()) {
        return plan_err!(
            "{function}: expected 3 to {max} arguments ({usage}), got {}",
            exprs.len()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------

/// The `item_similarity` table function.
#[derive(Debug, Default)]
pub struct ItemSimilarityTable;

const COST: &str = "Cost: Σ over users of n(n−1)/2 pairs for a user with n distinct items, \
    so a few users with thousands of items dominate; `max_items_per_user` leaves users with \
    more distinct items out entirely (their items' counts too), as if absent. Two algorithms \
    give identical results. `'memory'`: one list of items per user (DataFusion's spilling \
    aggregate) feeds `item_neighbors`, which holds the distinct lists (≈ 4 bytes per \
    interaction, accounted in the memory pool) and accumulates each item's co-occurrence row \
    on all cores — fastest. `'spill'`: items are numbered 0, 1, … and each pair is packed into \
    one integer (`item_pair_keys`); pairs are counted with DataFusion's hash aggregate, which \
    spills to disk under a memory limit, \
    and each item's `top_k` neighbours are kept by `top_k_by` (a bounded heap per item, no sort).";

pub static ITEM_SIMILARITY_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        format!(
            "For every item, its `top_k` most similar items by co-occurrence across users: one row \
             (item, neighbor, score, overlap) per neighbour, where `overlap` is the number of \
             users having both and n(x) the number of users having x (each user counts once per \
             item; rows with a NULL user or item are ignored). Metrics: `'cosine'` (default) \
             overlap / √(n(item)·n(neighbor)); `'jaccard'` overlap / (n(item) + n(neighbor) − \
             overlap); `'lift'` overlap · U / (n(item)·n(neighbor)) with U the number of users; \
             `'conditional'` P(neighbor | item) = overlap / n(item). Only pairs with overlap ≥ \
             `min_overlap` (default 1) are neighbours. Ties are broken by the neighbour's id \
             (ascending), so the result is exact and deterministic. {COST}"
        ),
        "item_similarity(table, user_col, item_col [, metric [, top_k [, min_overlap [, max_items_per_user [, algorithm]]]]])",
    )
    .with_argument("table", "Name of a registered table or view with one row per interaction, a string.")
    .with_argument("user_col", "Column identifying the user (or basket).")
    .with_argument("item_col", "Column identifying the item (any comparable type).")
    .with_argument("metric", "'cosine' (default), 'jaccard', 'lift' or 'conditional'.")
    .with_argument("top_k", "Neighbours kept per item, a positive integer; default 20.")
    .with_argument("min_overlap", "Least number of common users for a neighbour; default 1.")
    .with_argument("max_items_per_user", "Users with more distinct items are left out; default (or NULL) no cap.")
    .with_argument("algorithm", "'auto' (default: 'spill' when the session has a memory limit, else 'memory'), 'memory' or 'spill'.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE likes(user_id INT, item VARCHAR) AS VALUES\n\
         >   (1, 'tea'), (1, 'milk'), (2, 'tea'), (2, 'milk'), (2, 'jam'), (3, 'jam'), (3, 'bread'), (4, 'tea');\n\
         > SELECT item, neighbor, round(score, 4) AS score, overlap\n\
         > FROM item_similarity('likes', 'user_id', 'item', 'cosine', 2) ORDER BY item, score DESC, neighbor;\n\
         +-------+----------+--------+---------+\n\
         | item  | neighbor | score  | overlap |\n\
         +-------+----------+--------+---------+\n\
         | bread | jam      | 0.7071 | 1       |\n\
         | jam   | bread    | 0.7071 | 1       |\n\
         | jam   | milk     | 0.5    | 1       |\n\
         | milk  | tea      | 0.8165 | 2       |\n\
         | milk  | jam      | 0.5    | 1       |\n\
         | tea   | milk     | 0.8165 | 2       |\n\
         | tea   | jam      | 0.4082 | 1       |\n\
         +-------+----------+--------+---------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .with_related_udf("cosine_similarity")
    .build()
});

impl TableFunctionImpl for ItemSimilarityTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "item_similarity";
        let exprs = args.exprs();
        arity(
            NAME,
            exprs,
            8,
            "table, user_col, item_col [, metric [, top_k [, min_overlap [, max_items_per_user [, algorithm]]]]]",
        )?;
        let [table, user, item] = column_args(NAME, exprs, ["table", "user_col", "item_col"])?;
        let metric = match exprs.get(3) {
            None => Metric::Cosine,
            Some(Expr::Literal(v, _)) if v.is_null() => Metric::Cosine,
            Some(_) => {
                let s = string_literal_arg(NAME, exprs, 3, "metric")?;
                match Metric::parse(&s) {
                    Some(m) => m,
                    None => {
                        return plan_err!(
                            "{NAME}: argument 4 'metric' must be one of {}, got '{s}'",
                            Metric::NAMES.map(|n| format!("'{n}'")).join(", ")
                        );
                    }
                }
            }
        };
        let o = SimilarityOptions {
            metric,
            top_k: integer_literal_arg(NAME, exprs, 4, "top_k", 1, i64::from(i32::MAX))?
                .unwrap_or(20),
            min_overlap: integer_literal_arg(NAME, exprs, 5, "min_overlap", 1, i64::MAX)?
                .unwrap_or(1),
            max_items_per_user: integer_literal_arg(
                NAME,
                exprs,
                6,
                "max_items_per_user",
                1,
                i64::MAX,
            )?,
            algorithm: algorithm_arg(NAME, exprs, 7, args.session())?,
        };
        sql_view(
            NAME,
            args.session(),
            item_similarity_sql(&table, &user, &item, o),
            &table,
        )
    }
}

/// The `recommend_items` table function.
#[derive(Debug, Default)]
pub struct RecommendItemsTable;

pub static RECOMMEND_ITEMS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Item-item collaborative filtering: for every user, the `k` (default 10) best items they \
         do not have yet, one row (user, item, score, rank). An item's score is the sum of its \
         cosine similarities (as in `item_similarity(…, 'cosine', neighbors)`) to the user's \
         items, over the `neighbors` (default 20) nearest neighbours of each of them. Scores \
         are summed exactly (DECIMAL with 18 fractional digits) so they do not depend on \
         partitioning; rank 1 is the highest score, ties broken by the item (ascending). Users \
         whose items have no neighbours get no rows; rows with a NULL user or item are \
         ignored.",
        "recommend_items(table, user_col, item_col [, k [, neighbors]])",
    )
    .with_argument("table", "Name of a registered table or view with one row per interaction, a string.")
    .with_argument("user_col", "Column identifying the user.")
    .with_argument("item_col", "Column identifying the item.")
    .with_argument("k", "Recommendations per user, a positive integer; default 10.")
    .with_argument("neighbors", "Neighbours per owned item, a positive integer; default 20.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE likes(user_id INT, item VARCHAR) AS VALUES\n\
         >   (1, 'tea'), (1, 'milk'), (2, 'tea'), (2, 'milk'), (2, 'jam'), (3, 'jam'), (3, 'bread'), (4, 'tea');\n\
         > SELECT \"user\", item, round(score, 4) AS score, \"rank\" FROM recommend_items('likes', 'user_id', 'item', 2)\n\
         > ORDER BY \"user\", \"rank\";\n\
         +------+-------+--------+------+\n\
         | user | item  | score  | rank |\n\
         +------+-------+--------+------+\n\
         | 1    | jam   | 0.9082 | 1    |\n\
         | 2    | bread | 0.7071 | 1    |\n\
         | 3    | milk  | 0.5    | 1    |\n\
         | 3    | tea   | 0.4082 | 2    |\n\
         | 4    | milk  | 0.8165 | 1    |\n\
         | 4    | jam   | 0.4082 | 2    |\n\
         +------+-------+--------+------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .build()
});

impl TableFunctionImpl for RecommendItemsTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "recommend_items";
        let exprs = args.exprs();
        arity(
            NAME,
            exprs,
            5,
            "table, user_col, item_col [, k [, neighbors]]",
        )?;
        let [table, user, item] = column_args(NAME, exprs, ["table", "user_col", "item_col"])?;
        let k = integer_literal_arg(NAME, exprs, 3, "k", 1, i64::from(i32::MAX))?.unwrap_or(10);
        let neighbors =
            integer_literal_arg(NAME, exprs, 4, "neighbors", 1, i64::from(i32::MAX))?.unwrap_or(20);
        sql_view(
            NAME,
            args.session(),
            recommend_items_sql(
                &table,
                &user,
                &item,
                k,
                neighbors,
                Algorithm::auto(args.session()),
            ),
            &table,
        )
    }
}

/// The `association_rules` table function.
#[derive(Debug, Default)]
pub struct AssociationRulesTable;

pub static ASSOCIATION_RULES_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Association rules from a table with one row per (basket, item), with mlxtend's \
         definitions: one row (antecedent, consequent, antecedent_support, consequent_support, \
         support, confidence, lift, leverage, conviction) per rule, antecedent and consequent as \
         sorted lists of items. Supports are fractions of the baskets (distinct non-NULL basket \
         ids with at least one non-NULL item); an item repeated in a basket counts once. Items \
         below `min_support` are dropped before mining (no itemset holding one can be \
         frequent), so only the frequent items' baskets are gathered. \
         `conviction` is `+inf` (IEEE infinity) when confidence is 1. Defaults: `min_support` \
         0.01, `min_confidence` 0.8 (mlxtend's default threshold), `max_len` no limit. Itemsets \
         are mined exactly by Eclat on one node. Two algorithms give identical results. \
         `'memory'`: every line goes straight into `basket_rules_from_lines` (≈ 8 bytes per \
         line, accounted in the memory pool, not spilled), which counts the baskets and items, \
         drops the rare items and gathers the baskets itself — fastest. `'spill'`: the \
         baskets and the items' line counts come from DataFusion's spilling aggregates, the \
         baskets restricted to frequent items are gathered by `array_agg`, and `basket_rules` \
         holds only the distinct baskets (≈ 4 bytes per frequent item).",
        "association_rules(table, basket_col, item_col [, min_support [, min_confidence [, max_len [, algorithm]]]])",
    )
    .with_argument("table", "Name of a registered table or view with one row per basket item, a string.")
    .with_argument("basket_col", "Column identifying the basket (order, session, user).")
    .with_argument("item_col", "Column identifying the item.")
    .with_argument("min_support", "Minimum itemset support in (0, 1]; default 0.01.")
    .with_argument("min_confidence", "Minimum confidence in [0, 1]; default 0.8.")
    .with_argument("max_len", "Largest itemset size, a positive integer; default (or NULL) no limit.")
    .with_argument("algorithm", "'auto' (default: 'spill' when the session has a memory limit, else 'memory'), 'memory' or 'spill'; both give identical results.")
    .with_sql_example(
        "```sql\n\
         > CREATE TABLE lines(basket INT, item VARCHAR) AS VALUES\n\
         >   (1, 'bread'), (1, 'milk'), (2, 'bread'), (2, 'milk'), (2, 'jam'), (3, 'milk'), (3, 'tea'),\n\
         >   (4, 'bread'), (4, 'jam');\n\
         > SELECT antecedent, consequent, support, confidence, round(lift, 4) AS lift, conviction\n\
         > FROM association_rules('lines', 'basket', 'item', 0.5, 0.9);\n\
         +------------+------------+---------+------------+--------+------------+\n\
         | antecedent | consequent | support | confidence | lift   | conviction |\n\
         +------------+------------+---------+------------+--------+------------+\n\
         | [jam]      | [bread]    | 0.5     | 1.0        | 1.3333 | inf        |\n\
         +------------+------------+---------+------------+--------+------------+\n\
         ```",
    )
    .with_related_udf("basket_rules")
    .build()
});

impl TableFunctionImpl for AssociationRulesTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "association_rules";
        let exprs = args.exprs();
        arity(
            NAME,
            exprs,
            7,
            "table, basket_col, item_col [, min_support [, min_confidence [, max_len [, algorithm]]]]",
        )?;
        let [table, basket, item] = column_args(NAME, exprs, ["table", "basket_col", "item_col"])?;
        let min_support = number_literal_arg(NAME, exprs, 3, "min_support")?.unwrap_or(0.01);
        if !(min_support > 0.0 && min_support <= 1.0) {
            return plan_err!(
                "{NAME}: argument 4 'min_support' must be in (0, 1], got {min_support}"
            );
        }
        let min_confidence = number_literal_arg(NAME, exprs, 4, "min_confidence")?.unwrap_or(0.8);
        if !(0.0..=1.0).contains(&min_confidence) {
            return plan_err!(
                "{NAME}: argument 5 'min_confidence' must be in [0, 1], got {min_confidence}"
            );
        }
        let max_len = integer_literal_arg(NAME, exprs, 5, "max_len", 1, i64::from(u16::MAX))?;
        let algorithm = algorithm_arg(NAME, exprs, 6, args.session())?;
        sql_view(
            NAME,
            args.session(),
            association_rules_sql(
                &table,
                &basket,
                &item,
                min_support,
                min_confidence,
                max_len,
                algorithm,
            ),
            &table,
        )
    }
}
