//! `datafusion-marketing generate`: a realistic, deterministic sample lake.
//!
//! Layout (every table is a folder of Parquet files, one `part-NNNNN.parquet` per
//! chunk of [`CHUNK_CUSTOMERS`] customers; `orders` is Hive-partitioned by `year`):
//! ```text
//! OUT/customers/  OUT/products/  OUT/orders/year=YYYY/  OUT/order_items/
//! OUT/touchpoints/  OUT/events/
//! ```
//! Every customer is simulated from its own random stream derived from the seed and
//! the customer id, and chunks are fixed-size, so the same seed and customer count
//! give the same bytes whatever the number of threads. Memory is bounded by the
//! number of chunks in flight (one per worker), not by the size of the lake.

pub mod rng;
pub mod sim;
pub mod world;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
use datafusion::error::{DataFusionError, Result};

use futures::StreamExt;
use sim::World;
use world::{BRANDS, CATEGORIES};
pub use writer::Destination;
use writer::{ChunkWriter, LazyParquet, products_schema};

/// Customers per output file. Fixed, so the output does not depend on the machine.
pub const CHUNK_CUSTOMERS: u64 = 50_000;

/// Options of `generate`.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub customers: u64,
    pub seed: u64,
    /// Worker threads (0 = available parallelism). Does not change the output.
    pub threads: usize,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Customers per output file; [`CHUNK_CUSTOMERS`] unless a test needs many
    /// small files. Changes the file layout, never the rows.
    pub chunk_customers: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            customers: 10_000,
            seed: 42,
            threads: 0,
            progress: false,
            chunk_customers: CHUNK_CUSTOMERS,
        }
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    pub customers: u64,
    pub products: u64,
    pub orders: u64,
    pub order_items: u64,
    pub touchpoints: u64,
    pub events: u64,
}

impl GenerateSummary {
    pub fn total_rows(&self) -> u64 {
        self.customers
            + self.products
            + self.orders
            + self.order_items
            + self.touchpoints
            + self.events
    }
}

impl std::fmt::Display for GenerateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "customers {}, products {}, orders {}, order_items {}, touchpoints {}, events {}",
            self.customers,
            self.products,
            self.orders,
            self.order_items,
            self.touchpoints,
            self.events
        )
    }
}

const TABLES: [&str; 6] = [
    "customers",
    "products",
    "orders",
    "order_items",
    "touchpoints",
    "events",
];

/// Generate the sample lake into the local folder `out`.
///
/// Refuses to write into a folder that already holds one of the lake's tables, so
/// an earlier lake is never silently mixed with a new one.
pub fn generate(out: &Path, options: &GenerateOptions) -> Result<GenerateSummary> {
    generate_to(&Destination::Local(out.to_path_buf()), options)
}

/// Generate the sample lake into a local folder or an object-store prefix.
///
/// Writing to a store streams every file as a multipart upload (bounded memory);
/// the call blocks on the destination's runtime, so call it from a blocking
/// thread (`tokio::task::spawn_blocking`), never from async code. If it fails,
/// uploads in flight are aborted; files completed before the failure remain.
pub fn generate_to(out: &Destination, options: &GenerateOptions) -> Result<GenerateSummary> {
    if options.customers == 0 {
        return Err(DataFusionError::Configuration(
            "generate: --customers must be at least 1".into(),
        ));
    }
    for t in TABLES {
        if table_exists(out, t)? {
            return Err(DataFusionError::Configuration(format!(
                "generate: '{}' already contains a '{t}' table; choose an empty folder or remove it first",
                out.display()
            )));
        }
    }
    if let Destination::Local(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| {
            DataFusionError::Execution(format!("generate: cannot create '{}': {e}", dir.display()))
        })?;
    }
    let world = Arc::new(World::new(options.seed, options.customers));
    let mut summary = GenerateSummary {
        products: write_products(out, &world)?,
        ..Default::default()
    };

    let chunk_size = options.chunk_customers.max(1);
    let chunks = options.customers.div_ceil(chunk_size) as usize;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(chunks)
    .max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let bar = options.progress.then(|| progress_bar(options.customers));

    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let world = Arc::clone(&world);
                let next = Arc::clone(&next);
                let done = Arc::clone(&done);
                let out = out.clone();
                let customers = options.customers;
                scope.spawn(move || -> Result<[u64; 5]> {
                    let mut totals = [0u64; 5];
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        if chunk >= chunks {
                            return Ok(totals);
                        }
                        let first = chunk as u64 * chunk_size + 1;
                        let last = (first + chunk_size - 1).min(customers);
                        let mut w = ChunkWriter::new(&out, chunk);
                        for id in first..=last {
                            sim::simulate_customer(&world, id as i64, &mut w);
                            if (id - first + 1).is_multiple_of(1000) {
                                done.fetch_add(1000, Ordering::Relaxed);
                            }
                        }
                        done.fetch_add((last - first + 1) % 1000, Ordering::Relaxed);
                        let rows = w.finish()?;
                        for (t, r) in totals.iter_mut().zip(rows) {
                            *t += r;
                        }
                    }
                })
            })
            .collect();
        if let Some(bar) = &bar {
            while handles.iter().any(|h| !h.is_finished()) {
                bar.set_position(done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DataFusionError::Execution(
                        "generate: a worker thread panicked".into(),
                    ))
                })
            })
            .collect::<Vec<_>>()
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for r in results {
        let [c, o, i, t, e] = r?;
        summary.customers += c;
        summary.orders += o;
        summary.order_items += i;
        summary.touchpoints += t;
        summary.events += e;
    }
    Ok(summary)
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} generating [{elapsed_precise}] {wide_bar} {pos}/{len} customers ({eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Whether the destination already holds something under `table/`.
fn table_exists(out: &Destination, table: &str) -> Result<bool> {
    match out {
        Destination::Local(dir) => Ok(dir.join(table).exists()),
        Destination::Store {
            store,
            url,
            prefix,
            runtime,
        } => {
            let path = prefix.clone().join(table);
            runtime.block_on(async {
                match store.list(Some(&path)).next().await {
                    None => Ok(false),
                    Some(Ok(_)) => Ok(true),
                    Some(Err(e)) => Err(crate::lake::store::storage_error(
                        "generate: cannot list",
                        url,
                        e,
                    )),
                }
            })
        }
    }
}

fn write_products(out: &Destination, world: &World) -> Result<u64> {
    let products = &world.catalog.products;
    let mut file = LazyParquet::new(
        out.file(&["products", "part-00000.parquet"]),
        products_schema(),
    );
    file.write(vec![
        Arc::new(Int64Array::from_iter_values(products.iter().map(|p| p.id))),
        Arc::new(StringArray::from_iter_values(
            products.iter().map(|p| p.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            products.iter().map(|p| CATEGORIES[p.category].0),
        )),
        Arc::new(StringArray::from_iter_values(
            products.iter().map(|p| BRANDS[p.brand]),
        )),
        Arc::new(Float64Array::from_iter_values(
            products.iter().map(|p| p.price),
        )),
    ])?;
    file.close()?;
    Ok(products.len() as u64)
}

/// Wall-clock helper used by the CLI to report throughput.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}
