//! RFM segment maps. Pure Rust: no Arrow, no DataFusion.

/// A named RFM segment scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// The widely used 11-segment grid on R × FM, FM = (F + M + 1) / 2 (half rounds up).
    Rfm11,
    /// The R `rfm` package's 10 segments, evaluated first-match, 'Others' otherwise.
    Rfm10,
}

impl Scheme {
    pub const NAMES: [&'static str; 2] = ["rfm11", "rfm10"];

    pub fn parse(name: &str) -> Option<Self> {
        // no allocation: this runs per row when the scheme is a column
        let name = name.trim();
        if name.eq_ignore_ascii_case("rfm11") {
            Some(Self::Rfm11)
        } else if name.eq_ignore_ascii_case("rfm10") {
            Some(Self::Rfm10)
        } else {
            None
        }
    }

    /// Every cell's segment, at index (r − 1)·25 + (f − 1)·5 + (m − 1).
    pub fn cells(self) -> [&'static str; 125] {
        std::array::from_fn(|i| {
            let i = i as u8;
            self.segment(i / 25 + 1, i / 5 % 5 + 1, i % 5 + 1)
        })
    }

    /// Segment of scores that are already known to lie in 1..=5.
    pub fn segment(self, r: u8, f: u8, m: u8) -> &'static str {
        match self {
            Self::Rfm11 => rfm11(r, f, m),
            Self::Rfm10 => rfm10(r, f, m),
        }
    }
}

/// The 11-segment R × FM grid.
pub fn rfm11(r: u8, f: u8, m: u8) -> &'static str {
    let fm = (f + m).div_ceil(2);
    match (r, fm) {
        (5, 5) | (5, 4) | (4, 5) => "Champions",
        (5, 3) | (4, 4) | (3, 5) | (3, 4) => "Loyal Customers",
        (5, 2) | (4, 2) | (3, 3) | (4, 3) => "Potential Loyalists",
        (5, 1) => "New Customers",
        (4, 1) | (3, 1) => "Promising",
        (3, 2) | (2, 3) | (2, 2) => "Need Attention",
        (2, 1) => "About To Sleep",
        (2, 5) | (2, 4) | (1, 3) => "At Risk",
        (1, 5) | (1, 4) => "Can't Lose Them",
        (1, 2) => "Hibernating",
        _ => "Lost", // (1, 1)
    }
}

