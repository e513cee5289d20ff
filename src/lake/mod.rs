//! Registering a lake: every Parquet table under a folder becomes a table of the
//! session.
//!
//! Rules (see `docs/lakes.md`):
//! * each sub-folder holding Parquet files is a table named after the folder; Hive
//!   `key=value` folders inside it become partition columns (`Int64` when every
//!   value is an integer, otherwise `Utf8`) and prune scans;
//! * a `.parquet` file directly under the lake is a table named after its stem;
//! * names are lower-cased (SQL identifiers are case-insensitive unless quoted);
//! * files and folders whose name starts with `.` or `_` (`_SUCCESS`, `.crc`,
//!   `_delta_log`) are ignored, as are files that are not `.parquet`;
//! * a missing path, a lake with no Parquet table, two tables with the same name,
//!   or a table whose partition folders disagree is an error.
//!
//! Discovery lists the lake through the session's object store, so the same code
//! serves local folders and object storage; for `s3://` and `gs://` lakes a store
//! is built from the environment first (see [`store`]).

pub mod copy;
pub mod store;

pub use copy::execute_copy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;

/// One table found in a lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeTable {
    /// Table name as registered (lower case).
    pub name: String,
    /// URL of the folder or file backing the table.
    pub url: String,
    /// Hive partition columns, outermost first, with their inferred types.
    pub partitions: Vec<(String, DataType)>,
    /// Number of Parquet files.
    pub files: usize,
    /// The Parquet objects, in path order.
    objects: Vec<ObjectMeta>,
}

fn lake_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Configuration(msg.into())
}

/// Turn a lake argument (a local path or a URL such as `s3://bucket/prefix`) into a
/// folder URL ending in `/`.
pub fn lake_url(location: &str) -> Result<url::Url> {
    if location.contains("://") {
        let mut url = url::Url::parse(location)
            .map_err(|e| lake_err(format!("invalid lake URL '{location}': {e}")))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        return Ok(url);
    }
    let path = Path::new(location);
    if !path.exists() {
        return Err(lake_err(format!("lake path '{location}' does not exist")));
    }
    if !path.is_dir() {
        return Err(lake_err(format!(
            "lake path '{location}' is not a folder (pass the folder that holds the tables)"
        )));
    }
    let abs = std::fs::canonicalize(path)
        .map_err(|e| lake_err(format!("cannot resolve lake path '{location}': {e}")))?;
    url::Url::from_directory_path(&abs)
        .map_err(|()| lake_err(format!("cannot turn '{}' into a URL", abs.display())))
}

fn hidden(segment: &str) -> bool {
    segment.starts_with('.') || segment.starts_with('_')
}

#[derive(Default)]
struct Found {
    is_file: bool,
    files: usize,
    /// Partition keys per file, in path order.
    keys: BTreeSet<Vec<String>>,
    objects: Vec<ObjectMeta>,
    values: BTreeMap<String, BTreeSet<String>>,
}

