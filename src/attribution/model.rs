//! Attribution math: heuristic weights and exact Markov-chain removal effects.
//! Pure Rust: no Arrow, no DataFusion.

use std::collections::HashMap;

/// A heuristic (rule-based) attribution model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Heuristic {
    FirstTouch,
    LastTouch,
    /// Last touch that is not the direct channel; all-direct paths fall back to the last touch.
    LastNonDirect,
    Linear,
    /// `first` and `last` shares, the rest split equally over the middle touches.
    PositionBased {
        first: f64,
        last: f64,
    },
}

impl Heuristic {
    pub const NAMES: [&'static str; 5] = [
        "first_touch",
        "last_touch",
        "last_non_direct",
        "linear",
        "position_based",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "first_touch" | "first" => Some(Self::FirstTouch),
            "last_touch" | "last" => Some(Self::LastTouch),
            "last_non_direct" => Some(Self::LastNonDirect),
            "linear" => Some(Self::Linear),
            "position_based" | "u_shaped" => Some(Self::PositionBased {
                first: 0.4,
                last: 0.4,
            }),
            _ => None,
        }
    }
}

/// Credit weights aligned with `path` (summing to 1; empty for an empty path).
/// `is_direct(i)` says whether touch `i` is the direct channel.
pub fn heuristic_weights(
    model: Heuristic,
    n: usize,
    is_direct: impl Fn(usize) -> bool,
) -> Vec<f64> {
    let mut w = vec![0.0; n];
    if n == 0 {
        return w;
    }
    match model {
        Heuristic::FirstTouch => w[0] = 1.0,
        Heuristic::LastTouch => w[n - 1] = 1.0,
        Heuristic::LastNonDirect => {
            let i = (0..n).rev().find(|&i| !is_direct(i)).unwrap_or(n - 1);
            w[i] = 1.0;
        }
        Heuristic::Linear => w.iter_mut().for_each(|x| *x = 1.0 / n as f64),
        Heuristic::PositionBased { first, last } => match n {
            1 => w[0] = 1.0,
            2 => {
                w[0] = 0.5;
                w[1] = 0.5;
            }
            _ => {
                w[0] = first;
                w[n - 1] = last;
                // the middle share rounded to 1e-12 so 1 - 0.4 - 0.4 prints as 0.2, not 0.19999999999999996
                let middle = ((1.0 - first - last) * 1e12).round() / 1e12 / (n - 2) as f64;
                w[1..n - 1].iter_mut().for_each(|x| *x = middle);
            }
        },
    }
    w
}

/// Time-decay weights: 0.5^(Δt / half_life) with Δt from each touch to the
/// conversion, normalised to sum to 1. Touches after the conversion count as Δt = 0.
pub fn time_decay_weights(touch_times: &[i64], conversion_time: i64, half_life: f64) -> Vec<f64> {
    if touch_times.is_empty() {
        return Vec::new();
    }
    // work relative to the most recent touch to avoid underflow on long journeys
    let dt: Vec<f64> = touch_times
        .iter()
        .map(|&t| ((conversion_time - t).max(0)) as f64 / half_life)
        .collect();
    let min = dt.iter().copied().fold(f64::INFINITY, f64::min);
    let raw: Vec<f64> = dt.iter().map(|d| 0.5f64.powf(d - min)).collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|r| r / total).collect()
}

/// A value in units of 1e-9 (rounded), for exact, order-independent sums.
pub fn to_nanos(value: f64) -> i128 {
    (value * 1e9).round() as i128
}

/// Special states of the journey chain.
pub const START: u32 = 0;
pub const CONVERSION: u32 = 1;
pub const NULL: u32 = 2;
const FIRST_STATE: u32 = 3;

/// A chain prepared for solving: transient states in canonical order and the
/// normalised outgoing edges of every state as one flat buffer.
struct Chain {
    transient: Vec<u32>,
    offsets: Vec<usize>,
    edges: Vec<(u32, f64)>,
}

