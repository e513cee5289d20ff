//! Shared fixtures: a generated sample lake, cached per test-binary build, and
//! contexts over it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use datafusion::prelude::SessionContext;
use datafusion_marketing::generate::{GenerateOptions, generate};

/// Customers in the shared test lake.
pub const LAKE_CUSTOMERS: u64 = 3_000;
pub const LAKE_SEED: u64 = 7;

/// A lake generated once per build of the test binary and shared by every test
/// (also across nextest's per-test processes): the folder name carries the
/// binary's modification time, so a rebuilt generator never reads a stale lake.
pub fn sample_lake() -> &'static Path {
    static LAKE: OnceLock<PathBuf> = OnceLock::new();
    LAKE.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let stamp = std::fs::metadata(&exe)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = root.join(format!("sample-lake-{LAKE_SEED}-{LAKE_CUSTOMERS}-{stamp}"));
        if dir.join("orders").exists() {
            return dir;
        }
        let tmp = tempfile::tempdir_in(&root).expect("temp dir");
        generate(
            tmp.path(),
            &GenerateOptions {
                customers: LAKE_CUSTOMERS,
                seed: LAKE_SEED,
                ..Default::default()
            },
        )
        .expect("generate the sample lake");
        // another process may have won the race; its lake is identical
        let tmp_path = tmp.keep();
        if std::fs::rename(&tmp_path, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp_path);
        }
        assert!(dir.join("orders").exists());
        dir
    })
}

/// A context from the library helper with the sample lake registered.
pub async fn lake_context() -> SessionContext {
    lake_context_with(datafusion_marketing::session_config()).await
}

/// Like [`lake_context`] with a caller-provided configuration (partitions, batch size).
pub async fn lake_context_with(config: datafusion::prelude::SessionConfig) -> SessionContext {
    let ctx = datafusion_marketing::session_context_with_config(config).expect("context");
    datafusion_marketing::lake::register_lake(&ctx, sample_lake().to_str().unwrap())
        .await
        .expect("register lake");
    ctx
}

pub async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning failed for {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("execution failed for {sql}: {e}"))
}

/// Batches as a table, NULL printed as `NULL` (as the CLI does).
pub fn pretty(batches: &[RecordBatch]) -> String {
    let options = FormatOptions::default().with_null("NULL");
    pretty_format_batches_with_options(batches, &options)
        .expect("format")
        .to_string()
}

/// The value of a single-row, single-column result as a string.
pub async fn scalar(ctx: &SessionContext, sql: &str) -> String {
    let batches = query(ctx, sql).await;
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).expect("display")
}

/// Path of the built CLI binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_datafusion-marketing")
}