/// Find the tables of a lake without registering them.
pub async fn discover(ctx: &SessionContext, location: &str) -> Result<Vec<LakeTable>> {
    let url = lake_url(location)?;
    store::register_object_store(ctx, &url)?;
    let listing_url = ListingTableUrl::parse(url.as_str())?;
    let store = ctx
        .runtime_env()
        .object_store(listing_url.object_store())
        .map_err(|e| lake_err(format!("no object store for lake '{location}': {e}")))?;
    let prefix = ObjectPath::from_url_path(url.path())
        .map_err(|e| lake_err(format!("invalid lake path '{location}': {e}")))?;
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| store::storage_error("cannot list lake", location, e))?;
    if objects.is_empty() && url.scheme() != "file" {
        return Err(lake_err(format!(
            "lake '{location}' is empty: no objects under the prefix '{prefix}/' of that bucket (check the path; listing is case-sensitive)"
        )));
    }

    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut originals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for meta in objects {
        let Some(rel) = meta.location.prefix_match(&prefix) else {
            continue;
        };
        let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
        if parts.is_empty() || parts.iter().any(|p| hidden(p)) {
            continue;
        }
        let file = parts.last().map(String::as_str).unwrap_or_default();
        if !file.to_ascii_lowercase().ends_with(".parquet") {
            continue;
        }
        let (raw_name, is_file) = if parts.len() == 1 {
            (file[..file.len() - ".parquet".len()].to_string(), true)
        } else {
            (parts[0].clone(), false)
        };
        let name = raw_name.to_lowercase();
        originals
            .entry(name.clone())
            .or_default()
            .insert(if is_file {
                parts[0].clone()
            } else {
                format!("{}/", parts[0])
            });
        let entry = found.entry(name).or_default();
        entry.is_file = is_file;
        entry.files += 1;
        entry.objects.push(meta.clone());
        if !is_file {
            let mut keys = Vec::new();
            for dir in &parts[1..parts.len() - 1] {
                if let Some((k, v)) = dir.split_once('=') {
                    keys.push(k.to_string());
                    entry
                        .values
                        .entry(k.to_string())
                        .or_default()
                        .insert(v.to_string());
                } else {
                    keys.push(String::new());
                }
            }
            entry.keys.insert(keys);
        }
    }
    for (name, sources) in &originals {
        if sources.len() > 1 {
            let list: Vec<&str> = sources.iter().map(String::as_str).collect();
            return Err(lake_err(format!(
                "lake '{location}' has two tables named '{name}': {}",
                list.join(" and ")
            )));
        }
    }
    if found.is_empty() {
        return Err(lake_err(format!(
            "lake '{location}' holds no Parquet tables (expected sub-folders of .parquet files or .parquet files)"
        )));
    }
    let mut tables = Vec::new();
    for (name, f) in found {
        let source = originals[&name].iter().next().cloned().unwrap_or_default();
        let mut partitions = Vec::new();
        if !f.is_file {
            if f.keys.len() > 1 {
                return Err(lake_err(format!(
                    "table '{name}' in lake '{location}' mixes folder layouts ({}); every file must sit under the same key=value partition folders",
                    f.keys
                        .iter()
                        .map(|k| format!("[{}]", k.join("/")))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let keys = f.keys.into_iter().next().unwrap_or_default();
            if keys.iter().any(String::is_empty) {
                return Err(lake_err(format!(
                    "table '{name}' in lake '{location}' has nested folders that are not key=value partitions"
                )));
            }
            for k in keys {
                let integer = f.values[&k].iter().all(|v| v.parse::<i64>().is_ok());
                let dtype = if integer {
                    DataType::Int64
                } else {
                    DataType::Utf8
                };
                partitions.push((k, dtype));
            }
        }
        tables.push(LakeTable {
            url: format!("{url}{source}"),
            name,
            partitions,
            files: f.files,
            objects: f.objects,
        });
    }
    Ok(tables)
}

/// The error for a table whose schema cannot be read: names the first Parquet
/// object whose footer does not read (DataFusion's error does not), or passes the
/// error on with the table's name when every footer reads.
async fn unreadable_table(
    ctx: &SessionContext,
    t: &LakeTable,
    e: DataFusionError,
) -> DataFusionError {
    let culprit = async {
        let url = ListingTableUrl::parse(&t.url).ok()?;
        let store = ctx.runtime_env().object_store(url.object_store()).ok()?;
        for meta in &t.objects {
            if let Err(err) = DFParquetMetadata::new(store.as_ref(), meta)
                .fetch_metadata()
                .await
            {
                return Some(format!(
                    "object '{}' ({} bytes) is not a readable Parquet file: {err}",
                    meta.location, meta.size
                ));
            }
        }
        None
    }
    .await;
    match culprit {
        Some(why) => lake_err(format!("cannot read table '{}' ({}): {why}", t.name, t.url)),
        None => store::storage_error(
            &format!("cannot read the schema of table '{}' at", t.name),
            &t.url,
            e,
        ),
    }
}

/// Register every table of the lake at `location` on `ctx`. Returns the tables.
///
/// Fails, registering nothing, if a table name is already registered in the session.
pub async fn register_lake(ctx: &SessionContext, location: &str) -> Result<Vec<LakeTable>> {
    let tables = discover(ctx, location).await?;
    for t in &tables {
        if ctx.table_exist(t.name.as_str())? {
            return Err(lake_err(format!(
                "lake '{location}': a table named '{}' is already registered (two lakes with the same table name?)",
                t.name
            )));
        }
    }
    let state = ctx.state();
    for t in &tables {
        let table_url = if t.url.ends_with('/') {
            // skip hidden and underscore files inside the table folder, as at the lake level
            let url = url::Url::parse(&t.url)
                .map_err(|e| lake_err(format!("invalid URL '{}': {e}", t.url)))?;
            let visible = glob::Pattern::new("[!._]*").map_err(|e| lake_err(e.to_string()))?;
            ListingTableUrl::try_new(url, Some(visible))?
        } else {
            ListingTableUrl::parse(&t.url)?
        };
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(t.partitions.clone());
        let config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .infer_schema(&state)
            .await;
        let config = match config {
            Ok(config) => config,
            Err(e) => return Err(unreadable_table(ctx, t, e).await),
        };
        let table = ListingTable::try_new(config)?;
        ctx.register_table(
            datafusion::common::TableReference::bare(t.name.as_str()),
            Arc::new(table),
        )?;
    }
    Ok(tables)
}
