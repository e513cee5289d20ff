//! Pure math of the similarity family: vector products, set overlaps on sorted slices,
//! frequent itemsets (Eclat over weighted distinct baskets) and association rules.
//! No Arrow, no DataFusion.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Σ aᵢ·bᵢ, summed in order (so the result does not depend on batch boundaries).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// (Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ²) in one pass.
pub fn dot_and_norms(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

/// Cosine similarity; None when either vector has zero norm (undefined). Clamped to
/// [-1, 1] against rounding.
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    let (ab, aa, bb) = dot_and_norms(a, b);
    if aa == 0.0 || bb == 0.0 || !aa.is_finite() || !bb.is_finite() {
        if aa.is_nan() || bb.is_nan() || ab.is_nan() {
            return Some(f64::NAN);
        }
        if aa == 0.0 || bb == 0.0 {
            return None;
        }
    }
    Some((ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0))
}

/// Number of common elements of two sorted, duplicate-free sequences.
pub fn intersection_size<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Jaccard |A∩B| / |A∪B| from the set sizes and the intersection; None when both are empty.
pub fn jaccard(a: usize, b: usize, common: usize) -> Option<f64> {
    let union = a + b - common;
    (union > 0).then(|| common as f64 / union as f64)
}

/// Overlap coefficient |A∩B| / min(|A|, |B|); None when either set is empty.
pub fn overlap(a: usize, b: usize, common: usize) -> Option<f64> {
    let m = a.min(b);
    (m > 0).then(|| common as f64 / m as f64)
}

// ---------------------------------------------------------------------------
// Frequent itemsets and rules

/// A frequent itemset: item ids in ascending order and its (weighted) basket count.
#[derive(Debug, Clone, PartialEq)]
pub struct Itemset {
    pub items: Vec<u32>,
    pub count: u64,
}

/// Why mining stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum MiningError {
    /// More frequent itemsets than the limit.
    TooMany(usize),
    /// More rules (kept at the confidence threshold) than the limit.
    TooManyRules(usize),
}

/// Every itemset (up to `max_len` items) contained in at least `min_count` baskets.
/// `baskets` are distinct baskets (item ids sorted, no duplicates) with their multiplicity.
/// Eclat: depth-first over items in ascending id order, intersecting the sets of baskets
/// holding each itemset ([`Tids`]: a bitset when dense, a sorted id list when sparse,
/// whichever is smaller). The frequent items' subtrees are mined on up to `threads` threads,
/// each taking the next item when done with one; the subtrees are then put in item order, so
/// the result is in depth-first order, the same for any number of threads.
pub fn frequent_itemsets(
    baskets: &[(Vec<u32>, u64)],
    n_items: usize,
    min_count: u64,
    max_len: usize,
    limit: usize,
    threads: usize,
) -> Result<Vec<Itemset>, MiningError> {
    // threads only when the work pays for starting them (not for a small group's baskets)
    let threads = if baskets.len() < PARALLEL_MIN_BASKETS {
        1
    } else {
        threads
    };
    mine(
        baskets,
        n_items,
        min_count,
        max_len,
        limit,
        BITSET_BUDGET,
        threads,
    )
}

