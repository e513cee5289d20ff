//! sqllogictest files (`tests/slt/*.slt`) through the published
//! `datafusion-sqllogictest` engine, on a context from `session_context()` with the
//! sample lake registered.

use std::path::PathBuf;

use datafusion_sqllogictest::{DataFusion, df_value_validator, value_normalizer};
use indicatif::ProgressBar;

use crate::common::lake_context;

async fn run_file(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(name);
    let mut runner = sqllogictest::Runner::new(|| async {
        Ok(DataFusion::new(
            lake_context().await,
            PathBuf::from(name),
            ProgressBar::hidden(),
        ))
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_normalizer(value_normalizer);
    runner.with_validator(df_value_validator);
    if let Err(e) = runner.run_file_async(&path).await {
        panic!("{name} failed:\n{e}");
    }
}

#[test]
fn every_slt_file_has_a_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".slt"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "attribution.slt",
            "clv.slt",
            "lake.slt",
            "rfm.slt",
            "similarity.slt"
        ],
        "add a #[tokio::test] below for each new .slt file"
    );
}

#[tokio::test]
async fn attribution_slt() {
    run_file("attribution.slt").await;
}

#[tokio::test]
async fn lake_slt() {
    run_file("lake.slt").await;
}

#[tokio::test]
async fn clv_slt() {
    run_file("clv.slt").await;
}

#[tokio::test]
async fn rfm_slt() {
    run_file("rfm.slt").await;
}

#[tokio::test]
async fn similarity_slt() {
    run_file("similarity.slt").await;
}