/// The R `rfm` package's first-match list.
pub fn rfm10(r: u8, f: u8, m: u8) -> &'static str {
    let within = |x: u8, lo: u8, hi: u8| (lo..=hi).contains(&x);
    let rule = |r_lo, r_hi, f_lo, f_hi, m_lo, m_hi| {
        within(r, r_lo, r_hi) && within(f, f_lo, f_hi) && within(m, m_lo, m_hi)
    };
    if rule(4, 5, 4, 5, 4, 5) {
        "Champions"
    } else if rule(2, 5, 3, 5, 3, 5) {
        "Loyal Customers"
    } else if rule(3, 5, 1, 3, 1, 3) {
        "Potential Loyalist"
    } else if rule(4, 5, 1, 1, 1, 1) {
        "New Customers"
    } else if rule(3, 4, 1, 1, 1, 1) {
        "Promising"
    } else if rule(2, 3, 2, 3, 2, 3) {
        "Need Attention"
    } else if rule(2, 3, 1, 2, 1, 2) {
        "About To Sleep"
    } else if rule(1, 2, 2, 5, 2, 5) {
        "At Risk"
    } else if rule(1, 1, 4, 5, 4, 5) {
        "Can't Lose Them"
    } else if rule(1, 2, 1, 2, 1, 2) {
        "Lost"
    } else {
        "Others"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rfm11 grid from the issue, written as a table of (R, FM) cells so the test
    /// does not share code with the implementation.
    const GRID: [(&str, &[(u8, u8)]); 11] = [
        ("Champions", &[(5, 5), (5, 4), (4, 5)]),
        ("Loyal Customers", &[(5, 3), (4, 4), (3, 5), (3, 4)]),
        ("Potential Loyalists", &[(5, 2), (4, 2), (3, 3), (4, 3)]),
        ("New Customers", &[(5, 1)]),
        ("Promising", &[(4, 1), (3, 1)]),
        ("Need Attention", &[(3, 2), (2, 3), (2, 2)]),
        ("About To Sleep", &[(2, 1)]),
        ("At Risk", &[(2, 5), (2, 4), (1, 3)]),
        ("Can't Lose Them", &[(1, 5), (1, 4)]),
        ("Hibernating", &[(1, 2)]),
        ("Lost", &[(1, 1)]),
    ];

    #[test]
    fn rfm11_grid_is_exhaustive_and_matches_all_125_cells() {
        let mut cells = std::collections::HashSet::new();
        for (_, list) in GRID {
            for c in list {
                assert!(cells.insert(*c), "cell {c:?} listed twice");
            }
        }
        assert_eq!(cells.len(), 25, "the grid covers every (R, FM) cell");
        for r in 1..=5u8 {
            for f in 1..=5u8 {
                for m in 1..=5u8 {
                    #[allow(clippy::manual_div_ceil)] // the formula, written out
                    let fm = (f + m + 1) / 2;
                    let expected = GRID
                        .iter()
                        .find(|(_, list)| list.contains(&(r, fm)))
                        .map(|(name, _)| *name)
                        .unwrap();
                    assert_eq!(rfm11(r, f, m), expected, "R{r} F{f} M{m}");
                }
            }
        }
    }

    #[test]
    fn the_cell_table_is_the_segment_of_each_cell() {
        for scheme in [Scheme::Rfm11, Scheme::Rfm10] {
            let cells = scheme.cells();
            for r in 1..=5u8 {
                for f in 1..=5u8 {
                    for m in 1..=5u8 {
                        let i =
                            usize::from(r - 1) * 25 + usize::from(f - 1) * 5 + usize::from(m - 1);
                        assert_eq!(
                            cells[i],
                            scheme.segment(r, f, m),
                            "{scheme:?} R{r} F{f} M{m}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rfm11_half_rounds_up() {
        // F=5, M=4 -> FM = 5 (4.5 rounds up), so R=4 is a Champion
        assert_eq!(rfm11(4, 5, 4), "Champions");
        // F=1, M=2 -> FM = 2
        assert_eq!(rfm11(1, 1, 2), "Hibernating");
    }

    #[test]
    fn rfm10_first_match_order() {
        assert_eq!(rfm10(5, 5, 5), "Champions");
        // R4 F4 M3 fails Champions (M3) and matches Loyal Customers
        assert_eq!(rfm10(4, 4, 3), "Loyal Customers");
        // R3 F3 M3: Loyal Customers (R2-5 F3-5 M3-5) wins over Potential Loyalist and Need Attention
        assert_eq!(rfm10(3, 3, 3), "Loyal Customers");
        // R4 F1 M1: Potential Loyalist comes before New Customers in the list
        assert_eq!(rfm10(4, 1, 1), "Potential Loyalist");
        assert_eq!(rfm10(2, 2, 2), "Need Attention");
        assert_eq!(rfm10(2, 1, 1), "About To Sleep");
        assert_eq!(rfm10(1, 3, 3), "At Risk");
        assert_eq!(rfm10(1, 1, 1), "Lost");
        assert_eq!(rfm10(1, 5, 1), "Others");
        assert_eq!(rfm10(5, 1, 5), "Others");
    }

    #[test]
    fn rfm10_shadowed_rules_never_match() {
        let mut reached = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    reached.insert(rfm10(r, f, m));
                }
            }
        }
        for shadowed in ["New Customers", "Promising", "Can't Lose Them"] {
            assert!(!reached.contains(shadowed), "{shadowed}");
        }
        assert_eq!(reached.len(), 8);
    }

    #[test]
    fn rfm10_every_cell_has_a_name() {
        let names = [
            "Champions",
            "Loyal Customers",
            "Potential Loyalist",
            "New Customers",
            "Promising",
            "Need Attention",
            "About To Sleep",
            "At Risk",
            "Can't Lose Them",
            "Lost",
            "Others",
        ];
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    assert!(names.contains(&rfm10(r, f, m)));
                }
            }
        }
    }

    #[test]
    fn scheme_parse() {
        assert_eq!(Scheme::parse("RFM11 "), Some(Scheme::Rfm11));
        assert_eq!(Scheme::parse("rfm10"), Some(Scheme::Rfm10));
        assert_eq!(Scheme::parse("rfm12"), None);
    }
}

