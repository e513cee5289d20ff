//! Arrow builders for each table of the lake and the Parquet files they flush to.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::runtime::Handle;

use super::sim::{CustomerRow, EventRow, ItemRow, OrderRow, Sink, TouchRow};
use super::world::{CAMPAIGNS, CHANNELS, DAY_US, START_US};

/// Rows buffered before a record batch is handed to the Parquet writer.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group of the generated lake (`COPY` writes smaller ones: see
/// `cli::COPY_ROW_GROUP_ROWS`).
pub const ROW_GROUP_ROWS: usize = 262_144;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

pub fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("signup_ts", ts_type(), false),
        Field::new("country", DataType::Utf8, false),
        Field::new("acquisition_channel", DataType::Utf8, false),
        Field::new("loyalty_member", DataType::Boolean, false),
    ]))
}

pub fn products_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
    ]))
}

/// `orders` files; the `year` column comes from the Hive partition folder.
pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_ts", ts_type(), false),
        Field::new("amount", DataType::Float64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("n_items", DataType::Int32, false),
    ]))
}

pub fn order_items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("line_no", DataType::Int32, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("unit_price", DataType::Float64, false),
    ]))
}

pub fn touchpoints_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("campaign", DataType::Utf8, true),
        Field::new("cost", DataType::Float64, false),
    ]))
}

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("session_id", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("product_id", DataType::Int64, true),
        Field::new("order_id", DataType::Int64, true),
    ]))
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("datafusion-marketing generate".to_string())
        .build()
}

/// Where the generator writes: a local folder, or a prefix in an object store
/// (each file a streaming multipart upload driven on `runtime`).
#[derive(Clone)]
pub enum Destination {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        /// The lake's URL, for messages.
        url: String,
        prefix: ObjectPath,
        runtime: Handle,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Destination {
    /// The lake's location as the user wrote it.
    pub fn display(&self) -> String {
        match self {
            Destination::Local(p) => p.display().to_string(),
            Destination::Store { url, .. } => url.clone(),
        }
    }

    /// A file at `parts` (folders then file name) under the destination.
    pub fn file(&self, parts: &[&str]) -> OutFile {
        match self {
            Destination::Local(root) => {
                OutFile::Local(parts.iter().fold(root.clone(), |p, s| p.join(s)))
            }
            Destination::Store {
                store,
                url,
                prefix,
                runtime,
            } => OutFile::Object {
                store: Arc::clone(store),
                path: parts.iter().fold(prefix.clone(), |p, s| p.join(*s)),
                url: format!("{}/{}", url.trim_end_matches('/'), parts.join("/")),
                runtime: runtime.clone(),
            },
        }
    }
}

/// One output file, not yet opened.
#[derive(Clone)]
pub enum OutFile {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        url: String,
        runtime: Handle,
    },
}

impl OutFile {
    fn display(&self) -> String {
        match self {
            OutFile::Local(p) => p.display().to_string(),
            OutFile::Object { url, .. } => url.clone(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("cannot write '{}': {e}", self.display()))
    }

    fn open(&self) -> Result<FileSink> {
        match self {
            OutFile::Local(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
                }
                Ok(FileSink::File(File::create(path).map_err(|e| self.err(e))?))
            }
            OutFile::Object {
                store,
                path,
                runtime,
                ..
            } => {
                let upload = runtime
                    .block_on(store.put_multipart(path))
                    .map_err(|e| self.err(e))?;
                Ok(FileSink::Object {
                    upload: Some(WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART)),
                    runtime: runtime.clone(),
                })
            }
        }
    }
}

/// Bytes per multipart part (S3 needs at least 5 MiB for all parts but the last).
const UPLOAD_PART: usize = 8 << 20;
/// Parts of one file in flight at once, which bounds the memory of an upload.
const UPLOAD_CONCURRENCY: usize = 4;

/// An open output file.
pub enum FileSink {
    File(File),
    /// A streaming multipart upload; aborted if dropped before [`FileSink::finish`], so a
    /// failed run never leaves a half-written object (incomplete uploads are
    /// invisible to readers).
    Object {
        upload: Option<WriteMultipart>,
        runtime: Handle,
    },
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            FileSink::File(f) => f.write(buf),
            FileSink::Object { upload, runtime } => {
                let upload = upload
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("upload already finished"))?;
                {
                    // put_part spawns the part's request on the runtime
                    let _enter = runtime.enter();
                    upload.write(buf);
                }
                runtime
                    .block_on(upload.wait_for_capacity(UPLOAD_CONCURRENCY))
                    .map_err(std::io::Error::other)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            FileSink::File(f) => f.flush(),
            FileSink::Object { .. } => Ok(()),
        }
    }
}

