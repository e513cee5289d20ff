//! Buy-till-you-die models: log-likelihoods (generic over [`Real`], so the same code gives
//! analytic gradients), a BFGS optimizer over log-parameters, and the closed-form
//! predictions. Plain Rust on slices: no Arrow, no DataFusion.
//!
//! Formulas follow Fader, Hardie & Lee (2005) for BG/NBD, Fader & Hardie's note 008 for
//! Pareto/NBD, Batislam, Denizel & Filiztekin (2007) for MBG/NBD and Fader & Hardie's note
//! 025 for Gamma-Gamma, in the same parameterisation as the `lifetimes` package.

use std::ops::Range;

use datafusion::common::HashMap;

use super::real::{
    Dual, Hyp2f1Series, Real, digamma, hyp2f1_many, lgamma, ln_hyp2f1_a_b_a1, log_add_exp,
    log_sub_exp, softplus_sigma, softplus_sigma_many, trigamma,
};

/// Most rows per chunk of a likelihood sum. Chunks depend only on the number of rows (never
/// on the machine's cores) and their partial sums are added in chunk order, so a fit gives
/// the same bits on any machine, while up to one thread per core evaluates the chunks.
const CHUNK_ROWS: usize = 4 * 1024;
/// Fewest rows per chunk: below [`CHUNKS`] × [`CHUNK_ROWS`] rows a sum still has about
/// [`CHUNKS`] chunks, down to chunks of this many rows.
const MIN_CHUNK_ROWS: usize = 256;
/// Chunks a sum aims for at least, so the threads that take them share the work evenly
/// (a coarse level of a fit, or a small one, is a few thousand rows: one or two chunks of
/// [`CHUNK_ROWS`] would keep one thread busy while the other waits).
const CHUNKS: usize = 16;

/// Fewest rows a sum spreads over threads: below this the chunks are summed on the calling
/// thread (the same chunks, so the same bits), as starting a thread costs about what a few
/// hundred rows do, and a fit per group (`GROUP BY`) already runs on every core.
const PARALLEL_MIN_ROWS: usize = 2 * 1024;

/// Rows per chunk of a sum over `n` rows (a function of `n` alone).
fn chunk_rows(n: usize) -> usize {
    n.div_ceil(CHUNKS).clamp(MIN_CHUNK_ROWS, CHUNK_ROWS)
}

/// The cores available to this process, read once (the standard library rereads the cgroup
/// limits on every call).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
}

/// Σ over the chunks of `0..n` of `f(chunk)`, chunks evaluated in parallel and added in
/// order.
fn chunked_sum<R: Real>(n: usize, f: impl Fn(Range<usize>) -> R + Sync) -> R {
    chunked_fold(n, R::cst(0.0), f)
}

/// [`chunked_sum`] of any sum with a zero.
fn chunked_fold<R: Copy + Send + std::ops::Add<Output = R>>(
    n: usize,
    zero: R,
    f: impl Fn(Range<usize>) -> R + Sync,
) -> R {
    // at most one thread per PARALLEL_MIN_ROWS / 2 rows (a many-core machine does not start
    // a thread for a few hundred rows), and per chunk (chunked_fold_on)
    let threads = if n < PARALLEL_MIN_ROWS {
        1
    } else {
        cores().min(2 * n / PARALLEL_MIN_ROWS)
    };
    chunked_fold_on(threads, n, zero, f)
}

/// [`chunked_fold`] on up to `threads` threads (the result does not depend on them).
fn chunked_fold_on<R: Copy + Send + std::ops::Add<Output = R>>(
    threads: usize,
    n: usize,
    zero: R,
    f: impl Fn(Range<usize>) -> R + Sync,
) -> R {
    let size = chunk_rows(n);
    let chunks = n.div_ceil(size).max(1);
    let threads = threads.clamp(1, chunks);
    let range = |c: usize| c * size..((c + 1) * size).min(n);
    let mut parts = vec![zero; chunks];
    if threads <= 1 {
        for (c, part) in parts.iter_mut().enumerate() {
            *part = f(range(c));
        }
    } else {
        // The caller and up to threads − 1 helpers take the next chunk from a shared counter
        // (per-row costs vary: Pareto/NBD's hypergeometric terms) and record (chunk, sum) in
        // vectors allocated here (a new thread's first allocation costs fresh, zeroed pages).
        // A helper the system refuses to start is simply absent: the others do its share.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = |out: &mut Vec<(usize, R)>| {
            loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                out.push((c, f(range(c))));
            }
        };
        let mut done: Vec<Vec<(usize, R)>> =
            (0..threads).map(|_| Vec::with_capacity(chunks)).collect();
        std::thread::scope(|scope| {
            let (mine, helpers) = done.split_first_mut().expect("threads >= 2");
            for out in helpers {
                let work = &work;
                let _ = std::thread::Builder::new().spawn_scoped(scope, move || work(out));
            }
            work(mine);
        });
        for (c, v) in done.into_iter().flatten() {
            parts[c] = v;
        }
    }
    parts.into_iter().fold(zero, |a, b| a + b)
}

/// One customer pattern (frequency x, recency t_x, age T) with the number of customers
/// sharing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pattern {
    pub x: f64,
    pub tx: f64,
    pub t: f64,
    pub w: f64,
}

/// One Gamma-Gamma pattern (repeat frequency x > 0, mean spend m > 0) with its count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub x: f64,
    pub m: f64,
    pub w: f64,
}

/// Sort patterns canonically (so sums do not depend on arrival order): by x, t_x, T.
pub fn sort_patterns(rows: &mut [Pattern]) {
    sort_on_two_threads(rows, |a, b| {
        a.x.total_cmp(&b.x)
            .then(a.tx.total_cmp(&b.tx))
            .then(a.t.total_cmp(&b.t))
    });
}

/// Sort spend patterns canonically: by x, m.
pub fn sort_spends(rows: &mut [Spend]) {
    sort_on_two_threads(rows, |a, b| a.x.total_cmp(&b.x).then(a.m.total_cmp(&b.m)));
}

/// `sort_unstable_by` (the rows are distinct, so the order is canonical), with the halves of
/// a large slice sorted on two threads and merged.
fn sort_on_two_threads<T: Copy + Send>(
    rows: &mut [T],
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
) {
    if rows.is_sorted_by(|a, b| cmp(a, b).is_le()) {
        // the fits' histograms arrive sorted
        return;
    }
    let cores = cores();
    if rows.len() < 1 << 16 || cores < 2 {
        rows.sort_unstable_by(cmp);
        return;
    }
    let mid = rows.len() / 2;
    let cmp = &cmp;
    let spawned = std::thread::scope(|scope| {
        let (left, right) = rows.split_at_mut(mid);
        let spawned = std::thread::Builder::new()
            .spawn_scoped(scope, move || left.sort_unstable_by(cmp))
            .is_ok();
        right.sort_unstable_by(cmp);
        spawned
    });
    if !spawned {
        // the system refused a second thread: the caller sorts the other half too
        rows[..mid].sort_unstable_by(cmp);
    }
    let (left, right) = rows.split_at(mid);
    let mut merged = Vec::with_capacity(rows.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if cmp(&right[j], &left[i]).is_lt() {
            merged.push(right[j]);
            j += 1;
        } else {
            merged.push(left[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    rows.copy_from_slice(&merged);
}

/// `helper()` on a second thread while this one runs `here()`: both results. When the system
/// refuses the thread, this one runs `helper` afterwards; a panic in it is raised here.
fn on_two_threads<A: Send, B>(helper: impl Fn() -> A + Sync, here: impl FnOnce() -> B) -> (A, B) {
    let helper = &helper;
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new().spawn_scoped(scope, helper);
        let b = here();
        let a = match spawned.map(|h| h.join()) {
            Ok(Ok(a)) => a,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => helper(),
        };
        (a, b)
    })
}

/// Runs of equal `x` in a slice sorted by `x`.
fn runs_by_x<T>(rows: &[T], x: impl Fn(&T) -> f64) -> impl Iterator<Item = &[T]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= rows.len() {
            return None;
        }
        let x0 = x(&rows[i]);
        let j = i + rows[i..].iter().take_while(|r| x(r) == x0).count();
        let run = &rows[i..j];
        i = j;
        Some(run)
    })
}

/// The distinct times (recencies and ages) of sorted patterns, and each pattern's indexes
/// into them: the likelihoods take ln(α + time) once per distinct time and evaluation
/// (with whole-period summaries there are a few thousand distinct times for millions of
/// patterns).
///
/// It also keeps the rows' weights and their runs of equal x apart from the 32-byte rows, so
/// the hand-written gradients read 16 bytes a row (weight and two time indexes) and find no
/// run boundaries at each evaluation: a quarter to a third less time per evaluation than
/// reading the rows themselves (standalone harness, 680k patterns).
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    values: Vec<f64>,
    tx: Vec<u32>,
    t: Vec<u32>,
    w: Vec<f64>,
    runs: Vec<XRun>,
}

/// Rows `start..end` of sorted patterns all have frequency `x`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct XRun {
    x: f64,
    start: usize,
    end: usize,
}

impl Times {
    pub fn new(rows: &[Pattern]) -> Self {
        let mut times = Self::whole_numbers(rows).unwrap_or_else(|| Self::hashed(rows));
        times.w = rows.iter().map(|r| r.w).collect();
        let mut start = 0;
        times.runs = runs_by_x(rows, |p| p.x)
            .map(|run| {
                let r = XRun {
                    x: run[0].x,
                    start,
                    end: start + run.len(),
                };
                start = r.end;
                r
            })
            .collect();
        times
    }

    /// The runs of equal x within `range` of the rows, clipped to it.
    fn runs_in(&self, range: Range<usize>) -> impl Iterator<Item = (f64, Range<usize>)> + '_ {
        let first = self.runs.partition_point(|r| r.end <= range.start);
        self.runs[first..]
            .iter()
            .take_while(move |r| r.start < range.end)
            .map(move |r| (r.x, r.start.max(range.start)..r.end.min(range.end)))
    }

    /// Whole-period times (day, week or month counts) below 2²²: indexed through a table of
    /// the values present, no hashing. One pass reads the times and marks them present, a
    /// second renumbers them to their ranks in place.
    fn whole_numbers(rows: &[Pattern]) -> Option<Self> {
        const LIMIT: f64 = (1u32 << 22) as f64;
        let (mut tx, mut t) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        let mut top = 0;
        for r in rows {
            let whole = |v: f64| (0.0..LIMIT).contains(&v) && super::real::is_whole(v);
            if !(whole(r.tx) && whole(r.t)) {
                return None;
            }
            let (a, b) = (r.tx as u32, r.t as u32);
            top = top.max(a.max(b));
            if !time_table_fits(top, rows.len()) {
                return None;
            }
            tx.push(a);
            t.push(b);
        }
        let values = rank_by_table(&mut tx, &mut t, top);
        Some(Self {
            values,
            tx,
            t,
            w: Vec::new(),
            runs: Vec::new(),
        })
    }

    /// Any other times: distinct values by hashing their bits (one lookup per time), then
    /// sorted and the indexes renumbered.
    fn hashed(rows: &[Pattern]) -> Self {
        let mut index: HashMap<u64, u32> = HashMap::new();
        let mut first_seen: Vec<f64> = Vec::new();
        let mut id = |v: f64| -> u32 {
            *index.entry(v.to_bits()).or_insert_with(|| {
                first_seen.push(v);
                (first_seen.len() - 1) as u32
            })
        };
        let tx: Vec<u32> = rows.iter().map(|r| id(r.tx)).collect();
        let t: Vec<u32> = rows.iter().map(|r| id(r.t)).collect();
        let mut order: Vec<u32> = (0..first_seen.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| first_seen[a as usize].total_cmp(&first_seen[b as usize]));
        let mut renumber = vec![0u32; order.len()];
        for (rank, &o) in order.iter().enumerate() {
            renumber[o as usize] = rank as u32;
        }
        Self {
            values: order.iter().map(|&o| first_seen[o as usize]).collect(),
            tx: tx.into_iter().map(|i| renumber[i as usize]).collect(),
            t: t.into_iter().map(|i| renumber[i as usize]).collect(),
            w: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// ln(alpha + time) for every distinct time.
    fn ln_plus<R: Real>(&self, alpha: R) -> Vec<R> {
        self.values.iter().map(|&v| (alpha + v).ln()).collect()
    }

    /// Patterns indexed: the rows' number.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Pattern `i` (x, t_x, T) with its count.
    fn pattern(&self, i: usize) -> Pattern {
        let run = self.runs.partition_point(|r| r.end <= i);
        Pattern {
            x: self.runs[run].x,
            tx: self.values[self.tx[i] as usize],
            t: self.values[self.t[i] as usize],
            w: self.w[i],
        }
    }

    /// [`start_rate`] of the patterns.
    fn start_rate(&self) -> (f64, [f64; 2]) {
        // the sums in row order, as `start_rate` adds them
        let (mut n, mut sum_x, mut sum_t) = (0.0, 0.0, 0.0);
        for run in &self.runs {
            for (&w, &t) in self.w[run.start..run.end]
                .iter()
                .zip(&self.t[run.start..run.end])
            {
                n += w;
                sum_x += run.x * w;
                sum_t += self.values[t as usize] * w;
            }
        }
        rate_start(n, sum_x, sum_t)
    }
}

/// Make room in `v` for `additional` more items and write it (with `fill`, then drop it again):
/// its first-touch page faults are taken here, e.g. while another thread still merges what
/// is appended next.
pub fn reserve_touched<T: Copy>(v: &mut Vec<T>, additional: usize, fill: T) {
    let n = v.len();
    v.resize(n + additional, fill);
    v.truncate(n);
}

/// Whole-period patterns appended in the canonical (x, t_x, T) order, as a packed histogram's
/// merge gives them: the columns of a [`Times`] before its times are ranked. A BG/NBD fit
/// takes its full data this way, without the 32-byte rows (see [`fit_bgnbd_times`]).
#[derive(Debug, Default)]
pub struct WholeTimes {
    tx: Vec<u32>,
    t: Vec<u32>,
    w: Vec<f64>,
    runs: Vec<XRun>,
    /// The largest time (T, or t_x of an invalid pattern).
    max_time: u32,
}

impl WholeTimes {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            tx: Vec::with_capacity(n),
            t: Vec::with_capacity(n),
            w: Vec::with_capacity(n),
            runs: Vec::new(),
            max_time: 0,
        }
    }

    /// Append pattern (x, t_x, T) with count `w`, after every pattern it follows in the
    /// canonical order.
    #[inline]
    pub fn push(&mut self, x: u32, tx: u32, t: u32, w: f64) {
        let x = f64::from(x);
        debug_assert!(
            self.runs.last().is_none_or(|r| r.x <= x),
            "patterns out of order"
        );
        let i = self.w.len();
        match self.runs.last_mut() {
            Some(run) if run.x == x => run.end = i + 1,
            _ => self.runs.push(XRun {
                x,
                start: i,
                end: i + 1,
            }),
        }
        self.tx.push(tx);
        self.t.push(t);
        self.w.push(w);
        self.max_time = self.max_time.max(tx.max(t));
    }

    /// Make room for `additional` more patterns, and touch it (so its first-touch page
    /// faults are taken here, e.g. while another thread still merges what comes next).
    pub fn reserve_touched(&mut self, additional: usize) {
        reserve_touched(&mut self.tx, additional, 0);
        reserve_touched(&mut self.t, additional, 0);
        reserve_touched(&mut self.w, additional, 0.0);
    }

    /// Append `next`, whose patterns follow these (a run of equal x continues across).
    pub fn append(&mut self, next: WholeTimes) {
        debug_assert!(
            !matches!((self.runs.last(), next.runs.first()), (Some(a), Some(b)) if a.x > b.x),
            "patterns out of order"
        );
        let offset = self.w.len();
        let mut runs = next
            .runs
            .into_iter()
            .map(|r| XRun {
                x: r.x,
                start: r.start + offset,
                end: r.end + offset,
            })
            .peekable();
        if let Some(last) = self.runs.last_mut()
            && let Some(first) = runs.next_if(|first| first.x == last.x)
        {
            last.end = first.end;
        }
        self.runs.extend(runs);
        self.tx.extend_from_slice(&next.tx);
        self.t.extend_from_slice(&next.t);
        self.w.extend_from_slice(&next.w);
        self.max_time = self.max_time.max(next.max_time);
    }

    /// The time table: the times ranked among the distinct ones (what [`Times::new`] makes
    /// of the same patterns, bit for bit).
    pub fn finish(self) -> Times {
        let Self {
            mut tx,
            mut t,
            w,
            runs,
            max_time,
        } = self;
        // a table of the times present, as `Times::whole_numbers`; a few customers with huge
        // times (a table far larger than the rows) sort the distinct times instead
        let values = if time_table_fits(max_time, w.len()) {
            rank_by_table(&mut tx, &mut t, max_time)
        } else {
            let mut distinct: Vec<u32> = tx.iter().chain(&t).copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            for i in tx.iter_mut().chain(t.iter_mut()) {
                *i = distinct.partition_point(|&v| v < *i) as u32;
            }
            distinct.into_iter().map(f64::from).collect()
        };
        Times {
            values,
            tx,
            t,
            w,
            runs,
        }
    }
}