/// Tie-aware quantile scores.
///
/// `sorted` lists the positions of the non-NULL values in ranking order (ascending,
/// or descending for `descending => true`); `same(a, b)` says whether the values at
/// two positions are equal. With n = `sorted.len()` and r the rank of a value (ties
/// take their lowest rank, as SQL `RANK`), the score is 1 + floor(bins·(r − 1)/n).
/// Positions not in `sorted` (NULLs) get `None`.
pub fn quantile_scores(
    sorted: &[usize],
    same: impl Fn(usize, usize) -> bool,
    num_rows: usize,
    bins: u64,
) -> Vec<Option<i64>> {
    let mut out = vec![None; num_rows];
    let n = sorted.len() as u128;
    let mut rank0 = 0usize; // rank − 1 of the current run of ties
    for (i, &pos) in sorted.iter().enumerate() {
        if i > 0 && !same(sorted[i - 1], pos) {
            rank0 = i;
        }
        let score = 1 + (u128::from(bins) * rank0 as u128 / n) as i64;
        out[pos] = Some(score);
    }
    out
}

/// Order-preserving `u64` key of an `i64`.
pub fn i64_key(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Order-preserving `u64` key of an `f64` in IEEE total order (`f64::total_cmp`):
/// -NaN < -inf < … < -0.0 < 0.0 < … < inf < NaN.
pub fn f64_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Bins up to which [`KeyScores`] scores wide key ranges by their boundaries.
const MAX_CUT_BINS: u64 = 256;

/// 1 + floor(bins · rank0 / n) without a 128-bit division per row: a floating-point
/// estimate of the quotient, corrected to the exact one with integer products.
#[derive(Debug, Clone, Copy)]
struct Scorer {
    bins: u128,
    n: u128,
    inv_n: f64,
}

impl Scorer {
    fn new(bins: u64, n: usize) -> Self {
        Self {
            bins: u128::from(bins),
            n: n as u128,
            inv_n: 1.0 / n as f64,
        }
    }

    #[inline]
    fn score(self, rank0: usize) -> i64 {
        let num = self.bins * rank0 as u128;
        if self.bins > self.n {
            // more bins than values (unusual): the estimate could be off by more than one
            return 1 + (num / self.n) as i64;
        }
        // q ≤ bins ≤ n here, so for any n below 2^52 the estimate is within one of the
        // quotient; the loops make it exact regardless
        let mut q = ((num as f64) * self.inv_n) as u128;
        while q * self.n > num {
            q -= 1;
        }
        while (q + 1) * self.n <= num {
            q += 1;
        }
        1 + q as i64
    }
}

/// The score of any key, once every (non-NULL) key of a partition has been seen: the
/// definition of [`quantile_scores`] (score = 1 + floor(bins·(r − 1)/n), ties taking
/// their lowest rank) as a function of the key alone.
///
/// Built in one of three forms, chosen from the keys:
/// - the keys span a range no wider than their number (order counts, days since the last
///   order): a table of one score per key in the range, from a histogram, in O(n + range);
/// - otherwise, at most [`MAX_CUT_BINS`] bins: the bins − 1 score boundaries, order
///   statistics of the keys, selected in place (O(n log bins), no full sort). Ascending,
///   score ≥ j + 1 ⟺ #{keys < k} ≥ p_j = ⌈j·n / bins⌉ ⟺ sorted[p_j − 1] < k; descending,
///   #{keys > k} ≥ p_j ⟺ sorted[n − p_j] > k;
/// - more bins: the sorted keys themselves, a key's rank found by binary search.
///
/// Meant for the keys it was built from. Any other key gets a score in 1..=bins that
/// keeps the order (between neighbouring keys: the score of the rank it would take).
#[derive(Debug, Clone)]
pub struct KeyScores {
    form: Form,
    descending: bool,
}

#[derive(Debug, Clone)]
enum Form {
    /// No keys: nothing to score.
    Empty,
    Table {
        lo: u64,
        scores: Vec<i64>,
    },
    Cuts(Vec<u64>),
    Ranks {
        sorted: Vec<u64>,
        scorer: Scorer,
    },
}

/// Puts the order statistics at `positions` (ascending, distinct, each offset by `base`
/// from `keys`' start and inside it) in their sorted places, by recursive selection.
fn select_positions(keys: &mut [u64], positions: &[usize], base: usize) {
    if positions.is_empty() {
        return;
    }
    let mid = positions.len() / 2;
    let m = positions[mid] - base;
    keys.select_nth_unstable(m);
    let (left, rest) = keys.split_at_mut(m);
    select_positions(left, &positions[..mid], base);
    select_positions(&mut rest[1..], &positions[mid + 1..], base + m + 1);
}

/// The score of each key of `lo..lo + counts.len()` from the number of values with
/// each key (`n` in all).
fn table(lo: u64, counts: &[u64], n: usize, scorer: Scorer, descending: bool) -> Form {
    let mut scores = vec![0i64; counts.len()];
    let mut below = 0usize; // values with a smaller key
    for (score, &c) in scores.iter_mut().zip(counts) {
        let rank0 = if descending {
            n - below - c as usize
        } else {
            below
        };
        // keys of the range absent from the partition: their rank's score
        *score = scorer.score(rank0);
        below += c as usize;
    }
    Form::Table { lo, scores }
}

impl KeyScores {
    /// Scores for the keys `collector` gathered.
    pub fn from_collector(collector: KeyCollector, bins: u64, descending: bool) -> Self {
        if collector.wide || collector.n == 0 {
            return Self::new(collector.keys, bins, descending);
        }
        Self {
            form: table(
                collector.lo,
                &collector.counts,
                collector.n,
                Scorer::new(bins, collector.n),
                descending,
            ),
            descending,
        }
    }

    /// Scores for the non-NULL `keys` of one partition (in any order; the vector is
    /// reused, sorted or partly ordered). `bins` ≥ 1.
    pub fn new(mut keys: Vec<u64>, bins: u64, descending: bool) -> Self {
        let n = keys.len();
        let form = if n == 0 {
            Form::Empty
        } else {
            let (lo, hi) = keys
                .iter()
                .fold((u64::MAX, 0u64), |(lo, hi), &k| (lo.min(k), hi.max(k)));
            let scorer = Scorer::new(bins, n);
            if hi - lo < n as u64 {
                let mut counts = vec![0u64; (hi - lo) as usize + 1];
                for &k in &keys {
                    counts[(k - lo) as usize] += 1;
                }
                drop(keys);
                table(lo, &counts, n, scorer, descending)
            } else {
                if bins <= MAX_CUT_BINS {
                    // the cuts' positions in sorted order (1 ≤ p ≤ n, as 1 ≤ j < bins)
                    let at: Vec<usize> = (1..bins)
                        .map(|j| {
                            let p = (u128::from(j) * n as u128).div_ceil(u128::from(bins)) as usize;
                            if descending { n - p } else { p - 1 }
                        })
                        .collect();
                    let mut positions = at.clone();
                    positions.sort_unstable();
                    positions.dedup();
                    // only those order statistics, not a full sort: O(n log bins)
                    select_positions(&mut keys, &positions, 0);
                    Form::Cuts(at.iter().map(|&i| keys[i]).collect())
                } else {
                    keys.sort_unstable();
                    keys.shrink_to_fit();
                    Form::Ranks {
                        sorted: keys,
                        scorer,
                    }
                }
            }
        };
        Self { form, descending }
    }

    /// The score of `key`, in 1..=bins (1 when built from no keys).
    #[inline]
    pub fn score(&self, key: u64) -> i64 {
        match &self.form {
            Form::Empty => 1,
            Form::Table { lo, scores } => {
                // keys outside the range: below every key or above every key
                match key.checked_sub(*lo).map(|i| i as usize) {
                    Some(i) if i < scores.len() => scores[i],
                    Some(_) => scores[scores.len() - 1],
                    None => scores[0],
                }
            }
            Form::Cuts(cuts) => {
                1 + if self.descending {
                    cuts.partition_point(|&c| c > key)
                } else {
                    cuts.partition_point(|&c| c < key)
                } as i64
            }
            // a rank of n (a key above every key, ascending) is scored as n − 1
            Form::Ranks { sorted, scorer } => scorer.score(
                if self.descending {
                    sorted.len() - sorted.partition_point(|&c| c <= key)
                } else {
                    sorted.partition_point(|&c| c < key)
                }
                .min(sorted.len() - 1),
            ),
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match &self.form {
            Form::Empty => 0,
            Form::Table { scores, .. } => scores.capacity() * 8,
            Form::Cuts(cuts) => cuts.capacity() * 8,
            Form::Ranks { sorted, .. } => sorted.capacity() * 8,
        }
    }
}

/// Below this many keys of range, [`KeyCollector`] keeps counts whatever the number of
/// values (512 KiB of counts).
const DENSE_RANGE: u64 = 1 << 16;

/// Gathers the non-NULL keys of one partition, batch by batch, for
/// [`KeyScores::from_collector`]. While the keys span a range no wider than
/// max(2^16, number of values) it keeps one count per key of the range (days since the
/// last order, order counts: a few KiB whatever the number of customers); beyond that,
/// the keys themselves (8 bytes a value, up to 16 as the vector doubles).
#[derive(Debug, Default)]
pub struct KeyCollector {
    lo: u64,
    counts: Vec<u64>,
    keys: Vec<u64>,
    n: usize,
    wide: bool,
}

impl KeyCollector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.counts.capacity() + self.keys.capacity()) * 8
    }

    /// Adds keys.
    pub fn extend(&mut self, batch: &[u64]) {
        if batch.is_empty() {
            return;
        }
        if !self.wide {
            let (mut lo, mut hi) = batch
                .iter()
                .fold((u64::MAX, 0u64), |(lo, hi), &k| (lo.min(k), hi.max(k)));
            if self.n > 0 {
                lo = lo.min(self.lo);
                hi = hi.max(self.lo + (self.counts.len() as u64 - 1));
            }
            if hi - lo < DENSE_RANGE.max((self.n + batch.len()) as u64) {
                if self.n == 0 || lo < self.lo {
                    // re-base: the counts so far move up by the shift
                    let shift = if self.n == 0 {
                        0
                    } else {
                        (self.lo - lo) as usize
                    };
                    let mut counts = vec![0u64; shift + self.counts.len()];
                    counts[shift..].copy_from_slice(&self.counts);
                    self.counts = counts;
                    self.lo = lo;
                }
                let len = (hi - lo) as usize + 1;
                if self.counts.len() < len {
                    self.counts.resize(len, 0);
                }
                for &k in batch {
                    self.counts[(k - self.lo) as usize] += 1;
                }
                self.n += batch.len();
                return;
            }
            // too wide for counts: the keys they stand for, then the keys themselves
            let mut keys = Vec::with_capacity((self.n + batch.len()).max(1024));
            for (i, &c) in self.counts.iter().enumerate() {
                keys.extend(std::iter::repeat_n(self.lo + i as u64, c as usize));
            }
            self.keys = keys;
            self.counts = Vec::new();
            self.wide = true;
        }
        self.keys.extend_from_slice(batch);
        self.n += batch.len();
    }

    /// Bytes [`KeyScores::from_collector`] allocates beyond what the collector holds, at
    /// most: the score table (8 bytes a key of the range) for counts, nothing for keys
    /// (wider than their number, they are sorted in place).
    pub fn build_bytes(&self) -> usize {
        if self.wide { 0 } else { self.counts.len() * 8 }
    }
}

