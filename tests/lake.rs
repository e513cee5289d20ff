//! Lake discovery and registration: tables, Hive partitions, and the errors.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion_marketing::lake::{discover, register_lake};

use crate::common::{sample_lake, scalar};

fn write_parquet(path: &Path, values: &[i64]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(values.to_vec()))],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

async fn register_err(path: &str) -> String {
    let ctx = datafusion_marketing::session_context().unwrap();
    register_lake(&ctx, path).await.unwrap_err().to_string()
}

#[tokio::test]
async fn sample_lake_tables_and_partitions() {
    let ctx = datafusion_marketing::session_context().unwrap();
    let tables = discover(&ctx, sample_lake().to_str().unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "customers",
            "events",
            "order_items",
            "orders",
            "products",
            "touchpoints"
        ]
    );
    let orders = tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(
        orders.partitions,
        vec![("year".to_string(), DataType::Int64)]
    );
}

#[tokio::test]
async fn folders_files_partitions_and_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_parquet(&root.join("Sales/region=eu/day=1/a.parquet"), &[1, 2]);
    write_parquet(&root.join("Sales/region=us/day=2/b.parquet"), &[3]);
    write_parquet(&root.join("lookup.parquet"), &[7, 8, 9]);
    write_parquet(&root.join("_staging/x.parquet"), &[0]);
    write_parquet(&root.join("Sales/region=eu/day=1/.hidden.parquet"), &[100]);
    std::fs::write(root.join("Sales/region=eu/day=1/_SUCCESS"), b"").unwrap();
    std::fs::write(root.join("notes.txt"), b"not a table").unwrap();
    std::fs::create_dir_all(root.join("empty_folder")).unwrap();

    let ctx = datafusion_marketing::session_context().unwrap();
    let tables = register_lake(&ctx, root.to_str().unwrap()).await.unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["lookup", "sales"]);
    assert_eq!(scalar(&ctx, "SELECT sum(v) FROM sales").await, "6");
    assert_eq!(scalar(&ctx, "SELECT sum(v) FROM lookup").await, "24");
    // partition columns: strings stay strings, integers become Int64 and prune
    assert_eq!(
        scalar(&ctx, "SELECT sum(v) FROM sales WHERE region = 'eu'").await,
        "3"
    );
    assert_eq!(
        scalar(&ctx, "SELECT sum(v) FROM sales WHERE day = 2").await,
        "3"
    );
    assert_eq!(
        scalar(&ctx, "SELECT arrow_typeof(day) FROM sales LIMIT 1").await,
        "Int64"
    );
    let plan = scalar(&ctx, "EXPLAIN SELECT sum(v) FROM sales WHERE day = 2").await;
    assert!(!plan.is_empty());
}

#[tokio::test]
async fn errors_are_clear() {
    let err = register_err("/definitely/not/here").await;
    assert!(
        err.contains("lake path '/definitely/not/here' does not exist"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = register_err(empty.path().to_str().unwrap()).await;
    assert!(err.contains("holds no Parquet tables"), "{err}");

    let file = empty.path().join("f.parquet");
    write_parquet(&file, &[1]);
    let err = register_err(file.to_str().unwrap()).await;
    assert!(err.contains("is not a folder"), "{err}");

    let dup = tempfile::tempdir().unwrap();
    write_parquet(&dup.path().join("orders/a.parquet"), &[1]);
    write_parquet(&dup.path().join("Orders.parquet"), &[1]);
    let err = register_err(dup.path().to_str().unwrap()).await;
    assert!(err.contains("two tables named 'orders'"), "{err}");

    let mixed = tempfile::tempdir().unwrap();
    write_parquet(&mixed.path().join("t/k=1/a.parquet"), &[1]);
    write_parquet(&mixed.path().join("t/b.parquet"), &[1]);
    let err = register_err(mixed.path().to_str().unwrap()).await;
    assert!(err.contains("mixes folder layouts"), "{err}");

    // registering the same lake twice: names clash with what is registered
    let ctx = datafusion_marketing::session_context().unwrap();
    let lake = sample_lake().to_str().unwrap();
    register_lake(&ctx, lake).await.unwrap();
    let err = register_lake(&ctx, lake).await.unwrap_err().to_string();
    assert!(err.contains("already registered"), "{err}");
}

#[tokio::test]
async fn corrupt_parquet_names_the_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    std::fs::write(dir.path().join("bad/x.parquet"), b"this is not parquet").unwrap();
    std::fs::create_dir_all(dir.path().join("good")).unwrap();
    write_parquet(&dir.path().join("bad/a.parquet"), &[1, 2]);
    write_parquet(&dir.path().join("good/a.parquet"), &[1, 2]);
    let err = register_err(dir.path().to_str().unwrap()).await;
    assert!(err.contains("table 'bad'"), "{err}");
    // the unreadable object is named, not its readable sibling
    assert!(
        err.contains("bad/x.parquet' (19 bytes) is not a readable Parquet file"),
        "{err}"
    );
}

/// A COPY whose query fails part way leaves no file behind through
/// `execute_copy` (the CLI's path), for a single file and for Hive partitions;
/// DataFusion alone leaves a valid Parquet file with the rows before the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copy_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = datafusion_marketing::session_context().unwrap();
    let query = |fail_after: u64| {
        format!(
            "SELECT value, value % 3 AS p, random() AS r, \
             CASE WHEN value > {fail_after} THEN value / (value - value) ELSE value END AS x \
             FROM generate_series(1, 4000000)"
        )
    };
    let single = dir.path().join("single.parquet");
    let folder = dir.path().join("parts");
    let targets = [
        (single.display().to_string(), ""),
        (
            format!("{}/", folder.display()),
            " STORED AS PARQUET PARTITIONED BY (p)",
        ),
    ];
    for (target, options) in &targets {
        let sql = format!("COPY ({}) TO '{target}'{options}", query(3_500_000));
        let plan = ctx.state().create_logical_plan(&sql).await.unwrap();
        let err = datafusion_marketing::lake::execute_copy(&ctx, plan)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Divide by zero"), "{err}");
        assert!(err.contains("removed the"), "{err}");
        assert_eq!(files_under(dir.path()), Vec::<String>::new(), "{err}");
    }

    // what execute_copy protects against: DataFusion on its own
    let sql = format!("COPY ({}) TO '{}'", query(3_500_000), single.display());
    assert!(ctx.sql(&sql).await.unwrap().collect().await.is_err());
    let left = files_under(dir.path());
    assert_eq!(
        left.len(),
        1,
        "DataFusion no longer leaves the file of a failed COPY: execute_copy's clean-up may be unnecessary"
    );
    let rows = scalar(
        &ctx,
        &format!("SELECT count(*) FROM '{}'", single.display()),
    )
    .await;
    assert!(rows.parse::<u64>().unwrap() < 4_000_000, "{rows}");
    std::fs::remove_file(&single).unwrap();

    // and a copy that succeeds keeps its files
    let sql = format!("COPY ({}) TO '{}'", query(u64::MAX >> 1), single.display());
    let plan = ctx.state().create_logical_plan(&sql).await.unwrap();
    datafusion_marketing::lake::execute_copy(&ctx, plan)
        .await
        .unwrap();
    let rows = scalar(
        &ctx,
        &format!("SELECT count(*) FROM '{}'", single.display()),
    )
    .await;
    assert_eq!(rows, "4000000");
}

fn files_under(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
