//! Criterion benches per kernel. Run: `cargo bench --bench kernels`.
//! Speed targets live here (and in the end-to-end comparison), never in timed tests.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion_marketing::generate::sim::{
    CustomerRow, EventRow, ItemRow, OrderRow, Sink, TouchRow, World, simulate_customer,
};

struct Count(u64);

impl Sink for Count {
    fn customer(&mut self, _: CustomerRow) {}
    fn order(&mut self, _: OrderRow) {
        self.0 += 1;
    }
    fn item(&mut self, _: ItemRow) {}
    fn touch(&mut self, _: TouchRow) {}
    fn event(&mut self, _: EventRow) {}
}

fn generator(c: &mut Criterion) {
    let world = World::new(42, 1_000_000);
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("simulate_1000_customers", |b| {
        let mut next = 1;
        b.iter(|| {
            let mut sink = Count(0);
            for id in next..next + 1000 {
                simulate_customer(&world, id, &mut sink);
            }
            next += 1000;
            sink.0
        });
    });
    g.finish();
}

/// A context with our functions and one in-memory table, plus a runtime to query it.
fn context_with(name: &str, batch: RecordBatch) -> (tokio::runtime::Runtime, SessionContext) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    datafusion_marketing::register_on_context(&ctx).unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
    (rt, ctx)
}

fn run(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() })
}

fn rfm_segment(c: &mut Criterion) {
    const ROWS: usize = 1 << 20;
    let schema = Arc::new(Schema::new(vec![
        Field::new("r", DataType::Int64, false),
        Field::new("f", DataType::Int64, false),
        Field::new("m", DataType::Int64, false),
    ]));
    let col = |k: i64| {
        Arc::new(Int64Array::from_iter_values(
            (0..ROWS as i64).map(|i| 1 + (i * k) % 5),
        )) as _
    };
    let batch = RecordBatch::try_new(schema, vec![col(7), col(11), col(13)]).unwrap();
    let (rt, ctx) = context_with("scores", batch);
    let mut g = c.benchmark_group("rfm_segment");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("1M_rows", |b| {
        b.iter(|| {
            run(
                &rt,
                &ctx,
                "SELECT count(DISTINCT rfm_segment(r, f, m)) FROM scores",
            )
        });
    });
    g.finish();
}

fn quantile_score(c: &mut Criterion) {
    const ROWS: usize = 1 << 20;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    // many ties, as with order counts: values in 1..=50, pseudo-random order
    let values =
        Int64Array::from_iter_values((0..ROWS as i64).map(|i| 1 + (i * 2_654_435_761) % 50));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
    let (rt, ctx) = context_with("t", batch);
    let mut g = c.benchmark_group("quantile_score");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("1M_rows_over_all", |b| {
        b.iter(|| {
            run(
                &rt,
                &ctx,
                "SELECT count(*) FROM (SELECT quantile_score(v, 5) OVER () AS s FROM t) WHERE s = 5",
            )
        });
    });
    g.finish();
}

criterion_group!(benches, generator, rfm_segment, quantile_score);
criterion_main!(benches);