impl FileSink {
    /// Complete the file (for an upload: send the last part and commit it).
    fn finish(mut self) -> std::result::Result<(), String> {
        match &mut self {
            FileSink::File(f) => f.flush().map_err(|e| e.to_string()),
            FileSink::Object { upload, runtime } => match upload.take() {
                Some(u) => {
                    let _enter = runtime.enter();
                    runtime
                        .block_on(u.finish())
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                None => Ok(()),
            },
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if let FileSink::Object { upload, runtime } = self
            && let Some(u) = upload.take()
        {
            let _enter = runtime.enter();
            // best effort: the upload stays invisible either way
            let _ = runtime.block_on(u.abort());
        }
    }
}

/// A Parquet file opened on first write (so empty partitions leave no file).
pub struct LazyParquet {
    file: OutFile,
    schema: SchemaRef,
    writer: Option<ArrowWriter<FileSink>>,
    pub rows: u64,
}

impl LazyParquet {
    pub fn new(file: OutFile, schema: SchemaRef) -> Self {
        Self {
            file,
            schema,
            writer: None,
            rows: 0,
        }
    }

    pub fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writer.is_none() {
            let sink = self.file.open()?;
            self.writer = Some(ArrowWriter::try_new(
                sink,
                Arc::clone(&self.schema),
                Some(writer_properties()),
            )?);
        }
        self.rows += batch.num_rows() as u64;
        if let Some(w) = self.writer.as_mut() {
            w.write(&batch).map_err(|e| self.file.err(e))?;
        }
        Ok(())
    }

    pub fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let sink = w.into_inner().map_err(|e| self.file.err(e))?;
            sink.finish().map_err(|e| self.file.err(e))?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct CustomerCols {
    id: Int64Builder,
    signup: TimestampMicrosecondBuilder,
    country: StringBuilder,
    channel: StringBuilder,
    loyalty: BooleanBuilder,
}

#[derive(Default)]
struct OrderCols {
    id: Int64Builder,
    customer: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    amount: Float64Builder,
    channel: StringBuilder,
    device: StringBuilder,
    n_items: Int32Builder,
    len: usize,
}

#[derive(Default)]
struct ItemCols {
    order: Int64Builder,
    line: Int32Builder,
    product: Int64Builder,
    quantity: Int32Builder,
    price: Float64Builder,
}

#[derive(Default)]
struct TouchCols {
    customer: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    channel: StringBuilder,
    campaign: StringBuilder,
    cost: Float64Builder,
}

#[derive(Default)]
struct EventCols {
    customer: Int64Builder,
    session: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    kind: StringBuilder,
    product: Int64Builder,
    order: Int64Builder,
}

/// Years covered by the `orders` partitions (2022 holds nothing; orders start 2023).
pub const YEARS: [i32; 3] = [2023, 2024, 2025];

fn year_of(ts: i64) -> usize {
    // day boundaries of 2024-01-01 and 2025-01-01 relative to START_US
    let day = (ts - START_US).div_euclid(DAY_US);
    if day < 365 {
        0
    } else if day < 731 {
        1
    } else {
        2
    }
}

/// Writes one chunk of customers to its own `part-NNNNN.parquet` in every table.
pub struct ChunkWriter {
    customers: (CustomerCols, LazyParquet),
    orders: Vec<(OrderCols, LazyParquet)>,
    items: (ItemCols, LazyParquet),
    touches: (TouchCols, LazyParquet),
    events: (EventCols, LazyParquet),
    error: Option<DataFusionError>,
}

impl ChunkWriter {
    pub fn new(out: &Destination, chunk: usize) -> Self {
        let file = format!("part-{chunk:05}.parquet");
        Self {
            customers: (
                CustomerCols::default(),
                LazyParquet::new(out.file(&["customers", &file]), customers_schema()),
            ),
            orders: YEARS
                .iter()
                .map(|y| {
                    (
                        OrderCols::default(),
                        LazyParquet::new(
                            out.file(&["orders", &format!("year={y}"), &file]),
                            orders_schema(),
                        ),
                    )
                })
                .collect(),
            items: (
                ItemCols::default(),
                LazyParquet::new(out.file(&["order_items", &file]), order_items_schema()),
            ),
            touches: (
                TouchCols::default(),
                LazyParquet::new(out.file(&["touchpoints", &file]), touchpoints_schema()),
            ),
            events: (
                EventCols::default(),
                LazyParquet::new(out.file(&["events", &file]), events_schema()),
            ),
            error: None,
        }
    }

    fn record(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn flush_customers(&mut self) -> Result<()> {
        let (c, f) = &mut self.customers;
        f.write(vec![
            Arc::new(c.id.finish()),
            Arc::new(c.signup.finish()),
            Arc::new(c.country.finish()),
            Arc::new(c.channel.finish()),
            Arc::new(c.loyalty.finish()),
        ])
    }

    fn flush_orders(&mut self, year: usize) -> Result<()> {
        let (c, f) = &mut self.orders[year];
        c.len = 0;
        f.write(vec![
            Arc::new(c.id.finish()),
            Arc::new(c.customer.finish()),
            Arc::new(c.ts.finish()),
            Arc::new(c.amount.finish()),
            Arc::new(c.channel.finish()),
            Arc::new(c.device.finish()),
            Arc::new(c.n_items.finish()),
        ])
    }

    fn flush_items(&mut self) -> Result<()> {
        let (c, f) = &mut self.items;
        f.write(vec![
            Arc::new(c.order.finish()),
            Arc::new(c.line.finish()),
            Arc::new(c.product.finish()),
            Arc::new(c.quantity.finish()),
            Arc::new(c.price.finish()),
        ])
    }

    fn flush_touches(&mut self) -> Result<()> {
        let (c, f) = &mut self.touches;
        f.write(vec![
            Arc::new(c.customer.finish()),
            Arc::new(c.ts.finish()),
            Arc::new(c.channel.finish()),
            Arc::new(c.campaign.finish()),
            Arc::new(c.cost.finish()),
        ])
    }

    fn flush_events(&mut self) -> Result<()> {
        let (c, f) = &mut self.events;
        f.write(vec![
            Arc::new(c.customer.finish()),
            Arc::new(c.session.finish()),
            Arc::new(c.ts.finish()),
            Arc::new(c.kind.finish()),
            Arc::new(c.product.finish()),
            Arc::new(c.order.finish()),
        ])
    }

    /// Flush everything and close the files. Returns rows written per table
    /// (customers, orders, order_items, touchpoints, events).
    pub fn finish(mut self) -> Result<[u64; 5]> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush_customers()?;
        for y in 0..YEARS.len() {
            self.flush_orders(y)?;
        }
        self.flush_items()?;
        self.flush_touches()?;
        self.flush_events()?;
        self.customers.1.close()?;
        let mut orders = 0;
        for (_, f) in &mut self.orders {
            f.close()?;
            orders += f.rows;
        }
        self.items.1.close()?;
        self.touches.1.close()?;
        self.events.1.close()?;
        Ok([
            self.customers.1.rows,
            orders,
            self.items.1.rows,
            self.touches.1.rows,
            self.events.1.rows,
        ])
    }
}

impl Sink for ChunkWriter {
    fn customer(&mut self, row: CustomerRow) {
        let c = &mut self.customers.0;
        c.id.append_value(row.customer_id);
        c.signup.append_value(row.signup_ts);
        c.country.append_value(row.country);
        c.channel.append_value(row.acquisition_channel);
        c.loyalty.append_value(row.loyalty_member);
        if c.id.len() >= BATCH_ROWS {
            let r = self.flush_customers();
            self.record(r);
        }
    }

    fn order(&mut self, row: OrderRow) {
        let year = year_of(row.order_ts);
        let c = &mut self.orders[year].0;
        c.id.append_value(row.order_id);
        c.customer.append_value(row.customer_id);
        c.ts.append_value(row.order_ts);
        c.amount.append_value(row.amount);
        c.channel.append_value(row.channel);
        c.device.append_value(row.device);
        c.n_items.append_value(row.n_items);
        c.len += 1;
        if c.len >= BATCH_ROWS {
            let r = self.flush_orders(year);
            self.record(r);
        }
    }

    fn item(&mut self, row: ItemRow) {
        let c = &mut self.items.0;
        c.order.append_value(row.order_id);
        c.line.append_value(row.line_no);
        c.product.append_value(row.product_id);
        c.quantity.append_value(row.quantity);
        c.price.append_value(row.unit_price);
        if c.order.len() >= BATCH_ROWS {
            let r = self.flush_items();
            self.record(r);
        }
    }

    fn touch(&mut self, row: TouchRow) {
        let c = &mut self.touches.0;
        let channel = CHANNELS[row.channel];
        c.customer.append_value(row.customer_id);
        c.ts.append_value(row.ts);
        c.channel.append_value(channel);
        match row.campaign {
            Some(i) => c
                .campaign
                .append_value(format!("{channel}_{}", CAMPAIGNS[row.channel][i])),
            None => c.campaign.append_null(),
        }
        c.cost.append_value(row.cost);
        if c.customer.len() >= BATCH_ROWS {
            let r = self.flush_touches();
            self.record(r);
        }
    }

    fn event(&mut self, row: EventRow) {
        let c = &mut self.events.0;
        c.customer.append_value(row.customer_id);
        c.session.append_value(row.session_id);
        c.ts.append_value(row.ts);
        c.kind.append_value(row.event_type);
        c.product.append_option(row.product_id);
        c.order.append_option(row.order_id);
        if c.customer.len() >= BATCH_ROWS {
            let r = self.flush_events();
            self.record(r);
        }
    }
}