/// Whether the whole times of `rows` patterns, the largest `top`, are ranked through a table
/// of the times present: not when it would be far larger than the rows (a few customers with
/// huge times), where hashing or sorting the distinct times costs less.
fn time_table_fits(top: u32, rows: usize) -> bool {
    top as usize <= 16 * rows + 1024
}

/// The distinct times of `tx` and `t` (whole numbers up to `top`), sorted, with each index
/// replaced by its time's rank among them: through a table of the times present.
fn rank_by_table(tx: &mut [u32], t: &mut [u32], top: u32) -> Vec<f64> {
    let mut rank = vec![u32::MAX; top as usize + 1];
    for &i in tx.iter().chain(t.iter()) {
        rank[i as usize] = 0;
    }
    let mut values = Vec::new();
    for (v, slot) in rank.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = values.len() as u32;
            values.push(v as f64);
        }
    }
    for i in tx.iter_mut().chain(t.iter_mut()) {
        *i = rank[*i as usize];
    }
    values
}

/// Total BG/NBD log-likelihood, parameters (r, α, a, b); rows sorted by x.
#[cfg(test)]
pub fn bgnbd_ll<R: Real>(p: &[R; 4], rows: &[Pattern]) -> R {
    bgnbd_ll_indexed(p, rows, &Times::new(rows))
}

/// [`bgnbd_ll`] with the time table built once by the caller; rows summed in parallel chunks.
pub fn bgnbd_ll_indexed<R: Real>(p: &[R; 4], rows: &[Pattern], times: &Times) -> R {
    let ln_at = times.ln_plus(p[1]);
    chunked_sum(rows.len(), |range| {
        bgnbd_ll_rows(p, rows, times, &ln_at, range)
    })
}

/// The BG/NBD log-likelihood of `rows[range]`; `ln_at` = ln(α + time) per distinct time.
fn bgnbd_ll_rows<R: Real>(
    p: &[R; 4],
    rows: &[Pattern],
    times: &Times,
    ln_at: &[R],
    range: Range<usize>,
) -> R {
    let [r, alpha, a, b] = *p;
    let (lg_r, ln_alpha, ln_a, lg_ab, lg_b) =
        (r.lgamma(), alpha.ln(), a.ln(), (a + b).lgamma(), b.lgamma());
    let mut total = R::cst(0.0);
    let mut start = range.start;
    for run in runs_by_x(&rows[range], |p| p.x) {
        let x = run[0].x;
        let rx = r + x;
        let head = rx.lgamma() - lg_r + r * ln_alpha + lg_ab + (b + x).lgamma()
            - lg_b
            - (a + b + x).lgamma();
        let ln_a4 = if x > 0.0 {
            ln_a - (b + (x - 1.0)).ln()
        } else {
            R::cst(0.0)
        };
        let mut weight = 0.0;
        let mut sum = R::cst(0.0);
        for (k, row) in run.iter().enumerate() {
            let i = start + k;
            let a3 = -(rx * ln_at[times.t[i] as usize]);
            let term = if x > 0.0 {
                log_add_exp(a3, ln_a4 - rx * ln_at[times.tx[i] as usize])
            } else {
                a3
            };
            sum = sum + term * row.w;
            weight += row.w;
        }
        total = total + head * weight + sum;
        start += run.len();
    }
    total
}

/// The BG/NBD log-likelihood and its gradient with respect to (r, α, a, b), written out by
/// hand for the fits (the same sum as [`bgnbd_ll_indexed`] on [`Dual`] numbers, without
/// carrying a gradient through every operation: per row one `exp`, one `ln` and a few
/// multiply-adds into per-run sums). With L = ln(α + t), I = 1 / (α + t), x > 0 rows have
/// ℓ = −(r+x) L_T + softplus(d), d = ln a − ln(b+x−1) + (r+x)(L_T − L_tx), and
/// ∂ℓ/∂r = −L_T + σ(d)(L_T − L_tx), ∂ℓ/∂α = (r+x)(σ(d)(I_T − I_tx) − I_T),
/// ∂ℓ/∂a = σ(d)/a, ∂ℓ/∂b = −σ(d)/(b+x−1); x = 0 rows have ℓ = −r L_T.
pub fn bgnbd_ll_gradient(p: &[f64; 4], times: &Times) -> (f64, [f64; 4]) {
    let c = bgnbd_ll_curvature::<false>(p, times);
    (c.v, c.g)
}

/// The BG/NBD log-likelihood with its gradient and Hessian with respect to (r, α, a, b), as
/// the Newton steps on the full data sum it ([`bgnbd_full`], see [`fit_levels_newton`]). With σ = σ(d), s = σ(1 − σ),
/// ΔL = L_T − L_tx, ΔI = I_T − I_tx, c = 1 / (b+x−1), the second derivatives of an x > 0
/// row's ℓ (besides those of its x-only head, ψ₁ terms) are
/// ∂²/∂r² = s ΔL², ∂²/∂r∂α = −I_T + (r+x) s ΔL ΔI + σ ΔI, ∂²/∂r∂a = s ΔL / a,
/// ∂²/∂r∂b = −c s ΔL, ∂²/∂α² = (r+x) I_T² + (r+x)² s ΔI² − (r+x) σ (I_T² − I_tx²),
/// ∂²/∂α∂a = (r+x) s ΔI / a, ∂²/∂α∂b = −c (r+x) s ΔI, ∂²/∂a² = (s − σ) / a²,
/// ∂²/∂a∂b = −c s / a, ∂²/∂b² = c² (s + σ); an x = 0 row has only ∂²/∂r∂α = −I_T and
/// ∂²/∂α² = r I_T².
#[cfg(test)]
pub fn bgnbd_ll_gradient_hessian(p: &[f64; 4], times: &Times) -> (f64, [f64; 4], [[f64; 4]; 4]) {
    bgnbd_ll_curvature::<true>(p, times).parts()
}

/// The full data's sum for [`fit_levels_newton`]: with the Hessian when `hessian` asks.
fn bgnbd_full(p: &[f64; 4], times: &Times, hessian: bool) -> (f64, [f64; 4], [[f64; 4]; 4]) {
    if hessian {
        bgnbd_ll_curvature::<true>(p, times)
    } else {
        bgnbd_ll_curvature::<false>(p, times)
    }
    .parts()
}

/// A sum of values with their gradients and (when asked for) Hessians.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Curvature<const N: usize> {
    v: f64,
    g: [f64; N],
    h: [[f64; N]; N],
}

impl<const N: usize> Curvature<N> {
    const ZERO: Self = Self {
        v: 0.0,
        g: [0.0; N],
        h: [[0.0; N]; N],
    };

    /// (value, gradient, Hessian): what [`FullHessian`] returns (the Hessian zero when it
    /// was not summed).
    fn parts(self) -> (f64, [f64; N], [[f64; N]; N]) {
        (self.v, self.g, self.h)
    }
}

impl<const N: usize> std::ops::Add for Curvature<N> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            v: self.v + o.v,
            g: std::array::from_fn(|i| self.g[i] + o.g[i]),
            h: std::array::from_fn(|i| std::array::from_fn(|j| self.h[i][j] + o.h[i][j])),
        }
    }
}

fn bgnbd_ll_curvature<const HESSIAN: bool>(p: &[f64; 4], times: &Times) -> Curvature<4> {
    let ln_at: Vec<f64> = times.values.iter().map(|&v| (p[1] + v).ln()).collect();
    let inv_at: Vec<f64> = times.values.iter().map(|&v| 1.0 / (p[1] + v)).collect();
    chunked_fold(times.w.len(), Curvature::ZERO, |range| {
        bgnbd_curvature_rows::<HESSIAN>(p, times, &ln_at, &inv_at, range)
    })
}

fn bgnbd_curvature_rows<const HESSIAN: bool>(
    p: &[f64; 4],
    times: &Times,
    ln_at: &[f64],
    inv_at: &[f64],
    range: Range<usize>,
) -> Curvature<4> {
    let [r, alpha, a, b] = *p;
    let (lg_r, ln_alpha, ln_a, lg_ab, lg_b) =
        (lgamma(r), alpha.ln(), a.ln(), lgamma(a + b), lgamma(b));
    let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
    let (tri_r, tri_ab, tri_b) = if HESSIAN {
        (trigamma(r), trigamma(a + b), trigamma(b))
    } else {
        (0.0, 0.0, 0.0)
    };
    let mut out = Curvature::<4>::ZERO;
    let (value, grad, h) = (&mut out.v, &mut out.g, &mut out.h);
    for (x, rows) in times.runs_in(range) {
        let rx = r + x;
        let head =
            lgamma(rx) - lg_r + r * ln_alpha + lg_ab + lgamma(b + x) - lg_b - lgamma(a + b + x);
        let psi_abx = digamma(a + b + x);
        let head_grad = [
            digamma(rx) - psi_r + ln_alpha,
            r / alpha,
            psi_ab - psi_abx,
            psi_ab + digamma(b + x) - psi_b - psi_abx,
        ];
        // Σ w, Σ w ℓ, Σ w ∂ℓ/∂r, Σ w ∂ℓ/∂α / (r+x), Σ w σ
        let (mut weight, mut sum, mut sum_r, mut sum_alpha, mut sum_sigma) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        // Σ w I_T², Σ w s ΔL², Σ w s ΔL ΔI, Σ w σ ΔI, Σ w s ΔL, Σ w s ΔI², Σ w σ (I_T² − I_tx²),
        // Σ w s ΔI, Σ w s (the Hessian's sums; s = σ(1 − σ))
        let mut hs = [0.0; 9];
        let ws = &times.w[rows.clone()];
        let tix = &times.t[rows.clone()];
        if x > 0.0 {
            let ln_a4 = ln_a - (b + (x - 1.0)).ln();
            let txix = &times.tx[rows];
            // blocks of rows: their softplus and σ in one vectorised call, then the sums row by
            // row in order
            const BLOCK: usize = 64;
            let (mut d, mut softplus, mut sigma) = ([0.0; BLOCK], [0.0; BLOCK], [0.0; BLOCK]);
            for ((ws, tix), txix) in ws
                .chunks(BLOCK)
                .zip(tix.chunks(BLOCK))
                .zip(txix.chunks(BLOCK))
            {
                let n = ws.len();
                for ((d, &it), &itx) in d.iter_mut().zip(tix).zip(txix) {
                    *d = ln_a4 + rx * (ln_at[it as usize] - ln_at[itx as usize]);
                }
                softplus_sigma_many(&d[..n], &mut softplus[..n], &mut sigma[..n]);
                for (i, ((&w, &it), &itx)) in ws.iter().zip(tix).zip(txix).enumerate() {
                    let (lt, ltx) = (ln_at[it as usize], ln_at[itx as usize]);
                    let (it, itx) = (inv_at[it as usize], inv_at[itx as usize]);
                    let (softplus, sigma) = (softplus[i], sigma[i]);
                    weight += w;
                    sum += w * (softplus - rx * lt);
                    sum_r += w * (sigma * (lt - ltx) - lt);
                    sum_alpha += w * (sigma * (it - itx) - it);
                    sum_sigma += w * sigma;
                    if HESSIAN {
                        let (dl, di) = (lt - ltx, it - itx);
                        let ws = w * sigma * (1.0 - sigma);
                        hs[0] += w * it * it;
                        hs[1] += ws * dl * dl;
                        hs[2] += ws * dl * di;
                        hs[3] += w * sigma * di;
                        hs[4] += ws * dl;
                        hs[5] += ws * di * di;
                        hs[6] += w * sigma * (it * it - itx * itx);
                        hs[7] += ws * di;
                        hs[8] += ws;
                    }
                }
            }
            grad[2] += sum_sigma / a;
            grad[3] -= sum_sigma / (b + (x - 1.0));
        } else {
            for (&w, &it) in ws.iter().zip(tix) {
                weight += w;
                sum -= w * r * ln_at[it as usize];
                sum_r -= w * ln_at[it as usize];
                sum_alpha -= w * inv_at[it as usize];
                if HESSIAN {
                    let it = inv_at[it as usize];
                    hs[0] += w * it * it;
                }
            }
        }
        *value += head * weight + sum;
        grad[0] += head_grad[0] * weight + sum_r;
        grad[1] += head_grad[1] * weight + rx * sum_alpha;
        grad[2] += head_grad[2] * weight;
        grad[3] += head_grad[3] * weight;
        if HESSIAN {
            let [s_it2, s_dl2, s_dldi, sig_di, s_dl, s_di2, sig_di2, s_di, s] = hs;
            // sum_alpha = Σ w (σ ΔI − I_T), so −Σ w I_T = sum_alpha − Σ w σ ΔI
            let minus_s_it = sum_alpha - sig_di;
            // the x-only head: ψ₁ terms
            let tri_abx = trigamma(a + b + x);
            let head_aa = weight * (tri_ab - tri_abx);
            let c = if x > 0.0 { 1.0 / (b + (x - 1.0)) } else { 0.0 };
            let add = |h: &mut [[f64; 4]; 4], i: usize, j: usize, v: f64| {
                h[i][j] += v;
                if i != j {
                    h[j][i] += v;
                }
            };
            add(h, 0, 0, weight * (trigamma(rx) - tri_r) + s_dl2);
            add(h, 0, 1, weight / alpha + minus_s_it + rx * s_dldi + sig_di);
            add(h, 0, 2, s_dl / a);
            add(h, 0, 3, -c * s_dl);
            add(
                h,
                1,
                1,
                -weight * r / (alpha * alpha) + rx * s_it2 + rx * rx * s_di2 - rx * sig_di2,
            );
            add(h, 1, 2, rx * s_di / a);
            add(h, 1, 3, -c * rx * s_di);
            add(h, 2, 2, head_aa + (s - sum_sigma) / (a * a));
            add(h, 2, 3, head_aa - c * s / a);
            add(
                h,
                3,
                3,
                weight * (tri_ab + trigamma(b + x) - tri_b - tri_abx) + c * c * (s + sum_sigma),
            );
        }
    }
    out
}

/// A likelihood computed on `f64` with its gradient `g` with respect to the parameters, as a
/// [`Dual`] in the parameters' own derivative directions (d_j = Σ_i g_i ∂p_i/∂θ_j).
pub fn with_gradient<const N: usize>(p: &[Dual<N>; N], value: f64, g: [f64; N]) -> Dual<N> {
    Dual {
        v: value,
        d: std::array::from_fn(|j| (0..N).map(|i| g[i] * p[i].d[j]).sum()),
    }
}

/// Total MBG/NBD log-likelihood, parameters (r, α, a, b); rows sorted by x.
#[cfg(test)]
pub fn mbgnbd_ll<R: Real>(p: &[R; 4], rows: &[Pattern]) -> R {
    mbgnbd_ll_indexed(p, rows, &Times::new(rows))
}

/// [`mbgnbd_ll`] with the time table built once by the caller; rows summed in parallel chunks.
pub fn mbgnbd_ll_indexed<R: Real>(p: &[R; 4], rows: &[Pattern], times: &Times) -> R {
    let ln_at_all = times.ln_plus(p[1]);
    chunked_sum(rows.len(), |range| {
        mbgnbd_ll_rows(p, rows, times, &ln_at_all, range)
    })
}

/// The MBG/NBD log-likelihood of `rows[range]`; `ln_at_all` = ln(α + time) per distinct time.
fn mbgnbd_ll_rows<R: Real>(
    p: &[R; 4],
    rows: &[Pattern],
    times: &Times,
    ln_at_all: &[R],
    range: Range<usize>,
) -> R {
    let [r, alpha, a, b] = *p;
    let (lg_r, ln_alpha, ln_a, lg_ab, lg_b) =
        (r.lgamma(), alpha.ln(), a.ln(), (a + b).lgamma(), b.lgamma());
    let mut total = R::cst(0.0);
    let mut start = range.start;
    for run in runs_by_x(&rows[range], |p| p.x) {
        let x = run[0].x;
        let rx = r + x;
        let head = rx.lgamma() - lg_r + r * ln_alpha + lg_ab + (b + (x + 1.0)).lgamma()
            - lg_b
            - (a + b + (x + 1.0)).lgamma();
        let ln_a_bx = ln_a - (b + x).ln();
        let mut weight = 0.0;
        let mut sum = R::cst(0.0);
        for (k, row) in run.iter().enumerate() {
            let i = start + k;
            let ln_at = ln_at_all[times.t[i] as usize];
            let a4 = ln_a_bx + rx * (ln_at - ln_at_all[times.tx[i] as usize]);
            let term = -(rx * ln_at) + log_add_exp(a4, R::cst(0.0));
            sum = sum + term * row.w;
            weight += row.w;
        }
        total = total + head * weight + sum;
        start += run.len();
    }
    total
}

