//! Predictions from fitted models: expected purchases, P(alive), expected spend and
//! discounted customer lifetime value. Each takes the struct a `*_fit` aggregate returns as
//! its first argument: a column, so different rows may use different models (e.g. one per
//! segment), or a scalar (a scalar subquery over the fit), which is read and checked once per
//! batch instead of being repeated into every row.
//!
//! The common case of a batch, `*_expected_purchases` or `customer_lifetime_value` with every
//! model and option a scalar (one BG/NBD-family model for all rows) and customer columns free
//! of NULLs, goes through the columns in a few passes ([`curve_columns`]: validity,
//! denominators with ln(α + time) from a table of whole periods, the cached curve values, the
//! values) instead of row by row. It needs the customer arguments to be columns and the
//! models, horizon and options to be valid; every other batch, and any batch with an invalid
//! customer (so that the first one is reported as always), takes the row-by-row path. Both
//! give the same bits and the same errors, a value that is not finite included (tested).

use std::sync::{Arc, LazyLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{HashMap, Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::fit::ModelKind;
use super::model::{self, Period};
use crate::args::{Kind, Param, check_arg_fields, doc_section, f64_column, param, signature};

/// What a prediction function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Expected(ModelKind),
    Alive(ModelKind),
    Spend,
    Lifetime,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Expected(ModelKind::BgNbd) => "bgnbd_expected_purchases",
            Self::Expected(ModelKind::MbgNbd) => "mbgnbd_expected_purchases",
            Self::Expected(_) => "pareto_nbd_expected_purchases",
            Self::Alive(ModelKind::BgNbd) => "bgnbd_p_alive",
            Self::Alive(ModelKind::MbgNbd) => "mbgnbd_p_alive",
            Self::Alive(_) => "pareto_nbd_p_alive",
            Self::Spend => "gamma_gamma_expected_spend",
            Self::Lifetime => "customer_lifetime_value",
        }
    }

    fn params(self) -> &'static [Param] {
        const EXPECTED: [Param; 5] = [
            param("model", Kind::Struct),
            param("t", Kind::Number),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
        ];
        const ALIVE: [Param; 4] = [
            param("model", Kind::Struct),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
        ];
        const SPEND: [Param; 3] = [
            param("model", Kind::Struct),
            param("frequency", Kind::Number),
            param("monetary_value", Kind::Number),
        ];
        const LIFETIME: [Param; 9] = [
            param("purchase_model", Kind::Struct),
            param("spend_model", Kind::Struct),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
            param("monetary_value", Kind::Number),
            param("horizon_months", Kind::Integer),
            param("discount_rate", Kind::Number),
            param("days_per_month", Kind::Number),
        ];
        match self {
            Self::Expected(_) => &EXPECTED,
            Self::Alive(_) => &ALIVE,
            Self::Spend => &SPEND,
            Self::Lifetime => &LIFETIME,
        }
    }

    fn required(self) -> usize {
        match self {
            Self::Lifetime => 6,
            _ => self.params().len(),
        }
    }
}

/// A prediction scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Predict {
    op: Op,
    signature: Signature,
    curves: CurveCache,
}

impl Predict {
    pub fn new(op: Op) -> Self {
        Self {
            op,
            signature: signature(op.params(), op.required(), Volatility::Immutable),
            curves: CurveCache::default(),
        }
    }
}

/// What a BG/NBD-family prediction computes from a customer's curve
/// ([`model::bg_family_curve`]), apart from the customer: the model, the horizons `step`,
/// 2·`step`, …, `count`·`step`, and either the curve's last value (`rate` None, for the
/// expected purchases) or its monthly increments discounted at `rate` (for CLV). Floats by
/// their bits, so equal keys give bit-identical values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Curve {
    mbg: bool,
    params: [u64; 4],
    step: u64,
    count: u32,
    rate: Option<u64>,
}

impl Curve {
    fn new(kind: ModelKind, p: &[f64; 4], step: f64, count: u32, rate: Option<f64>) -> Self {
        Self {
            mbg: kind == ModelKind::MbgNbd,
            params: p.map(f64::to_bits),
            step: step.to_bits(),
            count,
            rate: rate.map(f64::to_bits),
        }
    }

    /// The value for a customer with frequency `x` and age `t`; `scratch` is reused (and
    /// keeps the age terms of the last age: see [`model::AgeTerms`]).
    fn value(&self, x: f64, t: f64, scratch: &mut CurveScratch) -> f64 {
        let p = self.params.map(f64::from_bits);
        let step = f64::from_bits(self.step);
        let n = self.count as usize;
        let buffer = &mut scratch.buffer;
        model::month_horizons(self.count, step, buffer);
        buffer.resize(2 * n, 0.0);
        let (horizons, curve) = buffer.split_at_mut(n);
        model::bg_family_curve_with(self.mbg, &p, horizons, x, t, curve, &mut scratch.age);
        match self.rate {
            None => curve.last().copied().unwrap_or(0.0),
            Some(rate) => model::discounted_increments(curve, f64::from_bits(rate)),
        }
    }
}

/// What [`Curve::value`] reuses from one call to the next.
#[derive(Default)]
struct CurveScratch {
    buffer: Vec<f64>,
    age: model::AgeTerms,
}

/// A customer's (frequency, T), by their bits.
type Customer = [u64; 2];

/// At most this many bytes are held (values, their grid rows and hash maps, and
/// [`CURVE_BYTES`] per curve): when a batch's new values take the cache past it, the cache
/// keeps only them, or nothing when they alone pass it.
const MAX_CACHED_BYTES: usize = 12 << 20;

/// What a value in a curve's hash map costs, in bytes: its key and value (24 bytes) at the
/// map's lowest load after growing (7/16), with its control byte.
const HASHED_BYTES: usize = 57;

/// What a curve's own entry (its key and empty tables) costs, in bytes: so a query whose rows
/// each bring a curve of their own (say, a different horizon per row) stays bounded too.
const CURVE_BYTES: usize = 512;

/// The values computed so far, by curve and customer, shared by every query of the process
/// (the functions are singletons) and bounded by [`MAX_CACHED_BYTES`]. The curve is the
/// expensive part of a BG/NBD or MBG/NBD prediction (a hypergeometric series per horizon)
/// and depends on the customer only through (frequency, T): in a day-granular summary,
/// hundreds of thousands of customers share a few tens of thousands of (frequency, T)
/// pairs, so most rows are a lookup ([`CurveValues`]). A value from the cache is bit for bit
/// the value computed afresh.
struct CurveCache {
    values: RwLock<Values>,
    limit: usize,
}

#[derive(Default)]
struct Values {
    by_curve: HashMap<Curve, CurveValues>,
    /// Bytes held: what [`MAX_CACHED_BYTES`] bounds.
    size: usize,
}

/// Whole numbers below this many frequencies have grid rows ([`CurveValues`]).
const GRID_ROWS: usize = 1 << 12;

/// A curve's grid rows may span this many ages beyond [`GRID_DENSITY`] per value they hold.
const GRID_SLACK: usize = 4096;

/// A curve's grid rows span at most this many ages per value they hold, beyond
/// [`GRID_SLACK`] (in all: a sparse row may take more, a dense one takes fewer): the slots
/// cost at most about as much per value as a hash map's entries do.
const GRID_DENSITY: usize = 8;

/// One curve's values. A customer of whole frequency x (below [`GRID_ROWS`]) and whole age
/// T is looked up in row x of a grid, at T's slot, when the row spans T: no hashing and no
/// branch that depends on the key, so the lookups of a batch are independent loads that the
/// CPU overlaps (with a hash map, each lookup waited on its own cache miss: most of the
/// lookup pass's time on the benchmark's 880k customers). A row spans the ages from its
/// first value's on, grown to take a new age while the grid stays dense ([`GRID_DENSITY`]);
/// every other value (fractional times, ages the grid cannot span, a value that is NaN) is in
/// `map`.
#[derive(Default)]
struct CurveValues {
    rows: Vec<GridRow>,
    /// The rows' slots, and the values they hold.
    slots: usize,
    held: usize,
    map: HashMap<Customer, f64>,
}

/// Values of ages `start`, `start` + 1, … of one frequency; NaN where none is held.
#[derive(Default)]
struct GridRow {
    start: usize,
    values: Vec<f64>,
}

/// `bits` as an index, when they are a whole number below `limit` (+0.0 but not −0.0, whose
/// bits differ: keys are bits).
#[inline(always)]
fn whole_index(bits: u64, limit: usize) -> Option<usize> {
    let i = f64::from_bits(bits) as usize;
    ((i as f64).to_bits() == bits && i < limit).then_some(i)
}

impl Values {
    /// Add `fresh` values, the customer of each on `curves[its index]`; false as soon as the
    /// bytes held pass `limit` (the rest then not added).
    fn add(&mut self, curves: &[Curve], fresh: &[((usize, Customer), f64)], limit: usize) -> bool {
        for &((curve, customer), v) in fresh {
            let mut added = 0;
            let values = self.by_curve.entry(curves[curve]).or_insert_with(|| {
                added += CURVE_BYTES;
                CurveValues::default()
            });
            added += values.insert(customer, v);
            self.size += added;
            if self.size > limit {
                return false;
            }
        }
        true
    }
}

