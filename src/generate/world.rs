//! The synthetic world: calendar, channels, product catalog and the parameters of
//! the processes the sample lake is drawn from. Pure Rust, no Arrow.
//!
//! The processes are the ones our models assume, so every model has something true
//! to recover:
//! * purchases follow BG/NBD (Fader, Hardie & Lee 2005): each customer buys as a
//!   Poisson process with rate λ ~ Gamma(r, α) and, after every repeat purchase,
//!   becomes inactive with probability p ~ Beta(a, b). Weekly and yearly seasonality
//!   modulate the rate by thinning with a multiplier whose long-run mean is 1.
//! * order values follow Gamma-Gamma (Fader, Hardie & Lee 2005b): z ~ Gamma(p, ν),
//!   ν ~ Gamma(q, γ) per customer.
//! * marketing journeys are a first-order Markov chain over channels with
//!   channel-specific conversion and drop-out probabilities.
//! * product popularity is Zipf-like with complementary products that are bought
//!   together.

use super::rng::{Rng, cumulative};

pub const DAY_US: i64 = 86_400_000_000;
pub const HOUR_US: i64 = 3_600_000_000;
/// 2023-01-01T00:00:00 in microseconds since the Unix epoch (a Sunday).
pub const START_US: i64 = 1_672_531_200_000_000;
/// Number of simulated days: 2023-01-01 up to, not including, 2026-01-01.
pub const DAYS: i64 = 1096;
/// End of the observation window (exclusive) = the natural `as_of` for the lake.
pub const END_US: i64 = START_US + DAYS * DAY_US;

/// BG/NBD parameters, rates per day.
pub const BG_R: f64 = 1.2;
pub const BG_ALPHA: f64 = 16.0;
pub const BG_A: f64 = 1.5;
pub const BG_B: f64 = 14.0;
/// Gamma-Gamma parameters for order value.
pub const GG_P: f64 = 6.0;
pub const GG_Q: f64 = 3.5;
pub const GG_GAMMA: f64 = 25.0;
/// Share of registered customers who never buy.
pub const PROSPECT_SHARE: f64 = 0.2;

pub const CHANNELS: [&str; 8] = [
    "paid_search",
    "organic_search",
    "social",
    "display",
    "email",
    "affiliate",
    "referral",
    "direct",
];
pub const DIRECT: usize = 7;
/// Probability that a journey starts on each channel.
pub const CHANNEL_START: [f64; 8] = [0.22, 0.18, 0.20, 0.15, 0.06, 0.05, 0.04, 0.10];
/// Probability of converting right after a touch on each channel.
pub const CHANNEL_CONVERT: [f64; 8] = [0.10, 0.08, 0.03, 0.015, 0.09, 0.06, 0.05, 0.12];
/// Probability of abandoning the journey right after a touch on each channel.
pub const CHANNEL_DROP: [f64; 8] = [0.35, 0.35, 0.45, 0.50, 0.35, 0.40, 0.40, 0.35];
/// Where a continuing journey goes next (besides repeating the same channel).
pub const CHANNEL_NEXT: [f64; 8] = [0.20, 0.15, 0.10, 0.08, 0.15, 0.05, 0.05, 0.22];
pub const CHANNEL_REPEAT: f64 = 0.2;
/// Mean cost of one touch per channel (cost-per-click style), in currency units.
pub const CHANNEL_COST: [f64; 8] = [1.20, 0.0, 0.60, 0.05, 0.01, 0.40, 0.0, 0.0];
pub const CAMPAIGNS: [&[&str]; 8] = [
    &["brand", "generic", "shopping"],
    &[],
    &["spring_sale", "retargeting", "lookalike"],
    &["prospecting", "retargeting"],
    &["newsletter", "abandoned_cart", "winback"],
    &["partner_a", "partner_b"],
    &[],
    &[],
];
/// Longest simulated journey; longer ones are treated as abandoned.
pub const MAX_JOURNEY: usize = 20;

pub const COUNTRIES: [&str; 10] = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU", "SE"];
pub const COUNTRY_WEIGHTS: [f64; 10] = [0.35, 0.12, 0.11, 0.09, 0.06, 0.06, 0.05, 0.07, 0.05, 0.04];
pub const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
pub const DEVICE_WEIGHTS: [f64; 3] = [0.55, 0.38, 0.07];

