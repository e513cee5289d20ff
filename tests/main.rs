//! The one integration-test binary (each extra `tests/*.rs` would link DataFusion again).

mod attribution;
mod catalog;
mod cli;
mod clv;
mod common;
#[cfg(feature = "ballista")]
mod distributed;
mod generator;
mod lake;
mod memory;
mod rfm;
mod s3;
mod similarity;
mod slt;
mod sql_files;
