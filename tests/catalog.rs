//! The function catalog: `docs/functions.md` is in sync with the functions'
//! Documentation, every documented example runs and prints what the docs say, and
//! `SHOW FUNCTIONS` lists our functions with their descriptions.

use std::path::PathBuf;

use datafusion_marketing::catalog::{all_docs, examples, render_markdown};

use crate::common::{pretty, query};

#[test]
fn docs_are_in_sync() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/functions.md");
    let generated = render_markdown().expect("every function has documentation");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/functions.md is stale: run `UPDATE_DOCS=1 cargo test docs_are_in_sync` \
         (or `datafusion-marketing functions-doc > docs/functions.md`)"
    );
}

#[test]
fn every_function_is_documented_with_arguments_and_an_example() {
    let docs = all_docs().unwrap();
    assert!(!docs.is_empty());
    for d in &docs {
        let doc = &d.documentation;
        assert!(
            doc.description.len() > 40,
            "{}: description too short",
            d.name
        );
        assert!(
            doc.syntax_example.starts_with(&d.name),
            "{}: syntax must start with the name",
            d.name
        );
        assert!(
            doc.arguments.as_ref().is_some_and(|a| !a.is_empty()),
            "{}: no arguments documented",
            d.name
        );
        assert!(doc.sql_example.is_some(), "{}: no example", d.name);
    }
}

#[tokio::test]
async fn documented_examples_run_and_print_what_they_claim() {
    let examples = examples().unwrap();
    assert!(examples.len() >= all_docs().unwrap().len());
    let mut wrong = Vec::new();
    for ex in examples {
        // each example in a fresh session; statements separated by ";\n", the last one's
        // result is what the example shows
        let ctx = datafusion_marketing::session_context().unwrap();
        let mut out = String::new();
        for statement in ex.sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            out = pretty(&query(&ctx, statement).await);
        }
        if out.trim() != ex.expected.trim() {
            wrong.push(format!(
                "example of {} ({}):\n{}\nclaims\n{}",
                ex.function, ex.sql, out, ex.expected
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[tokio::test]
async fn show_functions_lists_ours_with_descriptions() {
    let ctx = datafusion_marketing::session_context().unwrap();
    let batches = query(&ctx, "SHOW FUNCTIONS LIKE 'rfm%'").await;
    let text = pretty(&batches);
    assert!(text.contains("rfm_segment"), "{text}");
    assert!(
        text.contains("The customer segment for an RFM cell"),
        "{text}"
    );
    // parameter names come from the signature
    assert!(text.contains("r_score"), "{text}");
}

#[tokio::test]
async fn register_all_works_on_any_function_registry() {
    use datafusion::execution::FunctionRegistry;
    use datafusion::execution::session_state::SessionStateBuilder;
    let mut state = SessionStateBuilder::new().with_default_features().build();
    datafusion_marketing::register_all(&mut state).unwrap();
    for f in datafusion_marketing::all_scalar_functions() {
        assert!(state.udf(f.name()).is_ok(), "{}", f.name());
    }
    for f in datafusion_marketing::all_window_functions() {
        assert!(state.udwf(f.name()).is_ok(), "{}", f.name());
    }
    let ctx = datafusion::prelude::SessionContext::new_with_state(state);
    let out = pretty(&query(&ctx, "SELECT rfm_segment(5, 5, 5) AS s").await);
    assert!(out.contains("Champions"));
}

#[tokio::test]
async fn expr_fn_builds_the_same_expressions_as_sql() {
    use datafusion::prelude::{col, lit};
    use datafusion_marketing::expr_fn::{quantile_score, rfm_segment};
    let ctx = datafusion_marketing::session_context().unwrap();
    let df = ctx
        .sql("SELECT * FROM (VALUES (1, 5, 4, 5), (2, 1, 1, 2), (3, 3, 3, 3)) t(id, r, f, m)")
        .await
        .unwrap()
        .select(vec![
            col("id"),
            rfm_segment(col("r"), col("f"), col("m")).alias("segment"),
            quantile_score(col("id"), lit(3)).alias("q"),
        ])
        .unwrap()
        .sort(vec![col("id").sort(true, false)])
        .unwrap();
    let out = pretty(&df.collect().await.unwrap());
    let expected = "\
+----+---------------------+---+
| id | segment             | q |
+----+---------------------+---+
| 1  | Champions           | 1 |
| 2  | Hibernating         | 2 |
| 3  | Potential Loyalists | 3 |
+----+---------------------+---+";
    assert_eq!(out, expected);
}
