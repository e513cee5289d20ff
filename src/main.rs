use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    // before the runtime's threads and the first large allocations
    datafusion_marketing::cli::prefer_small_pages();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(datafusion_marketing::cli::main()),
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
