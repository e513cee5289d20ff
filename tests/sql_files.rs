//! Every analysis in `sql/` runs against a generated lake (so none rots), and the
//! demo embeds exactly the files of `sql/`.

use std::path::PathBuf;

use datafusion_marketing::cli::demo::{ANALYSES, title};

use crate::common::lake_context;

fn sql_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql")
}

#[test]
fn demo_embeds_every_sql_file() {
    let mut on_disk: Vec<String> = std::fs::read_dir(sql_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = ANALYSES.iter().map(|(f, _)| f.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    for (file, sql) in ANALYSES {
        let on_disk = std::fs::read_to_string(sql_dir().join(file)).unwrap();
        assert_eq!(&on_disk, sql, "{file}");
        assert!(
            !title(sql).is_empty(),
            "{file} needs a title comment on its first line"
        );
    }
}

#[tokio::test]
async fn every_sql_file_runs_on_the_sample_lake_and_returns_rows() {
    let ctx = lake_context().await;
    for (file, sql) in ANALYSES {
        let statements: Vec<&str> = sql
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut last = Vec::new();
        for s in statements {
            let df = ctx.sql(s).await.unwrap_or_else(|e| panic!("{file}: {e}"));
            last = df.collect().await.unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let rows: usize = last.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{file} returned no rows");
    }
}

#[tokio::test]
async fn rfm_segments_cover_every_buyer_once() {
    let ctx = lake_context().await;
    let sql = ANALYSES
        .iter()
        .find(|(f, _)| *f == "rfm_segments.sql")
        .unwrap()
        .1;
    let df = ctx.sql(sql.trim().trim_end_matches(';')).await.unwrap();
    ctx.register_table("seg", df.into_view()).unwrap();
    let total = crate::common::scalar(&ctx, "SELECT sum(customers) FROM seg").await;
    let buyers =
        crate::common::scalar(&ctx, "SELECT count(DISTINCT customer_id) FROM orders").await;
    assert_eq!(total, buyers);
    let share = crate::common::scalar(&ctx, "SELECT round(sum(revenue_share_pct)) FROM seg").await;
    assert_eq!(share, "100.0");
}