/// Largest hypergeometric argument ln A₀ sums as a series (beyond it, the quadrature).
const SERIES_MAX_Z: f64 = 0.9;

/// ln A₀ of the Pareto/NBD likelihood (Fader & Hardie note 008, in the form `lifetimes`
/// uses: the larger of α and β in the hypergeometric argument z = |α − β| / (max + t)).
/// For z ≤ 0.9 the hypergeometric series (≤ ~400 terms); beyond it, where the series would
/// need tens of thousands of terms, the integral A₀ = (r+s+x) ∫ from t_x to T of
/// (α+τ)^−(r+x) (β+τ)^−(s+1) dτ by composite Gauss-Legendre quadrature.
fn pareto_ln_a0<R: Real>(p: &[R; 4], x: f64, tx: f64, t: f64) -> R {
    let [r, alpha, s, beta] = *p;
    let (lo, hi, b) = if alpha.val() < beta.val() {
        (alpha, beta, r + x)
    } else {
        (beta, alpha, s + 1.0)
    };
    let diff = hi - lo;
    let rsx = r + s + x;
    let (q1, q2) = (hi + tx, hi + t);
    if diff.val() / q1.val() > SERIES_MAX_Z {
        return rsx.ln() + ln_power_integral(alpha, r + x, beta, s + 1.0, tx, t);
    }
    let f1 = ln_hyp2f1_a_b_a1(rsx, b, diff / q1) - rsx * q1.ln();
    let f2 = ln_hyp2f1_a_b_a1(rsx, b, diff / q2) - rsx * q2.ln();
    log_sub_exp(f1, f2)
}

/// ln ∫ from `from` to `to` of (a+τ)^−ea (b+τ)^−eb dτ for a, b > 0, 0 ≤ from ≤ to: in the
/// variable u = ln(lo+τ) (lo the smaller of a and b, which removes the near-singularity at
/// τ = −lo), on panels of width ≤ 1 over which the log-integrand changes by ≤ 4, each with
/// 16-point Gauss-Legendre (error far below f64 rounding); −∞ for an empty interval.
pub fn ln_power_integral<R: Real>(a: R, ea: R, b: R, eb: R, from: f64, to: f64) -> R {
    if to <= from {
        return R::cst(f64::NEG_INFINITY);
    }
    let (lo, elo, hi, ehi) = if a.val() <= b.val() {
        (a, ea, b, eb)
    } else {
        (b, eb, a, ea)
    };
    let gap = hi - lo;
    // ln of the integrand times dτ/du = e^u
    let ln_h = |u: R| -> R { u * (-elo + 1.0) - ehi * (gap + u.exp()).ln() };
    let u0 = (lo + from).ln();
    let u1 = (lo + to).ln();
    let width = u1.val() - u0.val();
    let change = (ln_h(u1).val() - ln_h(u0).val()).abs();
    let panels = (width.max(change / 4.0).ceil() as usize).clamp(1, 4096);
    let (nodes, weights) = gauss_legendre_16();
    let step = (u1 - u0) / panels as f64;
    let ln_half = (step * 0.5).ln();
    // Σ wᵢ h(uᵢ) as shift + ln Σ wᵢ e^(ln h(uᵢ) − shift), the shift being the largest ln h so
    // far (rescaled when a larger one comes): one exp per node instead of a log_add_exp
    let mut shift: Option<R> = None;
    let mut acc = R::cst(0.0);
    for k in 0..panels {
        let mid = u0 + step * (k as f64 + 0.5);
        for (xi, wi) in nodes.iter().zip(weights) {
            let u = mid + step * (0.5 * xi);
            let ln_term = ln_h(u);
            match shift {
                Some(m) if ln_term.val() <= m.val() => acc = acc + (ln_term - m).exp() * *wi,
                Some(m) => {
                    acc = acc * (m - ln_term).exp() + *wi;
                    shift = Some(ln_term);
                }
                None => {
                    acc = R::cst(*wi);
                    shift = Some(ln_term);
                }
            }
        }
    }
    shift.expect("at least one panel") + acc.ln() + ln_half
}

/// Nodes and weights of 16-point Gauss-Legendre quadrature on [−1, 1] (Newton iteration on
/// the Legendre polynomial, computed once).
fn gauss_legendre_16() -> &'static ([f64; 16], [f64; 16]) {
    static GL: std::sync::LazyLock<([f64; 16], [f64; 16])> = std::sync::LazyLock::new(|| {
        const N: usize = 16;
        let mut x = [0.0; N];
        let mut w = [0.0; N];
        for i in 0..N {
            let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (N as f64 + 0.5)).cos();
            let mut dp = 0.0;
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, z);
                for k in 2..=N {
                    let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                    p0 = p1;
                    p1 = p2;
                }
                dp = N as f64 * (z * p1 - p0) / (z * z - 1.0);
                let dz = p1 / dp;
                z -= dz;
                if dz.abs() < 1e-16 {
                    break;
                }
            }
            x[i] = z;
            w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
        }
        (x, w)
    });
    &GL
}

/// The Pareto/NBD log-likelihood of one customer.
pub fn pareto_row_ll<R: Real>(p: &[R; 4], x: f64, tx: f64, t: f64) -> R {
    let [r, alpha, s, beta] = *p;
    let a1 = (r + x).lgamma() - r.lgamma() + r * alpha.ln() + s * beta.ln();
    let alive = -((r + x) * (alpha + t).ln()) - s * (beta + t).ln();
    let ln_a0 = pareto_ln_a0(p, x, tx, t);
    a1 + log_add_exp(alive, s.ln() + ln_a0 - (r + s + x).ln())
}

/// Total Pareto/NBD log-likelihood, parameters (r, α, s, β); rows summed in parallel chunks
/// (the dual-number reference of [`pareto_ll_gradient`]).
#[cfg(test)]
pub fn pareto_nbd_ll<R: Real>(p: &[R; 4], rows: &[Pattern]) -> R {
    chunked_sum(rows.len(), |range| {
        let mut total = R::cst(0.0);
        for row in &rows[range] {
            total = total + pareto_row_ll(p, row.x, row.tx, row.t) * row.w;
        }
        total
    })
}

/// The Pareto/NBD log-likelihood and its gradient with respect to (r, α, s, β), written out
/// on f64 for the fits (the same sum as [`pareto_nbd_ll`] on [`Dual`] numbers): per run of
/// equal x the head A₁ = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β once, per distinct time the
/// logarithms and reciprocals of α + t and β + t once, and per row
/// ℓ = A₁ + logaddexp(u, v) with u = −(r+x) ln(α+T) − s ln(β+T) (alive at T) and
/// v = ln s + ln A₀ − ln(r+s+x), ln A₀ = logsubexp(f₁, f₂), fᵢ = ln ₂F₁(a, b; a+1; zᵢ) − a ln qᵢ
/// (a = r+s+x, qᵢ = max(α, β) + tᵢ, zᵢ = |α − β| / qᵢ for t₁ = t_x, t₂ = T), the chain rule
/// through the hypergeometric partials of [`Hyp2f1Series`] (once per distinct time of a run
/// of equal x). Rows whose argument needs the quadrature (z > [`SERIES_MAX_Z`]) are evaluated
/// on dual numbers.
pub fn pareto_ll_gradient(p: &[f64; 4], rows: &[Pattern], times: &Times) -> (f64, [f64; 4]) {
    let [_, alpha, _, beta] = *p;
    let table = |c: f64| -> (Vec<f64>, Vec<f64>) {
        times
            .values
            .iter()
            .map(|&v| ((c + v).ln(), 1.0 / (c + v)))
            .unzip()
    };
    let ((ln_at, inv_at), (ln_bt, inv_bt)) = (table(alpha), table(beta));
    let sum = chunked_sum(rows.len(), |range| {
        let (v, g) =
            pareto_gradient_rows(p, rows, times, [&ln_at, &inv_at, &ln_bt, &inv_bt], range);
        Dual { v, d: g }
    });
    (sum.v, sum.d)
}

/// [`pareto_gradient_rows`] memoizes the hypergeometric terms per distinct time when there
/// are at most [`MEMO_TIMES`] distinct times, or this many per row of its chunk (a table of
/// one entry per time, allocated and zeroed for each chunk: bounded by the chunk's work).
const MEMO_TIMES_PER_ROW: usize = 4;
/// Distinct times the memo of [`pareto_gradient_rows`] takes whatever the chunk's rows
/// (a 192 KiB table at most).
const MEMO_TIMES: usize = 4 * 1024;

fn pareto_gradient_rows(
    p: &[f64; 4],
    rows: &[Pattern],
    times: &Times,
    [ln_at, inv_at, ln_bt, inv_bt]: [&[f64]; 4],
    range: Range<usize>,
) -> (f64, [f64; 4]) {
    let [r, alpha, s, beta] = *p;
    let (lg_r, psi_r, ln_alpha, ln_beta, ln_s) =
        (lgamma(r), digamma(r), alpha.ln(), beta.ln(), s.ln());
    // which parameter is the larger ("hi", in qᵢ and zᵢ) and which carries b
    let alpha_lo = alpha < beta;
    let (lo, hi) = if alpha_lo {
        (alpha, beta)
    } else {
        (beta, alpha)
    };
    let diff = hi - lo;
    let (ln_ht, inv_ht) = if alpha_lo {
        (ln_bt, inv_bt)
    } else {
        (ln_at, inv_at)
    };
    let duals: [Dual<4>; 4] = std::array::from_fn(|i| Dual::var(p[i], i, 1.0));
    let mut value = 0.0;
    let mut grad = [0.0; 4];
    let mut start = range.start;
    // fᵢ depends on x and the time only: within a run of equal x it is computed once per
    // distinct time (rows sharing a T, and the sorted t_x), on the run's cached series
    let mut series = Hyp2f1Series::default();
    let memo_times = times.values.len() <= (MEMO_TIMES_PER_ROW * range.len()).max(MEMO_TIMES);
    let mut memo: Vec<(u32, [f64; 5])> = if memo_times {
        vec![(0, [0.0; 5]); times.values.len()]
    } else {
        Vec::new()
    };
    for (n, run) in runs_by_x(&rows[range], |p| p.x).enumerate() {
        // memo stamps: 0 is "not computed"
        let run_id = n as u32 + 1;
        let x = run[0].x;
        let (rx, rsx) = (r + x, r + s + x);
        let b = if alpha_lo { rx } else { s + 1.0 };
        series.reset(rsx, b);
        let (ln_rsx, inv_rsx) = (rsx.ln(), 1.0 / rsx);
        let head = lgamma(rx) - lg_r + r * ln_alpha + s * ln_beta;
        let head_grad = [digamma(rx) - psi_r + ln_alpha, r / alpha, ln_beta, s / beta];
        let mut weight = 0.0;
        for (k, row) in run.iter().enumerate() {
            let i = start + k;
            let (it, itx) = (times.t[i] as usize, times.tx[i] as usize);
            let w = row.w;
            if diff / (hi + row.tx) > SERIES_MAX_Z {
                // the whole row, head included, on dual numbers
                let d = pareto_row_ll(&duals, x, row.tx, row.t);
                value += w * d.v;
                for (g, dj) in grad.iter_mut().zip(d.d) {
                    *g += w * dj;
                }
                continue;
            }
            weight += w;
            // f₁ at t_x, f₂ at T, each with ∂/∂a, ∂/∂b, ∂/∂hi, ∂/∂lo
            let u = -(rx * ln_at[it]) - s * ln_bt[it];
            let u_grad = [-ln_at[it], -rx * inv_at[it], -ln_bt[it], -s * inv_bt[it]];
            let mut f = |time: usize| -> [f64; 5] {
                if memo_times && memo[time].0 == run_id {
                    return memo[time].1;
                }
                let (ln_q, inv_q) = (ln_ht[time], inv_ht[time]);
                let z = diff * inv_q;
                let [g, ga, gb, gz] = series.partials(z);
                let v = [
                    g - rsx * ln_q,
                    ga - ln_q,
                    gb,
                    gz * (1.0 - z) * inv_q - rsx * inv_q,
                    -gz * inv_q,
                ];
                if memo_times {
                    memo[time] = (run_id, v);
                }
                v
            };
            let f1 = f(itx);
            let f2 = f(it);
            // ln A₀ = f₁ + ln(1 − e), e = exp(f₂ − f₁); −∞ when t_x = T (no such term)
            let e_minus_1 = (f2[0] - f1[0]).exp_m1();
            let mut row_value = u;
            let mut row_grad = u_grad;
            if e_minus_1 < 0.0 {
                let (e, one_minus_e) = (e_minus_1 + 1.0, -e_minus_1);
                let ln_a0 = f1[0] + one_minus_e.ln();
                let (w1, w2) = (1.0 / one_minus_e, e / one_minus_e);
                // ∂ ln A₀ in (a, b, hi, lo)
                let d: [f64; 4] = std::array::from_fn(|j| w1 * f1[j + 1] - w2 * f2[j + 1]);
                let v = ln_s + ln_a0 - ln_rsx;
                let mut v_grad = [d[0] - inv_rsx, 0.0, d[0] + 1.0 / s - inv_rsx, 0.0];
                if alpha_lo {
                    v_grad[0] += d[1];
                    v_grad[3] += d[2];
                    v_grad[1] += d[3];
                } else {
                    v_grad[2] += d[1];
                    v_grad[1] += d[2];
                    v_grad[3] += d[3];
                }
                // logaddexp(u, v) = v + softplus(u − v), weights σ(u − v) and σ(v − u)
                let (softplus, sigma_u) = softplus_sigma(u - v);
                row_value = v + softplus;
                row_grad =
                    std::array::from_fn(|j| sigma_u * u_grad[j] + (1.0 - sigma_u) * v_grad[j]);
            } else if row.tx < row.t {
                // f₂ ≥ f₁ with t_x < T: lost precision (the dual path gives NaN too)
                row_value = f64::NAN;
            }
            value += w * row_value;
            for (g, rg) in grad.iter_mut().zip(row_grad) {
                *g += w * rg;
            }
        }
        value += head * weight;
        for (g, hg) in grad.iter_mut().zip(head_grad) {
            *g += hg * weight;
        }
        start += run.len();
    }
    (value, grad)
}

/// Total Gamma-Gamma log-likelihood, parameters (p, q, v); rows sorted by x, all x > 0 and
/// m > 0.
pub fn gamma_gamma_ll<R: Real>(params: &[R; 3], rows: &[Spend]) -> R {
    let [p, q, v] = *params;
    let (lg_q, ln_v) = (q.lgamma(), v.ln());
    let mut total = R::cst(0.0);
    for run in runs_by_x(rows, |s| s.x) {
        let x = run[0].x;
        let px = p * x;
        let head = (px + q).lgamma() - px.lgamma() - lg_q + q * ln_v + px * x.ln();
        let mut weight = 0.0;
        let mut sum = R::cst(0.0);
        for row in run {
            let term = (px - 1.0) * row.m.ln() - (px + q) * (v + x * row.m).ln();
            sum = sum + term * row.w;
            weight += row.w;
        }
        total = total + head * weight + sum;
    }
    total
}

/// The Gamma-Gamma log-likelihood and its gradient with respect to (p, q, v), written out by
/// hand for the fit (the same sum as [`gamma_gamma_ll`] on [`Dual`] numbers): per row one
/// `ln` and one division into per-run sums, chunks of rows on all cores (from
/// [`PARALLEL_MIN_ROWS`] rows). `ln_m` holds
/// ln(m) of each row (constant across a fit's evaluations). With s = v + x·m, a row has
/// ℓ = head(x) + (px − 1) ln m − (px + q) ln s, and ∂ℓ/∂p = x (ln m − ln s) + ∂head/∂p,
/// ∂ℓ/∂q = −ln s + ∂head/∂q, ∂ℓ/∂v = −(px + q)/s + q/v.
pub fn gamma_gamma_ll_gradient(params: &[f64; 3], rows: &[Spend], ln_m: &[f64]) -> (f64, [f64; 3]) {
    let c = gamma_gamma_curvature::<false>(params, rows, ln_m);
    (c.v, c.g)
}

/// [`gamma_gamma_ll_gradient`] with the Hessian, for Newton steps on the full data (see
/// [`fit_levels_newton`]); one more per-row sum, Σ w/s², and per run of equal x two
/// trigammas: ∂²/∂p² = x² (ψ₁(px+q) − ψ₁(px)), ∂²/∂p∂q = x ψ₁(px+q), ∂²/∂p∂v = −x/s,
/// ∂²/∂q² = ψ₁(px+q) − ψ₁(q), ∂²/∂q∂v = 1/v − 1/s, ∂²/∂v² = −q/v² + (px+q)/s².
pub fn gamma_gamma_ll_gradient_hessian(
    params: &[f64; 3],
    rows: &[Spend],
    ln_m: &[f64],
) -> (f64, [f64; 3], [[f64; 3]; 3]) {
    gamma_gamma_curvature::<true>(params, rows, ln_m).parts()
}