pub const CATEGORIES: [(&str, f64, f64); 16] = [
    // (name, weight, median price)
    ("Electronics", 0.10, 120.0),
    ("Home", 0.10, 35.0),
    ("Beauty", 0.09, 18.0),
    ("Fashion", 0.12, 40.0),
    ("Sports", 0.07, 45.0),
    ("Toys", 0.06, 22.0),
    ("Books", 0.08, 14.0),
    ("Grocery", 0.09, 8.0),
    ("Garden", 0.04, 30.0),
    ("Pets", 0.05, 20.0),
    ("Health", 0.05, 16.0),
    ("Jewelry", 0.02, 90.0),
    ("Office", 0.04, 12.0),
    ("Automotive", 0.03, 35.0),
    ("Music", 0.03, 25.0),
    ("Baby", 0.03, 24.0),
];
pub const BRANDS: [&str; 12] = [
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
];
/// Zipf exponent of product popularity.
pub const ZIPF_S: f64 = 1.05;

/// Weekly seasonality, Sunday first (START_US is a Sunday); mean 1.
const WEEKDAY: [f64; 7] = [1.08, 0.94, 0.92, 0.94, 0.97, 1.05, 1.10];
const YEARLY_AMPLITUDE: f64 = 0.25;
/// Day of year with the seasonal peak (early December).
const YEARLY_PEAK_DOY: f64 = 340.0;
/// Relative activity by hour of day (sums to 24 after normalisation).
const HOURLY: [f64; 24] = [
    0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.1, 1.2, 1.3, 1.4, 1.3, 1.2, 1.2, 1.3, 1.4,
    1.6, 1.8, 1.9, 1.7, 1.2, 0.7,
];

/// Seasonal multiplier of the purchase rate on simulated day `day` (0-based).
/// Its mean over whole weeks and years is 1.
pub fn seasonality(day: i64) -> f64 {
    let w = WEEKDAY[day.rem_euclid(7) as usize];
    let doy = (day as f64).rem_euclid(365.25);
    let y =
        1.0 + YEARLY_AMPLITUDE * (std::f64::consts::TAU * (doy - YEARLY_PEAK_DOY) / 365.25).cos();
    w * y
}

/// Largest value `seasonality` can take (for thinning).
pub fn seasonality_max() -> f64 {
    WEEKDAY.iter().copied().fold(0.0, f64::max) * (1.0 + YEARLY_AMPLITUDE)
}

/// A time of day in microseconds drawn from the hourly activity profile.
pub fn time_of_day(rng: &mut Rng, hourly_cdf: &[f64]) -> i64 {
    let hour = rng.pick_cdf(hourly_cdf) as i64;
    hour * HOUR_US + rng.below(HOUR_US as u64) as i64
}

pub fn hourly_cdf() -> Vec<f64> {
    cumulative(HOURLY)
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: usize,
    pub brand: usize,
    pub price: f64,
    /// Products often bought together with this one.
    pub complements: [u32; 2],
}

/// The product catalog with popularity distributions.
#[derive(Debug)]
pub struct Catalog {
    pub products: Vec<Product>,
    /// Cumulative popularity over all products.
    pub global_cdf: Vec<f64>,
    /// Product indexes per category and their cumulative popularity.
    pub by_category: Vec<(Vec<u32>, Vec<f64>)>,
    pub category_cdf: Vec<f64>,
}

pub fn product_count(customers: u64) -> usize {
    (customers / 20).clamp(500, 200_000) as usize
}

impl Catalog {
    pub fn new(seed: u64, n: usize) -> Self {
        let mut rng = Rng::new(seed, 0, 0);
        let category_cdf = cumulative(CATEGORIES.iter().map(|c| c.1));
        // popularity rank: a seeded permutation, so ids are not sorted by popularity
        let mut ranks: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            ranks.swap(i, j);
        }
        let popularity: Vec<f64> = ranks
            .iter()
            .map(|&r| 1.0 / ((r + 1) as f64).powf(ZIPF_S))
            .collect();
        let mut products: Vec<Product> = (0..n)
            .map(|i| {
                let category = rng.pick_cdf(&category_cdf);
                let brand = rng.below(BRANDS.len() as u64) as usize;
                let median = CATEGORIES[category].2;
                let price = (rng.lognormal(median.ln(), 0.6) * 100.0).round().max(99.0) / 100.0;
                let id = 1000 + i as i64;
                Product {
                    id,
                    name: format!("{} {} {}", BRANDS[brand], CATEGORIES[category].0, id),
                    category,
                    brand,
                    price,
                    complements: [0, 0],
                }
            })
            .collect();
        let mut by_category: Vec<(Vec<u32>, Vec<f64>)> =
            vec![(Vec::new(), Vec::new()); CATEGORIES.len()];
        for (i, p) in products.iter().enumerate() {
            by_category[p.category].0.push(i as u32);
        }
        for (members, cdf) in &mut by_category {
            *cdf = cumulative(members.iter().map(|&i| popularity[i as usize]));
        }
        let global_cdf = cumulative(popularity.iter().copied());
        // complements: mostly from the same category, weighted by popularity
        for (i, product) in products.iter_mut().enumerate() {
            let category = product.category;
            let pick = |rng: &mut Rng| -> u32 {
                let (members, cdf) = &by_category[category];
                if members.len() > 1 && rng.bernoulli(0.75) {
                    members[rng.pick_cdf(cdf)]
                } else {
                    rng.pick_cdf(&global_cdf) as u32
                }
            };
            let mut c = [pick(&mut rng), pick(&mut rng)];
            for slot in &mut c {
                if *slot as usize == i {
                    *slot = ((i + 1) % n) as u32;
                }
            }
            product.complements = c;
        }
        Self {
            products,
            global_cdf,
            by_category,
            category_cdf,
        }
    }

    /// A product from `category` (weighted by popularity) or, with probability
    /// `explore`, from the whole catalog.
    pub fn pick(&self, rng: &mut Rng, category: usize, explore: f64) -> u32 {
        let (members, cdf) = &self.by_category[category];
        if members.is_empty() || rng.bernoulli(explore) {
            rng.pick_cdf(&self.global_cdf) as u32
        } else {
            members[rng.pick_cdf(cdf)]
        }
    }
}

