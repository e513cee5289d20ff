//! Arrow builders for each table of the lake and the Parquet files they flush to.

use std::fs::File;
use std::path::{Path, PathBuf};
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

use super::sim::{CustomerRow, EventRow, ItemRow, OrderRow, Sink, TouchRow};
use super::world::{CAMPAIGNS, CHANNELS, DAY_US, START_US};

/// Rows buffered before a record batch is handed to the Parquet writer.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 262_144;

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

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cannot write '{}': {e}", path.display()))
}

/// A Parquet file opened on first write (so empty partitions leave no file).
pub struct LazyParquet {
    path: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    pub rows: u64,
}

impl LazyParquet {
    pub fn new(path: PathBuf, schema: SchemaRef) -> Self {
        Self {
            path,
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
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            let file = File::create(&self.path).map_err(|e| io_err(&self.path, e))?;
            self.writer = Some(ArrowWriter::try_new(
                file,
                Arc::clone(&self.schema),
                Some(writer_properties()),
            )?);
        }
        self.rows += batch.num_rows() as u64;
        if let Some(w) = self.writer.as_mut() {
            w.write(&batch)?;
        }
        Ok(())
    }

    pub fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.close()?;
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
    pub fn new(out: &Path, chunk: usize) -> Self {
        let file = format!("part-{chunk:05}.parquet");
        Self {
            customers: (
                CustomerCols::default(),
                LazyParquet::new(out.join("customers").join(&file), customers_schema()),
            ),
            orders: YEARS
                .iter()
                .map(|y| {
                    (
                        OrderCols::default(),
                        LazyParquet::new(
                            out.join("orders").join(format!("year={y}")).join(&file),
                            orders_schema(),
                        ),
                    )
                })
                .collect(),
            items: (
                ItemCols::default(),
                LazyParquet::new(out.join("order_items").join(&file), order_items_schema()),
            ),
            touches: (
                TouchCols::default(),
                LazyParquet::new(out.join("touchpoints").join(&file), touchpoints_schema()),
            ),
            events: (
                EventCols::default(),
                LazyParquet::new(out.join("events").join(&file), events_schema()),
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
