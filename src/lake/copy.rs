//! `COPY ... TO` that never leaves a partial result looking complete.
//!
//! DataFusion 55 finishes the files a `COPY` was writing even when the query fails
//! part way: on a local disk and on S3 alike, a failed `COPY (...) TO 'x.parquet'`
//! leaves a valid Parquet file holding the rows written before the error (measured:
//! 3,489,792 of 4,000,000 rows): the failing input closes the writers' channels,
//! which the writers take for the end of the data, and they complete their files,
//! in tasks that may still be running when the error reaches the caller.
//! [`execute_copy`] lists the destination before the copy; if the copy fails it
//! waits until the destination stops changing (500 ms without a change, at most
//! 10 s), deletes every object that appeared or changed under it since, and returns
//! the error saying what it removed. Uploads that were
//! still in flight never become visible (an S3 multipart upload is invisible until
//! completed; its parts are dropped by the bucket's lifecycle rule for incomplete
//! uploads, or by `ListMultipartUploads`/`AbortMultipartUpload`). Objects written
//! concurrently by someone else under the same destination during a failed copy
//! would be removed too: give every copy its own destination.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The destination's objects (the object at the destination itself, for a
/// single-file copy, and everything under it as a folder), with what identifies
/// their content version.
async fn snapshot(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<HashMap<ObjectPath, (Option<String>, i64)>> {
    let mut objects: Vec<_> = store.list(Some(prefix)).try_collect().await?;
    match store.head(prefix).await {
        Ok(meta) => objects.push(meta),
        Err(object_store::Error::NotFound { .. }) => {}
        // a folder is not an object: some stores say so differently
        Err(_) if !objects.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(objects
        .into_iter()
        .map(|m| {
            (
                m.location,
                (m.e_tag, m.last_modified.timestamp_nanos_opt().unwrap_or(0)),
            )
        })
        .collect())
}

/// How often and how long to watch the destination after a failed copy.
const SETTLE_POLL: Duration = Duration::from_millis(100);
const SETTLE_QUIET_POLLS: usize = 5;
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// The destination once the failed copy's writers have stopped. DataFusion's file
/// writers are separate tasks that finish (and complete their uploads) after the
/// error has already reached the caller, so wait until the listing has not changed
/// for [`SETTLE_QUIET_POLLS`] polls in a row (at most [`SETTLE_MAX`]).
async fn settled_snapshot(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<HashMap<ObjectPath, (Option<String>, i64)>> {
    let start = Instant::now();
    let mut last = snapshot(store, prefix).await?;
    let mut quiet = 0;
    while quiet < SETTLE_QUIET_POLLS && start.elapsed() < SETTLE_MAX {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = snapshot(store, prefix).await?;
        if now == last {
            quiet += 1;
        } else {
            quiet = 0;
            last = now;
        }
    }
    Ok(last)
}

/// Run `plan` (any plan; only `COPY` gets the clean-up) and collect its result.
pub async fn execute_copy(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    let LogicalPlan::Copy(copy) = &plan else {
        return ctx.execute_logical_plan(plan).await?.collect().await;
    };
    let output = copy.output_url.clone();
    let url = ListingTableUrl::parse(&output)?;
    super::store::register_object_store(ctx, url.as_ref())?;
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let prefix = url.prefix().clone();
    let before = snapshot(store.as_ref(), &prefix).await.map_err(|e| {
        super::store::storage_error("COPY: cannot list the destination", &output, e)
    })?;

    let result = match ctx.execute_logical_plan(plan).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    let error = match result {
        Ok(batches) => return Ok(batches),
        Err(e) => e,
    };
    let after = match settled_snapshot(store.as_ref(), &prefix).await {
        Ok(after) => after,
        Err(list_err) => {
            return Err(DataFusionError::Execution(format!(
                "{error}\nCOPY TO '{output}' failed, and listing the destination to remove partial files failed too ({list_err}): check '{output}' for files written by this copy"
            )));
        }
    };
    let mut written: Vec<ObjectPath> = after
        .into_iter()
        .filter(|(path, version)| before.get(path) != Some(version))
        .map(|(path, _)| path)
        .collect();
    written.sort();
    if written.is_empty() {
        return Err(DataFusionError::Execution(format!(
            "{error}\nCOPY TO '{output}' failed; it left no files behind"
        )));
    }
    let mut failed = Vec::new();
    for path in &written {
        if let Err(e) = store.delete(path).await {
            failed.push(format!("{path} ({e})"));
        }
    }
    let names: Vec<String> = written.iter().map(ToString::to_string).collect();
    if failed.is_empty() {
        Err(DataFusionError::Execution(format!(
            "{error}\nCOPY TO '{output}' failed; removed the {} partial file(s) it had written: {}",
            names.len(),
            names.join(", ")
        )))
    } else {
        Err(DataFusionError::Execution(format!(
            "{error}\nCOPY TO '{output}' failed and left partial files that could not be removed; delete them by hand: {}",
            failed.join(", ")
        )))
    }
}