/// [`frequent_itemsets`] with the memory `budget` for bitsets ([`Layout::new`]).
fn mine(
    baskets: &[(Vec<u32>, u64)],
    n_items: usize,
    min_count: u64,
    max_len: usize,
    limit: usize,
    budget: usize,
    threads: usize,
) -> Result<Vec<Itemset>, MiningError> {
    if max_len == 0 {
        return Ok(Vec::new());
    }
    // singletons: weighted counts over every basket
    let mut item_weight = vec![0u64; n_items];
    for (items, w) in baskets {
        for &i in items {
            item_weight[i as usize] += w;
        }
    }
    let frequent: Vec<bool> = item_weight
        .iter()
        .map(|&w| w >= min_count && w > 0)
        .collect();
    // Larger itemsets: only baskets with at least two frequent items can hold one (every
    // item of a frequent itemset is frequent), so the tid-sets cover just those.
    let useful: Vec<usize> = (0..baskets.len())
        .filter(|&b| {
            baskets[b]
                .0
                .iter()
                .filter(|&&i| frequent[i as usize])
                .nth(1)
                .is_some()
        })
        .collect();
    let roots_count = frequent.iter().filter(|&&f| f).count();
    // each thread holds its own path of sets, so the bitset budget is shared among them
    let threads = threads.clamp(1, MAX_THREADS).min(roots_count.max(1));
    let layout = Layout::new(baskets, &useful, roots_count, budget / threads);
    // vertical layout: for every frequent item the ids of the useful baskets holding it
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n_items];
    for (&b, &id) in useful.iter().zip(&layout.id) {
        for &i in &baskets[b].0 {
            if frequent[i as usize] {
                lists[i as usize].push(id);
            }
        }
    }
    let roots: Vec<(u32, Tids, u64)> = lists
        .into_iter()
        .enumerate()
        .filter(|(item, _)| frequent[*item])
        .map(|(item, mut t)| {
            t.sort_unstable();
            (item as u32, layout.compact(t), item_weight[item])
        })
        .collect();
    let found = AtomicUsize::new(0);
    // the subtree of root k: k's itemset and every frequent extension by later roots
    let subtree = |k: usize| -> Subtree {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        extend(
            &roots[k..],
            1,
            &mut prefix,
            &layout,
            min_count,
            max_len,
            (limit, &found),
            &mut out,
        )?;
        Ok(out)
    };
    let mut trees: Vec<Subtree> = Vec::with_capacity(roots.len());
    if threads == 1 {
        for k in 0..roots.len() {
            trees.push(subtree(k));
            if trees[k].is_err() {
                break;
            }
        }
    } else {
        let next = AtomicUsize::new(0);
        let done: Vec<Vec<(usize, Subtree)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            if k >= roots.len() {
                                break;
                            }
                            let tree = subtree(k);
                            let failed = tree.is_err();
                            mine.push((k, tree));
                            if failed {
                                // the others stop at their next root
                                next.store(roots.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("an Eclat thread panicked"))
                .collect()
        });
        let mut by_root: Vec<Option<Subtree>> = (0..roots.len()).map(|_| None).collect();
        for (k, tree) in done.into_iter().flatten() {
            by_root[k] = Some(tree);
        }
        trees.extend(by_root.into_iter().flatten());
    }
    let mut out = Vec::with_capacity(found.load(Ordering::Relaxed).min(limit));
    for tree in trees {
        out.extend(tree?);
    }
    Ok(out)
}

/// A set of basket ids: a bitset over [`Layout`]'s numbering (dense) or the ids in
/// ascending order (sparse); see [`Layout::compact`] for which.
#[derive(Debug, Clone, PartialEq)]
enum Tids {
    Dense(Vec<u64>),
    Sparse(Vec<u32>),
}

/// The itemsets of one root's subtree, in depth-first order.
type Subtree = Result<Vec<Itemset>, MiningError>;

/// Fewer distinct baskets than this are mined on one thread.
const PARALLEL_MIN_BASKETS: usize = 4096;

/// Most threads Eclat starts.
const MAX_THREADS: usize = 64;

/// Bitsets of all the frequent items at the depth Eclat reaches typically (4 levels) may
/// take this much memory (shared by the threads); beyond it sets are dense only where a bitset is the smaller form.
const BITSET_BUDGET: usize = 256 << 20;

/// The numbering of the baskets the tid-sets use: baskets grouped by weight, each group
/// starting on a 64-bit word, so a bitset's weighted count is Σ weight × popcount over
/// each group's words.
struct Layout {
    /// position in the `useful` list → id
    id: Vec<u32>,
    /// id → weight (0 for the padding ids)
    weight: Vec<u64>,
    /// (first word, end word, weight) of every group
    groups: Vec<(usize, usize, u64)>,
    words: usize,
    /// sets with more ids than this are bitsets
    dense_above: usize,
}