/// Transition counts of a Markov chain of order `k` over channel states. A state is
/// the tuple of the last (up to) k channels; every journey starts in START and ends
/// in CONVERSION (weight = conversions) or NULL (weight = non-conversions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkovCounts {
    pub order: usize,
    /// Channel names, by id.
    pub channels: Vec<String>,
    channel_ids: HashMap<String, u32>,
    /// State tuples (channel ids), by state id - FIRST_STATE.
    pub states: Vec<Vec<u32>>,
    state_ids: HashMap<Vec<u32>, u32>,
    /// (from, to) -> weight.
    pub transitions: HashMap<(u32, u32), f64>,
    pub total_conversions: f64,
    /// Total value in units of 1e-9, summed exactly so the result does not depend on
    /// the order in which rows arrive.
    pub value_nanos: i128,
    pub journeys: f64,
}

impl MarkovCounts {
    pub fn new(order: usize) -> Self {
        Self {
            order: order.max(1),
            ..Default::default()
        }
    }

    fn channel_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.channel_ids.get(name) {
            return id;
        }
        let id = self.channels.len() as u32;
        self.channels.push(name.to_string());
        self.channel_ids.insert(name.to_string(), id);
        id
    }

    fn state_id(&mut self, tuple: &[u32]) -> u32 {
        if let Some(&id) = self.state_ids.get(tuple) {
            return id;
        }
        let id = FIRST_STATE + self.states.len() as u32;
        self.states.push(tuple.to_vec());
        self.state_ids.insert(tuple.to_vec(), id);
        id
    }

    /// Add one path (or `conversions + non_conversions` journeys with the same path).
    /// Empty paths only count towards the totals (they have no channel to credit).
    pub fn add_path(
        &mut self,
        path: &[&str],
        conversions: f64,
        non_conversions: f64,
        value: f64,
        collapse_repeats: bool,
    ) {
        self.total_conversions += conversions;
        self.value_nanos += to_nanos(value);
        self.journeys += conversions + non_conversions;
        let mut ids: Vec<u32> = Vec::with_capacity(path.len());
        for c in path {
            let id = self.channel_id(c);
            if collapse_repeats && ids.last() == Some(&id) {
                continue;
            }
            ids.push(id);
        }
        if ids.is_empty() {
            return;
        }
        let weight = conversions + non_conversions;
        let mut from = START;
        for i in 0..ids.len() {
            let lo = (i + 1).saturating_sub(self.order);
            let to = self.state_id(&ids[lo..=i]);
            *self.transitions.entry((from, to)).or_default() += weight;
            from = to;
        }
        if conversions != 0.0 {
            *self.transitions.entry((from, CONVERSION)).or_default() += conversions;
        }
        if non_conversions != 0.0 {
            *self.transitions.entry((from, NULL)).or_default() += non_conversions;
        }
    }

    /// Total value as a double.
    pub fn total_value(&self) -> f64 {
        self.value_nanos as f64 / 1e9
    }

    /// A state as a string (for the aggregate's serialized state): special states
    /// start with NUL, channel tuples are joined with the unit separator U+001F.
    pub fn encode_state(&self, s: u32) -> String {
        match s {
            START => "\u{0}start".to_string(),
            CONVERSION => "\u{0}conversion".to_string(),
            NULL => "\u{0}null".to_string(),
            _ => self.states[(s - FIRST_STATE) as usize]
                .iter()
                .map(|&c| self.channels[c as usize].as_str())
                .collect::<Vec<_>>()
                .join("\u{1f}"),
        }
    }

    fn decode_state(&mut self, s: &str) -> u32 {
        match s {
            "\u{0}start" => START,
            "\u{0}conversion" => CONVERSION,
            "\u{0}null" => NULL,
            _ => {
                let tuple: Vec<u32> = s.split('\u{1f}').map(|c| self.channel_id(c)).collect();
                self.state_id(&tuple)
            }
        }
    }

    /// Add a serialized transition (the inverse of [`Self::encode_state`]).
    pub fn add_encoded(&mut self, from: &str, to: &str, weight: f64) {
        let f = self.decode_state(from);
        let t = self.decode_state(to);
        *self.transitions.entry((f, t)).or_default() += weight;
    }

    /// Approximate heap size in bytes (for memory accounting).
    pub fn size(&self) -> usize {
        self.channels.iter().map(|c| c.len() + 48).sum::<usize>() * 2
            + self.states.iter().map(|s| 4 * s.len() + 48).sum::<usize>() * 2
            + self.transitions.len() * 32
    }

    fn state_count(&self) -> usize {
        FIRST_STATE as usize + self.states.len()
    }

    /// Probability of reaching CONVERSION from START when every state whose tuple
    /// contains `removed` (if any) redirects to NULL. Exact up to 1e-12: Gauss-Seidel
    /// on the absorbing chain (transient states only), which converges for any
    /// absorbing chain; iterations are capped and reported.
    #[cfg(test)]
    pub fn conversion_probability(&self, removed: Option<u32>) -> (f64, bool) {
        self.solve(&self.chain(), removed)
    }

    /// The chain in canonical order (states by their channel names), so the
    /// floating-point work and therefore the last bits of the result do not depend
    /// on the order in which paths arrived (partitioning, batch size, hash seeds).
    /// Built once and shared by every removal.
    fn chain(&self) -> Chain {
        let n = self.state_count();
        let names: Vec<String> = (0..n as u32).map(|s| self.encode_state(s)).collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
        let mut transitions: Vec<(u32, u32, f64)> = self
            .transitions
            .iter()
            .map(|(&(f, t), &w)| (f, t, w))
            .collect();
        transitions.sort_by(|a, b| {
            (&names[a.0 as usize], &names[a.1 as usize])
                .cmp(&(&names[b.0 as usize], &names[b.1 as usize]))
        });
        let mut out_total = vec![0.0; n];
        for &(f, _, w) in &transitions {
            out_total[f as usize] += w;
        }
        // outgoing edges as one flat buffer (CSR), in the canonical transition order
        let mut offsets = vec![0usize; n + 1];
        for &(f, _, _) in &transitions {
            offsets[f as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut edges = vec![(0u32, 0.0f64); transitions.len()];
        for &(f, t, w) in &transitions {
            let slot = &mut fill[f as usize];
            edges[*slot] = (t, w / out_total[f as usize]);
            *slot += 1;
        }
        let transient = order
            .into_iter()
            .filter(|&s| s == START || s >= FIRST_STATE)
            .collect();
        Chain {
            transient,
            offsets,
            edges,
        }
    }

    /// P(conversion from START) when every state containing channel `removed` redirects to NULL.
    fn solve(&self, chain: &Chain, removed: Option<u32>) -> (f64, bool) {
        let n = chain.offsets.len() - 1;
        let gone: Vec<bool> = (0..n as u32)
            .map(|s| match removed {
                Some(c) if s >= FIRST_STATE => self.states[(s - FIRST_STATE) as usize].contains(&c),
                _ => false,
            })
            .collect();
        let transient: Vec<u32> = chain
            .transient
            .iter()
            .copied()
            .filter(|&s| !gone[s as usize])
            .collect();
        // x[s] = P(conversion | in s)
        let mut x = vec![0.0; n];
        x[CONVERSION as usize] = 1.0;
        for _ in 0..100_000 {
            let mut delta: f64 = 0.0;
            for &s in &transient {
                let mut v = 0.0;
                for &(t, p) in
                    &chain.edges[chain.offsets[s as usize]..chain.offsets[s as usize + 1]]
                {
                    if t == CONVERSION {
                        v += p;
                    } else if t != NULL && !gone[t as usize] {
                        v += p * x[t as usize];
                    }
                }
                delta = delta.max((v - x[s as usize]).abs());
                x[s as usize] = v;
            }
            if delta < 1e-14 {
                return (x[START as usize], true);
            }
        }
        (x[START as usize], false)
    }

    /// Removal effect per channel (in channel-id order) and whether every solve converged.
    pub fn removal_effects(&self) -> (Vec<f64>, bool) {
        let chain = self.chain();
        let (base, mut converged) = self.solve(&chain, None);
        let effects = (0..self.channels.len() as u32)
            .map(|c| {
                let (p, ok) = self.solve(&chain, Some(c));
                converged &= ok;
                if base > 0.0 {
                    (1.0 - p / base).max(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        (effects, converged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heuristics_sum_to_one_and_follow_the_rules() {
        let direct = [false, true, false, true];
        let w = |m| heuristic_weights(m, 4, |i| direct[i]);
        assert_eq!(w(Heuristic::FirstTouch), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(w(Heuristic::LastTouch), [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(w(Heuristic::LastNonDirect), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(w(Heuristic::Linear), [0.25; 4]);
        let pb = Heuristic::PositionBased {
            first: 0.4,
            last: 0.4,
        };
        let v = w(pb);
        assert!(
            (v[0] - 0.4).abs() < 1e-15 && (v[1] - 0.1).abs() < 1e-15 && (v[3] - 0.4).abs() < 1e-15
        );
        assert_eq!(heuristic_weights(pb, 1, |_| false), [1.0]);
        assert_eq!(heuristic_weights(pb, 2, |_| false), [0.5, 0.5]);
        // all direct: falls back to the last touch
        assert_eq!(
            heuristic_weights(Heuristic::LastNonDirect, 2, |_| true),
            [0.0, 1.0]
        );
        assert!(heuristic_weights(Heuristic::Linear, 0, |_| false).is_empty());
    }

    #[test]
    fn time_decay_halves_per_half_life() {
        let day = 86_400;
        let w = time_decay_weights(&[0, 7 * day, 14 * day], 14 * day, 7.0 * day as f64);
        // raw 0.25, 0.5, 1 -> /1.75
        assert!((w[0] - 0.25 / 1.75).abs() < 1e-15);
        assert!((w[2] - 1.0 / 1.75).abs() < 1e-15);
        // very long journeys do not underflow to NaN
        let w = time_decay_weights(&[0, 1], 10_000_000_000, 1.0);
        assert!(w.iter().all(|x| x.is_finite()) && (w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    /// A chain small enough to solve on paper: paths A>B converting once, B not
    /// converting once. START->A 1/2, START->B 1/2; A->B 1; B->CONV 1/2, B->NULL 1/2.
    /// P(conv) = 1/2·1/2 + 1/2·1/2 = 1/2. Removing A: START->A redirects to NULL:
    /// P = 1/2·1/2 = 1/4, RE(A) = 1/2. Removing B: P = 0, RE(B) = 1.
    #[test]
    fn removal_effects_on_paper() {
        let mut m = MarkovCounts::new(1);
        m.add_path(&["A", "B"], 1.0, 0.0, 10.0, false);
        m.add_path(&["B"], 0.0, 1.0, 0.0, false);
        let (p, ok) = m.conversion_probability(None);
        assert!(ok && (p - 0.5).abs() < 1e-12);
        let (re, ok) = m.removal_effects();
        assert!(ok);
        let a = m.channels.iter().position(|c| c == "A").unwrap();
        let b = m.channels.iter().position(|c| c == "B").unwrap();
        assert!(
            (re[a] - 0.5).abs() < 1e-12 && (re[b] - 1.0).abs() < 1e-12,
            "{re:?}"
        );
    }

    /// Independent check: absorption probabilities by dense Gaussian elimination on
    /// (I - Q) x = r, written from the definition (no code shared with the solver).
    fn dense_conversion_probability(
        paths: &[(Vec<&str>, f64, f64)],
        order: usize,
        removed: Option<&str>,
    ) -> f64 {
        use std::collections::BTreeMap;
        // states: tuples of names; transitions counted from the paths directly
        let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (p, c, n) in paths {
            let mut from = "^".to_string();
            for i in 0..p.len() {
                let lo = (i + 1).saturating_sub(order);
                let to = p[lo..=i].join(">");
                *counts.entry((from.clone(), to.clone())).or_default() += c + n;
                from = to;
            }
            *counts.entry((from.clone(), "$conv".into())).or_default() += c;
            *counts.entry((from, "$null".into())).or_default() += n;
        }
        let mut states: Vec<String> = counts
            .keys()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        states.sort();
        states.dedup();
        states.retain(|s| s != "$conv" && s != "$null");
        let idx = |s: &str| states.iter().position(|x| x == s);
        let k = states.len();
        let mut a = vec![vec![0.0; k + 1]; k];
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for ((f, _), w) in &counts {
            *out.entry(f.clone()).or_default() += w;
        }
        let gone = |s: &str| removed.is_some_and(|r| s != "^" && s.split('>').any(|x| x == r));
        for (i, s) in states.iter().enumerate() {
            a[i][i] = 1.0;
            if gone(s) {
                continue; // x = 0
            }
            for ((f, t), w) in &counts {
                if f != s || out[f] == 0.0 {
                    continue;
                }
                let p = w / out[f];
                if t == "$conv" {
                    a[i][k] += p;
                } else if let Some(j) = idx(t)
                    && !gone(t)
                {
                    a[i][j] -= p;
                }
            }
        }
        for col in 0..k {
            let piv = (col..k)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap();
            a.swap(col, piv);
            let pivot_row = a[col].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != col {
                    let f = row[col] / pivot_row[col];
                    for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
        let i = idx("^").unwrap();
        a[i][k] / a[i][i]
    }

    #[test]
    fn removal_effects_match_a_dense_solve() {
        let paths: Vec<(Vec<&str>, f64, f64)> = vec![
            (vec!["A", "B", "C"], 3.0, 5.0),
            (vec!["A", "A", "B"], 1.0, 2.0),
            (vec!["C"], 0.0, 4.0),
            (vec!["B", "C", "A", "B"], 2.0, 1.0),
            (vec!["D", "A"], 1.0, 0.0),
            (vec!["C", "C", "C", "D"], 0.0, 3.0),
            (vec!["B"], 4.0, 6.0),
        ];
        for order in 1..=3 {
            let mut m = MarkovCounts::new(order);
            for (p, c, n) in &paths {
                m.add_path(p, *c, *n, 0.0, false);
            }
            let (base, ok) = m.conversion_probability(None);
            assert!(ok);
            let dense = dense_conversion_probability(&paths, order, None);
            assert!(
                (base - dense).abs() < 1e-9,
                "order {order}: {base} vs {dense}"
            );
            for (id, name) in m.channels.clone().iter().enumerate() {
                let (p, _) = m.conversion_probability(Some(id as u32));
                let d = dense_conversion_probability(&paths, order, Some(name));
                assert!(
                    (p - d).abs() < 1e-9,
                    "order {order} removing {name}: {p} vs {d}"
                );
            }
        }
    }

    #[test]
    fn no_conversions_gives_zero_effects_not_nan() {
        let mut m = MarkovCounts::new(1);
        m.add_path(&["A", "B"], 0.0, 3.0, 0.0, false);
        let (re, ok) = m.removal_effects();
        assert!(ok && re.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn collapse_repeats_merges_consecutive_channels() {
        let mut a = MarkovCounts::new(1);
        a.add_path(&["A", "A", "B"], 1.0, 0.0, 0.0, true);
        let mut b = MarkovCounts::new(1);
        b.add_path(&["A", "B"], 1.0, 0.0, 0.0, false);
        assert_eq!(a.transitions, b.transitions);
    }

    #[test]
    fn merge_equals_adding_everything_in_one() {
        let paths: [(&[&str], f64, f64); 4] = [
            (&["A", "B", "B"], 2.0, 1.0),
            (&["C"], 0.0, 3.0),
            (&["B", "A"], 1.0, 0.0),
            (&["C", "A", "B"], 1.0, 2.0),
        ];
        for order in 1..=3 {
            let mut all = MarkovCounts::new(order);
            let mut left = MarkovCounts::new(order);
            let mut right = MarkovCounts::new(order);
            for (i, (p, c, n)) in paths.iter().enumerate() {
                all.add_path(p, *c, *n, *c * 3.0, false);
                if i % 2 == 0 { &mut left } else { &mut right }.add_path(
                    p,
                    *c,
                    *n,
                    *c * 3.0,
                    false,
                );
            }
            // merge through the serialized form, as the aggregate does
            for (&(f, t), &w) in &left.transitions {
                right.add_encoded(&left.encode_state(f), &left.encode_state(t), w);
            }
            right.total_conversions += left.total_conversions;
            right.value_nanos += left.value_nanos;
            right.journeys += left.journeys;
            let (re_all, _) = all.removal_effects();
            let (re_merged, _) = right.removal_effects();
            for (name, x) in all.channels.iter().zip(&re_all) {
                let j = right.channels.iter().position(|c| c == name).unwrap();
                assert!(
                    (x - re_merged[j]).abs() < 1e-12,
                    "order {order} channel {name}"
                );
            }
            assert_eq!(all.total_conversions, right.total_conversions);
        }
    }
}

/// Most distinct channels one journey may have for exact Shapley values.
pub const SHAPLEY_MAX_CHANNELS: usize = 20;

/// Per-coalition statistics for Shapley attribution: a coalition is the sorted set
/// of distinct channel ids of a journey.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoalitionStats {
    pub conversions: f64,
    pub journeys: f64,
    pub value_nanos: i128,
}

/// Exact Shapley values of the game restricted to coalition `c` (at most
/// [`SHAPLEY_MAX_CHANNELS`] distinct channel ids: sorted, or in first-touch order when
/// `ordered`) with characteristic function `rate` (0 when absent): φ_i = Σ_{T ⊆ c,
/// v(T) ≠ 0} v(T)·w(|T|, i ∈ T), with w = (s−1)!(n−s)!/n! for members and −s!(n−s−1)!/n!
/// for others, where a subset T is the subsequence of `c` it selects (so for ordered
/// coalitions v(T) is the rate of that exact channel order). The non-zero T come either
/// from enumerating the subsets of `c` (`enumerate`) or from scanning `observed` for
/// subsequences of `c`.
pub fn coalition_shapley(
    c: &[u32],
    rate: &HashMap<&[u32], f64>,
    observed: &[(&[u32], f64)],
    enumerate: bool,
    ordered: bool,
) -> Vec<f64> {
    let n = c.len();
    let factorial = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
    let nf = factorial(n);
    let w_in: Vec<f64> = (0..=n)
        .map(|s| {
            if s == 0 {
                0.0
            } else {
                factorial(s - 1) * factorial(n - s) / nf
            }
        })
        .collect();
    let w_out: Vec<f64> = (0..=n)
        .map(|s| {
            if s >= n {
                0.0
            } else {
                factorial(s) * factorial(n - s - 1) / nf
            }
        })
        .collect();
    let mut phi = vec![0.0; n];
    let mut add = |members: u32, v: f64| {
        let s = members.count_ones() as usize;
        for (i, p) in phi.iter_mut().enumerate() {
            if members & (1 << i) != 0 {
                *p += v * w_in[s];
            } else {
                *p -= v * w_out[s];
            }
        }
    };
    if enumerate {
        let mut subset: Vec<u32> = Vec::with_capacity(n);
        for mask in 1u32..(1u32 << n) {
            subset.clear();
            subset.extend((0..n).filter(|i| mask & (1 << i) != 0).map(|i| c[i]));
            if let Some(&v) = rate.get(subset.as_slice()) {
                add(mask, v);
            }
        }
    } else {
        for (t, v) in observed {
            let mut mask = 0u32;
            let mut inside = true;
            let mut next = 0; // positions must increase: T is a subsequence of c
            for ch in t.iter() {
                let found = if ordered {
                    c.iter().position(|x| x == ch)
                } else {
                    c.binary_search(ch).ok()
                };
                match found {
                    Some(i) if i >= next => {
                        mask |= 1 << i;
                        next = i + 1;
                    }
                    _ => {
                        inside = false;
                        break;
                    }
                }
            }
            if inside && mask != 0 {
                add(mask, *v);
            }
        }
    }
    phi
}

/// Shapley attribution with the conversion-rate characteristic function (Dalessandro et
/// al. 2012; DP6 MAM's `attribution_shapley`, `order=False`, without its `max_size`
/// truncation): v(T) = conversions(T) / journeys(T) for the coalition T observed as a
/// journey's exact channel set (0 when T was never observed or never converted). For
/// every converting coalition C the Shapley values of the game restricted to C's
/// channels are computed exactly from the non-zero v(T), T ⊆ C (a sparse subset sum,
/// no permutations), and C's conversions and value are split in proportion to them
/// (linearly when they sum to 0, so totals are always conserved).
///
/// With `ordered` (DP6 MAM's `order=True`) a coalition is the journey's distinct
/// channels in first-touch order, so A>B and B>A are different coalitions and the
/// subsets of a coalition are its subsequences.
///
/// Returns per channel id (conversions, value in units of 1e-9 as f64), or an error
/// naming the coalition size when it exceeds [`SHAPLEY_MAX_CHANNELS`].
pub fn shapley_credit(
    coalitions: &HashMap<Vec<u32>, CoalitionStats>,
    channels: usize,
    ordered: bool,
) -> Result<Vec<(f64, f64)>, usize> {
    let mut out = vec![(0.0, 0.0); channels];
    // v(T) for converting coalitions, and the list for sparse subset scans
    let rate: HashMap<&[u32], f64> = coalitions
        .iter()
        .filter(|(_, s)| s.conversions > 0.0 && s.journeys > 0.0)
        .map(|(k, s)| (k.as_slice(), s.conversions / s.journeys))
        .collect();
    let mut keys: Vec<&Vec<u32>> = coalitions.keys().collect();
    keys.sort(); // canonical order: results do not depend on hash order
    let mut observed: Vec<(&[u32], f64)> = rate.iter().map(|(k, v)| (*k, *v)).collect();
    observed.sort_by(|a, b| a.0.cmp(b.0));
    for c in keys {
        let stats = coalitions[c];
        if stats.conversions <= 0.0 {
            continue;
        }
        let n = c.len();
        if n > SHAPLEY_MAX_CHANNELS {
            return Err(n);
        }
        let enumerate = (1usize << n) <= 4 * observed.len().max(1);
        let phi = coalition_shapley(c, &rate, &observed, enumerate, ordered);
        let total: f64 = phi.iter().sum();
        for (i, &ch) in c.iter().enumerate() {
            let share = if total != 0.0 {
                phi[i] / total
            } else {
                1.0 / n as f64
            };
            out[ch as usize].0 += share * stats.conversions;
            out[ch as usize].1 += share * stats.value_nanos as f64;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod shapley_tests {
    use super::*;

    fn coalitions(list: &[(&[u32], f64, f64)]) -> HashMap<Vec<u32>, CoalitionStats> {
        list.iter()
            .map(|(k, c, j)| {
                (
                    k.to_vec(),
                    CoalitionStats {
                        conversions: *c,
                        journeys: *j,
                        value_nanos: to_nanos(3.0 * c),
                    },
                )
            })
            .collect()
    }

    /// Shapley values by brute force: each player's marginal contribution v(prefix + it) −
    /// v(prefix) averaged over all n! orders of players 0..n (Heap's algorithm).
    fn permutation_average(n: usize, v: impl Fn(&[u32]) -> f64) -> Vec<f64> {
        fn heap(k: usize, a: &mut Vec<u32>, f: &mut dyn FnMut(&[u32])) {
            if k == 1 {
                f(a);
                return;
            }
            for i in 0..k {
                heap(k - 1, a, f);
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1)
                } else {
                    a.swap(0, k - 1)
                }
            }
        }
        let mut total = vec![0.0f64; n];
        let mut orders = 0.0;
        let mut perm: Vec<u32> = (0..n as u32).collect();
        heap(n, &mut perm, &mut |order: &[u32]| {
            let mut prefix: Vec<u32> = Vec::new();
            for &ch in order {
                let before = v(&prefix);
                prefix.push(ch);
                total[ch as usize] += v(&prefix) - before;
            }
            orders += 1.0;
        });
        total.iter().map(|t| t / orders).collect()
    }

    /// The DP6 9-path fixture worked by hand (A=0, B=1, C=2, every journey converts):
    /// coalition ABC (3 journeys) has v(A)=v(B)=v(C)=v(AB)=v(AC)=v(ABC)=1, v(BC)=0, so
    /// φ = (2/3, 1/6, 1/6) → 2, 0.5, 0.5 conversions; AB and AC split evenly; singles
    /// keep theirs. Totals A 4.5, B 2.5, C 2 (= 9), value × 3.
    #[test]
    fn dp6_fixture_by_hand() {
        let c = coalitions(&[
            (&[0], 1.0, 1.0),
            (&[1], 1.0, 1.0),
            (&[2], 1.0, 1.0),
            (&[0, 1], 2.0, 2.0),
            (&[0, 2], 1.0, 1.0),
            (&[0, 1, 2], 3.0, 3.0),
        ]);
        let r = shapley_credit(&c, 3, false).unwrap();
        let expect = [4.5, 2.5, 2.0];
        for (i, e) in expect.iter().enumerate() {
            assert!((r[i].0 - e).abs() < 1e-12, "{i}: {:?}", r[i]);
            assert!((r[i].1 / 1e9 - 3.0 * e).abs() < 1e-9);
        }
    }

    #[test]
    fn exact_values_equal_the_permutation_average_on_both_paths() {
        // a random game on 6 channels: v(T) for some subsets
        let mut x: u64 = 7;
        let mut owned: Vec<(Vec<u32>, f64)> = Vec::new();
        for mask in 1u32..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if (x >> 60).is_multiple_of(3) {
                continue; // unobserved coalition: v = 0
            }
            let members: Vec<u32> = (0..6).filter(|i| mask & (1 << i) != 0).collect();
            owned.push((members, ((x >> 30) % 1000) as f64 / 1000.0));
        }
        let rate: HashMap<&[u32], f64> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let observed: Vec<(&[u32], f64)> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let full: Vec<u32> = (0..6).collect();
        let v = |players: &[u32]| {
            let mut set = players.to_vec();
            set.sort_unstable();
            rate.get(set.as_slice()).copied().unwrap_or(0.0)
        };
        let brute = permutation_average(6, v);
        for enumerate in [true, false] {
            let phi = coalition_shapley(&full, &rate, &observed, enumerate, false);
            for i in 0..6 {
                assert!(
                    (phi[i] - brute[i]).abs() < 1e-12,
                    "enumerate {enumerate} channel {i}"
                );
            }
        }
    }

    /// Ordered coalitions: the journey's channels in first-touch order; v(T) is the rate
    /// of T's channels in that order, and other orders of the same channels must not
    /// count. Checked against the average marginal contribution over all 720 orders of
    /// the players, on both the enumerating and the scanning path.
    #[test]
    fn ordered_values_equal_the_permutation_average_on_both_paths() {
        let c: Vec<u32> = vec![3, 1, 4, 0, 2, 5]; // first-touch order of the journey
        let mut x: u64 = 11;
        let mut owned: Vec<(Vec<u32>, f64)> = Vec::new();
        for mask in 1u32..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let sub: Vec<u32> = (0..6)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| c[i])
                .collect();
            if !(x >> 60).is_multiple_of(3) {
                owned.push((sub.clone(), ((x >> 30) % 1000) as f64 / 1000.0));
            }
            if sub.len() >= 2 {
                // the same channels in another order: a different coalition, never a subset of c
                let mut other = sub;
                other.reverse();
                owned.push((other, 5.0));
            }
        }
        let rate: HashMap<&[u32], f64> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let observed: Vec<(&[u32], f64)> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        // v of a set of players = rate of their subsequence of c
        let v = |members: &[u32]| {
            let sub: Vec<u32> = c
                .iter()
                .copied()
                .filter(|ch| members.contains(ch))
                .collect();
            rate.get(sub.as_slice()).copied().unwrap_or(0.0)
        };
        let brute = permutation_average(6, v);
        for enumerate in [true, false] {
            let phi = coalition_shapley(&c, &rate, &observed, enumerate, true);
            for (i, &ch) in c.iter().enumerate() {
                assert!(
                    (phi[i] - brute[ch as usize]).abs() < 1e-12,
                    "enumerate {enumerate} channel {ch}: {} vs {}",
                    phi[i],
                    brute[ch as usize]
                );
            }
        }
    }

    #[test]
    fn too_many_channels_is_an_error() {
        let big: Vec<u32> = (0..21).collect();
        let c = coalitions(&[(&big, 1.0, 1.0)]);
        assert_eq!(shapley_credit(&c, 21, false), Err(21));
        assert_eq!(shapley_credit(&c, 21, true), Err(21));
    }

    #[test]
    fn zero_shapley_sum_falls_back_to_linear() {
        // v(AB) = 0.5 but v(A) = v(B) = 1 → φ = (0.25, 0.25)·… sums to 0.5, fine; make it cancel:
        // v(A)=1, v(B)=1, v(AB) tiny positive conversions over huge journeys ≈ 0 → φ sum ≈ 0
        let c = coalitions(&[(&[0], 1.0, 1.0), (&[1], 1.0, 1.0), (&[0, 1], 1.0, 1e300)]);
        let r = shapley_credit(&c, 2, false).unwrap();
        assert!((r[0].0 + r[1].0 - 3.0).abs() < 1e-9, "{r:?}");
    }
}