impl CurveValues {
    #[inline(always)]
    fn get(&self, customer: Customer) -> Option<f64> {
        let [x, t] = customer;
        if let (Some(row), Some(t)) = (
            whole_index(x, GRID_ROWS).and_then(|x| self.rows.get(x)),
            whole_index(t, usize::MAX),
        ) && let Some(&v) = row.values.get(t.wrapping_sub(row.start))
            && !v.is_nan()
        {
            return Some(v);
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&customer).copied()
    }

    /// Values held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held + self.map.len()
    }

    /// Bytes held: the grid's rows and slots, and the map's values (what [`Self::insert`]
    /// reports as it adds them).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<GridRow>()
            + self
                .rows
                .iter()
                .map(|r| r.values.capacity() * std::mem::size_of::<f64>())
                .sum::<usize>()
            + self.map.len() * HASHED_BYTES
    }

    /// Hold `v` for `customer` (kept if already held: another partition may have added the
    /// same value meanwhile); returns the bytes this added.
    fn insert(&mut self, customer: Customer, v: f64) -> usize {
        let [x, t] = customer;
        if !v.is_nan()
            && let (Some(x), Some(t)) = (
                whole_index(x, GRID_ROWS),
                whole_index(t, usize::MAX - GRID_SLACK),
            )
            && (self.map.is_empty() || !self.map.contains_key(&customer))
        {
            let rows_before = self.rows.capacity();
            if self.rows.len() <= x {
                self.rows.resize_with(x + 1, GridRow::default);
            }
            let rows_added = (self.rows.capacity() - rows_before) * std::mem::size_of::<GridRow>();
            // the slots the grid may still add and stay dense with this value
            let budget = (GRID_SLACK + GRID_DENSITY * (self.held + 1)).saturating_sub(self.slots);
            let row = &mut self.rows[x];
            let (len, capacity) = (row.values.len(), row.values.capacity());
            if let Some(new) = row.insert(t, v, budget) {
                self.slots += row.values.len() - len;
                self.held += usize::from(new);
                let slots_added = row.values.capacity() - capacity;
                return rows_added + slots_added * std::mem::size_of::<f64>();
            }
            // (the row stays: rows are few, and their bytes are counted)
            return rows_added + self.insert_hashed(customer, v);
        }
        self.insert_hashed(customer, v)
    }

    fn insert_hashed(&mut self, customer: Customer, v: f64) -> usize {
        match self.map.insert(customer, v) {
            None => HASHED_BYTES,
            Some(_) => 0,
        }
    }
}

impl GridRow {
    /// Hold `v` at age `t` if the row spans it or may grow to, adding at most `budget` slots;
    /// returns whether the value is new, None when it does not go in the row.
    fn insert(&mut self, t: usize, v: f64, budget: usize) -> Option<bool> {
        if self.values.is_empty() {
            self.start = t;
        }
        let (lo, hi) = (
            self.start.min(t),
            (self.start + self.values.len()).max(t + 1),
        );
        let len = self.values.len();
        if hi - lo > len + budget {
            return None;
        }
        if lo < self.start {
            // an age below the row's: the slots move up, with room below for more such ages
            // (within the budget), as a later batch may bring them one by one
            let room = (len / 2).min(lo).min(len + budget - (hi - lo));
            let lo = lo - room;
            let mut values = Vec::with_capacity((hi - lo).max(self.values.capacity()));
            values.resize(self.start - lo, f64::NAN);
            values.extend_from_slice(&self.values);
            self.values = values;
            self.start = lo;
        }
        if hi > self.start + self.values.len() {
            self.values.resize(hi - self.start, f64::NAN);
        }
        let slot = &mut self.values[t - self.start];
        let new = slot.is_nan();
        if new {
            *slot = v;
        }
        Some(new)
    }
}

impl Default for CurveCache {
    fn default() -> Self {
        Self::with_limit(MAX_CACHED_BYTES)
    }
}

impl CurveCache {
    fn with_limit(limit: usize) -> Self {
        Self {
            values: RwLock::default(),
            limit,
        }
    }

    /// The values, for lookups: the partitions read at the same time.
    fn read(&self) -> RwLockReadGuard<'_, Values> {
        // a panic elsewhere cannot leave a half-written entry: the maps are only inserted into
        self.values.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The values, to add to them.
    fn write(&self) -> RwLockWriteGuard<'_, Values> {
        self.values.write().unwrap_or_else(|e| e.into_inner())
    }
}

// The cache is not part of the function's identity.
impl PartialEq for CurveCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for CurveCache {}
impl std::hash::Hash for CurveCache {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl std::fmt::Debug for CurveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CurveCache({} bytes)", self.read().size)
    }
}

/// Planning-time check that a struct argument carries the fields of `kinds`' models.
fn check_model_type(function: &str, arg: &str, t: &DataType, kinds: &[ModelKind]) -> Result<()> {
    let DataType::Struct(fields) = t else {
        if t.is_null() {
            return Ok(());
        }
        return plan_err!("{function}: argument '{arg}' must be a fitted model struct, got {t}");
    };
    let has = |n: &str| fields.find(n).is_some();
    let fits = kinds
        .iter()
        .any(|k| has("model") && k.params().iter().all(|p| has(p)));
    if !fits {
        let wanted: Vec<String> = kinds
            .iter()
            .map(|k| format!("{}_fit(...)", k.tag()))
            .collect();
        return plan_err!(
            "{function}: argument '{arg}' must be the struct returned by {}, got {t}",
            wanted.join(" or ")
        );
    }
    Ok(())
}

/// An argument's values: the column, or a scalar (a literal, a scalar subquery) kept as one
/// row that every row reads, so it is never repeated into a column of the batch's length.
fn one_row_or_column(v: &ColumnarValue) -> Result<(ArrayRef, bool)> {
    Ok(match v {
        ColumnarValue::Array(a) => (Arc::clone(a), false),
        ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
    })
}

/// The row of an argument that row `i` reads: row 0 of a scalar (see [`one_row_or_column`]).
fn row_read(scalar: bool, i: usize) -> usize {
    if scalar { 0 } else { i }
}

/// What `derive(key)` gives, unless `last` already holds it for `key`: a model's checks and
/// parameters are derived once per run of rows reading the same model row (once per batch for a
/// scalar model), and an error is returned as soon as it is found.
fn derived<K: PartialEq + Copy, V: Copy>(
    last: &mut Option<(K, V)>,
    key: K,
    derive: impl FnOnce() -> Result<V>,
) -> Result<V> {
    match *last {
        Some((k, v)) if k == key => Ok(v),
        _ => {
            let v = derive()?;
            *last = Some((key, v));
            Ok(v)
        }
    }
}

/// A numeric argument as Float64 (see [`one_row_or_column`]).
struct Numbers {
    values: Float64Array,
    scalar: bool,
}

impl Numbers {
    fn new(v: &ColumnarValue) -> Result<Self> {
        let (a, scalar) = one_row_or_column(v)?;
        Ok(Self {
            values: f64_column(&a)?,
            scalar,
        })
    }

    fn row(&self, i: usize) -> usize {
        row_read(self.scalar, i)
    }

    fn is_null(&self, i: usize) -> bool {
        self.values.is_null(self.row(i))
    }

    fn value(&self, i: usize) -> f64 {
        self.values.value(self.row(i))
    }
}

/// Rows of a model struct argument: model tag, parameters and period per row (one row for
/// every row when the model is a scalar, see [`one_row_or_column`]).
struct Models {
    tags: StringArray,
    params: Vec<Float64Array>,
    periods: Option<StringArray>,
    nulls: Option<datafusion::arrow::buffer::NullBuffer>,
    /// The struct itself (None for an untyped NULL).
    fields: Option<datafusion::arrow::array::StructArray>,
    scalar: bool,
}