/// Tie-aware quantile scores from order-preserving keys, the fast path for numbers,
/// dates and timestamps. Same definition as [`quantile_scores`], computed by
/// [`KeyScores`]. `valid[i] == false` marks a NULL (`valid` = `None`: no NULLs): its key
/// is ignored and its score returned as 0, for the caller to mask with the input's NULLs.
pub fn quantile_scores_by_key(
    keys: &[u64],
    valid: Option<&[bool]>,
    bins: u64,
    descending: bool,
) -> Vec<i64> {
    let is_valid = |i: usize| valid.is_none_or(|v| v[i]);
    let kept: Vec<u64> = match valid {
        None => keys.to_vec(),
        Some(v) => keys
            .iter()
            .zip(v)
            .filter(|&(_, &ok)| ok)
            .map(|(&k, _)| k)
            .collect(),
    };
    let scores = KeyScores::new(kept, bins, descending);
    keys.iter()
        .enumerate()
        .map(|(i, &k)| if is_valid(i) { scores.score(k) } else { 0 })
        .collect()
}

#[cfg(test)]
mod quantile_tests {
    use super::quantile_scores;

    fn scores(values: &[Option<f64>], bins: u64, descending: bool) -> Vec<Option<i64>> {
        let mut sorted: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_some()).collect();
        sorted.sort_by(|&a, &b| {
            let o = values[a].unwrap().total_cmp(&values[b].unwrap());
            if descending { o.reverse() } else { o }
        });
        quantile_scores(&sorted, |a, b| values[a] == values[b], values.len(), bins)
    }

    #[test]
    fn distinct_values_give_equal_bins() {
        let v: Vec<Option<f64>> = (0..10).map(|i| Some(f64::from(i))).collect();
        let s = scores(&v, 5, false);
        assert_eq!(s, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5].map(Some));
        let s = scores(&v, 5, true);
        assert_eq!(s, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1].map(Some));
    }

    #[test]
    fn ties_share_the_lowest_rank_across_bin_boundaries() {
        // n = 6, bins = 3: ranks 1,2,2,2,5,6 -> 1+floor(3*(r-1)/6) = 1,1,1,1,3,3
        let v = [1.0, 2.0, 2.0, 2.0, 3.0, 4.0].map(Some);
        assert_eq!(scores(&v, 3, false), [1, 1, 1, 1, 3, 3].map(Some));
        // descending: ranks of 4,3,2,2,2,1 are 1,2,3,3,3,6 -> 1,1,2,2,2,3
        assert_eq!(scores(&v, 3, true), [3, 2, 2, 2, 1, 1].map(Some));
    }

    #[test]
    fn nulls_are_not_counted_and_stay_null() {
        let v = [Some(1.0), None, Some(2.0), None];
        assert_eq!(scores(&v, 2, false), [Some(1), None, Some(2), None]);
        assert_eq!(scores(&[None, None], 5, false), [None, None]);
        assert_eq!(scores(&[], 5, false), Vec::<Option<i64>>::new());
    }

    #[test]
    fn one_row_and_more_bins_than_rows() {
        assert_eq!(scores(&[Some(7.0)], 5, false), [Some(1)]);
        // 3 values, 10 bins: 1 + floor(10·(r−1)/3) = 1, 4, 7
        assert_eq!(
            scores(&[1.0, 2.0, 3.0].map(Some), 10, false),
            [1, 4, 7].map(Some)
        );
    }

    #[test]
    fn all_equal_values_score_one() {
        assert_eq!(scores(&[5.0; 4].map(Some), 5, false), [1; 4].map(Some));
        assert_eq!(scores(&[5.0; 4].map(Some), 5, true), [1; 4].map(Some));
    }

    #[test]
    fn keyed_fast_paths_agree_with_the_reference() {
        use super::{f64_key, quantile_scores_by_key};
        // a small LCG so the test needs no dependency
        let mut x: u64 = 12345;
        let mut next = move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        for (len, modulo) in [
            (0usize, 1u64),
            (1, 1),
            (50, 7),
            // wide keys, fewer than the bins: repeated cut positions
            (20, 1_000_000_000),
            (1000, 30),
            (1000, 1_000_000),
            (5000, 3),
            (20_000, 1_000_000_000),
        ] {
            // 256 and 257: either side of the boundary search (`MAX_CUT_BINS`)
            for bins in [1u64, 3, 5, 10, 256, 257, 7_000, i64::MAX as u64] {
                for descending in [false, true] {
                    let values: Vec<Option<f64>> = (0..len)
                        .map(|_| {
                            let v = next();
                            if v % 11 == 0 {
                                None
                            } else {
                                Some((v % modulo) as f64 - (modulo / 2) as f64)
                            }
                        })
                        .collect();
                    // NULL slots carry arbitrary keys, which must be ignored
                    let keys: Vec<u64> = values.iter().map(|v| v.map_or(next(), f64_key)).collect();
                    let valid: Vec<bool> = values.iter().map(Option::is_some).collect();
                    let expected = scores(&values, bins, descending);
                    let got = quantile_scores_by_key(&keys, Some(&valid), bins, descending);
                    let got: Vec<Option<i64>> = got
                        .iter()
                        .zip(&valid)
                        .map(|(&s, &ok)| ok.then_some(s))
                        .collect();
                    assert_eq!(
                        got, expected,
                        "len {len} mod {modulo} bins {bins} desc {descending}"
                    );
                    // without NULLs, the all-valid path
                    let dense: Vec<f64> = values.iter().flatten().copied().collect();
                    let keys: Vec<u64> = dense.iter().copied().map(f64_key).collect();
                    let expected = scores(
                        &dense.iter().copied().map(Some).collect::<Vec<_>>(),
                        bins,
                        descending,
                    );
                    assert_eq!(
                        quantile_scores_by_key(&keys, None, bins, descending)
                            .into_iter()
                            .map(Some)
                            .collect::<Vec<_>>(),
                        expected,
                        "len {len} mod {modulo} bins {bins} desc {descending}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_preserve_order() {
        use super::{f64_key, i64_key};
        let f = [
            f64::NEG_INFINITY,
            -1.5,
            -0.0,
            0.0,
            1e-300,
            2.0,
            f64::INFINITY,
            f64::NAN,
        ];
        assert!(f.windows(2).all(|w| f64_key(w[0]) < f64_key(w[1])));
        let i = [i64::MIN, -5, 0, 7, i64::MAX];
        assert!(i.windows(2).all(|w| i64_key(w[0]) < i64_key(w[1])));
    }

    #[test]
    fn huge_bins_do_not_overflow() {
        let v: Vec<Option<f64>> = (0..4).map(|i| Some(f64::from(i))).collect();
        let s = scores(&v, i64::MAX as u64, false);
        assert_eq!(s[0], Some(1));
        assert!(s[3].unwrap() > 1);
    }

    #[test]
    fn key_scores_of_unseen_keys_stay_in_range_and_in_order() {
        use super::KeyScores;
        // table (narrow range), cuts (wide, bins <= 256), ranks (wide, bins > 256)
        let narrow: Vec<u64> = (10..30).chain(10..15).collect();
        let wide: Vec<u64> = (0..40).map(|i| 1000 + i * 1_000_003).collect();
        for (keys, bins) in [(narrow, 4), (wide.clone(), 4), (wide, 300)] {
            for descending in [false, true] {
                let s = KeyScores::new(keys.clone(), bins, descending);
                let probes = [0, 9, 10, 11, 25, 29, 30, 31, 5000, 2_000_000, u64::MAX];
                let got: Vec<i64> = probes.iter().map(|&k| s.score(k)).collect();
                assert!(
                    got.iter().all(|&g| (1..=bins as i64).contains(&g)),
                    "{got:?}"
                );
                let ordered = got.windows(2).all(|w| {
                    if descending {
                        w[0] >= w[1]
                    } else {
                        w[0] <= w[1]
                    }
                });
                assert!(ordered, "bins {bins} descending {descending}: {got:?}");
            }
        }
        assert_eq!(KeyScores::new(Vec::new(), 5, false).score(7), 1);
    }

    #[test]
    fn collected_keys_score_as_the_keys_do() {
        use super::{KeyCollector, KeyScores};
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // narrow throughout (re-based as smaller keys arrive); narrow then wide; wide
        for spread in [[500u64, 500], [500, 1 << 40], [1 << 40, 1 << 40]] {
            let mut collector = KeyCollector::new();
            let mut all = Vec::new();
            for (b, &width) in spread.iter().enumerate() {
                for _ in 0..20 {
                    let batch: Vec<u64> = (0..37)
                        .map(|_| 1_000_000 - 9_000 * b as u64 + next() % width)
                        .collect();
                    collector.extend(&batch);
                    all.extend_from_slice(&batch);
                }
            }
            for (bins, descending) in [(5, false), (5, true), (300, false), (1, true)] {
                let got = KeyScores::from_collector(
                    {
                        let mut c = KeyCollector::new();
                        c.extend(&all);
                        c
                    },
                    bins,
                    descending,
                );
                let expected = KeyScores::new(all.clone(), bins, descending);
                for &k in &all {
                    assert_eq!(
                        got.score(k),
                        expected.score(k),
                        "{spread:?} {bins} {descending}"
                    );
                }
            }
            let got = KeyScores::from_collector(collector, 5, true);
            let expected = KeyScores::new(all.clone(), 5, true);
            assert!(
                all.iter().all(|&k| got.score(k) == expected.score(k)),
                "{spread:?}"
            );
        }
    }
}
