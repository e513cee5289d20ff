use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    // before the runtime's threads and the first large allocations
    datafusion_marketing::cli::prefer_small_pages();
    let cli = datafusion_marketing::cli::Cli::from_args();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = cli.blocking_threads() {
        runtime.max_blocking_threads(n);
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(datafusion_marketing::cli::main(cli)),
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
