//! A small, portable, seedable random number generator and the distributions the
//! generator needs. Written out here (rather than taken from `rand_distr`) so that
//! "same seed, same bytes" cannot be broken by a dependency upgrade.

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for one independent stream, identified by `(seed, stream, index)`.
    /// Each customer gets its own stream, so the output does not depend on how work
    /// is split across threads or files.
    pub fn new(seed: u64, stream: u64, index: u64) -> Self {
        let mut st = seed
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ index.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1): safe to take the logarithm of.
    pub fn uniform_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Lemire's multiply-shift; the tiny bias is irrelevant for synthetic data
        // and keeps the stream consumption fixed (one draw per call).
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box-Muller, one draw per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform_open();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }

    /// Exponential with the given rate.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform_open().ln() / rate
    }

    /// Gamma(shape, rate) by Marsaglia & Tsang (2000), with the usual boost for shape < 1.
    pub fn gamma(&mut self, shape: f64, rate: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform_open();
            return self.gamma(shape + 1.0, rate) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform_open();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v / rate;
            }
        }
    }

    /// Beta(a, b) from two gamma draws.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a, 1.0);
        let y = self.gamma(b, 1.0);
        x / (x + y)
    }

    /// Poisson by inversion (fine for the small means used here).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            // normal approximation for large means
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    /// Geometric number of failures before the first success, with success probability `p`.
    pub fn geometric(&mut self, p: f64) -> u64 {
        if p >= 1.0 {
            return 0;
        }
        (self.uniform_open().ln() / (1.0 - p).ln()).floor() as u64
    }

    /// Index drawn from a cumulative distribution (last element = total weight).
    pub fn pick_cdf(&mut self, cdf: &[f64]) -> usize {
        let total = cdf.last().copied().unwrap_or(0.0);
        let x = self.uniform() * total;
        cdf.partition_point(|&c| c <= x)
            .min(cdf.len().saturating_sub(1))
    }

    /// Index drawn proportionally to `weights` (small slices).
    pub fn pick_weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Cumulative sums of `weights`.
pub fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        (m, v)
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 1, 2).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::new(7, 1, 2).next_u64(), Rng::new(7, 1, 3).next_u64());
        assert_ne!(Rng::new(7, 1, 2).next_u64(), Rng::new(8, 1, 2).next_u64());
    }

    #[test]
    fn gamma_moments() {
        // Gamma(shape k, rate r): mean k/r, variance k/r^2. 200k draws: the standard
        // error of the mean is sqrt(k)/r/sqrt(n), so 1% is > 5 standard errors here.
        let mut rng = Rng::new(1, 0, 0);
        for (k, r) in [(0.5, 2.0), (2.5, 0.1), (6.0, 1.0)] {
            let xs: Vec<f64> = (0..200_000).map(|_| rng.gamma(k, r)).collect();
            let (m, v) = mean_var(&xs);
            assert!((m / (k / r) - 1.0).abs() < 0.01, "mean {m} for k={k} r={r}");
            assert!(
                (v / (k / r / r) - 1.0).abs() < 0.04,
                "var {v} for k={k} r={r}"
            );
        }
    }

    #[test]
    fn beta_poisson_geometric_moments() {
        let mut rng = Rng::new(2, 0, 0);
        let xs: Vec<f64> = (0..200_000).map(|_| rng.beta(2.0, 6.0)).collect();
        assert!((mean_var(&xs).0 - 0.25).abs() < 0.003);
        let xs: Vec<f64> = (0..200_000).map(|_| rng.poisson(3.5) as f64).collect();
        let (m, v) = mean_var(&xs);
        assert!((m - 3.5).abs() < 0.03 && (v - 3.5).abs() < 0.08, "{m} {v}");
        let xs: Vec<f64> = (0..200_000).map(|_| rng.geometric(0.25) as f64).collect();
        assert!((mean_var(&xs).0 - 3.0).abs() < 0.05);
    }

    #[test]
    fn below_and_pick_are_in_range() {
        let mut rng = Rng::new(3, 0, 0);
        let cdf = cumulative([1.0, 0.0, 3.0]);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            assert!(rng.below(5) < 5);
            counts[rng.pick_cdf(&cdf)] += 1;
        }
        assert_eq!(counts[1], 0, "zero-weight entries are never picked");
        assert!((counts[2] as f64 / 40_000.0 - 0.75).abs() < 0.01);
    }
}
