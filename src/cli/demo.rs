//! `datafusion-marketing demo`: generate a small lake if needed and print the
//! showcase analyses of `sql/`.

use std::path::Path;
use std::time::Instant;

use datafusion::error::Result;
use datafusion_cli::print_format::PrintFormat;

use super::{SqlArgs, build_context};
use crate::generate::{GenerateOptions, generate};

/// The analyses in `sql/`, embedded in the binary so `demo` works anywhere.
/// A test checks this list against the folder.
pub const ANALYSES: &[(&str, &str)] = &[
    (
        "lake_overview.sql",
        include_str!("../../sql/lake_overview.sql"),
    ),
    (
        "monthly_revenue.sql",
        include_str!("../../sql/monthly_revenue.sql"),
    ),
    (
        "session_funnel.sql",
        include_str!("../../sql/session_funnel.sql"),
    ),
    (
        "rfm_segments.sql",
        include_str!("../../sql/rfm_segments.sql"),
    ),
    (
        "rfm_custom_segments.sql",
        include_str!("../../sql/rfm_custom_segments.sql"),
    ),
    (
        "rfm_by_country.sql",
        include_str!("../../sql/rfm_by_country.sql"),
    ),
    (
        "channel_attribution.sql",
        include_str!("../../sql/channel_attribution.sql"),
    ),
    (
        "customer_lifetime_value.sql",
        include_str!("../../sql/customer_lifetime_value.sql"),
    ),
    (
        "recommendations.sql",
        include_str!("../../sql/recommendations.sql"),
    ),
];

/// The title of an analysis: its first comment line.
pub fn title(sql: &str) -> &str {
    sql.lines()
        .find_map(|l| l.trim().strip_prefix("--"))
        .map_or("", str::trim)
}

pub async fn run(dir: &Path, customers: u64) -> Result<()> {
    let start = Instant::now();
    if !dir.join("orders").exists() {
        println!(
            "Generating a sample lake with {customers} customers in {} ...",
            dir.display()
        );
        let summary = generate(
            dir,
            &GenerateOptions {
                customers,
                progress: true,
                ..Default::default()
            },
        )?;
        println!("  {summary} ({:.1}s)\n", start.elapsed().as_secs_f64());
    } else {
        println!("Using the lake in {}\n", dir.display());
    }
    let args = SqlArgs {
        lakes: vec![dir.display().to_string()],
        commands: vec![String::new()],
        files: Vec::new(),
        format: PrintFormat::Table,
        quiet: true,
        memory_limit: None,
        mem_pool_type: datafusion_cli::pool_type::PoolType::Greedy,
        spill_dir: None,
        disk_limit: None,
        batch_size: None,
        maxrows: datafusion_cli::print_options::MaxRows::Limited(40),
        color: false,
        cluster: None,
    };
    let (ctx, print) = build_context(&args).await?;
    crate::lake::register_lake(&ctx, &dir.display().to_string()).await?;
    for (file, sql) in ANALYSES {
        println!("== {} ({file})", title(sql));
        let t = Instant::now();
        datafusion_cli::exec::exec_from_commands(&ctx, vec![sql.to_string()], &print).await?;
        println!("({:.2}s)\n", t.elapsed().as_secs_f64());
    }
    println!("demo finished in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}