impl Layout {
    /// Numbers the baskets `useful` (indexes into `baskets`) for `roots` frequent items.
    fn new(baskets: &[(Vec<u32>, u64)], useful: &[usize], roots: usize, budget: usize) -> Self {
        let mut by_weight: Vec<u32> = (0..useful.len() as u32).collect();
        let w = |k: u32| baskets[useful[k as usize]].1;
        by_weight.sort_unstable_by_key(|&k| (w(k), k));
        let mut id = vec![0u32; useful.len()];
        let mut weight = Vec::new();
        let mut groups = Vec::new();
        let mut k = 0;
        while k < by_weight.len() {
            let g = w(by_weight[k]);
            let first = weight.len() / 64;
            while k < by_weight.len() && w(by_weight[k]) == g {
                id[by_weight[k] as usize] = weight.len() as u32;
                weight.push(g);
                k += 1;
            }
            weight.resize(weight.len().div_ceil(64) * 64, 0);
            groups.push((first, weight.len() / 64, g));
        }
        let words = weight.len() / 64;
        // A bitset intersection costs ~1 ns per word, a list merge a few ns per id: bitsets
        // win from about words / 8 ids on, when `budget` affords them; otherwise a set is a
        // bitset only when that is also the smaller form (2 ids per word).
        let dense_above = if words * 8 * roots.max(1) * 4 <= budget {
            words / 8
        } else {
            2 * words
        };
        Self {
            id,
            weight,
            groups,
            words,
            dense_above,
        }
    }

    fn sparse_weight(&self, ids: &[u32]) -> u64 {
        ids.iter().map(|&b| self.weight[b as usize]).sum()
    }

    /// The representation of a sorted id list: a bitset above `dense_above` ids.
    fn compact(&self, ids: Vec<u32>) -> Tids {
        if ids.len() > self.dense_above {
            let mut bits = vec![0u64; self.words];
            for &b in &ids {
                bits[b as usize / 64] |= 1 << (b % 64);
            }
            Tids::Dense(bits)
        } else {
            Tids::Sparse(ids)
        }
    }

    /// a ∩ b and its weighted count.
    fn intersect(&self, a: &Tids, b: &Tids) -> (Tids, u64) {
        match (a, b) {
            (Tids::Dense(x), Tids::Dense(y)) => {
                let mut out = vec![0u64; self.words];
                let (mut weight, mut ones) = (0u64, 0usize);
                for &(first, end, w) in &self.groups {
                    let mut n = 0u64;
                    for i in first..end {
                        let v = x[i] & y[i];
                        out[i] = v;
                        n += u64::from(v.count_ones());
                    }
                    weight += w * n;
                    ones += n as usize;
                }
                if ones > self.dense_above {
                    (Tids::Dense(out), weight)
                } else {
                    let mut ids = Vec::with_capacity(ones);
                    for (i, &v) in out.iter().enumerate() {
                        let mut v = v;
                        while v != 0 {
                            ids.push((i * 64) as u32 + v.trailing_zeros());
                            v &= v - 1;
                        }
                    }
                    (Tids::Sparse(ids), weight)
                }
            }
            (Tids::Dense(bits), Tids::Sparse(ids)) | (Tids::Sparse(ids), Tids::Dense(bits)) => {
                let out: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|&b| bits[b as usize / 64] >> (b % 64) & 1 == 1)
                    .collect();
                let w = self.sparse_weight(&out);
                (Tids::Sparse(out), w)
            }
            (Tids::Sparse(x), Tids::Sparse(y)) => {
                let out = intersect(x, y);
                let w = self.sparse_weight(&out);
                (Tids::Sparse(out), w)
            }
        }
    }
}