impl Models {
    fn new(v: &ColumnarValue, names: &[&str]) -> Result<Self> {
        let (a, scalar) = one_row_or_column(v)?;
        if a.data_type().is_null() {
            let n = a.len();
            return Ok(Self {
                tags: StringArray::new_null(n),
                params: vec![],
                periods: None,
                nulls: Some(datafusion::arrow::buffer::NullBuffer::new_null(n)),
                fields: None,
                scalar,
            });
        }
        let s = a.as_struct();
        let field = |n: &str| -> Result<&ArrayRef> {
            s.column_by_name(n).ok_or_else(|| {
                datafusion::common::DataFusionError::Execution(format!(
                    "model struct has no field '{n}'"
                ))
            })
        };
        let tags = cast(field("model")?, &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        let params = names
            .iter()
            .map(|n| f64_column(field(n)?))
            .collect::<Result<Vec<_>>>()?;
        let periods = match s.column_by_name("period") {
            Some(p) => Some(cast(p, &DataType::Utf8)?.as_string::<i32>().clone()),
            None => None,
        };
        Ok(Self {
            tags,
            params,
            periods,
            nulls: s.logical_nulls(),
            fields: Some(s.clone()),
            scalar,
        })
    }

    fn row(&self, i: usize) -> usize {
        row_read(self.scalar, i)
    }

    fn is_null(&self, i: usize) -> bool {
        let i = self.row(i);
        self.nulls.as_ref().is_some_and(|n| n.is_null(i))
            || self.tags.is_null(i)
            || self.params.iter().any(|p| p.is_null(i))
    }

    fn tag(&self, i: usize) -> &str {
        self.tags.value(self.row(i))
    }

    fn kind(&self, i: usize) -> Option<ModelKind> {
        ModelKind::from_tag(self.tag(i))
    }

    fn get<const N: usize>(&self, i: usize) -> [f64; N] {
        let i = self.row(i);
        std::array::from_fn(|k| self.params[k].value(i))
    }

    fn period(&self, i: usize) -> Option<&str> {
        let i = self.row(i);
        self.periods
            .as_ref()
            .filter(|p| p.is_valid(i))
            .map(|p| p.value(i))
    }
}

/// Whether (x, t_x, T) is a customer the models take: [`check_customer`]'s test, without
/// branches (the column passes test whole columns with it, see [`valid_customers`]).
#[inline]
fn valid_customer(x: f64, tx: f64, t: f64) -> bool {
    // (comparisons with NaN are false, so NaN fails `x >= 0.0` and the others)
    x.is_finite()
        & tx.is_finite()
        & t.is_finite()
        & (x >= 0.0)
        & (tx >= 0.0)
        & (tx <= t)
        & ((x != 0.0) | (tx == 0.0))
}

fn check_customer(function: &str, x: f64, tx: f64, t: f64) -> Result<()> {
    if !valid_customer(x, tx, t) {
        return exec_err!(
            "{function}: invalid customer (frequency {x}, recency {tx}, T {t}): need frequency >= 0, \
             0 <= recency <= T, and recency 0 when frequency is 0"
        );
    }
    Ok(())
}

fn purchase_names(kind: ModelKind) -> &'static [&'static str] {
    kind.params()
}

/// Rows of a batch whose BG/NBD-family prediction waits for its curve's value
/// ([`CurveCache`]): the row, the curve (an index into `curves`, the batch's distinct ones),
/// the customer, the recency-dependent denominator and, for CLV, the expected spend.
#[derive(Default)]
struct Pending {
    curves: Vec<Curve>,
    index: HashMap<Curve, usize>,
    rows: Vec<PendingRow>,
}

struct PendingRow {
    row: usize,
    curve: usize,
    customer: Customer,
    denominator: f64,
    spend: f64,
}

impl Pending {
    /// Row `row`, a customer (x, t_x, T) under the purchase model `p` of `curve`, waits for
    /// the curve's value; `spend` is passed on to [`Self::finish`].
    fn push(&mut self, row: usize, curve: Curve, p: &[f64; 4], customer: [f64; 3], spend: f64) {
        let [x, tx, t] = customer;
        let denominator = model::bg_family_denominator(curve.mbg, p, x, tx, t);
        // the rows of a batch nearly always share one model: compare with the last first
        let id = if self.curves.last() == Some(&curve) {
            self.curves.len() - 1
        } else {
            let curves = &mut self.curves;
            *self.index.entry(curve).or_insert_with(|| {
                curves.push(curve);
                curves.len() - 1
            })
        };
        self.rows.push(PendingRow {
            row,
            curve: id,
            customer: [x.to_bits(), t.to_bits()],
            denominator,
            spend,
        });
    }

    /// Fills `out[row]` with `finish(value, denominator, spend)` for every pending row, the
    /// value from the cache or computed (and then cached: see [`curve_values`]).
    fn finish(
        &self,
        cache: &CurveCache,
        out: &mut [Option<f64>],
        mut finish: impl FnMut(f64, f64, f64) -> Result<f64>,
    ) -> Result<()> {
        let values = curve_values(cache, &self.curves, self.rows.len(), |j| {
            (self.rows[j].curve, self.rows[j].customer)
        });
        for (r, v) in self.rows.iter().zip(values) {
            out[r.row] = Some(finish(v, r.denominator, r.spend)?);
        }
        Ok(())
    }
}

/// The curve values of `n` rows, row j on curve `curves[key(j).0]` for customer `key(j).1`:
/// from the cache or computed (and then cached). The cache is locked twice per batch, never
/// while a series is summed: shared for the lookups (partitions look up at the same time),
/// exclusively to add the new values.
fn curve_values(
    cache: &CurveCache,
    curves: &[Curve],
    n: usize,
    key: impl Fn(usize) -> (usize, Customer),
) -> Vec<f64> {
    let mut values = vec![f64::NAN; n];
    // the rows not in the cache, with their keys
    let mut missing: Vec<((usize, Customer), usize)> = Vec::new();
    {
        let cached = cache.read();
        let maps: Vec<_> = curves.iter().map(|c| cached.by_curve.get(c)).collect();
        for (j, v) in values.iter_mut().enumerate() {
            let (curve, customer) = key(j);
            match maps[curve].and_then(|m| m.get(customer)) {
                Some(c) => *v = c,
                None => missing.push(((curve, customer), j)),
            }
        }
    }
    if missing.is_empty() {
        return values;
    }
    // the missing rows by key, grouped by curve and age: customers of one age share the
    // curve's age terms (T ≥ 0, so its bits sort as the numbers); each distinct value is
    // computed once and handed to the rows of its key, which are adjacent
    let order = |&((curve, [x, t]), _): &((usize, Customer), usize)| (curve, t, x);
    missing.sort_unstable_by_key(order);
    let mut scratch = CurveScratch::default();
    let mut fresh: Vec<((usize, Customer), f64)> = Vec::new();
    for rows in missing.chunk_by(|a, b| a.0 == b.0) {
        let (curve, customer) = rows[0].0;
        let [x, t] = customer.map(f64::from_bits);
        let v = curves[curve].value(x, t, &mut scratch);
        for &(_, j) in rows {
            values[j] = v;
        }
        fresh.push(((curve, customer), v));
    }
    let mut cached = cache.write();
    if !cached.add(curves, &fresh, cache.limit) {
        // past the limit: the batch's own values, alone, if they fit
        *cached = Values::default();
        if !cached.add(curves, &fresh, cache.limit) {
            *cached = Values::default();
        }
    }
    values
}

fn is_bg_family(kind: ModelKind) -> bool {
    matches!(kind, ModelKind::BgNbd | ModelKind::MbgNbd)
}

