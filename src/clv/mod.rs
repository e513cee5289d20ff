//! Customer lifetime value: transaction summaries, buy-till-you-die model fits
//! (BG/NBD, Pareto/NBD, MBG/NBD, Gamma-Gamma), predictions and discounted CLV.

pub mod model;
pub mod real;