/// Depth-first over the first `roots` members of `class` (each followed by its extensions
/// with the later members); `found` counts the itemsets of every thread against `limit`.
#[allow(clippy::too_many_arguments)]
fn extend(
    class: &[(u32, Tids, u64)],
    roots: usize,
    prefix: &mut Vec<u32>,
    layout: &Layout,
    min_count: u64,
    max_len: usize,
    (limit, found): (usize, &AtomicUsize),
    out: &mut Vec<Itemset>,
) -> Result<(), MiningError> {
    for (k, (item, t, w)) in class.iter().enumerate().take(roots) {
        prefix.push(*item);
        if found.fetch_add(1, Ordering::Relaxed) >= limit {
            return Err(MiningError::TooMany(limit));
        }
        out.push(Itemset {
            items: prefix.clone(),
            count: *w,
        });
        if prefix.len() < max_len {
            let mut next = Vec::new();
            for (item2, t2, _) in &class[k + 1..] {
                let (common, w2) = layout.intersect(t, t2);
                if w2 >= min_count && w2 > 0 {
                    next.push((*item2, common, w2));
                }
            }
            if !next.is_empty() {
                let all = next.len();
                extend(
                    &next,
                    all,
                    prefix,
                    layout,
                    min_count,
                    max_len,
                    (limit, found),
                    out,
                )?;
            }
        }
        prefix.pop();
    }
    Ok(())
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// An association rule between frequent itemsets (item ids ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub antecedent: Vec<u32>,
    pub consequent: Vec<u32>,
    pub antecedent_support: f64,
    pub consequent_support: f64,
    pub support: f64,
    pub confidence: f64,
    pub lift: f64,
    pub leverage: f64,
    /// +∞ when confidence is 1.
    pub conviction: f64,
}

