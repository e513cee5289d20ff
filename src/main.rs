use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    // before the runtime's threads and the first large allocations
    datafusion_marketing::cli::prefer_small_pages();
    // Local file reads (Parquet footers and pages) run on tokio's blocking pool. Left at its
    // default (512 threads) a lake registration reading footers 32 at a time starts ~20
    // threads that stay for the queries, each with its own allocator heap holding freed
    // memory (`rfm` on a 10M-order lake: 25 threads and ~20 MiB more resident than with
    // this cap, 7 threads). Two per core keep the disks busy.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads((2 * cores).max(4))
        .build()
    {
        Ok(runtime) => runtime.block_on(datafusion_marketing::cli::main()),
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