/// Cumulative distributions of the channel Markov chain, precomputed.
#[derive(Debug)]
pub struct ChannelModel {
    pub start_cdf: Vec<f64>,
    /// For each channel: cumulative [convert, drop, next channel 0..8].
    pub step_cdf: Vec<Vec<f64>>,
}

impl Default for ChannelModel {
    fn default() -> Self {
        let start_cdf = cumulative(CHANNEL_START);
        let next_total: f64 = CHANNEL_NEXT.iter().sum();
        let step_cdf = (0..CHANNELS.len())
            .map(|c| {
                let cont = 1.0 - CHANNEL_CONVERT[c] - CHANNEL_DROP[c];
                let mut w = vec![CHANNEL_CONVERT[c], CHANNEL_DROP[c]];
                for (n, next) in CHANNEL_NEXT.iter().enumerate() {
                    let repeat = if n == c { CHANNEL_REPEAT } else { 0.0 };
                    w.push(cont * (repeat + (1.0 - CHANNEL_REPEAT) * next / next_total));
                }
                cumulative(w)
            })
            .collect();
        Self {
            start_cdf,
            step_cdf,
        }
    }
}

/// How a simulated journey ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyEnd {
    Convert,
    Drop,
}

impl ChannelModel {
    /// Walk the chain once; returns the channels touched and how the walk ended.
    pub fn walk(&self, rng: &mut Rng, out: &mut Vec<usize>) -> JourneyEnd {
        out.clear();
        let mut c = rng.pick_cdf(&self.start_cdf);
        loop {
            out.push(c);
            if out.len() >= MAX_JOURNEY {
                return JourneyEnd::Drop;
            }
            match rng.pick_cdf(&self.step_cdf[c]) {
                0 => return JourneyEnd::Convert,
                1 => return JourneyEnd::Drop,
                k => c = k - 2,
            }
        }
    }

    /// A journey conditioned on its ending (rejection sampling). After 200 failed
    /// walks (practically never) a single direct touch is returned.
    pub fn walk_until(&self, rng: &mut Rng, end: JourneyEnd, out: &mut Vec<usize>) {
        for _ in 0..200 {
            if self.walk(rng, out) == end {
                return;
            }
        }
        out.clear();
        out.push(DIRECT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonality_has_mean_one_and_bounded_max() {
        let total: f64 = (0..(365 * 28)).map(seasonality).sum();
        let mean = total / (365.0 * 28.0);
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!((0..DAYS).all(|d| seasonality(d) <= seasonality_max()));
    }

    #[test]
    fn catalog_is_deterministic_and_long_tailed() {
        let a = Catalog::new(42, 2000);
        let b = Catalog::new(42, 2000);
        assert_eq!(a.products[17].name, b.products[17].name);
        assert_eq!(a.products[17].price, b.products[17].price);
        // top 1% of products carry a large share of popularity (Zipf s = 1.05)
        let mut w: Vec<f64> = a
            .global_cdf
            .iter()
            .scan(0.0, |prev, &c| {
                let x = c - *prev;
                *prev = c;
                Some(x)
            })
            .collect();
        w.sort_by(|x, y| y.total_cmp(x));
        let top: f64 = w[..20].iter().sum();
        let share = top / a.global_cdf.last().unwrap();
        assert!(share > 0.35, "top-1% share {share}");
    }

    #[test]
    fn channel_rows_are_distributions() {
        let m = ChannelModel::default();
        for row in &m.step_cdf {
            assert!((row.last().unwrap() - 1.0).abs() < 1e-12);
        }
    }
}