/// mlxtend's `association_rules(metric="confidence")`: for every frequent itemset with at
/// least two items, every non-empty proper subset as antecedent and the rest as
/// consequent, kept when confidence ≥ `min_confidence`. Supports are fractions of
/// `n_baskets`. Rules come in the itemsets' order, antecedents by subset bit pattern.
/// An itemset of k items gives up to 2^k − 2 rules, so more than `limit` rules stop the
/// search with [`MiningError::TooManyRules`].
pub fn rules(
    itemsets: &[Itemset],
    n_baskets: u64,
    min_confidence: f64,
    limit: usize,
) -> Result<Vec<Rule>, MiningError> {
    use datafusion::common::HashMap;
    let count: HashMap<&[u32], u64> = itemsets
        .iter()
        .map(|s| (s.items.as_slice(), s.count))
        .collect();
    let n = n_baskets as f64;
    let mut out = Vec::new();
    let mut a = Vec::new();
    let mut c = Vec::new();
    for s in itemsets
        .iter()
        .filter(|s| s.items.len() >= 2 && s.items.len() < 64)
    {
        let k = s.items.len();
        let s_ac = s.count as f64 / n;
        for mask in 1..(1u64 << k) - 1 {
            a.clear();
            c.clear();
            for (bit, &item) in s.items.iter().enumerate() {
                if mask >> bit & 1 == 1 {
                    a.push(item);
                } else {
                    c.push(item);
                }
            }
            // subsets of a frequent itemset are frequent (downward closure)
            let (Some(&ca), Some(&cc)) = (count.get(a.as_slice()), count.get(c.as_slice())) else {
                continue;
            };
            let s_a = ca as f64 / n;
            let s_c = cc as f64 / n;
            let confidence = s.count as f64 / ca as f64;
            if confidence < min_confidence {
                continue;
            }
            let conviction = if s.count == ca {
                f64::INFINITY
            } else {
                (1.0 - s_c) / (1.0 - confidence)
            };
            if out.len() >= limit {
                return Err(MiningError::TooManyRules(limit));
            }
            out.push(Rule {
                antecedent: a.clone(),
                consequent: c.clone(),
                antecedent_support: s_a,
                consequent_support: s_c,
                support: s_ac,
                confidence,
                lift: confidence / s_c,
                leverage: s_ac - s_a * s_c,
                conviction,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_orthogonal_and_zero_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]).unwrap() - 1.0).abs() < 1e-15);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), Some(0.0));
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), None);
        assert!(cosine(&[f64::NAN, 1.0], &[1.0, 1.0]).unwrap().is_nan());
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
    }

    #[test]
    fn set_overlaps() {
        assert_eq!(intersection_size(&[1, 2, 3, 5], &[2, 5, 7]), 2);
        assert_eq!(jaccard(4, 3, 2), Some(0.4));
        assert_eq!(overlap(4, 3, 2), Some(2.0 / 3.0));
        assert_eq!(jaccard(0, 0, 0), None);
        assert_eq!(overlap(0, 3, 0), None);
    }

    /// Random weighted baskets big enough that frequent items' tid-sets are bitsets and
    /// rare ones lists (both mixed intersections happen): every itemset up to 3 items and
    /// its count against brute force.
    #[test]
    fn eclat_with_bitsets_and_lists_equals_brute_force() {
        let mut x: u64 = 3;
        let mut rand = |m: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        let n_items = 12u32;
        let mut baskets: Vec<(Vec<u32>, u64)> = Vec::new();
        for _ in 0..3000 {
            // item i present with probability 1.5/(i² + 2): the head dense, the tail sparse
            let items: Vec<u32> = (0..n_items)
                .filter(|&i| rand(1000) * (u64::from(i * i) + 2) < 1500)
                .collect();
            let weight = [1, 1, 1, 2, 3, 7][rand(6) as usize];
            baskets.push((items, weight));
        }
        let min_count = 40;
        let all: Vec<usize> = (0..baskets.len()).collect();
        // budget 0: bitsets only where smaller than lists, so the tail stays sparse
        let layout = Layout::new(&baskets, &all, n_items as usize, 0);
        let dense = |item: u32| {
            let ids: Vec<u32> = baskets
                .iter()
                .enumerate()
                .filter(|(_, b)| b.0.contains(&item))
                .map(|(k, _)| layout.id[k])
                .collect();
            matches!(layout.compact(ids), Tids::Dense(_))
        };
        assert!(
            dense(0) && !dense(n_items - 1),
            "both representations are exercised"
        );
        let mut brute = Vec::new();
        let count = |set: &[u32]| -> u64 {
            baskets
                .iter()
                .filter(|(b, _)| set.iter().all(|i| b.contains(i)))
                .map(|b| b.1)
                .sum()
        };
        for mask in 1u32..(1 << n_items) {
            if mask.count_ones() <= 3 {
                let set: Vec<u32> = (0..n_items).filter(|i| mask >> i & 1 == 1).collect();
                let k = count(&set);
                if k >= min_count {
                    brute.push((set, k));
                }
            }
        }
        brute.sort();
        assert!(brute.len() > 30, "{}", brute.len());
        // both budgets: mixed bitsets and lists, and (the default) bitsets almost everywhere
        for budget in [0, BITSET_BUDGET] {
            let sets = mine(
                &baskets,
                n_items as usize,
                min_count,
                3,
                1_000_000,
                budget,
                1,
            )
            .unwrap();
            // the same itemsets in the same order on any number of threads
            for threads in [2, 3, 64] {
                let more = mine(
                    &baskets,
                    n_items as usize,
                    min_count,
                    3,
                    1_000_000,
                    budget,
                    threads,
                );
                assert_eq!(
                    more.as_ref(),
                    Ok(&sets),
                    "budget {budget}, {threads} threads"
                );
            }
            let mut got: Vec<(Vec<u32>, u64)> =
                sets.iter().map(|s| (s.items.clone(), s.count)).collect();
            got.sort();
            assert_eq!(got, brute, "budget {budget}");
        }
    }

    #[test]
    fn eclat_counts_weighted_baskets_and_respects_max_len_and_limit() {
        // baskets {0,1,2} ×2, {0,1}, {2}
        let b = vec![(vec![0, 1, 2], 2), (vec![0, 1], 1), (vec![2], 1)];
        let sets = frequent_itemsets(&b, 3, 2, 3, 100, 1).unwrap();
        let got: Vec<(Vec<u32>, u64)> = sets.iter().map(|s| (s.items.clone(), s.count)).collect();
        assert_eq!(
            got,
            vec![
                (vec![0], 3),
                (vec![0, 1], 3),
                (vec![0, 1, 2], 2),
                (vec![0, 2], 2),
                (vec![1], 3),
                (vec![1, 2], 2),
                (vec![2], 3),
            ]
        );
        assert_eq!(frequent_itemsets(&b, 3, 2, 1, 100, 1).unwrap().len(), 3);
        for threads in [1, 2, 3] {
            assert_eq!(
                mine(&b, 3, 2, 3, 100, BITSET_BUDGET, threads).as_ref(),
                Ok(&sets)
            );
            // 7 itemsets: a limit of 7 passes, 6 (or fewer) fails, on any number of threads
            assert_eq!(
                mine(&b, 3, 2, 3, 7, BITSET_BUDGET, threads).as_ref(),
                Ok(&sets)
            );
            for limit in [0, 4, 6] {
                assert_eq!(
                    mine(&b, 3, 2, 3, limit, BITSET_BUDGET, threads),
                    Err(MiningError::TooMany(limit)),
                    "{threads} threads"
                );
            }
        }
        let r = rules(&sets, 4, 0.9, usize::MAX).unwrap();
        assert_eq!(rules(&sets, 4, 0.9, r.len()).unwrap(), r);
        assert_eq!(
            rules(&sets, 4, 0.9, r.len() - 1),
            Err(MiningError::TooManyRules(r.len() - 1))
        );
        // {0}→{1}, {1}→{0} have confidence 1; {0,2}→{1}, {1,2}→{0} too
        assert!(r.iter().all(|r| r.confidence >= 0.9));
        let r01 = r
            .iter()
            .find(|r| r.antecedent == [0] && r.consequent == [1])
            .unwrap();
        assert_eq!(r01.conviction, f64::INFINITY);
        assert!((r01.lift - 1.0 / 0.75).abs() < 1e-15);
    }
}