/// The full data's sum for [`fit_levels_newton`]: with the Hessian when `hessian` asks.
fn gamma_gamma_full(
    params: &[f64; 3],
    rows: &[Spend],
    ln_m: &[f64],
    hessian: bool,
) -> (f64, [f64; 3], [[f64; 3]; 3]) {
    if hessian {
        gamma_gamma_curvature::<true>(params, rows, ln_m)
    } else {
        gamma_gamma_curvature::<false>(params, rows, ln_m)
    }
    .parts()
}

fn gamma_gamma_curvature<const HESSIAN: bool>(
    params: &[f64; 3],
    rows: &[Spend],
    ln_m: &[f64],
) -> Curvature<3> {
    debug_assert_eq!(rows.len(), ln_m.len());
    chunked_fold(rows.len(), Curvature::ZERO, |range| {
        gamma_gamma_curvature_rows::<HESSIAN>(params, &rows[range.clone()], &ln_m[range])
    })
}

fn gamma_gamma_curvature_rows<const HESSIAN: bool>(
    params: &[f64; 3],
    rows: &[Spend],
    ln_m: &[f64],
) -> Curvature<3> {
    let [p, q, v] = *params;
    let (lg_q, ln_v, psi_q) = (lgamma(q), v.ln(), digamma(q));
    let psi1_q = if HESSIAN { trigamma(q) } else { 0.0 };
    let mut c = Curvature::ZERO;
    let mut start = 0;
    for run in runs_by_x(rows, |s| s.x) {
        let x = run[0].x;
        let (px, ln_x) = (p * x, x.ln());
        let head = lgamma(px + q) - lgamma(px) - lg_q + q * ln_v + px * ln_x;
        let psi_pxq = digamma(px + q);
        // Σ w, Σ w ln m, Σ w ln s, Σ w / s, Σ w / s²
        let (mut weight, mut sum_ln_m, mut sum_ln_s, mut sum_inv_s, mut sum_inv_s2) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        for (row, &lm) in run.iter().zip(&ln_m[start..start + run.len()]) {
            let s = v + x * row.m;
            let w = row.w;
            let inv_s = 1.0 / s;
            weight += w;
            sum_ln_m += w * lm;
            sum_ln_s += w * s.ln();
            sum_inv_s += w * inv_s;
            if HESSIAN {
                sum_inv_s2 += w * inv_s * inv_s;
            }
        }
        c.v += head * weight + (px - 1.0) * sum_ln_m - (px + q) * sum_ln_s;
        c.g[0] += x * ((psi_pxq - digamma(px) + ln_x) * weight + sum_ln_m - sum_ln_s);
        c.g[1] += (psi_pxq - psi_q + ln_v) * weight - sum_ln_s;
        c.g[2] += q / v * weight - (px + q) * sum_inv_s;
        if HESSIAN {
            let psi1_pxq = trigamma(px + q);
            // the upper triangle (mirrored once at the end)
            c.h[0][0] += x * x * (psi1_pxq - trigamma(px)) * weight;
            c.h[0][1] += x * psi1_pxq * weight;
            c.h[0][2] -= x * sum_inv_s;
            c.h[1][1] += (psi1_pxq - psi1_q) * weight;
            c.h[1][2] += weight / v - sum_inv_s;
            c.h[2][2] += (px + q) * sum_inv_s2 - q / (v * v) * weight;
        }
        start += run.len();
    }
    if HESSIAN {
        for i in 0..3 {
            for j in 0..i {
                c.h[i][j] = c.h[j][i];
            }
        }
    }
    c
}

/// Result of a maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<const N: usize> {
    pub params: [f64; N],
    /// Total (unpenalised) log-likelihood at `params`.
    pub log_likelihood: f64,
    /// Number of customers (sum of pattern counts).
    pub customers: f64,
    pub converged: bool,
    pub iterations: u32,
}

/// Optimizer settings.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Coefficient of the L2 penalty on the parameters (not their logs), added to the mean
    /// negative log-likelihood, as in `lifetimes`.
    pub penalizer: f64,
    pub max_iterations: u32,
    /// Converged when every component of the gradient of the objective (mean negative
    /// log-likelihood, per log-parameter) is below this.
    pub gradient_tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            penalizer: 0.0,
            max_iterations: 200,
            gradient_tolerance: 1e-9,
        }
    }
}

/// Maximise `ll` (total log-likelihood of `customers` customers) over positive parameters
/// by BFGS on their logarithms, starting from `start`.
#[cfg(test)]
pub fn fit<const N: usize>(
    ll: impl Fn(&[Dual<N>; N]) -> Dual<N>,
    customers: f64,
    start: [f64; N],
    opts: FitOptions,
) -> Fit<N> {
    fit_levels(|p, _| ll(p), &[customers], start, opts)
}

/// Rows a coarse level of a fit keeps at least; data with fewer than [`LEVEL_FACTOR`] times
/// this many distinct patterns is fitted in one level. A few hundred patterns are enough for
/// the coarsest level, which takes most of the iterations from the generic start: on the
/// benchmark's 19k Pareto/NBD patterns a level of 302 brings the 2.4k level from 20
/// evaluations to 5 (and the whole fit from 184k pattern evaluations to 134k).
const LEVEL_MIN_ROWS: usize = 256;
/// Each coarser level keeps about one pattern in this many.
const LEVEL_FACTOR: usize = 8;
/// Gradient tolerance of the coarse levels: their optimum differs from the full data's by
/// their sampling error anyway, so they only need to get close.
const LEVEL_GTOL: f64 = 1e-5;

/// Coarse levels of a warm start, coarsest last: each keeps about one in [`LEVEL_FACTOR`] rows
/// of the finer one by systematic sampling proportional to the counts (a row is taken once per
/// multiple of total / kept its running count crosses, and weighted by the number of
/// crossings × total / kept, so the total count is kept and heavy rows are not lost). Rows stay
/// in their canonical order, so the levels depend only on the data.
pub fn coarse_levels<T: Copy>(
    rows: &[T],
    min_rows: usize,
    weight: impl Fn(&T) -> f64,
    with_weight: impl Fn(T, f64) -> T,
) -> Vec<Vec<T>> {
    let first = coarser_level(
        rows.len(),
        || rows.iter().map(&weight),
        |i| rows[i],
        min_rows,
        &with_weight,
    );
    coarse_levels_from(first, min_rows, weight, with_weight)
}

/// The coarse levels that start with `first` (the coarsest last), each sampled from the
/// one before as [`coarse_levels`] does.
fn coarse_levels_from<T: Copy>(
    first: Option<Vec<T>>,
    min_rows: usize,
    weight: impl Fn(&T) -> f64,
    with_weight: impl Fn(T, f64) -> T,
) -> Vec<Vec<T>> {
    let mut levels: Vec<Vec<T>> = Vec::new();
    let mut next = first;
    while let Some(level) = next {
        next = coarser_level(
            level.len(),
            || level.iter().map(&weight),
            |i| level[i],
            min_rows,
            &with_weight,
        );
        levels.push(level);
    }
    levels
}

/// One coarse level sampled from a finer one of `len` rows: `weights()` gives their weights
/// in order (called twice: for the total, then to sample), `row(i)` row `i` (called for the
/// rows kept only); `None` when it would keep fewer than `min_rows`.
fn coarser_level<T, W: Iterator<Item = f64>>(
    len: usize,
    weights: impl Fn() -> W,
    row: impl Fn(usize) -> T,
    min_rows: usize,
    with_weight: impl Fn(T, f64) -> T,
) -> Option<Vec<T>> {
    let keep = len / LEVEL_FACTOR;
    if keep < min_rows {
        return None;
    }
    let total: f64 = weights().sum();
    let step = total / keep as f64;
    let mut level = Vec::with_capacity(keep + 1);
    let (mut running, mut taken) = (0.0, 0.0);
    for (i, w) in weights().enumerate() {
        running += w;
        // crossings of step/2, 3·step/2, ... (centred systematic sampling); the floor (of a
        // non-negative number: the truncating conversion, not a libm call) only for the one
        // row in LEVEL_FACTOR that crosses
        let crossing = (running / step) + 0.5;
        if crossing >= taken + 1.0 {
            let crossed = crossing as i64 as f64;
            level.push(with_weight(row(i), (crossed - taken) * step));
            taken = crossed;
        }
    }
    Some(level)
}

/// Maximise a total log-likelihood over positive parameters by BFGS on their logarithms,
/// coarse to fine: `ll(p, level)` evaluates level `level` of `customers.len()` levels, 0 being
/// all the data and each next one a coarser sample (see [`coarse_levels`]); `customers[level]`
/// is that level's total count. The coarsest level starts from `start`; each finer one starts
/// from the coarser optimum with its inverse-Hessian estimate, so the full data typically
/// needs a handful of evaluations instead of dozens. Only level 0 decides the result: its
/// BFGS runs to the full tolerance.
pub fn fit_levels<const N: usize>(
    ll: impl Fn(&[Dual<N>; N], usize) -> Dual<N>,
    customers: &[f64],
    start: [f64; N],
    opts: FitOptions,
) -> Fit<N> {
    fit_levels_newton(ll, None, customers, start, opts)
}

/// The log-likelihood of the full data with its gradient and (when the flag asks for it)
/// Hessian in the parameters (not their logarithms).
pub type FullHessian<'a, const N: usize> =
    &'a (dyn Fn(&[f64; N], bool) -> (f64, [f64; N], [[f64; N]; N]) + Sync);