fn finite(function: &str, v: f64, what: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        exec_err!(
            "{function}: {what} is not finite ({v}); the model's parameters are out of range for this customer"
        )
    }
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.op.name();
        check_arg_fields(name, self.op.params(), args.arg_fields)?;
        let t = |i: usize| args.arg_fields[i].data_type();
        match self.op {
            Op::Expected(k) | Op::Alive(k) => check_model_type(name, "model", t(0), &[k])?,
            Op::Spend => check_model_type(name, "model", t(0), &[ModelKind::GammaGamma])?,
            Op::Lifetime => {
                check_model_type(
                    name,
                    "purchase_model",
                    t(0),
                    &[ModelKind::BgNbd, ModelKind::ParetoNbd],
                )?;
                check_model_type(name, "spend_model", t(1), &[ModelKind::GammaGamma])?;
            }
        }
        Ok(Arc::new(Field::new(name, DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.op.name();
        let rows = args.number_rows;
        let out: Float64Array = match self.op {
            Op::Expected(kind) | Op::Alive(kind) => {
                let models = Models::new(&args.args[0], purchase_names(kind))?;
                let nums = args.args[1..]
                    .iter()
                    .map(Numbers::new)
                    .collect::<Result<Vec<_>>>()?;
                let horizon = matches!(self.op, Op::Expected(_));
                // the common case, customers under one model and horizon with no NULL, goes
                // through the columns at once (see `expected_columns`)
                if horizon
                    && is_bg_family(kind)
                    && models.scalar
                    && nums[0].scalar
                    && rows > 0
                    && nums[1..]
                        .iter()
                        .all(|c| !c.scalar && c.values.null_count() == 0)
                    && !models.is_null(0)
                    && !nums[0].is_null(0)
                    && models.kind(0) == Some(kind)
                {
                    let h = nums[0].value(0);
                    if h >= 0.0 && h.is_finite() {
                        let p = models.get::<4>(0);
                        let curve = Curve::new(kind, &p, h, 1, None);
                        let columns = [1, 2, 3].map(|k| nums[k].values.values().as_ref());
                        if let Some(values) =
                            expected_columns(name, &p, curve, columns, &self.curves)?
                        {
                            return Ok(ColumnarValue::Array(Arc::new(values)));
                        }
                    }
                }
                let mut out = Vec::with_capacity(rows);
                let mut pending = Pending::default();
                // the model row last checked, and its parameters
                let mut checked: Option<(usize, [f64; 4])> = None;
                for i in 0..rows {
                    if models.is_null(i) || nums.iter().any(|c| c.is_null(i)) {
                        out.push(None);
                        continue;
                    }
                    let p = derived(&mut checked, models.row(i), || {
                        if models.kind(i) != Some(kind) {
                            return exec_err!(
                                "{name}: the model is a '{}' model, expected '{}'",
                                models.tag(i),
                                kind.tag()
                            );
                        }
                        Ok(models.get::<4>(i))
                    })?;
                    // (t,) frequency, recency, T — no per-row allocation
                    let v: [f64; 4] =
                        std::array::from_fn(|k| nums.get(k).map_or(0.0, |c| c.value(i)));
                    let value = if horizon {
                        let (h, x, tx, t) = (v[0], v[1], v[2], v[3]);
                        check_customer(name, x, tx, t)?;
                        if !(h >= 0.0 && h.is_finite()) {
                            return exec_err!(
                                "{name}: t must be a finite number of periods >= 0, got {h}"
                            );
                        }
                        if is_bg_family(kind) {
                            let curve = Curve::new(kind, &p, h, 1, None);
                            pending.push(i, curve, &p, [x, tx, t], 0.0);
                            out.push(None);
                            continue;
                        }
                        let mut e = [0.0];
                        model::pareto_nbd_expected_many(&p, &[h], x, tx, t, &mut e);
                        finite(name, e[0], "the expected number of purchases")?
                    } else {
                        let (x, tx, t) = (v[0], v[1], v[2]);
                        check_customer(name, x, tx, t)?;
                        let alive = match kind {
                            ModelKind::BgNbd => model::bgnbd_p_alive(&p, x, tx, t),
                            ModelKind::MbgNbd => model::mbgnbd_p_alive(&p, x, tx, t),
                            _ => model::pareto_nbd_p_alive(&p, x, tx, t),
                        };
                        finite(name, alive, "P(alive)")?
                    };
                    out.push(Some(value));
                }
                pending.finish(&self.curves, &mut out, |c, denominator, _| {
                    finite(name, c / denominator, "the expected number of purchases")
                })?;
                Float64Array::from(out)
            }
            Op::Spend => {
                let models = Models::new(&args.args[0], ModelKind::GammaGamma.params())?;
                let x = Numbers::new(&args.args[1])?;
                let m = Numbers::new(&args.args[2])?;
                let mut out = Vec::with_capacity(rows);
                let mut checked: Option<(usize, [f64; 3])> = None;
                for i in 0..rows {
                    if models.is_null(i) || x.is_null(i) || m.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let p = derived(&mut checked, models.row(i), || {
                        spend_params(name, &models, i)
                    })?;
                    out.push(Some(spend(name, &p, x.value(i), m.value(i))?));
                }
                Float64Array::from(out)
            }
            Op::Lifetime => lifetime(name, &args.args, rows, &self.curves)?,
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.op {
            Op::Expected(ModelKind::BgNbd) => &BG_EXPECTED_DOC,
            Op::Expected(ModelKind::MbgNbd) => &MBG_EXPECTED_DOC,
            Op::Expected(_) => &PARETO_EXPECTED_DOC,
            Op::Alive(ModelKind::BgNbd) => &BG_ALIVE_DOC,
            Op::Alive(ModelKind::MbgNbd) => &MBG_ALIVE_DOC,
            Op::Alive(_) => &PARETO_ALIVE_DOC,
            Op::Spend => &SPEND_DOC,
            Op::Lifetime => &LIFETIME_DOC,
        })
    }
}

fn spend_params(name: &str, models: &Models, i: usize) -> Result<[f64; 3]> {
    if models.kind(i) != Some(ModelKind::GammaGamma) {
        return exec_err!(
            "{name}: the spend model is a '{}' model, expected 'gamma_gamma'",
            models.tag(i)
        );
    }
    let p: [f64; 3] = models.get(i);
    if p[1] <= 1.0 {
        return exec_err!(
            "{name}: the Gamma-Gamma model has q = {} <= 1, so its mean spend is infinite",
            p[1]
        );
    }
    Ok(p)
}

/// Whether [`spend`] takes (x, m) (it may still find the expected spend not finite).
#[inline]
fn valid_spend_customer(x: f64, m: f64) -> bool {
    x.is_finite() & m.is_finite() & (x >= 0.0)
}

fn spend(name: &str, p: &[f64; 3], x: f64, m: f64) -> Result<f64> {
    if !valid_spend_customer(x, m) {
        return exec_err!(
            "{name}: invalid customer (frequency {x}, monetary_value {m}): need finite values and frequency >= 0"
        );
    }
    finite(
        name,
        model::gamma_gamma_expected_spend(p, x, m),
        "the expected spend",
    )
}

/// What `customer_lifetime_value` derives from a row's models and options (checked): the
/// same for every row that reads the same model and option rows, so it is derived once per
/// run of such rows — once per batch when they are scalars.
#[derive(Clone, Copy)]
struct Setup {
    p: [f64; 4],
    /// The BG/NBD-family curve (None for Pareto/NBD).
    curve: Option<Curve>,
    months: u32,
    rate: f64,
    step: f64,
}

fn lifetime(
    name: &str,
    args: &[ColumnarValue],
    rows: usize,
    cache: &CurveCache,
) -> Result<Float64Array> {
    let purchase = Models::new(&args[0], &[])?;
    // every parameter column any purchase model has, cast once (absent ones are None)
    const NAMES: [&str; 6] = ["r", "alpha", "a", "b", "s", "beta"];
    let columns: Vec<Option<Float64Array>> = match &purchase.fields {
        Some(s) => NAMES
            .iter()
            .map(|n| s.column_by_name(n).map(f64_column).transpose())
            .collect::<Result<_>>()?,
        None => vec![None; NAMES.len()],
    };
    let spend_models = Models::new(&args[1], ModelKind::GammaGamma.params())?;
    let nums = args[2..6]
        .iter()
        .map(Numbers::new)
        .collect::<Result<Vec<_>>>()?;
    let optional =
        |i: usize| -> Result<Option<Numbers>> { args.get(i).map(Numbers::new).transpose() };
    let (months, rate, days) = (optional(6)?, optional(7)?, optional(8)?);
    let value_or = |c: &Option<Numbers>, i: usize, d: f64| -> Option<f64> {
        match c {
            None => Some(d),
            Some(c) if c.is_null(i) => None,
            Some(c) => Some(c.value(i)),
        }
    };
    // rows reading the same model and option rows share a setup: every row when all of them
    // are scalars (one model for the whole batch), else each row reads rows of its own
    let all_scalar = purchase.scalar
        && spend_models.scalar
        && [&months, &rate, &days]
            .iter()
            .all(|c| c.as_ref().is_none_or(|c| c.scalar));
    let setup_key = |i: usize| if all_scalar { 0 } else { i };
    // None: a NULL model or option, so a NULL value
    let setup = |i: usize| -> Result<Option<Setup>> {
        let (Some(h), Some(d), Some(dpm)) = (
            value_or(&months, i, 12.0),
            value_or(&rate, i, 0.01),
            value_or(&days, i, 30.0),
        ) else {
            return Ok(None);
        };
        if purchase.is_null(i) || spend_models.is_null(i) {
            return Ok(None);
        }
        let kind = purchase.kind(i);
        let slots: [usize; 4] = match kind {
            Some(ModelKind::BgNbd | ModelKind::MbgNbd) => [0, 1, 2, 3],
            Some(ModelKind::ParetoNbd) => [0, 1, 4, 5],
            _ => {
                return exec_err!(
                    "{name}: the purchase model is a '{}' model, expected bgnbd, mbgnbd or pareto_nbd",
                    purchase.tag(i)
                );
            }
        };
        let kind = kind.expect("checked");
        let mut p = [0.0; 4];
        let mut null = false;
        for (k, &slot) in slots.iter().enumerate() {
            let Some(c) = &columns[slot] else {
                return exec_err!(
                    "{name}: the purchase model lacks the parameters {:?}",
                    kind.params()
                );
            };
            // (every slot is looked at, so a missing parameter is an error even after a NULL)
            null |= c.is_null(purchase.row(i));
            p[k] = c.value(purchase.row(i));
        }
        if null {
            return Ok(None);
        }
        let Some(period) = purchase.period(i).and_then(Period::parse) else {
            return exec_err!(
                "{name}: the purchase model has no period unit ('day', 'week' or 'month'), so months \
                 cannot be converted; fit it on clv_summary(...) or pass period => 'day' to the fit"
            );
        };
        if !(h >= 0.0 && h.fract() == 0.0 && h <= 1200.0) {
            return exec_err!("{name}: horizon_months must be a whole number in 0..=1200, got {h}");
        }
        if !(d > -1.0 && d.is_finite()) {
            return exec_err!("{name}: discount_rate must be > -1 (a monthly rate), got {d}");
        }
        if !(dpm > 0.0 && dpm.is_finite()) {
            return exec_err!("{name}: days_per_month must be > 0, got {dpm}");
        }
        let step = period.per_month(dpm);
        Ok(Some(Setup {
            p,
            curve: is_bg_family(kind).then(|| Curve::new(kind, &p, step, h as u32, Some(d))),
            months: h as u32,
            rate: d,
            step,
        }))
    };
    // the common case, a batch of customers under one BG/NBD-family model (scalar models and
    // options) with no NULL, goes through the columns at once (see `lifetime_columns`)
    if all_scalar
        && rows > 0
        && nums.iter().all(|c| !c.scalar && c.values.null_count() == 0)
        && let Ok(Some(s)) = setup(0)
        && let Some(curve) = s.curve
        && let Ok(sp) = spend_params(name, &spend_models, 0)
    {
        let columns = [0, 1, 2, 3].map(|k| nums[k].values.values().as_ref());
        if let Some(values) = lifetime_columns(name, &s.p, curve, &sp, columns, cache)? {
            return Ok(values);
        }
    }
    let mut out = Vec::with_capacity(rows);
    let (mut horizons, mut curve) = (Vec::new(), Vec::new());
    let mut pending = Pending::default();
    let mut last: Option<(usize, Option<Setup>)> = None;
    let mut spend_checked: Option<(usize, [f64; 3])> = None;
    for i in 0..rows {
        if nums.iter().any(|c| c.is_null(i)) {
            out.push(None);
            continue;
        }
        let Some(s) = derived(&mut last, setup_key(i), || setup(i))? else {
            out.push(None);
            continue;
        };
        let [x, tx, t, m] = [0, 1, 2, 3].map(|k| nums[k].value(i));
        check_customer(name, x, tx, t)?;
        // the spend model's checks come after the customer's, once per spend model row
        let sp = derived(&mut spend_checked, spend_models.row(i), || {
            spend_params(name, &spend_models, i)
        })?;
        let e_spend = spend(name, &sp, x, m)?;
        if let Some(c) = s.curve {
            pending.push(i, c, &s.p, [x, tx, t], e_spend);
            out.push(None);
            continue;
        }
        model::month_horizons(s.months, s.step, &mut horizons);
        curve.resize(horizons.len(), 0.0);
        model::pareto_nbd_expected_many(&s.p, &horizons, x, tx, t, &mut curve);
        let value = e_spend * model::discounted_increments(&curve, s.rate);
        out.push(Some(finite(name, value, "the lifetime value")?));
    }
    // the expected purchases are the curve over the denominator, so are their increments
    pending.finish(cache, &mut out, |increments, denominator, spend| {
        finite(name, spend * increments / denominator, "the lifetime value")
    })?;
    Ok(Float64Array::from(out))
}

/// Times below which [`curve_columns`] may look ln(α + time) up in a table of whole periods.
const LN_TABLE_TIMES: f64 = (1u32 << 20) as f64;

/// The column passes' common part ([`lifetime_columns`], [`expected_columns`]): for valid
/// customers (x, t_x, T) under the BG/NBD-family model `p` of `curve`, each row's curve value
/// (from the cache or computed, [`curve_values`]) and denominator. When every time of the
/// batch is a whole number and the largest T is below [`LN_TABLE_TIMES`] and twice the rows
/// (so the table costs fewer logarithms than the rows would), ln(α + k) is tabled for every
/// k in 0..=max T; otherwise each row takes its own two logarithms. Either way the values
/// are bit for bit the row-by-row path's (see [`model::bg_family_denominator_ln`]).
fn curve_columns(
    p: &[f64; 4],
    curve: Curve,
    [xs, txs, ts]: [&[f64]; 3],
    cache: &CurveCache,
) -> (Vec<f64>, Vec<f64>) {
    let n = xs.len();
    // (valid customers have 0 <= t_x <= T, so T alone bounds the table)
    let whole = txs.iter().chain(ts).all(|&v| super::real::is_whole(v));
    let top = ts.iter().fold(0.0f64, |m, &t| m.max(t));
    let alpha = p[1];
    let denominators: Vec<f64> = if whole && top < LN_TABLE_TIMES && top < (2 * n) as f64 {
        // the times are whole numbers in 0..=top: their logarithms once each
        let ln_at: Vec<f64> = (0..=top as usize)
            .map(|k| (alpha + k as f64).ln())
            .collect();
        (0..n)
            .map(|i| {
                let ln = |v: f64| ln_at[v as usize];
                model::bg_family_denominator_ln(curve.mbg, p, xs[i], ln(txs[i]), ln(ts[i]))
            })
            .collect()
    } else {
        (0..n)
            .map(|i| model::bg_family_denominator(curve.mbg, p, xs[i], txs[i], ts[i]))
            .collect()
    };
    let values = curve_values(cache, &[curve], n, |i| {
        (0, [xs[i].to_bits(), ts[i].to_bits()])
    });
    (values, denominators)
}

/// Whether every row of the columns is a valid customer (see [`check_customer`]).
fn valid_customers([xs, txs, ts]: [&[f64]; 3]) -> bool {
    (0..xs.len()).fold(true, |ok, i| ok & valid_customer(xs[i], txs[i], ts[i]))
}

/// `values` as a column, or the error of the first one that is not finite (what the
/// row-by-row path reports first).
fn finite_column(name: &str, values: Vec<f64>, what: &str) -> Result<Float64Array> {
    if let Some(&bad) = values.iter().find(|v| !v.is_finite()) {
        finite(name, bad, what)?;
    }
    Ok(Float64Array::from(values))
}

/// `customer_lifetime_value` of a batch in the common case: one BG/NBD-family purchase model
/// `p` (its `curve`) and one Gamma-Gamma model `spend_p` for every row (scalar models and
/// options), and customer columns (x, t_x, T, m) without NULLs. Passes over the columns
/// ([`curve_columns`]) instead of the row-by-row path's per-row checks of every argument;
/// bit for bit the row-by-row path's values. `None` (nothing computed) when a row is not a
/// valid customer or its expected spend is not finite: the row-by-row path then reports the
/// first such row as it always does.
fn lifetime_columns(
    name: &str,
    p: &[f64; 4],
    curve: Curve,
    spend_p: &[f64; 3],
    [xs, txs, ts, ms]: [&[f64]; 4],
    cache: &CurveCache,
) -> Result<Option<Float64Array>> {
    let mut valid = valid_customers([xs, txs, ts]);
    let mut values: Vec<f64> = xs
        .iter()
        .zip(ms)
        .map(|(&x, &m)| {
            let e = model::gamma_gamma_expected_spend(spend_p, x, m);
            valid &= valid_spend_customer(x, m) & e.is_finite();
            e
        })
        .collect();
    if !valid {
        return Ok(None);
    }
    let (increments, denominators) = curve_columns(p, curve, [xs, txs, ts], cache);
    // the expected purchases are the curve over the denominator, so are their increments
    // (the expected spends become the values in place)
    for ((v, inc), den) in values.iter_mut().zip(&increments).zip(&denominators) {
        *v = *v * inc / den;
    }
    finite_column(name, values, "the lifetime value").map(Some)
}

/// `*_expected_purchases` of a batch in the common case: one BG/NBD-family model and one
/// horizon for every row (scalars), customer columns without NULLs, all valid (else `None`:
/// the row-by-row path reports the first bad row). As [`lifetime_columns`].
fn expected_columns(
    name: &str,
    p: &[f64; 4],
    curve: Curve,
    columns: [&[f64]; 3],
    cache: &CurveCache,
) -> Result<Option<Float64Array>> {
    if !valid_customers(columns) {
        return Ok(None);
    }
    let (mut values, denominators) = curve_columns(p, curve, columns, cache);
    for (v, d) in values.iter_mut().zip(&denominators) {
        *v /= d;
    }
    finite_column(name, values, "the expected number of purchases").map(Some)
}

fn section() -> datafusion::logical_expr::DocSection {
    doc_section("Customer lifetime value")
}

/// How BG/NBD-family predictions share their series (see [`CurveCache`]).
const CURVE_SHARING: &str = " The series depends on the customer only through (frequency, T): \
     customers that share both share one evaluation, kept in a cache of at most 12 MiB per \
     function for the process's later queries, so a summary in whole periods costs a lookup \
     for most customers.";

/// How a model argument may be given, in each prediction's documentation.
const MODEL_ARGUMENT: &str = " The model may be a column (a model per row, e.g. one per segment, \
     or the fits CROSS JOINed to the customers) or a scalar, such as the scalar subquery \
     `(SELECT bg FROM m)` over a fit: a scalar model is read and checked once per batch instead \
     of being repeated into every row, the faster form for one model over many customers.";

fn expected_doc(kind: ModelKind, example: &str) -> Documentation {
    let model = match kind {
        ModelKind::BgNbd => "BG/NBD",
        ModelKind::MbgNbd => "MBG/NBD",
        _ => "Pareto/NBD",
    };
    let f = Op::Expected(kind).name();
    let shared = if kind == ModelKind::ParetoNbd {
        ""
    } else {
        CURVE_SHARING
    };
    Documentation::builder(
        section(),
        format!(
            "Expected number of purchases in the next `t` periods of a customer with history \
             (frequency, recency, T), under a fitted {model} model (the conditional expectation \
             of the model's paper, as lifetimes' `conditional_expected_number_of_purchases_up_to_time`). \
             `t` is in the model's period unit. The hypergeometric function is evaluated after \
             Euler's transformation, so frequent buyers do not overflow.{shared}{MODEL_ARGUMENT} NULL inputs give NULL; \
             a customer with recency > T, negative values or recency > 0 at frequency 0 is an error."
        ),
        format!("{f}(model, t, frequency, recency, T)"),
    )
    .with_argument("model", format!("The struct returned by `{}_fit`.", kind.tag()))
    .with_argument("t", "Horizon, in the model's periods.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument("recency", "Periods between the customer's first and last purchase.")
    .with_argument("T", "Periods between the customer's first purchase and the end of observation.")
    .with_sql_example(example)
    .build()
}

fn alive_doc(kind: ModelKind, example: &str) -> Documentation {
    let model = match kind {
        ModelKind::BgNbd => "BG/NBD (1 for a customer without repeat purchases, as in the model)",
        ModelKind::MbgNbd => "MBG/NBD",
        _ => "Pareto/NBD",
    };
    let f = Op::Alive(kind).name();
    Documentation::builder(
        section(),
        format!(
            "Probability that a customer with history (frequency, recency, T) is still active \
             at the end of observation, under a fitted {model} model.{MODEL_ARGUMENT} NULL inputs \
             give NULL."
        ),
        format!("{f}(model, frequency, recency, T)"),
    )
    .with_argument(
        "model",
        format!("The struct returned by `{}_fit`.", kind.tag()),
    )
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument(
        "recency",
        "Periods between the customer's first and last purchase.",
    )
    .with_argument(
        "T",
        "Periods between the customer's first purchase and the end of observation.",
    )
    .with_sql_example(example)
    .build()
}

const BG_MODEL: &str =
    "named_struct('model', 'bgnbd', 'r', 0.2426, 'alpha', 4.4136, 'a', 0.7929, 'b', 2.4259)";
const MBG_MODEL: &str =
    "named_struct('model', 'mbgnbd', 'r', 0.525, 'alpha', 6.183, 'a', 0.891, 'b', 1.614)";
const PARETO_MODEL: &str = "named_struct('model', 'pareto_nbd', 'r', 0.5534, 'alpha', 10.5802, 's', 0.6061, 'beta', 11.6562)";

fn example(call: &str, header: &str, value: &str) -> String {
    let w = header.len().max(value.len());
    let line = format!("+{}+", "-".repeat(w + 2));
    format!(
        "```sql\n> SELECT round({call}, 4) AS {header};\n{line}\n| {header:<w$} |\n{line}\n| {value:<w$} |\n{line}\n```"
    )
}

static BG_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::BgNbd,
        &example(
            &format!("bgnbd_expected_purchases({BG_MODEL}, 39, 2, 30.43, 38.86)"),
            "expected",
            "1.2259",
        ),
    )
});
static MBG_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::MbgNbd,
        &example(
            &format!("mbgnbd_expected_purchases({MBG_MODEL}, 39, 2, 30.43, 38.86)"),
            "expected",
            "1.263",
        ),
    )
});
static PARETO_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::ParetoNbd,
        &example(
            &format!("pareto_nbd_expected_purchases({PARETO_MODEL}, 52, 26, 30.86, 31)"),
            "expected",
            "25.4549",
        ),
    )
});
static BG_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::BgNbd,
        &example(
            &format!("bgnbd_p_alive({BG_MODEL}, 2, 30.43, 38.86)"),
            "p_alive",
            "0.7266",
        ),
    )
});
static MBG_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::MbgNbd,
        &example(
            &format!("mbgnbd_p_alive({MBG_MODEL}, 2, 30.43, 38.86)"),
            "p_alive",
            "0.7062",
        ),
    )
});
static PARETO_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::ParetoNbd,
        &example(
            &format!("pareto_nbd_p_alive({PARETO_MODEL}, 26, 30.86, 31)"),
            "p_alive",
            "0.9979",
        ),
    )
});