// ---------------------------------------------------------------------------
// Item-item neighbours by sparse co-occurrence (X^T X row by row)

/// A co-occurrence similarity metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Cosine,
    Jaccard,
    Lift,
    Conditional,
}

impl Metric {
    pub const NAMES: [&'static str; 4] = ["cosine", "jaccard", "lift", "conditional"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Jaccard => "jaccard",
            Self::Lift => "lift",
            Self::Conditional => "conditional",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Some(Self::Cosine),
            "jaccard" => Some(Self::Jaccard),
            "lift" => Some(Self::Lift),
            "conditional" => Some(Self::Conditional),
            _ => None,
        }
    }

    /// The score from the pair count `c`, the item counts `ni`, `nj` and the user count `u`,
    /// with exactly the floating-point operations of the SQL plan (so both agree bit for bit).
    pub fn score(self, c: u64, ni: u64, nj: u64, u: u64) -> f64 {
        match self {
            Self::Cosine => c as f64 / (ni as f64 * nj as f64).sqrt(),
            Self::Jaccard => c as f64 / (ni + nj - c) as f64,
            Self::Lift => c as f64 * u as f64 / (ni as f64 * nj as f64),
            Self::Conditional => c as f64 / ni as f64,
        }
    }
}

/// One neighbour of an item (ids as in the baskets).
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor {
    pub item: u32,
    pub neighbor: u32,
    pub score: f64,
    pub overlap: u64,
}