/// [`fit_levels`], with the full data's Hessian when the model has one: level 0 then takes
/// Newton steps, which converge quadratically from the coarse optimum (the full data's
/// gradient there is only the sampling error of the coarse level): three evaluations
/// instead of BFGS's five on the benchmark's 680k BG/NBD patterns. Where the Hessian is not
/// positive definite or its steps stall, BFGS takes over from where Newton stopped.
pub fn fit_levels_newton<const N: usize>(
    ll: impl Fn(&[Dual<N>; N], usize) -> Dual<N>,
    full_hessian: Option<FullHessian<'_, N>>,
    customers: &[f64],
    start: [f64; N],
    opts: FitOptions,
) -> Fit<N> {
    let evaluations: Vec<std::sync::atomic::AtomicU32> =
        customers.iter().map(|_| Default::default()).collect();
    let objective = |level: usize| {
        let (ll, evaluations) = (&ll, &evaluations);
        move |theta: &[f64; N]| -> (f64, [f64; N]) {
            evaluations[level].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p: [Dual<N>; N] = std::array::from_fn(|i| {
                let v = theta[i].exp();
                Dual::var(v, i, v)
            });
            let mut f = -(ll(&p, level) / customers[level]);
            for pi in p {
                f = f + pi * pi * opts.penalizer;
            }
            (f.v, f.d)
        }
    };
    let mut theta = start.map(f64::ln);
    let mut hessian = None;
    let mut iterations = 0;
    for level in (1..customers.len()).rev() {
        let run = bfgs(
            objective(level),
            theta,
            hessian,
            opts.max_iterations,
            LEVEL_GTOL.max(opts.gradient_tolerance),
        );
        iterations += run.iterations;
        log::debug!(
            "fit level {level} ({} customers): {} iterations, {} evaluations, converged {}",
            customers[level],
            run.iterations,
            evaluations[level].load(std::sync::atomic::Ordering::Relaxed),
            run.converged
        );
        // a coarse level that does not converge (e.g. runs off to a boundary) is no start
        if run.converged {
            theta = run.x;
            hessian = Some(run.inverse_hessian);
        }
    }
    let mut run = None;
    if let Some(full) = full_hessian {
        // the objective −ll / customers + penalty · Σ p², and its derivatives in θ = ln p
        let objective = |theta: &[f64; N], hessian: bool| -> (f64, [f64; N], [[f64; N]; N]) {
            evaluations[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = theta.map(f64::exp);
            let (ll, g, h) = full(&p, hessian);
            let n = customers[0];
            let f = -ll / n + p.iter().map(|p| p * p).sum::<f64>() * opts.penalizer;
            let gp: [f64; N] = std::array::from_fn(|i| -g[i] / n + 2.0 * opts.penalizer * p[i]);
            let g_theta: [f64; N] = std::array::from_fn(|i| p[i] * gp[i]);
            let h_theta = std::array::from_fn(|i| {
                std::array::from_fn(|j| {
                    let penalty = if i == j { 2.0 * opts.penalizer } else { 0.0 };
                    let diagonal = if i == j { g_theta[i] } else { 0.0 };
                    p[i] * p[j] * (-h[i][j] / n + penalty) + diagonal
                })
            });
            (f, g_theta, h_theta)
        };
        let newton = newton(
            objective,
            theta,
            opts.max_iterations,
            opts.gradient_tolerance,
        );
        log::debug!(
            "fit level 0 by Newton: {} iterations, converged {}",
            newton.iterations,
            newton.converged
        );
        iterations += newton.iterations;
        if newton.converged {
            run = Some(newton);
        } else if newton.fx.is_finite()
            && newton.x.iter().all(|v| v.is_finite())
            && max_abs(&newton.x) <= MAX_LOG_PARAMETER
        {
            // (a point past the bound is no start: BFGS could find the gradient small
            // there, on a ridge towards the boundary, and call it converged)
            theta = newton.x;
        }
    }
    let run = run.unwrap_or_else(|| {
        bfgs(
            objective(0),
            theta,
            hessian,
            opts.max_iterations,
            opts.gradient_tolerance,
        )
    });
    log::debug!(
        "fit level 0 ({} customers): {} iterations, {} evaluations, converged {}",
        customers[0],
        run.iterations,
        evaluations[0].load(std::sync::atomic::Ordering::Relaxed),
        run.converged
    );
    let params = run.x.map(f64::exp);
    // the objective is −ll / customers + penalty: recover ll without another evaluation
    let penalty: f64 = params.iter().map(|p| p * p * opts.penalizer).sum();
    let log_likelihood = -(run.fx - penalty) * customers[0];
    Fit {
        params,
        log_likelihood,
        customers: customers[0],
        converged: run.converged && log_likelihood.is_finite(),
        iterations: iterations + run.iterations,
    }
}

fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs<const N: usize>(a: &[f64; N]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// A fit whose log-parameter leaves ±25 (parameters beyond e^±25 ≈ 7e10 or 1e-11) stops as
/// not converged: the likelihood has its supremum on the boundary (e.g. no dropout at all).
pub const MAX_LOG_PARAMETER: f64 = 25.0;

/// BFGS with a backtracking Armijo line search (steps capped so no log-parameter moves by
/// more than 2 at once), from `x0` and an inverse-Hessian estimate `h0` (scaled identity when
/// `None`).
pub fn bfgs<const N: usize>(
    f: impl Fn(&[f64; N]) -> (f64, [f64; N]),
    x0: [f64; N],
    h0: Option<[[f64; N]; N]>,
    max_iterations: u32,
    gtol: f64,
) -> Bfgs<N> {
    let identity = || -> [[f64; N]; N] {
        std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }))
    };
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Bfgs::new(x, fx, identity(), false, 0);
    }
    let mut scaled = h0.is_some();
    let mut h = h0.unwrap_or_else(identity);
    let mut stalled = 0;
    // at a minimum the gradient cannot go below the rounding noise of the sums it is made of;
    // when the objective stops decreasing, accept a gradient this small as converged
    let stall_gtol = 1e-6;
    for it in 0..max_iterations {
        log::trace!(
            "bfgs iteration {it}: objective {fx:e}, largest gradient {:e}",
            max_abs(&g)
        );
        if max_abs(&g) < gtol {
            return Bfgs::new(x, fx, h, true, it);
        }
        let mut d: [f64; N] = std::array::from_fn(|i| -dot(&h[i], &g));
        let mut slope = dot(&g, &d);
        if slope >= 0.0 || !slope.is_finite() {
            h = identity();
            // the fresh identity gets the curvature scaling at the next update
            scaled = false;
            d = g.map(|v| -v);
            slope = dot(&g, &d);
        }
        let dmax = max_abs(&d);
        let mut step = if dmax > 2.0 { 2.0 / dmax } else { 1.0 };
        let mut accepted = None;
        for _ in 0..50 {
            let xn: [f64; N] = std::array::from_fn(|i| x[i] + step * d[i]);
            let (fnew, gnew) = f(&xn);
            // Armijo, up to the objective's rounding (near the optimum the decrease a step
            // makes is below it, and backtracking would only waste evaluations)
            let finite = fnew.is_finite() && gnew.iter().all(|v| v.is_finite());
            if finite && fnew <= fx + 1e-4 * step * slope + 4.0 * f64::EPSILON * fx.abs() {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            // Hager–Zhang's approximate Wolfe conditions: within 1e-10·|f| of the objective
            // (above the rounding of sums over 10⁵–10⁶ patterns, which defeats Armijo near
            // the optimum), a step whose directional derivative has shrunk to between
            // 0.9 and −0.8 times the initial one is accepted
            let dnew = dot(&gnew, &d);
            if finite
                && fnew <= fx + 1e-10 * fx.abs()
                && 0.9 * slope <= dnew
                && dnew <= -0.8 * slope
            {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew)) = accepted else {
            // no decrease is possible at machine precision: a stationary point if the
            // gradient is small on the objective's own scale
            return Bfgs::new(x, fx, h, max_abs(&g) < stall_gtol, it);
        };
        if fx - fnew <= 1e-15 * fx.abs().max(1.0) {
            stalled += 1;
            if stalled >= 3 && max_abs(&gnew) < stall_gtol {
                return Bfgs::new(xn, fnew, h, true, it + 1);
            }
        } else {
            stalled = 0;
        }
        let s: [f64; N] = std::array::from_fn(|i| xn[i] - x[i]);
        let y: [f64; N] = std::array::from_fn(|i| gnew[i] - g[i]);
        let sy = dot(&s, &y);
        if sy > 1e-300 {
            if !scaled {
                let gamma = sy / dot(&y, &y);
                h = std::array::from_fn(|i| std::array::from_fn(|j| h[i][j] * gamma));
                scaled = true;
            }
            let rho = 1.0 / sy;
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
            let hy: [f64; N] = std::array::from_fn(|i| dot(&h[i], &y));
            let yhy = dot(&y, &hy);
            h = std::array::from_fn(|i| {
                std::array::from_fn(|j| {
                    h[i][j] - rho * (s[i] * hy[j] + hy[i] * s[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j]
                })
            });
        }
        x = xn;
        fx = fnew;
        g = gnew;
        if max_abs(&x) > MAX_LOG_PARAMETER {
            // running off to 0 or infinity: the likelihood has no interior maximum
            return Bfgs::new(x, fx, h, false, it + 1);
        }
    }
    Bfgs::new(x, fx, h, max_abs(&g) < gtol, max_iterations)
}

/// Newton's method with the same line search and convergence test as [`bfgs`], from `x0`:
/// `f(x, hessian)` gives the objective and its gradient, and its Hessian when `hessian` is
/// true (anything otherwise). It stops as not converged, for the caller to go on with BFGS,
/// where the Hessian is not positive definite or a step fails.
///
/// A point is evaluated without the Hessian when the step to it is expected to converge:
/// near the optimum Newton's next gradient is about the square of this one, so when 100
/// times that square is below the tolerance the next evaluation is most likely only the
/// convergence test. If it is not below the tolerance after all, the point is evaluated
/// again with the Hessian.
pub fn newton<const N: usize>(
    f: impl Fn(&[f64; N], bool) -> (f64, [f64; N], [[f64; N]; N]),
    x0: [f64; N],
    max_iterations: u32,
    gtol: f64,
) -> Bfgs<N> {
    let mut x = x0;
    let (mut fx, mut g, mut h) = f(&x, true);
    let mut have_hessian = true;
    let finite = |fx: f64, g: &[f64; N]| fx.is_finite() && g.iter().all(|v| v.is_finite());
    let mut inverse = [[0.0; N]; N];
    for it in 0..max_iterations {
        log::trace!(
            "newton iteration {it}: objective {fx:e}, largest gradient {:e}",
            max_abs(&g)
        );
        if !finite(fx, &g) {
            return Bfgs::new(x, fx, inverse, false, it);
        }
        if max_abs(&g) < gtol {
            return Bfgs::new(x, fx, inverse, true, it);
        }
        if !have_hessian {
            h = f(&x, true).2;
        }
        let Some(l) = cholesky(&h) else {
            return Bfgs::new(x, fx, inverse, false, it);
        };
        inverse = std::array::from_fn(|j| {
            let e: [f64; N] = std::array::from_fn(|i| if i == j { 1.0 } else { 0.0 });
            cholesky_solve(&l, &e)
        });
        let mut d = cholesky_solve(&l, &g).map(|v| -v);
        let dmax = max_abs(&d);
        if dmax > 2.0 {
            d = d.map(|v| v * 2.0 / dmax);
        }
        let slope = dot(&g, &d);
        let with_hessian = 100.0 * max_abs(&g) * max_abs(&g) >= gtol;
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let xn: [f64; N] = std::array::from_fn(|i| x[i] + step * d[i]);
            let (fnew, gnew, hnew) = f(&xn, with_hessian);
            if finite(fnew, &gnew)
                && fnew <= fx + 1e-4 * step * slope + 4.0 * f64::EPSILON * fx.abs()
            {
                accepted = Some((xn, fnew, gnew, hnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew, hnew)) = accepted else {
            return Bfgs::new(x, fx, inverse, false, it);
        };
        (x, fx, g, h) = (xn, fnew, gnew, hnew);
        have_hessian = with_hessian;
        if max_abs(&x) > MAX_LOG_PARAMETER {
            return Bfgs::new(x, fx, inverse, false, it + 1);
        }
    }
    Bfgs::new(x, fx, inverse, false, max_iterations)
}

/// The lower-triangular L with L Lᵀ = `a`, if `a` is (numerically) positive definite.
fn cholesky<const N: usize>(a: &[[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut l = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..=i {
            let s = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                // a pivot this small against the diagonal is rounding: not positive definite
                if s.is_nan() || s <= 1e-12 * a[i][i].abs() {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// x with L Lᵀ x = b.
fn cholesky_solve<const N: usize>(l: &[[f64; N]; N], b: &[f64; N]) -> [f64; N] {
    let mut y = [0.0; N];
    for i in 0..N {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; N];
    for i in (0..N).rev() {
        x[i] = (y[i] - (i + 1..N).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// Where a [`bfgs`] run stopped.
#[derive(Debug, Clone, Copy)]
pub struct Bfgs<const N: usize> {
    pub x: [f64; N],
    /// The objective at `x`.
    pub fx: f64,
    pub inverse_hessian: [[f64; N]; N],
    pub converged: bool,
    pub iterations: u32,
}

impl<const N: usize> Bfgs<N> {
    fn new(
        x: [f64; N],
        fx: f64,
        inverse_hessian: [[f64; N]; N],
        converged: bool,
        iterations: u32,
    ) -> Self {
        Self {
            x,
            fx,
            inverse_hessian,
            converged,
            iterations,
        }
    }
}

/// A purchase model is not identified without a single repeat purchase (the likelihood
/// grows without bound as r → 0): such a fit is reported as not converged.
fn identified(mut fit: Fit<4>, rows: &[Pattern]) -> Fit<4> {
    fit.converged &= rows.iter().any(|r| r.x > 0.0);
    fit
}

/// The patterns of a time table with repeat purchases.
fn any_repeat(times: &Times) -> bool {
    times.runs.iter().any(|r| r.x > 0.0)
}

/// A purchase model's data at each level of a coarse-to-fine fit (see [`fit_levels`]).
struct PatternLevels<'a> {
    /// Level 0's rows; empty when the level is read through its time table only
    /// ([`PatternLevels::of_times`], for BG/NBD, whose likelihood reads nothing else).
    full: &'a [Pattern],
    coarse: Vec<Vec<Pattern>>,
    times: Vec<Times>,
    customers: Vec<f64>,
}

impl<'a> PatternLevels<'a> {
    /// `rows` (level 0, sorted) and its coarse samples; with `times` the distinct-time tables
    /// the BG/NBD-family likelihoods index.
    fn new(full: &'a [Pattern]) -> Self {
        let coarse = || coarse_levels(full, LEVEL_MIN_ROWS, |r| r.w, |r, w| Pattern { w, ..r });
        // the full data's time table on a second thread while this one samples the levels
        let (coarse, full_times) = if cores() > 1 && full.len() >= 1 << 16 {
            let (full_times, coarse) = on_two_threads(|| Times::new(full), coarse);
            (coarse, full_times)
        } else {
            (coarse(), Times::new(full))
        };
        let times = std::iter::once(full_times)
            .chain(coarse.iter().map(|level| Times::new(level)))
            .collect();
        Self::with_times(full, coarse, times)
    }

    /// Levels with their time tables; the customers are summed from the tables' weights
    /// (a quarter of the rows' bytes).
    fn with_times(full: &'a [Pattern], coarse: Vec<Vec<Pattern>>, times: Vec<Times>) -> Self {
        let customers = times.iter().map(|t| t.w.iter().sum()).collect();
        Self {
            full,
            coarse,
            times,
            customers,
        }
    }

    /// The levels of patterns given by their time table alone (no rows): level 0 is read
    /// through `full_times` only, so its rows are not kept.
    fn of_times(full_times: Times) -> PatternLevels<'static> {
        let first = coarser_level(
            full_times.len(),
            || full_times.w.iter().copied(),
            |i| full_times.pattern(i),
            LEVEL_MIN_ROWS,
            |r, w| Pattern { w, ..r },
        );
        let coarse = coarse_levels_from(first, LEVEL_MIN_ROWS, |r| r.w, |r, w| Pattern { w, ..r });
        let times = std::iter::once(full_times)
            .chain(coarse.iter().map(|level| Times::new(level)))
            .collect();
        PatternLevels::with_times(&[], coarse, times)
    }

    fn rows(&self, level: usize) -> &[Pattern] {
        debug_assert!(
            level > 0 || self.full.len() == self.times[0].len(),
            "level 0 has no rows here (made from its time table)"
        );
        level_rows(self.full, &self.coarse, level)
    }
}

/// Level `level` of a coarse-to-fine fit: the data itself, or one of its coarse samples.
fn level_rows<'a, T>(full: &'a [T], coarse: &'a [Vec<T>], level: usize) -> &'a [T] {
    if level == 0 { full } else { &coarse[level - 1] }
}

/// Starting point and fit of BG/NBD (r, α, a, b).
pub fn fit_bgnbd(rows: &[Pattern], opts: FitOptions) -> Fit<4> {
    let (_, start) = start_rate(rows);
    identified(
        fit_bgnbd_levels(&PatternLevels::new(rows), start, opts),
        rows,
    )
}

/// [`fit_bgnbd`] of the patterns of a time table (made by [`WholeTimes`] straight from a
/// packed histogram, without the rows): the same start, levels and fit, bit for bit.
pub fn fit_bgnbd_times(times: Times, opts: FitOptions) -> Fit<4> {
    let (_, start) = times.start_rate();
    let repeat = any_repeat(&times);
    let mut fit = fit_bgnbd_levels(&PatternLevels::of_times(times), start, opts);
    fit.converged &= repeat;
    fit
}

/// BG/NBD fitted coarse to fine with Newton steps on the full data (the times of level 0).
fn fit_bgnbd_levels(levels: &PatternLevels, start: [f64; 2], opts: FitOptions) -> Fit<4> {
    let full = |p: &[f64; 4], hessian: bool| bgnbd_full(p, &levels.times[0], hessian);
    fit_levels_newton(
        |p, l| {
            let (v, g) = bgnbd_ll_gradient(&p.map(|d| d.v), &levels.times[l]);
            with_gradient(p, v, g)
        },
        Some(&full),
        &levels.customers,
        [start[0], start[1], 1.0, 1.0],
        opts,
    )
}

/// Fit of MBG/NBD (r, α, a, b).
pub fn fit_mbgnbd(rows: &[Pattern], opts: FitOptions) -> Fit<4> {
    let (_, start) = start_rate(rows);
    let levels = PatternLevels::new(rows);
    identified(
        fit_levels(
            |p, l| mbgnbd_ll_indexed(p, levels.rows(l), &levels.times[l]),
            &levels.customers,
            [start[0], start[1], 1.0, 1.0],
            opts,
        ),
        rows,
    )
}

/// Fit of Pareto/NBD (r, α, s, β), started at α = β (where the hypergeometric argument
/// |α − β| / (max(α, β) + t) is 0 and its series cheapest).
pub fn fit_pareto_nbd(rows: &[Pattern], opts: FitOptions) -> Fit<4> {
    let (_, start) = start_rate(rows);
    let levels = PatternLevels::new(rows);
    identified(
        fit_levels(
            |p, l| {
                let (v, g) = pareto_ll_gradient(&p.map(|d| d.v), levels.rows(l), &levels.times[l]);
                with_gradient(p, v, g)
            },
            &levels.customers,
            [start[0], start[1], 1.0, start[1]],
            opts,
        ),
        rows,
    )
}

/// Fit of Gamma-Gamma (p, q, v).
pub fn fit_gamma_gamma(rows: &[Spend], opts: FitOptions) -> Fit<3> {
    let n: f64 = rows.iter().map(|r| r.w).sum();
    let mean_m = rows.iter().map(|r| r.m * r.w).sum::<f64>() / n;
    let ln_of = |rows: &[Spend]| -> Vec<f64> { rows.iter().map(|r| r.m.ln()).collect() };
    let coarse = || coarse_levels(rows, LEVEL_MIN_ROWS, |r| r.w, |r, w| Spend { w, ..r });
    // the levels sampled on a second thread while this one takes the full data's logarithms
    // (both a pass over every pattern, before the first evaluation)
    let (coarse, full_ln_m) = if cores() > 1 && rows.len() >= 1 << 16 {
        on_two_threads(coarse, || ln_of(rows))
    } else {
        (coarse(), ln_of(rows))
    };
    let customers: Vec<f64> = (0..=coarse.len())
        .map(|l| level_rows(rows, &coarse, l).iter().map(|r| r.w).sum())
        .collect();
    let ln_m: Vec<Vec<f64>> = std::iter::once(full_ln_m)
        .chain(coarse.iter().map(|level| ln_of(level)))
        .collect();
    // level 0 by Newton steps: its Hessian costs one more sum per row
    let full = |p: &[f64; 3], hessian: bool| gamma_gamma_full(p, rows, &ln_m[0], hessian);
    fit_levels_newton(
        |p, l| {
            let at = p.map(|d| d.v);
            let (v, g) = gamma_gamma_ll_gradient(&at, level_rows(rows, &coarse, l), &ln_m[l]);
            with_gradient(p, v, g)
        },
        Some(&full),
        &customers,
        [1.0, 2.0, mean_m.max(1e-9)],
        opts,
    )
}

/// Customers, and a start (r = 1, α = r · mean T / mean x) for the purchase-rate gamma.
fn start_rate(rows: &[Pattern]) -> (f64, [f64; 2]) {
    // one pass over the rows (each sum in row order, as three passes would add them)
    let (mut n, mut sum_x, mut sum_t) = (0.0, 0.0, 0.0);
    for r in rows {
        n += r.w;
        sum_x += r.x * r.w;
        sum_t += r.t * r.w;
    }
    rate_start(n, sum_x, sum_t)
}

/// [`start_rate`] of `n` customers with Σ x and Σ T.
fn rate_start(n: f64, sum_x: f64, sum_t: f64) -> (f64, [f64; 2]) {
    let (mean_x, mean_t) = (sum_x / n, sum_t / n);
    (n, [1.0, (mean_t / mean_x.max(0.1)).max(1e-3)])
}

/// BG/NBD P(alive | x, t_x, T).
pub fn bgnbd_p_alive(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
    let [r, alpha, a, b] = *p;
    if x == 0.0 {
        return 1.0;
    }
    let ln_odds = (a / (b + x - 1.0)).ln() + (r + x) * ((alpha + t) / (alpha + tx)).ln();
    1.0 / (1.0 + ln_odds.exp())
}

/// BG/NBD expected purchases in the next `horizon` periods for a customer (x, t_x, T).
#[cfg(test)]
pub fn bgnbd_expected(p: &[f64; 4], horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
    let mut out = [0.0];
    bgnbd_expected_many(p, &[horizon], x, tx, t, &mut out);
    out[0]
}

/// BG/NBD expected purchases within each of `horizons` periods into `out` (each bit for bit
/// the one-horizon value): the denominator is computed once and the hypergeometric series
/// share their coefficients ([`hyp2f1_many`]).
#[cfg(test)]
pub fn bgnbd_expected_many(
    p: &[f64; 4],
    horizons: &[f64],
    x: f64,
    tx: f64,
    t: f64,
    out: &mut [f64],
) {
    bg_family_curve(false, p, horizons, x, t, out);
    let denominator = bg_family_denominator(false, p, x, tx, t);
    out.iter_mut().for_each(|e| *e /= denominator);
}

/// The part of the BG/NBD (`mbg` false) or MBG/NBD expectation that does not depend on
/// recency, for each horizon into `out`: the expectation is this divided by
/// [`bg_family_denominator`]. It is the expensive part (a hypergeometric series per
/// horizon) and depends on the customer only through (x, T), so callers may share it
/// between customers with the same frequency and age.
pub fn bg_family_curve(mbg: bool, p: &[f64; 4], horizons: &[f64], x: f64, t: f64, out: &mut [f64]) {
    bg_family_curve_with(mbg, p, horizons, x, t, out, &mut AgeTerms::default());
}

/// [`bg_family_curve`] with the terms that depend on the age alone kept in `age` between
/// calls: customers of one age T share them whatever their frequency, so a caller that goes
/// through its customers grouped by age computes them once per age. Bit for bit the same.
pub fn bg_family_curve_with(
    mbg: bool,
    p: &[f64; 4],
    horizons: &[f64],
    x: f64,
    t: f64,
    out: &mut [f64],
    age: &mut AgeTerms,
) {
    let [r, alpha, a, b] = *p;
    if mbg {
        let series = |a: f64| (a + b - r, a + b + x);
        expected_many(a, series, alpha + t, horizons, out, age);
    } else {
        // (a+b+x−1)/(a−1) · [1 − ₂F₁(r+x, b+x; a+b+x−1; z) (1−z)^(r+x)], z = h/(α+T+h); by
        // Euler's transformation the bracket is 1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z),
        // whose parameters do not grow with x (no overflow for frequent buyers).
        let series = |a: f64| (a + b - 1.0 - r, a + b + x - 1.0);
        expected_many(a, series, alpha + t, horizons, out, age);
    }
}

/// The terms of a BG/NBD-family curve that depend on the customer's age T but not on the
/// frequency: for each horizon h, z = h/(α + T + h) and (1 − z)^(a−1) (a `powf` per horizon,
/// as costly as a third of the curve's series). Kept for the last (α + T, a, horizons) and
/// computed again, the same way, when any of them changes (by their bits).
#[derive(Debug, Default)]
pub struct AgeTerms {
    key: Option<[u64; 2]>,
    horizons: Vec<u64>,
    z: Vec<f64>,
    power: Vec<f64>,
}

impl AgeTerms {
    /// z and (1 − z)^(a−1) for each of `horizons` at α + T = `alpha_t`.
    fn get(&mut self, alpha_t: f64, a: f64, horizons: &[f64]) -> (&[f64], &[f64]) {
        let key = [alpha_t.to_bits(), a.to_bits()];
        let same_horizons = self.horizons.len() == horizons.len()
            && self
                .horizons
                .iter()
                .zip(horizons)
                .all(|(&k, h)| k == h.to_bits());
        if self.key != Some(key) || !same_horizons {
            self.horizons.clear();
            self.horizons.extend(horizons.iter().map(|h| h.to_bits()));
            self.z.clear();
            self.z.extend(horizons.iter().map(|&h| h / (alpha_t + h)));
            self.power.clear();
            self.power
                .extend(self.z.iter().map(|&z| (1.0 - z).powf(a - 1.0)));
            self.key = Some(key);
        }
        (&self.z, &self.power)
    }
}

/// The recency-dependent denominator of the BG/NBD (`mbg` false) or MBG/NBD expectation:
/// 1 + P(the customer has dropped out) odds ([`bg_family_denominator_ln`] with the
/// logarithms taken here).
pub fn bg_family_denominator(mbg: bool, p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
    let alpha = p[1];
    bg_family_denominator_ln(mbg, p, x, (alpha + tx).ln(), (alpha + t).ln())
}

/// [`bg_family_denominator`] from `ln_tx` = ln(α + t_x) and `ln_t` = ln(α + T): the odds
/// carry ((α+T)/(α+t_x))^(r+x) as exp((r+x)·(ln_t − ln_tx)), so a caller with many customers
/// of whole-period times looks the logarithms up in a table of whole periods (one `exp` a
/// customer instead of a `powf`) and gets the same bits as this function's own logarithms.
/// Relative to `powf` of the ratio the power is off by at most about (r+x)·ln(α+T) units in
/// the last place (under 5e-13 for x = 300 at a thousand-day age), far below the fits'
/// precision. An exponent r + x of 0 gives the power 1, as `powf` does, whatever the ratio
/// (also 0/0 or ∞: α = 0 with t_x = 0).
#[inline]
pub fn bg_family_denominator_ln(mbg: bool, p: &[f64; 4], x: f64, ln_tx: f64, ln_t: f64) -> f64 {
    let [r, _, a, b] = *p;
    let power = if r + x == 0.0 {
        1.0
    } else {
        ((r + x) * (ln_t - ln_tx)).exp()
    };
    let odds = |rest: f64| (a / rest) * power;
    if mbg {
        1.0 + odds(b + x)
    } else if x > 0.0 {
        1.0 + odds(b + x - 1.0)
    } else {
        1.0
    }
}

/// C/(a−1) · [1 − (1−z)^(a−1) ₂F₁(A, a−1; C; z)] at z = h/(`alpha_t` + h) for each horizon
/// h, with (A, C) = `series(a)`: the BG/NBD-family expectation times its denominator,
/// continued through its removable singularity at a = 1.
fn expected_many(
    a: f64,
    series: impl Fn(f64) -> (f64, f64),
    alpha_t: f64,
    horizons: &[f64],
    out: &mut [f64],
    age: &mut AgeTerms,
) {
    let numerator = |a: f64, out: &mut [f64]| {
        let (z, power) = age.get(alpha_t, a, horizons);
        let (big_a, c) = series(a);
        hyp2f1_many(big_a, a - 1.0, c, z, out);
        for (f, &power) in out.iter_mut().zip(power) {
            *f = c / (a - 1.0) * (1.0 - power * *f);
        }
    };
    with_removable_singularity(a, out, numerator);
}

/// MBG/NBD P(alive | x, t_x, T).
pub fn mbgnbd_p_alive(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
    let [r, alpha, a, b] = *p;
    let ln_odds = (a / (b + x)).ln() + (r + x) * ((alpha + t) / (alpha + tx)).ln();
    1.0 / (1.0 + ln_odds.exp())
}

/// MBG/NBD expected purchases in the next `horizon` periods.
#[cfg(test)]
pub fn mbgnbd_expected(p: &[f64; 4], horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
    let mut out = [0.0];
    mbgnbd_expected_many(p, &[horizon], x, tx, t, &mut out);
    out[0]
}

/// MBG/NBD expected purchases within each of `horizons` periods into `out`, sharing the work
/// as [`bgnbd_expected_many`] does.
#[cfg(test)]
pub fn mbgnbd_expected_many(
    p: &[f64; 4],
    horizons: &[f64],
    x: f64,
    tx: f64,
    t: f64,
    out: &mut [f64],
) {
    bg_family_curve(true, p, horizons, x, t, out);
    let denominator = bg_family_denominator(true, p, x, tx, t);
    out.iter_mut().for_each(|e| *e /= denominator);
}

/// `f(a, out)`, or for a within 1e-5 of 1 (where the closed form is 0/0) the linear
/// interpolation between a = 1 ± 1e-5 (error O(1e-10)).
fn with_removable_singularity(a: f64, out: &mut [f64], mut f: impl FnMut(f64, &mut [f64])) {
    const H: f64 = 1e-5;
    if (a - 1.0).abs() >= H {
        return f(a, out);
    }
    let mut hi = vec![0.0; out.len()];
    f(1.0 - H, out);
    f(1.0 + H, &mut hi);
    for (lo, hi) in out.iter_mut().zip(hi) {
        *lo += (a - (1.0 - H)) * (hi - *lo) / (2.0 * H);
    }
}

/// Pareto/NBD P(alive | x, t_x, T).
pub fn pareto_nbd_p_alive(p: &[f64; 4], x: f64, tx: f64, t: f64) -> f64 {
    let [r, alpha, s, beta] = *p;
    let ln_a0 = pareto_ln_a0(p, x, tx, t);
    let ln_odds =
        s.ln() - (r + s + x).ln() + (r + x) * (alpha + t).ln() + s * (beta + t).ln() + ln_a0;
    1.0 / (1.0 + ln_odds.exp())
}

/// Pareto/NBD expected purchases in the next `horizon` periods.
#[cfg(test)]
pub fn pareto_nbd_expected(p: &[f64; 4], horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
    let mut out = [0.0];
    pareto_nbd_expected_many(p, &[horizon], x, tx, t, &mut out);
    out[0]
}

/// Pareto/NBD expected purchases within each of `horizons` periods into `out`: the
/// customer's likelihood, the one expensive part, is computed once.
pub fn pareto_nbd_expected_many(
    p: &[f64; 4],
    horizons: &[f64],
    x: f64,
    tx: f64,
    t: f64,
    out: &mut [f64],
) {
    assert_eq!(
        horizons.len(),
        out.len(),
        "pareto_nbd_expected_many: one output per horizon"
    );
    let [r, alpha, s, beta] = *p;
    let ll = pareto_row_ll(p, x, tx, t);
    let first =
        super::real::lgamma(r + x) - super::real::lgamma(r) + r * alpha.ln() + s * beta.ln()
            - (r + x) * (alpha + t).ln()
            - s * (beta + t).ln();
    let second = (r + x).ln() + (beta + t).ln() - (alpha + t).ln();
    for (e, &horizon) in out.iter_mut().zip(horizons) {
        // (1 − ((β+T)/(β+T+h))^(s−1)) / (s−1), and its limit ln((β+T+h)/(β+T)) at s = 1
        let l = -(horizon / (beta + t)).ln_1p();
        let ratio = if (s - 1.0).abs() < 1e-12 {
            -l
        } else {
            -((s - 1.0) * l).exp_m1() / (s - 1.0)
        };
        *e = (first + second + ratio.ln() - ll).exp();
    }
}

/// Gamma-Gamma expected mean spend of a customer with `x` repeat purchases of mean `m`:
/// a weighted average of the population mean p·v/(q−1) and `m`. Requires q > 1.
pub fn gamma_gamma_expected_spend(params: &[f64; 3], x: f64, m: f64) -> f64 {
    let [p, q, v] = *params;
    let population = v * p / (q - 1.0);
    if x == 0.0 {
        return population;
    }
    let w = p * x / (p * x + q - 1.0);
    (1.0 - w) * population + w * m
}

/// The discounted monthly increments Σᵢ (E(i·k) − E((i−1)·k)) / (1 + d)ⁱ over months
/// i = 1..=months, with k periods per month and E(t) the expected purchases within t
/// periods, given as `expected[i − 1]` = E(i·k) (see [`month_horizons`]): times the expected
/// spend per purchase, the discounted CLV.
pub fn discounted_increments(expected: &[f64], monthly_discount: f64) -> f64 {
    let mut value = 0.0;
    let mut previous = 0.0;
    for (i, &e) in (1..).zip(expected) {
        value += (e - previous) / (1.0 + monthly_discount).powi(i);
        previous = e;
    }
    value
}

/// The horizons i·k, i = 1..=months, of [`discounted_increments`] into `out`.
pub fn month_horizons(months: u32, periods_per_month: f64, out: &mut Vec<f64>) {
    out.clear();
    out.extend((1..=months).map(|i| i as f64 * periods_per_month));
}

/// The period a purchase is floored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Weeks starting on Monday (pandas' `W` = `W-SUN` periods, as `lifetimes` uses).
    Week,
    /// Calendar months.
    Month,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Period {
    /// The unit a name means, in any case (no allocation: predictions parse it per row).
    pub fn parse(s: &str) -> Option<Self> {
        let is = |names: [&str; 3]| names.iter().any(|n| s.eq_ignore_ascii_case(n));
        if is(["day", "days", "d"]) {
            Some(Self::Day)
        } else if is(["week", "weeks", "w"]) {
            Some(Self::Week)
        } else if is(["month", "months", "m"]) {
            Some(Self::Month)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The period index of a timestamp in microseconds since the epoch (UTC wall clock).
    pub fn of_micros(self, micros: i64) -> i64 {
        let days = micros.div_euclid(MICROS_PER_DAY);
        match self {
            Self::Day => days,
            // 1970-01-01 is a Thursday; the Monday before it is day −3
            Self::Week => (days + 3).div_euclid(7),
            Self::Month => {
                let (y, m) = year_month(days);
                y * 12 + (m - 1)
            }
        }
    }

    /// Periods in a month of `days_per_month` days (a month is one period for `Month`).
    pub fn per_month(self, days_per_month: f64) -> f64 {
        match self {
            Self::Day => days_per_month,
            Self::Week => days_per_month / 7.0,
            Self::Month => 1.0,
        }
    }
}

/// Civil (year, month 1..=12) of a day count since 1970-01-01 (Hinnant's algorithm).
fn year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_gradient<const N: usize>(f: impl Fn(&[Dual<N>; N]) -> Dual<N>, at: [f64; N]) {
        let d = f(&std::array::from_fn(|i| Dual::var(at[i], i, 1.0)));
        for i in 0..N {
            let h = 1e-6 * at[i];
            let mut up = at.map(Dual::<N>::cst);
            let mut down = up;
            up[i].v += h;
            down[i].v -= h;
            let fd = (f(&up).v - f(&down).v) / (2.0 * h);
            assert!(
                (d.d[i] - fd).abs() < 1e-5 * fd.abs().max(1.0),
                "parameter {i}: {} vs {fd}",
                d.d[i]
            );
        }
    }

    /// A hand-written likelihood and gradient `(v, g)` at `at` equal the dual-number ones:
    /// the value to `tol[0]` relative, each derivative to `tol[1]` (relative above 1).
    fn assert_same_gradient<const N: usize>(
        at: &[f64; N],
        (v, g): (f64, [f64; N]),
        dual: &Dual<N>,
        tol: [f64; 2],
    ) {
        assert!(
            (v - dual.v).abs() <= tol[0] * dual.v.abs(),
            "{at:?}: {v} vs {}",
            dual.v
        );
        for (i, (gi, di)) in g.iter().zip(dual.d).enumerate() {
            assert!(
                (gi - di).abs() <= tol[1] * di.abs().max(1.0),
                "{at:?}: derivative {i}: {gi} vs {di}"
            );
        }
    }

    fn patterns() -> Vec<Pattern> {
        let mut rows = vec![
            Pattern {
                x: 0.0,
                tx: 0.0,
                t: 38.0,
                w: 3.0,
            },
            Pattern {
                x: 2.0,
                tx: 30.43,
                t: 38.86,
                w: 1.0,
            },
            Pattern {
                x: 1.0,
                tx: 1.71,
                t: 38.86,
                w: 2.0,
            },
            Pattern {
                x: 26.0,
                tx: 30.86,
                t: 31.0,
                w: 1.0,
            },
            Pattern {
                x: 5.0,
                tx: 12.0,
                t: 12.0,
                w: 1.0,
            },
        ];
        sort_patterns(&mut rows);
        rows
    }

    /// A chunked sum has the same bits on one thread and on several, covers every row once,
    /// for sums below and above the threshold of threads and chunk sizes from the smallest
    /// to the largest (and a last chunk of one row).
    #[test]
    fn chunked_sums_do_not_depend_on_the_threads() {
        let f = |r: Range<usize>| r.map(|i| 1.0 / (i as f64 + 0.3)).sum::<f64>();
        for n in [
            0, 1, 255, 257, 300, 2047, 2048, 4097, 5_000, 65_536, 65_537, 70_001,
        ] {
            // every row once: a sum of ones is n exactly
            assert_eq!(chunked_fold(n, 0.0, |r| r.len() as f64), n as f64, "{n}");
            assert_eq!(
                chunked_fold_on(2, n, 0.0, |r| r.len() as f64),
                n as f64,
                "{n}"
            );
            let one = chunked_fold_on(1, n, 0.0, f);
            assert_eq!(
                one.to_bits(),
                chunked_fold_on(2, n, 0.0, f).to_bits(),
                "{n}"
            );
            assert_eq!(
                one.to_bits(),
                chunked_fold_on(3, n, 0.0, f).to_bits(),
                "{n}"
            );
            assert_eq!(one.to_bits(), chunked_fold(n, 0.0, f).to_bits(), "{n}");
            let size = chunk_rows(n);
            assert!((MIN_CHUNK_ROWS..=CHUNK_ROWS).contains(&size), "{n}: {size}");
            if n >= CHUNKS * MIN_CHUNK_ROWS {
                assert!(n.div_ceil(size) >= CHUNKS, "{n}");
            }
        }
        // and it is the plain sum, to rounding
        let n = 70_001;
        let plain = f(0..n);
        assert!((chunked_fold(n, 0.0, f) - plain).abs() <= 1e-12 * plain);
    }

    /// Many patterns (several chunks, summed on several threads where the machine has
    /// cores): every likelihood equals the plain row-by-row sum to rounding, with the same
    /// gradient, and repeated evaluations give the same bits.
    #[test]
    fn chunked_parallel_sums_equal_the_sequential_sum() {
        let mut x: u64 = 9;
        let mut rand = |m: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        let mut rows: Vec<Pattern> = (0..3 * CHUNK_ROWS + 123)
            .map(|_| {
                let t = 10.0 + rand(300) as f64;
                let f = rand(6) as f64;
                let tx = if f == 0.0 {
                    0.0
                } else {
                    (1 + rand(t as u64)) as f64
                };
                Pattern {
                    x: f,
                    tx: tx.min(t),
                    t,
                    w: (1 + rand(3)) as f64,
                }
            })
            .collect();
        sort_patterns(&mut rows);
        let times = Times::new(&rows);
        let p: [Dual<4>; 4] = std::array::from_fn(|i| Dual::var([0.7, 15.0, 0.8, 2.5][i], i, 1.0));
        let one_chunk = |f: &dyn Fn(Range<usize>) -> Dual<4>| f(0..rows.len());
        let checks: [(Dual<4>, Dual<4>); 3] = [
            (
                bgnbd_ll_indexed(&p, &rows, &times),
                one_chunk(&|r| bgnbd_ll_rows(&p, &rows, &times, &times.ln_plus(p[1]), r)),
            ),
            (
                mbgnbd_ll_indexed(&p, &rows, &times),
                one_chunk(&|r| mbgnbd_ll_rows(&p, &rows, &times, &times.ln_plus(p[1]), r)),
            ),
            (
                pareto_nbd_ll(&p, &rows),
                rows.iter().fold(Dual::cst(0.0), |s, r| {
                    s + pareto_row_ll(&p, r.x, r.tx, r.t) * r.w
                }),
            ),
        ];
        for (k, (chunked, plain)) in checks.iter().enumerate() {
            assert!(
                (chunked.v - plain.v).abs() <= 1e-12 * plain.v.abs(),
                "{k}: value"
            );
            for i in 0..4 {
                assert!(
                    (chunked.d[i] - plain.d[i]).abs() <= 1e-10 * plain.d[i].abs().max(1.0),
                    "{k}: derivative {i}"
                );
            }
        }
        let again = bgnbd_ll_indexed(&p, &rows, &times);
        assert_eq!(again.v.to_bits(), checks[0].0.v.to_bits());
    }

    #[test]
    fn gradients_are_exact() {
        let rows = patterns();
        check_gradient(|p| bgnbd_ll(p, &rows), [0.24, 4.4, 0.79, 2.4]);
        check_gradient(|p| mbgnbd_ll(p, &rows), [0.52, 6.2, 0.89, 1.6]);
        check_gradient(|p| pareto_nbd_ll(p, &rows), [0.55, 10.6, 0.61, 11.7]);
        check_gradient(|p| pareto_nbd_ll(p, &rows), [0.55, 12.6, 0.61, 3.7]);
        // α = β, where the Pareto/NBD fits start (hypergeometric argument 0)
        check_gradient(|p| pareto_nbd_ll(p, &rows), [0.55, 10.6, 0.61, 10.6]);
        let spends = vec![
            Spend {
                x: 1.0,
                m: 20.0,
                w: 2.0,
            },
            Spend {
                x: 3.0,
                m: 35.5,
                w: 1.0,
            },
        ];
        check_gradient(|p| gamma_gamma_ll(p, &spends), [6.25, 3.74, 15.44]);
    }

    #[test]
    fn pareto_a0_by_series_and_by_quadrature_agree() {
        // the same A0 both ways, where both are accurate
        for (p, x, tx, t) in [
            ([0.55, 10.6, 0.61, 11.7], 2.0, 30.43, 38.86),
            ([0.55, 3.0, 0.61, 11.7], 26.0, 30.86, 31.0),
            ([1.5, 20.0, 0.3, 2.0], 5.0, 3.0, 40.0),
            ([0.5143, 2.8845, 0.2856, 14.1087], 221.0, 103.43, 103.57),
        ] {
            let series = pareto_ln_a0(&p, x, tx, t);
            let [r, alpha, s, beta] = p;
            let quad = (r + s + x).ln() + ln_power_integral(alpha, r + x, beta, s + 1.0, tx, t);
            assert!(
                (series - quad).abs() < 1e-10,
                "{p:?} {x} {tx} {t}: {series} vs {quad}"
            );
        }
        // a zero-width interval
        assert_eq!(
            pareto_ln_a0(&[0.5, 3.0, 0.6, 11.0], 3.0, 20.0, 20.0),
            f64::NEG_INFINITY
        );
    }

    /// Customers drawn from a BG/NBD process (r = 1, α = 20, a = 1, b = 3; daily ages of
    /// 10–310, whole-day times) plus a few heavy patterns, as sorted distinct patterns.
    fn random_patterns(n: usize, seed: u64) -> Vec<Pattern> {
        let mut state = seed;
        let mut unit = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut rows: Vec<Pattern> = (0..n)
            .map(|_| {
                let t = (10.0 + 300.0 * unit()).floor();
                let lambda = -unit().ln() / 20.0;
                let p = 1.0 - unit().powf(1.0 / 3.0);
                let (mut x, mut tx, mut now) = (0.0, 0.0, 0.0);
                loop {
                    now += -unit().ln() / lambda;
                    if now > t {
                        break;
                    }
                    x += 1.0;
                    tx = now.floor();
                    if unit() < p {
                        break;
                    }
                }
                let w = if unit() < 0.01 { 300.0 } else { 1.0 };
                Pattern { x, tx, t, w }
            })
            .collect();
        sort_patterns(&mut rows);
        rows.dedup_by(|b, a| {
            let same = (a.x, a.tx, a.t) == (b.x, b.tx, b.t);
            if same {
                a.w += b.w;
            }
            same
        });
        rows
    }

    /// 20k random patterns and the hand-made ones, sorted, with their time table: more rows
    /// than one chunk, so runs of equal x cross chunk boundaries.
    fn bgnbd_gradient_data() -> (Vec<Pattern>, Times) {
        let mut rows = random_patterns(20_000, 5);
        rows.extend(patterns());
        sort_patterns(&mut rows);
        let times = Times::new(&rows);
        (rows, times)
    }

    /// BG/NBD parameters: a moderate point, about CDNOW's optimum, and an extreme one.
    const BGNBD_GRADIENT_POINTS: [[f64; 4]; 3] = [
        [1.0, 20.0, 1.0, 3.0],
        [0.24, 4.4, 0.79, 2.4],
        [5.0, 0.5, 30.0, 0.2],
    ];

    /// The hand-written BG/NBD gradient equals the dual-number one (and so, through
    /// `check_gradient`, finite differences), at parameters near and far from a fit.
    #[test]
    fn bgnbd_hand_gradient_equals_the_dual_gradient() {
        let (rows, times) = bgnbd_gradient_data();
        for at in BGNBD_GRADIENT_POINTS {
            let dual = bgnbd_ll_indexed(
                &std::array::from_fn(|i| Dual::<4>::var(at[i], i, 1.0)),
                &rows,
                &times,
            );
            let (v, g) = bgnbd_ll_gradient(&at, &times);
            assert_same_gradient(&at, (v, g), &dual, [1e-12, 1e-9]);
            // as a Dual in log-parameter directions, like the fits use it
            let p: [Dual<4>; 4] = std::array::from_fn(|i| Dual::var(at[i], i, at[i]));
            let d = with_gradient(&p, v, g);
            for i in 0..4 {
                assert_eq!(d.d[i], g[i] * at[i]);
            }
        }
    }

    /// Asserts that the Hessian `h` at `at` (where the gradient is `g`) is the central
    /// difference of `gradient` (steps of 1e-6 of each parameter), entry by entry to 1e-5 of
    /// its row's scale, and symmetric.
    fn assert_hessian_is_differences_of_the_gradient<const N: usize>(
        at: [f64; N],
        g: [f64; N],
        h: [[f64; N]; N],
        gradient: impl Fn(&[f64; N]) -> [f64; N],
    ) {
        for j in 0..N {
            let step = 1e-6 * at[j];
            let shifted = |sign: f64| {
                let mut p = at;
                p[j] += sign * step;
                gradient(&p)
            };
            let (up, down) = (shifted(1.0), shifted(-1.0));
            for i in 0..N {
                let fd = (up[i] - down[i]) / (2.0 * step);
                // the scale of row i: its diagonal entry and the gradient's own size
                let scale = h[i][i].abs().max(g[i].abs() / at[i]).max(1.0);
                assert!(
                    (h[i][j] - fd).abs() < 1e-5 * scale,
                    "at {at:?}: H[{i}][{j}] = {} but differences give {fd}",
                    h[i][j]
                );
                assert_eq!(h[i][j], h[j][i]);
            }
        }
    }

    /// The hand-written BG/NBD Hessian equals central differences of the exact gradient,
    /// over more rows than one chunk (runs of equal x cross chunk boundaries), at parameters
    /// near and far from a fit; its gradient and value are the gradient function's.
    #[test]
    fn bgnbd_hessian_equals_differences_of_the_gradient() {
        let (_, times) = bgnbd_gradient_data();
        for at in BGNBD_GRADIENT_POINTS {
            let (v, g, h) = bgnbd_ll_gradient_hessian(&at, &times);
            assert_eq!((v, g), bgnbd_ll_gradient(&at, &times));
            assert_hessian_is_differences_of_the_gradient(at, g, h, |p| {
                bgnbd_ll_gradient(p, &times).1
            });
        }
    }

    /// Newton steps on the full data reach the optimum BFGS reaches, to the tolerance.
    #[test]
    fn bgnbd_newton_fit_equals_the_bfgs_fit() {
        let mut rows = random_patterns(60_000, 17);
        sort_patterns(&mut rows);
        let opts = FitOptions::default();
        let newton = fit_bgnbd(&rows, opts);
        let levels = PatternLevels::new(&rows);
        let bfgs_only = fit_levels(
            |p, l| {
                let (v, g) = bgnbd_ll_gradient(&p.map(|d| d.v), &levels.times[l]);
                with_gradient(p, v, g)
            },
            &levels.customers,
            [1.0, 10.0, 1.0, 1.0],
            opts,
        );
        assert!(newton.converged && bfgs_only.converged);
        for i in 0..4 {
            let (a, b) = (newton.params[i], bfgs_only.params[i]);
            assert!((a - b).abs() < 1e-6 * b, "parameter {i}: {a} vs {b}");
        }
        assert!(
            (newton.log_likelihood - bfgs_only.log_likelihood).abs()
                < 1e-10 * bfgs_only.log_likelihood.abs()
        );
    }

    /// Whole-period patterns pushed in order (in two parts appended, split anywhere: also
    /// inside a run of equal x) make the time table `Times::new` makes of the rows, and the
    /// BG/NBD fit of that table is the fit of the rows, bit for bit: on random data, with a
    /// few huge times (the distinct times sorted rather than tabled), and without a repeat
    /// purchase (not converged either way).
    #[test]
    fn fit_of_the_time_table_equals_the_fit_of_the_rows() {
        let whole_times = |rows: &[Pattern], split: usize| {
            let part = |rows: &[Pattern]| {
                let mut part = WholeTimes::with_capacity(rows.len());
                for r in rows {
                    part.push(r.x as u32, r.tx as u32, r.t as u32, r.w);
                }
                part
            };
            let mut times = part(&rows[..split]);
            times.reserve_touched(rows.len() - split);
            times.append(part(&rows[split..]));
            times.finish()
        };
        let random = random_patterns(60_000, 17);
        let mut huge = random_patterns(24_000, 3);
        huge.push(Pattern {
            x: 40.0,
            tx: 2_999_000.0,
            t: 4_000_000.0,
            w: 2.0,
        });
        sort_patterns(&mut huge);
        let no_repeat: Vec<Pattern> = (0..2_000)
            .map(|t| Pattern {
                x: 0.0,
                tx: 0.0,
                t: f64::from(t + 1),
                w: 1.0,
            })
            .collect();
        let opts = FitOptions::default();
        for (name, rows) in [("random", random), ("huge", huge), ("no repeat", no_repeat)] {
            let n = rows.len();
            // the random data have a coarse level (sampled through `Times::pattern`)
            assert_eq!(
                n >= LEVEL_FACTOR * LEVEL_MIN_ROWS,
                name != "no repeat",
                "{name}: {n}"
            );
            // a split inside the run of the x at the middle row
            let mid = n / 2;
            assert_eq!(rows[mid - 1].x, rows[mid].x, "{name}");
            let want = Times::new(&rows);
            for split in [0, 1, mid, n - 1, n] {
                let times = whole_times(&rows, split);
                assert_eq!(times, want, "{name}, split at {split}");
                assert_eq!(times.runs.len(), runs_by_x(&rows, |r| r.x).count());
            }
            let by_rows = fit_bgnbd(&rows, opts);
            assert_eq!(fit_bgnbd_times(want, opts), by_rows, "{name}");
            assert_eq!(by_rows.converged, name != "no repeat", "{name}");
        }
    }

    /// Newton converges in one step on a convex quadratic, and stops as not converged (for
    /// BFGS to take over) where the Hessian is not positive definite.
    #[test]
    fn newton_solves_quadratics_and_refuses_saddles() {
        // f = (x − 1)² + 3 (y + 2)² + (x − 1)(y + 2)
        let quadratic = |p: &[f64; 2], _: bool| {
            let (u, v) = (p[0] - 1.0, p[1] + 2.0);
            (
                u * u + 3.0 * v * v + u * v,
                [2.0 * u + v, 6.0 * v + u],
                [[2.0, 1.0], [1.0, 6.0]],
            )
        };
        let run = newton(quadratic, [1.5, -1.0], 50, 1e-12);
        assert!(run.converged);
        assert_eq!(run.iterations, 1);
        assert!((run.x[0] - 1.0).abs() < 1e-12 && (run.x[1] + 2.0).abs() < 1e-12);
        // f = x² − y²: a saddle
        let saddle = |p: &[f64; 2], _: bool| {
            (
                p[0] * p[0] - p[1] * p[1],
                [2.0 * p[0], -2.0 * p[1]],
                [[2.0, 0.0], [0.0, -2.0]],
            )
        };
        let run = newton(saddle, [1.0, 1.0], 50, 1e-12);
        assert!(!run.converged);
        assert_eq!(run.x, [1.0, 1.0]);
    }

    /// A point evaluated without the Hessian (its step was expected to converge) that turns
    /// out not converged is evaluated again with it, and Newton goes on. On f = x¹⁰ Newton
    /// shrinks x by 8/9 a step and the gradient 10x⁹ by (8/9)⁹ ≈ 0.35, so from a gradient
    /// of 3e-3 with tolerance 1e-3 (100 · 9e-6 < 1e-3: no Hessian asked) the next gradient
    /// is 1.04e-3, not yet converged.
    #[test]
    fn newton_asks_for_the_hessian_again_when_a_step_does_not_converge() {
        let calls = std::cell::RefCell::new(Vec::new());
        let f = |p: &[f64; 1], hessian: bool| {
            calls.borrow_mut().push(hessian);
            let x = p[0];
            (x.powi(10), [10.0 * x.powi(9)], [[90.0 * x.powi(8)]])
        };
        let x0 = (3e-4f64).powf(1.0 / 9.0);
        let run = newton(f, [x0], 50, 1e-3);
        assert!(run.converged);
        assert!(10.0 * run.x[0].powi(9) < 1e-3);
        // x0 with, x1 without, x1 again with, x2 without (converged)
        assert_eq!(*calls.borrow(), [true, false, true, false]);
    }

    /// Random spends over several chunks (sorted), with their ln m.
    fn gamma_gamma_test_spends() -> (Vec<Spend>, Vec<f64>) {
        let mut state = 11u64;
        let mut unit = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut rows: Vec<Spend> = (0..3 * CHUNK_ROWS + 17)
            .map(|_| Spend {
                x: (1.0 + 40.0 * unit() * unit()).floor(),
                m: (1.0 + 50_000.0 * unit().powi(3)).round() / 100.0,
                w: if unit() < 0.01 { 250.0 } else { 1.0 },
            })
            .collect();
        sort_spends(&mut rows);
        let ln_m: Vec<f64> = rows.iter().map(|r| r.m.ln()).collect();
        (rows, ln_m)
    }

    const GAMMA_GAMMA_POINTS: [[f64; 3]; 3] =
        [[6.25, 3.74, 15.44], [1.0, 2.0, 40.0], [0.3, 30.0, 0.5]];

    /// The hand-written Gamma-Gamma gradient equals the dual-number one (and so, through
    /// `check_gradient`, finite differences), over more rows than one chunk so runs of equal
    /// x cross chunk boundaries.
    #[test]
    fn gamma_gamma_hand_gradient_equals_the_dual_gradient() {
        let (rows, ln_m) = gamma_gamma_test_spends();
        for at in GAMMA_GAMMA_POINTS {
            let dual = gamma_gamma_ll(
                &std::array::from_fn(|i| Dual::<3>::var(at[i], i, 1.0)),
                &rows,
            );
            let (v, g) = gamma_gamma_ll_gradient(&at, &rows, &ln_m);
            assert!(v.is_finite() && v < 0.0, "{at:?}: {v}");
            assert_same_gradient(&at, (v, g), &dual, [1e-12, 1e-9]);
        }
    }

    /// The Gamma-Gamma Hessian is the central difference of the hand gradient, symmetric,
    /// and its value and gradient are the gradient path's, bit for bit.
    #[test]
    fn gamma_gamma_hessian_equals_differences_of_the_gradient() {
        let (rows, ln_m) = gamma_gamma_test_spends();
        for at in GAMMA_GAMMA_POINTS {
            let (v, g, h) = gamma_gamma_ll_gradient_hessian(&at, &rows, &ln_m);
            assert_eq!((v, g), gamma_gamma_ll_gradient(&at, &rows, &ln_m));
            assert_hessian_is_differences_of_the_gradient(at, g, h, |p| {
                gamma_gamma_ll_gradient(p, &rows, &ln_m).1
            });
        }
    }

    /// Newton steps on the full data end where BFGS alone ends, on data with coarse levels,
    /// and from near the optimum they finish the fit without BFGS.
    #[test]
    fn gamma_gamma_newton_fit_equals_the_bfgs_fit() {
        let (rows, ln_m) = gamma_gamma_test_spends();
        assert!(rows.len() >= LEVEL_FACTOR * LEVEL_MIN_ROWS);
        let opts = FitOptions::default();
        let newton = fit_gamma_gamma(&rows, opts);
        let bfgs_only = fit(
            |p| gamma_gamma_ll(p, &rows),
            rows.iter().map(|r| r.w).sum(),
            newton.params.map(|v| v * 1.5),
            opts,
        );
        assert!(newton.converged && bfgs_only.converged);
        for i in 0..3 {
            let (a, b) = (newton.params[i], bfgs_only.params[i]);
            assert!((a - b).abs() < 1e-6 * b, "parameter {i}: {a} vs {b}");
        }
        assert!(
            (newton.log_likelihood - bfgs_only.log_likelihood).abs()
                < 1e-10 * bfgs_only.log_likelihood.abs()
        );
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
        let (bfgs_calls, hessians) = (AtomicU32::new(0), AtomicU32::new(0));
        let full = |p: &[f64; 3], hessian: bool| {
            hessians.fetch_add(u32::from(hessian), Relaxed);
            gamma_gamma_full(p, &rows, &ln_m, hessian)
        };
        let only_newton = fit_levels_newton(
            |p, _| {
                bfgs_calls.fetch_add(1, Relaxed);
                let (v, g) = gamma_gamma_ll_gradient(&p.map(|d| d.v), &rows, &ln_m);
                with_gradient(p, v, g)
            },
            Some(&full),
            &[rows.iter().map(|r| r.w).sum()],
            newton.params.map(|v| v * 1.05),
            opts,
        );
        assert!(only_newton.converged);
        assert_eq!(bfgs_calls.load(Relaxed), 0, "BFGS took over");
        assert!(hessians.load(Relaxed) >= 1);
        for i in 0..3 {
            let (a, b) = (only_newton.params[i], newton.params[i]);
            assert!((a - b).abs() < 1e-6 * b, "parameter {i}: {a} vs {b}");
        }
    }

    /// The hand-written Pareto/NBD gradient equals the dual-number one: α < β, α > β, α = β
    /// (where fits start), a point where some rows need the quadrature (z > 0.9), and the
    /// issue's numerically hard customers.
    #[test]
    fn pareto_hand_gradient_equals_the_dual_gradient() {
        let mut rows = random_patterns(3_000, 6);
        rows.extend(patterns());
        for (x, tx, t) in [
            (221.0, 103.43, 103.57),
            (254.0, 97.14, 97.29),
            (161.0, 94.71, 98.0),
            (204.0, 98.57, 99.43),
        ] {
            rows.push(Pattern { x, tx, t, w: 1.0 });
        }
        sort_patterns(&mut rows);
        let times = Times::new(&rows);
        for at in [
            [0.55, 10.6, 0.61, 11.7],
            [0.55, 12.6, 0.61, 3.7],
            [0.55, 10.6, 0.61, 10.6],
            [0.5143, 2.8845, 0.2856, 14.1087],
            [1.2, 0.05, 0.8, 300.0],
            [2.0, 400.0, 0.3, 0.02],
        ] {
            let dual = pareto_nbd_ll(
                &std::array::from_fn(|i| Dual::<4>::var(at[i], i, 1.0)),
                &rows,
            );
            let (v, g) = pareto_ll_gradient(&at, &rows, &times);
            assert!(dual.v.is_finite(), "{at:?}");
            assert_same_gradient(&at, (v, g), &dual, [1e-11, 1e-8]);
        }
    }

    /// Whole-number and fractional times index the same sorted distinct values.
    #[test]
    fn times_index_whole_and_fractional_times() {
        let rows = random_patterns(5_000, 8);
        let whole = Times::whole_numbers(&rows).expect("day counts");
        let hashed = Times::hashed(&rows);
        assert_eq!(whole.values, hashed.values);
        assert_eq!((&whole.tx, &whole.t), (&hashed.tx, &hashed.t));
        assert!(whole.values.is_sorted());
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(whole.values[whole.tx[i] as usize], r.tx);
            assert_eq!(whole.values[whole.t[i] as usize], r.t);
        }
        let weeks: Vec<Pattern> = rows
            .iter()
            .map(|r| Pattern {
                tx: r.tx / 7.0,
                t: r.t / 7.0,
                ..*r
            })
            .collect();
        assert!(Times::whole_numbers(&weeks).is_none());
        let times = Times::new(&weeks);
        assert!(times.values.windows(2).all(|w| w[0] < w[1]));
        for (i, r) in weeks.iter().enumerate() {
            assert_eq!(times.values[times.tx[i] as usize], r.tx);
            assert_eq!(times.values[times.t[i] as usize], r.t);
        }
        // one customer with a huge whole time: a table that large is not worth it
        let mut huge = rows.clone();
        huge[2_500].t = 4_000_000.0;
        assert!(Times::whole_numbers(&huge).is_none());
        let times = Times::new(&huge);
        for (i, r) in huge.iter().enumerate() {
            assert_eq!(times.values[times.t[i] as usize], r.t);
        }
    }

    #[test]
    fn two_thread_sort_equals_a_plain_sort() {
        for n in [10, 70_000, 200_001] {
            let mut rows = random_patterns(n, 21);
            // shuffle deterministically, then sort both ways
            let len = rows.len();
            for i in 0..len {
                rows.swap(i, (i * 7919 + 13) % len);
            }
            let mut plain = rows.clone();
            plain.sort_unstable_by(|a, b| {
                a.x.total_cmp(&b.x)
                    .then(a.tx.total_cmp(&b.tx))
                    .then(a.t.total_cmp(&b.t))
            });
            sort_patterns(&mut rows);
            assert_eq!(rows, plain, "n = {n}");
        }
    }

    #[test]
    fn coarse_levels_keep_order_total_and_heavy_rows() {
        let rows = random_patterns(40_000, 3);
        let levels = coarse_levels(&rows, 100, |r| r.w, |r, w| Pattern { w, ..r });
        assert!(levels.len() >= 2, "{} levels", levels.len());
        let total: f64 = rows.iter().map(|r| r.w).sum();
        let mut finer = rows.as_slice();
        for (i, level) in levels.iter().enumerate() {
            assert!(level.len() >= 100 && level.len() <= finer.len() / LEVEL_FACTOR + 1);
            let sum: f64 = level.iter().map(|r| r.w).sum();
            assert!((sum - total).abs() < 1e-9 * total, "{sum} vs {total}");
            // a subsequence of the finer level, in its order
            let mut it = finer.iter();
            for r in level {
                assert!(it.any(|f| (f.x, f.tx, f.t) == (r.x, r.tx, r.t)));
            }
            // every row heavier than the sampling step is kept
            let step = total / (finer.len() / LEVEL_FACTOR) as f64;
            let key = |r: &Pattern| [r.x.to_bits(), r.tx.to_bits(), r.t.to_bits()];
            let kept: std::collections::HashSet<[u64; 3]> = level.iter().map(key).collect();
            let heavy: Vec<&Pattern> = finer.iter().filter(|r| r.w >= step).collect();
            assert!(i > 0 || !heavy.is_empty());
            assert!(heavy.iter().all(|r| kept.contains(&key(r))));
            finer = level;
        }
        assert!(coarse_levels(&rows[..100], 200, |r| r.w, |r, w| Pattern { w, ..r }).is_empty());
    }

    /// The coarse-to-fine fit ends where a plain BFGS from the same start ends (only level 0
    /// decides), with fewer evaluations of the full data.
    #[test]
    fn warm_started_fit_equals_the_single_level_fit() {
        let rows = random_patterns(30_000, 11);
        let coarse = coarse_levels(&rows, 200, |r| r.w, |r, w| Pattern { w, ..r });
        assert!(!coarse.is_empty());
        let times: Vec<Times> = (0..=coarse.len())
            .map(|l| Times::new(level_rows(&rows, &coarse, l)))
            .collect();
        let customers: Vec<f64> = (0..=coarse.len())
            .map(|l| level_rows(&rows, &coarse, l).iter().map(|r| r.w).sum())
            .collect();
        let full_evaluations = std::sync::atomic::AtomicUsize::new(0);
        let opts = FitOptions::default();
        let start = [1.0, 20.0, 1.0, 1.0];
        let warm = fit_levels(
            |p, l| {
                if l == 0 {
                    full_evaluations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                bgnbd_ll_indexed(p, level_rows(&rows, &coarse, l), &times[l])
            },
            &customers,
            start,
            opts,
        );
        let warm_evaluations = full_evaluations.swap(0, std::sync::atomic::Ordering::Relaxed);
        let cold = fit(
            |p| {
                full_evaluations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                bgnbd_ll_indexed(p, &rows, &times[0])
            },
            customers[0],
            start,
            opts,
        );
        let cold_evaluations = full_evaluations.load(std::sync::atomic::Ordering::Relaxed);
        assert!(warm.converged && cold.converged, "{warm:?} {cold:?}");
        for (w, c) in warm.params.iter().zip(cold.params) {
            assert!(
                (w - c).abs() < 1e-6 * c,
                "{:?} vs {:?}",
                warm.params,
                cold.params
            );
        }
        let direct = bgnbd_ll_indexed(&warm.params, &rows, &times[0]);
        assert!((warm.log_likelihood - direct).abs() < 1e-9 * direct.abs());
        assert!(
            warm_evaluations * 2 < cold_evaluations,
            "{warm_evaluations} evaluations of the full data warm, {cold_evaluations} cold"
        );
    }

    #[test]
    fn bfgs_finds_the_minimum_of_a_quadratic() {
        let f = |x: &[f64; 2]| {
            let (a, b) = (x[0] - 1.0, x[1] + 2.0);
            (a * a + 10.0 * b * b + a * b, [2.0 * a + b, 20.0 * b + a])
        };
        let run = bfgs(f, [5.0, 5.0], None, 100, 1e-12);
        let (x, converged) = (run.x, run.converged);
        assert!(converged);
        assert!((x[0] - 1.0).abs() < 1e-10 && (x[1] + 2.0).abs() < 1e-10);
    }

    #[test]
    fn periods_floor_like_pandas() {
        let day = |y: i64, m: i64, d: i64| {
            // days from civil
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let mp = (m + 9) % 12;
            let doy = (153 * mp + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        };
        let us = |d: i64| d * MICROS_PER_DAY + 5;
        assert_eq!(Period::Day.of_micros(us(day(1970, 1, 2))), 1);
        assert_eq!(Period::Day.of_micros(-1), -1);
        // 2025-01-06 is a Monday: Sunday 2025-01-05 is in the previous week
        let w = Period::Week.of_micros(us(day(2025, 1, 6)));
        assert_eq!(Period::Week.of_micros(us(day(2025, 1, 12))), w);
        assert_eq!(Period::Week.of_micros(us(day(2025, 1, 5))), w - 1);
        assert_eq!(
            Period::Month.of_micros(us(day(2024, 2, 29)))
                - Period::Month.of_micros(us(day(2023, 12, 31))),
            2
        );
        assert_eq!(
            Period::Month.of_micros(us(day(1969, 12, 31))),
            Period::Month.of_micros(0) - 1
        );
    }

    #[test]
    fn expectations_over_many_horizons_equal_one_at_a_time() {
        let mut horizons = Vec::new();
        month_horizons(40, 30.0, &mut horizons);
        assert_eq!(horizons[0], 30.0);
        assert_eq!(horizons[39], 1200.0);
        horizons.push(0.0);
        type Many = fn(&[f64; 4], &[f64], f64, f64, f64, &mut [f64]);
        type One = fn(&[f64; 4], f64, f64, f64, f64) -> f64;
        let models: [(Many, One, [f64; 4]); 4] = [
            (
                bgnbd_expected_many,
                bgnbd_expected,
                [0.24, 30.0, 0.79, 2.43],
            ),
            // a at the removable singularity
            (
                bgnbd_expected_many,
                bgnbd_expected,
                [0.5, 5.0, 1.0 + 3e-6, 2.0],
            ),
            (
                mbgnbd_expected_many,
                mbgnbd_expected,
                [0.52, 43.0, 0.89, 1.61],
            ),
            (
                pareto_nbd_expected_many,
                pareto_nbd_expected,
                [0.55, 74.0, 0.61, 81.7],
            ),
        ];
        for (many, one, p) in models {
            for [x, tx, t] in [[0.0, 0.0, 200.0], [3.0, 100.0, 380.0], [60.0, 700.0, 701.0]] {
                let mut out = vec![f64::NAN; horizons.len()];
                many(&p, &horizons, x, tx, t, &mut out);
                for (&h, &e) in horizons.iter().zip(&out) {
                    assert_eq!(
                        e.to_bits(),
                        one(&p, h, x, tx, t).to_bits(),
                        "{p:?} ({x}, {tx}, {t}) h {h}"
                    );
                    assert!(
                        e.is_finite() && e >= 0.0,
                        "{p:?} ({x}, {tx}, {t}) h {h}: {e}"
                    );
                }
                assert_eq!(
                    *out.last().unwrap(),
                    0.0,
                    "nothing is expected within 0 periods"
                );
                assert!(
                    out.windows(2).take(39).all(|w| w[0] < w[1]),
                    "{p:?}: {out:?}"
                );
            }
        }
    }

    #[test]
    fn discounted_increments_sum_the_monthly_increments() {
        // E = 1, 3, 4 purchases within 1, 2, 3 months, spend 10, 10 % a month
        let v = 10.0 * discounted_increments(&[1.0, 3.0, 4.0], 0.1);
        assert!((v - (10.0 / 1.1 + 20.0 / 1.21 + 10.0 / 1.331)).abs() < 1e-12);
        assert_eq!(discounted_increments(&[], 0.1), 0.0);
    }

    #[test]
    fn predictions_at_the_removable_singularity_are_continuous() {
        let at = |a: f64| bgnbd_expected(&[0.5, 5.0, a, 2.0], 10.0, 2.0, 5.0, 8.0);
        let (below, exact, above) = (at(1.0 - 2e-5), at(1.0), at(1.0 + 2e-5));
        assert!(exact.is_finite());
        assert!((exact - (below + above) / 2.0).abs() < 1e-6 * exact);
        let m = |a: f64| mbgnbd_expected(&[0.5, 5.0, a, 2.0], 10.0, 2.0, 5.0, 8.0);
        assert!((m(1.0) - (m(1.0 - 2e-5) + m(1.0 + 2e-5)) / 2.0).abs() < 1e-6 * m(1.0));
    }

    /// Curves computed with one [`AgeTerms`] carried from customer to customer (ages that
    /// repeat, change and come back; `a` changing, and `a` within the removable singularity,
    /// where each curve needs the terms at two values of a; different horizons) have the bits
    /// of curves computed afresh.
    #[test]
    fn curves_sharing_age_terms_equal_fresh_ones() {
        let horizons_12: Vec<f64> = (1..=12).map(|m| 30.0 * m as f64).collect();
        let horizons_3 = [7.0, 14.0, 28.0];
        let mut age = AgeTerms::default();
        let mut compared = 0;
        // horizons outermost, so that consecutive customers of one age reuse the terms: a key
        // that missed the age, a or the horizons would hand a curve another's terms
        for horizons in [&horizons_12[..], &horizons_3[..]] {
            for a in [1.4531617080209847, 0.85, 1.000_004, 2.6] {
                let p = [
                    1.2634702234321793,
                    18.249839327942254,
                    a,
                    13.406410808107518,
                ];
                for (x, t) in [
                    (0.0, 40.0),
                    (3.0, 40.0),
                    (17.0, 40.0),
                    (3.0, 41.0),
                    (1.0, 40.0),
                ] {
                    for mbg in [false, true] {
                        let n = horizons.len();
                        let (mut shared, mut fresh) = (vec![0.0; n], vec![0.0; n]);
                        bg_family_curve_with(mbg, &p, horizons, x, t, &mut shared, &mut age);
                        bg_family_curve(mbg, &p, horizons, x, t, &mut fresh);
                        assert!(fresh.iter().all(|v| v.is_finite() && *v > 0.0), "{fresh:?}");
                        let bits = |v: &[f64]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&shared),
                            bits(&fresh),
                            "a {a}, x {x}, T {t}, mbg {mbg}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 80);
    }
}