const GG_MODEL: &str = "named_struct('model', 'gamma_gamma', 'p', 6.25, 'q', 3.74, 'v', 15.44)";

static SPEND_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
            "Expected mean spend per purchase of a customer with `frequency` repeat purchases of \
             mean `monetary_value`, under a fitted Gamma-Gamma model: the weighted average \
             (1 − w)·p·v/(q − 1) + w·monetary_value with w = p·x/(p·x + q − 1) (lifetimes' \
             `conditional_expected_average_profit`). A customer without repeat purchases gets the \
             population mean.{MODEL_ARGUMENT} A model with q <= 1 (infinite mean) is an error; NULL \
             inputs give NULL."
        ),
        "gamma_gamma_expected_spend(model, frequency, monetary_value)",
    )
    .with_argument("model", "The struct returned by `gamma_gamma_fit`.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument(
        "monetary_value",
        "Mean spend of the customer's repeat purchases.",
    )
    .with_sql_example(example(
        &format!("gamma_gamma_expected_spend({GG_MODEL}, 2, 22.35)"),
        "spend",
        "24.6637",
    ))
    .build()
});

static LIFETIME_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
        "Discounted customer lifetime value over the next `horizon_months` months: the sum over \
         months i = 1..horizon of expected spend × (E(i months) − E(i − 1 months)) / \
         (1 + discount_rate)^i, with E the purchase model's expected purchases and the spend \
         from the Gamma-Gamma model (lifetimes' `customer_lifetime_value`). Months are converted \
         to the purchase model's period unit by the function itself — `days_per_month` days \
         (default 30) make a month, so 30 periods for 'day', 30/7 for 'week', 1 for 'month' — \
         so units cannot be mixed up; a purchase model without a period unit is an error. \
         `discount_rate` is monthly (default 0.01). For BG/NBD and MBG/NBD purchase models the \
         expected purchases come from a hypergeometric series per month.{CURVE_SHARING}\
         {MODEL_ARGUMENT} NULL inputs give NULL."
        ),
        "customer_lifetime_value(purchase_model, spend_model, frequency, recency, T, monetary_value [, horizon_months [, discount_rate [, days_per_month]]])",
    )
    .with_argument("purchase_model", "The struct returned by `bgnbd_fit`, `mbgnbd_fit` or `pareto_nbd_fit`.")
    .with_argument("spend_model", "The struct returned by `gamma_gamma_fit`.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument("recency", "Periods between the customer's first and last purchase.")
    .with_argument("T", "Periods between the customer's first purchase and the end of observation.")
    .with_argument("monetary_value", "Mean spend of the customer's repeat purchases.")
    .with_argument("horizon_months", "Months to sum over, a whole number; default 12.")
    .with_argument("discount_rate", "Monthly discount rate; default 0.01.")
    .with_argument("days_per_month", "Days in a month for the unit conversion; default 30.")
    .with_sql_example(format!(
        "```sql\n\
         > SELECT round(customer_lifetime_value(named_struct('model', 'bgnbd', 'r', 0.2426, 'alpha', 4.4136, 'a', 0.7929, 'b', 2.4259, 'period', 'week'),\n\
         >   {GG_MODEL}, 2, 30.43, 38.86, 22.35), 2) AS clv;\n\
         +-------+\n\
         | clv   |\n\
         +-------+\n\
         | 35.88 |\n\
         +-------+\n\
         ```"
    ))
    .with_related_udf("bgnbd_fit")
    .with_related_udf("gamma_gamma_fit")
    .build()
});