/// For every item (ids `0..n_items`, ordered as the items are), its `top_k` neighbours by
/// `metric` among items sharing at least `min_overlap` (weighted) baskets, best first, ties by
/// neighbour id. `baskets` are distinct baskets (sorted ids) with multiplicities. Each item's
/// row of XᵀX is accumulated densely from the baskets holding it, so the work is Σ over
/// baskets of size² and memory is one counter per item per thread. Items are processed in
/// chunks by `threads` threads; the output is in item order whatever the thread count.
pub fn item_neighbors(
    baskets: &[(Vec<u32>, u64)],
    n_items: usize,
    metric: Metric,
    top_k: usize,
    min_overlap: u64,
    threads: usize,
) -> Vec<Neighbor> {
    // item counts, users, and the item -> baskets index (CSR)
    let mut n = vec![0u64; n_items];
    let mut degree = vec![0usize; n_items + 1];
    let mut users = 0u64;
    for (b, w) in baskets {
        users += w;
        for &i in b {
            n[i as usize] += w;
            degree[i as usize + 1] += 1;
        }
    }
    for i in 0..n_items {
        degree[i + 1] += degree[i];
    }
    let start = degree.clone();
    let mut fill = degree;
    let mut holders = vec![0u32; start[n_items]];
    for (k, (b, _)) in baskets.iter().enumerate() {
        for &i in b {
            holders[fill[i as usize]] = k as u32;
            fill[i as usize] += 1;
        }
    }
    const CHUNK: usize = 256;
    let chunks = n_items.div_ceil(CHUNK);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |acc: &mut Vec<u64>,
                touched: &mut Vec<u32>,
                out: &mut Vec<(usize, Vec<Neighbor>)>| loop {
        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if c >= chunks {
            break;
        }
        let mut rows = Vec::new();
        for a in c * CHUNK..((c + 1) * CHUNK).min(n_items) {
            for &b in &holders[start[a]..start[a + 1]] {
                let (items, w) = &baskets[b as usize];
                for &x in items {
                    if x as usize != a {
                        if acc[x as usize] == 0 {
                            touched.push(x);
                        }
                        acc[x as usize] += w;
                    }
                }
            }
            let mut cand: Vec<(f64, u32, u64)> = Vec::with_capacity(touched.len());
            for &x in touched.iter() {
                let c = acc[x as usize];
                acc[x as usize] = 0;
                if c >= min_overlap {
                    cand.push((metric.score(c, n[a], n[x as usize], users), x, c));
                }
            }
            touched.clear();
            let better =
                |p: &(f64, u32, u64), q: &(f64, u32, u64)| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1));
            if cand.len() > top_k {
                cand.select_nth_unstable_by(top_k - 1, better);
                cand.truncate(top_k);
            }
            cand.sort_unstable_by(better);
            rows.extend(cand.into_iter().map(|(score, x, c)| Neighbor {
                item: a as u32,
                neighbor: x,
                score,
                overlap: c,
            }));
        }
        out.push((c, rows));
    };
    let threads = threads.clamp(1, 64).min(chunks.max(1));
    let mut parts: Vec<(usize, Vec<Neighbor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut acc = vec![0u64; n_items];
                    let mut touched = Vec::new();
                    let mut out = Vec::new();
                    work(&mut acc, &mut touched, &mut out);
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("neighbour worker"))
            .collect()
    });
    parts.sort_unstable_by_key(|p| p.0);
    parts.into_iter().flat_map(|p| p.1).collect()
}

#[cfg(test)]
mod neighbor_tests {
    use super::*;

    #[test]
    fn neighbours_from_weighted_baskets_any_thread_count() {
        // baskets {0,1} x2, {0,1,2}, {2}: n = [3, 3, 2], U = 4
        let b = vec![(vec![0, 1], 2), (vec![0, 1, 2], 1), (vec![2], 1)];
        let one = item_neighbors(&b, 3, Metric::Cosine, 5, 1, 1);
        let four = item_neighbors(&b, 3, Metric::Cosine, 5, 1, 4);
        assert_eq!(one, four);
        let got: Vec<(u32, u32, u64)> = one
            .iter()
            .map(|x| (x.item, x.neighbor, x.overlap))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, 3),
                (0, 2, 1),
                (1, 0, 3),
                (1, 2, 1),
                (2, 0, 1),
                (2, 1, 1)
            ]
        );
        assert_eq!(one[0].score, 1.0);
        assert_eq!(one[1].score, 1.0 / 6f64.sqrt());
        // top 1 with a tie (item 2: neighbours 0 and 1 score the same) keeps the lower id
        let top1 = item_neighbors(&b, 3, Metric::Jaccard, 1, 1, 2);
        assert_eq!(
            top1.iter().map(|x| x.neighbor).collect::<Vec<_>>(),
            vec![1, 0, 0]
        );
        assert!(item_neighbors(&b, 3, Metric::Lift, 5, 2, 2).len() == 2);
    }
}