macro_rules! predict_udf {
    ($fn:ident, $op:expr) => {
        #[doc = concat!("The `", stringify!($fn), "` scalar function (a shared singleton).")]
        pub fn $fn() -> Arc<ScalarUDF> {
            static UDF: LazyLock<Arc<ScalarUDF>> =
                LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(Predict::new($op))));
            Arc::clone(&UDF)
        }
    };
}

predict_udf!(bgnbd_expected_purchases, Op::Expected(ModelKind::BgNbd));
predict_udf!(bgnbd_p_alive, Op::Alive(ModelKind::BgNbd));
predict_udf!(mbgnbd_expected_purchases, Op::Expected(ModelKind::MbgNbd));
predict_udf!(mbgnbd_p_alive, Op::Alive(ModelKind::MbgNbd));
predict_udf!(
    pareto_nbd_expected_purchases,
    Op::Expected(ModelKind::ParetoNbd)
);
predict_udf!(pareto_nbd_p_alive, Op::Alive(ModelKind::ParetoNbd));
predict_udf!(gamma_gamma_expected_spend, Op::Spend);
predict_udf!(customer_lifetime_value, Op::Lifetime);

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the cache are bit for bit the values computed afresh, for repeated, new
    /// and evicted keys, equal the model's own functions, and the cache stays within its
    /// limit.
    #[test]
    fn cached_curve_values_are_the_computed_ones() {
        let bg = [0.24, 30.0, 0.79, 2.43];
        let mbg = [0.52, 43.0, 0.89, 1.61];
        // the model's functions, one customer at a time
        let direct = |kind: ModelKind, p: &[f64; 4], c: [f64; 3], horizons: &[f64]| {
            let [x, tx, t] = c;
            let mut out = vec![0.0; horizons.len()];
            match kind {
                ModelKind::BgNbd => model::bgnbd_expected_many(p, horizons, x, tx, t, &mut out),
                _ => model::mbgnbd_expected_many(p, horizons, x, tx, t, &mut out),
            }
            out
        };
        // 60 customers over 24 (model, frequency, T) keys, with different recencies
        let customers: Vec<(ModelKind, [f64; 4], [f64; 3])> = (0..60)
            .map(|i| {
                let (kind, p) = if i % 5 == 0 {
                    (ModelKind::MbgNbd, mbg)
                } else {
                    (ModelKind::BgNbd, bg)
                };
                let x = f64::from(i % 4);
                let t = 100.0 + f64::from(i % 3) * 50.0;
                let tx = if x == 0.0 {
                    0.0
                } else {
                    t * f64::from(i % 7 + 1) / 8.0
                };
                (kind, p, [x, tx, t])
            })
            .collect();
        let run = |cache: &CurveCache, months: u32, rate: Option<f64>| {
            let mut pending = Pending::default();
            for (i, &(kind, p, [x, tx, t])) in customers.iter().enumerate() {
                let (step, count) = if rate.is_some() {
                    (30.0, months)
                } else {
                    (39.0, 1)
                };
                let curve = Curve::new(kind, &p, step, count, rate);
                pending.push(i, curve, &p, [x, tx, t], 20.0);
            }
            let mut out = vec![None; customers.len()];
            pending
                .finish(cache, &mut out, |v, denominator, spend| {
                    Ok(if rate.is_some() {
                        spend * v / denominator
                    } else {
                        v / denominator
                    })
                })
                .unwrap();
            out.into_iter()
                .map(|v| v.unwrap().to_bits())
                .collect::<Vec<u64>>()
        };
        // CLV over 12 months, 6 months, again 12, and the expected purchases in 39 periods:
        // 24 new values each time unless cached
        let batches = [
            (12, Some(0.01)),
            (6, Some(0.01)),
            (12, Some(0.01)),
            (1, None),
        ];
        let never = CurveCache::with_limit(0);
        let afresh: Vec<Vec<u64>> = batches.iter().map(|&(m, r)| run(&never, m, r)).collect();
        assert_eq!(never.read().size, 0);
        for (k, &(months, rate)) in batches.iter().enumerate() {
            for (i, &(kind, p, c)) in customers.iter().enumerate() {
                let got = f64::from_bits(afresh[k][i]);
                if let Some(rate) = rate {
                    let mut horizons = Vec::new();
                    model::month_horizons(months, 30.0, &mut horizons);
                    let e = direct(kind, &p, c, &horizons);
                    let want = 20.0 * model::discounted_increments(&e, rate);
                    assert!(
                        (got - want).abs() <= 1e-14 * want,
                        "CLV of {i}: {got} vs {want}"
                    );
                } else {
                    assert_eq!(
                        got,
                        direct(kind, &p, c, &[39.0])[0],
                        "expected purchases of {i}"
                    );
                }
            }
        }
        // the bytes one batch takes (24 values, two curves: BG/NBD and MBG/NBD), alone
        let one = CurveCache::default();
        run(&one, 12, Some(0.01));
        let one = one.read().size;
        assert!(one > 2 * CURVE_BYTES, "{one}");
        for (limit, kept) in [
            (MAX_CACHED_BYTES, [24, 48, 48, 72]),
            (one, [24, 24, 24, 24]),
            (one - 1, [0, 0, 0, 0]),
        ] {
            let cache = CurveCache::with_limit(limit);
            for (k, &(months, rate)) in batches.iter().enumerate() {
                // the second run of a batch reads what the first one cached
                for _ in 0..2 {
                    assert_eq!(
                        run(&cache, months, rate),
                        afresh[k],
                        "limit {limit}, batch {k}"
                    );
                }
                let held = cache.read();
                let stored: usize = held.by_curve.values().map(CurveValues::len).sum();
                assert_eq!(stored, kept[k], "limit {limit}, batch {k}");
                let bytes: usize = held.by_curve.values().map(CurveValues::bytes).sum();
                assert_eq!(held.size, bytes + CURVE_BYTES * held.by_curve.len());
                assert!(held.size <= limit);
            }
        }
    }

    /// The grid holds dense whole (x, T) values, the map every other one (sparse ages,
    /// fractional times, −0.0, NaN, frequencies past the grid), each read back as stored,
    /// and the bytes are counted as they are added.
    #[test]
    fn curve_values_keep_dense_ages_in_the_grid() {
        let key = |x: f64, t: f64| [x.to_bits(), t.to_bits()];
        let mut c = CurveValues::default();
        let mut bytes = 0;
        let mut put = |c: &mut CurveValues, x: f64, t: f64, v: f64| {
            bytes += c.insert(key(x, t), v);
            assert_eq!(bytes, c.bytes(), "bytes after ({x}, {t})");
        };
        // ages 500..=700 of x = 3 ascending (as a batch's new values come), then 499 down to
        // 300 (the row grows down)
        let ages: Vec<u32> = (500..=700).chain((300..500).rev()).collect();
        for &t in &ages {
            put(&mut c, 3.0, f64::from(t), f64::from(t) / 7.0);
        }
        // ages 0..=400 of x = 5 in random order: the rows grow both ways
        let mut shuffled: Vec<u32> = (0..=400).collect();
        let mut seed = 7u64;
        for i in (1..shuffled.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &t in &shuffled {
            put(&mut c, 5.0, f64::from(t), f64::from(t) / 3.0);
        }
        assert_eq!((c.held, c.map.len()), (ages.len() + shuffled.len(), 0));
        // ages 100,000 apart for x = 7: the grid would not stay dense, so after the first
        // they are hashed
        let sparse: Vec<f64> = (0..10).map(|k| f64::from(k) * 1.0e5).collect();
        for &t in &sparse {
            put(&mut c, 7.0, t, t + 0.25);
        }
        assert_eq!(c.map.len(), 9);
        let in_map = c.map.len();
        // a sparse age far from the row, fractional and negative-zero ages, a NaN value, a
        // frequency past the grid's rows
        put(&mut c, 3.0, 1.0e6, 1.5);
        put(&mut c, 3.0, 250.5, 2.5);
        put(&mut c, 2.0, -0.0, 3.5);
        put(&mut c, 2.0, 0.0, 4.5);
        put(&mut c, 3.0, 800.0, f64::NAN);
        put(&mut c, GRID_ROWS as f64, 10.0, 5.5);
        // again (a value another partition added meanwhile): nothing more
        put(&mut c, 3.0, 600.0, 600.0 / 7.0);
        assert_eq!(c.len(), ages.len() + shuffled.len() + sparse.len() + 6);
        assert_eq!(
            c.held,
            ages.len() + shuffled.len() + 2,
            "the dense ages are in the grid"
        );
        assert!(c.rows[3].start <= 300);
        assert_eq!(
            c.map.len(),
            in_map + 5,
            "sparse, fractional, -0.0, NaN and past the rows are hashed"
        );
        for &t in &ages {
            assert_eq!(c.get(key(3.0, f64::from(t))), Some(f64::from(t) / 7.0));
        }
        for &t in &shuffled {
            assert_eq!(c.get(key(5.0, f64::from(t))), Some(f64::from(t) / 3.0));
        }
        for &t in &sparse {
            assert_eq!(c.get(key(7.0, t)), Some(t + 0.25));
        }
        assert_eq!(c.get(key(3.0, 1.0e6)), Some(1.5));
        assert_eq!(c.get(key(3.0, 250.5)), Some(2.5));
        assert_eq!(c.get(key(2.0, -0.0)), Some(3.5));
        assert_eq!(c.get(key(2.0, 0.0)), Some(4.5));
        assert!(c.get(key(3.0, 800.0)).unwrap().is_nan());
        assert_eq!(c.get(key(GRID_ROWS as f64, 10.0)), Some(5.5));
        for missing in [
            (3.0, 299.0),
            (3.0, 701.0),
            (4.0, 500.0),
            (3.5, 500.0),
            (1.0, 0.0),
        ] {
            assert_eq!(c.get(key(missing.0, missing.1)), None, "{missing:?}");
        }
        // the grid's slots stay within GRID_DENSITY per value (plus GRID_SLACK)
        assert_eq!(
            c.slots,
            c.rows.iter().map(|r| r.values.len()).sum::<usize>()
        );
        assert!(c.slots <= GRID_SLACK + GRID_DENSITY * c.held);
    }

    /// A model struct of `n` rows (all the same), as a column or as a scalar.
    fn model_arg(
        fields: &[(&str, f64)],
        tag: &str,
        period: Option<&str>,
        n: usize,
        scalar: bool,
    ) -> ColumnarValue {
        use datafusion::arrow::array::StructArray;
        let rows = if scalar { 1 } else { n };
        let mut columns: Vec<(Arc<Field>, ArrayRef)> = vec![(
            Arc::new(Field::new("model", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec![tag; rows])),
        )];
        for &(name, v) in fields {
            columns.push((
                Arc::new(Field::new(name, DataType::Float64, false)),
                Arc::new(Float64Array::from(vec![v; rows])),
            ));
        }
        if let Some(period) = period {
            columns.push((
                Arc::new(Field::new("period", DataType::Utf8, false)),
                Arc::new(StringArray::from(vec![period; rows])),
            ));
        }
        let array = StructArray::from(columns);
        if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Struct(Arc::new(array)))
        } else {
            ColumnarValue::Array(Arc::new(array))
        }
    }

    /// The column passes of `customer_lifetime_value` and the expected purchases (scalar
    /// models, no NULLs) give the row by row path's values bit for bit, with whole-period
    /// times (the logarithm table), fractional ones and large ones, for BG/NBD and MBG/NBD;
    /// a batch with an invalid customer or spend is left to the row by row path (its error),
    /// and a value that is not finite is the row by row path's error.
    #[test]
    fn column_pass_equals_the_row_by_row_path() {
        let gg = [("p", 6.25), ("q", 3.74), ("v", 15.44)];
        for (tag, params) in [
            (
                "bgnbd",
                [
                    ("r", 0.2426),
                    ("alpha", 4.4136),
                    ("a", 0.7929),
                    ("b", 2.4259),
                ],
            ),
            (
                "mbgnbd",
                [("r", 0.525), ("alpha", 6.183), ("a", 0.891), ("b", 1.614)],
            ),
        ] {
            // whole times (the table), fractional T, fractional t_x, whole times too large
            // for a table of 500 rows
            for times in ["whole", "fractional T", "fractional t_x", "large"] {
                let n = 500;
                let mut cols = [vec![], vec![], vec![], vec![]];
                for i in 0..n {
                    let x = f64::from(i % 9);
                    let mut t = 30.0 + f64::from(i % 211);
                    match times {
                        "fractional T" => t += 0.25,
                        "large" => t += 2000.0,
                        _ => {}
                    }
                    let mut tx = if x == 0.0 {
                        0.0
                    } else {
                        (t * f64::from(i % 5) / 5.0).floor()
                    };
                    if times == "fractional t_x" && x > 0.0 {
                        tx += 0.5;
                    }
                    for (c, v) in cols.iter_mut().zip([x, tx, t, 10.0 + f64::from(i % 13)]) {
                        c.push(v);
                    }
                }
                let args = |scalar: bool, cols: &[Vec<f64>; 4]| {
                    let mut a = vec![
                        model_arg(&params, tag, Some("day"), n as usize, scalar),
                        model_arg(&gg, "gamma_gamma", None, n as usize, scalar),
                    ];
                    a.extend(
                        cols.iter()
                            .map(|c| ColumnarValue::Array(Arc::new(Float64Array::from(c.clone())))),
                    );
                    a
                };
                let never = CurveCache::with_limit(0);
                let columns = lifetime("clv", &args(true, &cols), n as usize, &never).unwrap();
                let rows = lifetime("clv", &args(false, &cols), n as usize, &never).unwrap();
                assert_eq!(columns.null_count(), 0);
                let bits =
                    |a: &Float64Array| a.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&columns), bits(&rows), "{tag}, {times} times");
                // (and the column pass did run: called directly, it gives these values)
                let kind = ModelKind::from_tag(tag).unwrap();
                let p = params.map(|(_, v)| v);
                let step = Period::parse("day").unwrap().per_month(30.0);
                let clv_curve = Curve::new(kind, &p, step, 12, Some(0.01));
                let gg_p = gg.map(|(_, v)| v);
                fn all(c: &[Vec<f64>; 4]) -> [&[f64]; 4] {
                    std::array::from_fn(|k| &c[k][..])
                }
                let direct = lifetime_columns("clv", &p, clv_curve, &gg_p, all(&cols), &never);
                assert_eq!(bits(&direct.unwrap().unwrap()), bits(&rows));
                // and the same values through the cache
                let cache = CurveCache::default();
                for _ in 0..2 {
                    let cached = lifetime("clv", &args(true, &cols), n as usize, &cache).unwrap();
                    assert_eq!(bits(&cached), bits(&rows));
                }
                // within rounding of the model's own powf form
                for ((&x, &tx), &t) in cols[0].iter().zip(&cols[1]).zip(&cols[2]) {
                    let mbg = tag == "mbgnbd";
                    let pow = |rest: f64| (p[2] / rest) * ((p[1] + t) / (p[1] + tx)).powf(p[0] + x);
                    let want = match (mbg, x > 0.0) {
                        (true, _) => 1.0 + pow(p[3] + x),
                        (false, true) => 1.0 + pow(p[3] + x - 1.0),
                        (false, false) => 1.0,
                    };
                    let got = model::bg_family_denominator(mbg, &p, x, tx, t);
                    assert!((got - want).abs() <= 1e-13 * want, "{got} vs {want}");
                }
                // the expected purchases' column pass: each value the curve's over the
                // denominator, bit for bit
                let curve = Curve::new(kind, &p, 39.0, 1, None);
                let [xs, txs, ts] = [&cols[0][..], &cols[1][..], &cols[2][..]];
                let expected = expected_columns("e", &p, curve, [xs, txs, ts], &never)
                    .unwrap()
                    .unwrap();
                let mut scratch = CurveScratch::default();
                for i in 0..n as usize {
                    let want = curve.value(xs[i], ts[i], &mut scratch)
                        / model::bg_family_denominator(curve.mbg, &p, xs[i], txs[i], ts[i]);
                    assert_eq!(expected.value(i).to_bits(), want.to_bits(), "row {i}");
                }
                // a bad row (recency above T) anywhere: the row by row path's error
                let mut bad = cols.clone();
                bad[1][n as usize - 3] = bad[2][n as usize - 3] + 1.0;
                let e = lifetime("clv", &args(true, &bad), n as usize, &never).unwrap_err();
                let e2 = lifetime("clv", &args(false, &bad), n as usize, &never).unwrap_err();
                assert_eq!(e.strip_backtrace(), e2.strip_backtrace());
                assert!(e.strip_backtrace().contains("invalid customer"), "{e}");
                let [xs, txs, ts] = [&bad[0][..], &bad[1][..], &bad[2][..]];
                let none = expected_columns("e", &p, curve, [xs, txs, ts], &never).unwrap();
                assert!(
                    none.is_none(),
                    "a bad row leaves the batch to the row by row path"
                );
                let none = lifetime_columns("clv", &p, clv_curve, &gg_p, all(&bad), &never);
                assert!(none.unwrap().is_none());
                // a spend the Gamma-Gamma model rejects (NaN): left to the row by row path too
                let mut bad = cols.clone();
                bad[3][7] = f64::NAN;
                let none = lifetime_columns("clv", &p, clv_curve, &gg_p, all(&bad), &never);
                assert!(none.unwrap().is_none());
                let e = lifetime("clv", &args(true, &bad), n as usize, &never).unwrap_err();
                let e2 = lifetime("clv", &args(false, &bad), n as usize, &never).unwrap_err();
                assert_eq!(e.strip_backtrace(), e2.strip_backtrace());
                // valid customers whose value overflows (over 240 months, rows whose value is
                // several times their spend, given a spend of ±f64::MAX, the earlier one
                // negative): the column pass's own error, the row by row path's
                if times != "whole" {
                    continue;
                }
                let cache = CurveCache::default();
                let months =
                    ColumnarValue::Scalar(datafusion::common::ScalarValue::Float64(Some(240.0)));
                let long = |scalar: bool, cols: &[Vec<f64>; 4]| {
                    let mut a = args(scalar, cols);
                    a.push(months.clone());
                    a
                };
                let values = lifetime("clv", &long(false, &cols), n as usize, &cache).unwrap();
                let mut by_ratio: Vec<usize> = (0..n as usize).collect();
                let ratio = |k: usize| values.value(k) / cols[3][k];
                by_ratio.sort_by(|&i, &j| ratio(j).total_cmp(&ratio(i)));
                let (first, second) = (by_ratio[0].min(by_ratio[1]), by_ratio[0].max(by_ratio[1]));
                assert!(ratio(first) > 1.5 && ratio(second) > 1.5);
                let mut huge = cols.clone();
                huge[3][first] = -f64::MAX;
                huge[3][second] = f64::MAX;
                let long_curve = Curve::new(kind, &p, step, 240, Some(0.01));
                let e = lifetime_columns("clv", &p, long_curve, &gg_p, all(&huge), &cache)
                    .unwrap_err()
                    .strip_backtrace();
                let e2 = lifetime("clv", &long(false, &huge), n as usize, &cache).unwrap_err();
                assert_eq!(e, e2.strip_backtrace());
                let e3 = lifetime("clv", &long(true, &huge), n as usize, &cache).unwrap_err();
                assert_eq!(e, e3.strip_backtrace());
                assert!(e.contains("the lifetime value is not finite (-inf)"), "{e}");
            }
        }
    }
}
