//! `top_k_by(value, score, k)`: per group, the `k` values with the highest score, best first,
//! ties broken by the value (ascending). A bounded heap per group instead of sorting every
//! row by a window: O(rows · log k) time, O(groups · k) state that merges.

use std::collections::BinaryHeap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

use crate::args::{aggregate_literal, doc_section, list_of, state_field};

const NAME: &str = "top_k_by";
/// Largest accepted k.
pub const MAX_K: i64 = 1_000_000;

/// The `top_k_by` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TopKBy {
    signature: Signature,
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "The `k` values with the highest `score` in each group, as a list ordered best first; \
         equal scores are ordered by the value itself (ascending, as ORDER BY would), so the \
         result is deterministic. Rows with a NULL value, a NULL score or a NaN score are \
         ignored; a group with none gives an empty list. Keeps a bounded heap per group (k \
         entries, memory accounted) instead of sorting: the top-k step of `item_similarity`. To \
         carry more than one column, pass a struct (`named_struct(...)`) as the value: ties then \
         compare its fields in order.",
        "top_k_by(value, score, k)",
    )
    .with_argument("value", "The value to keep (any comparable type, including structs).")
    .with_argument("score", "The ranking score, a number (higher is better).")
    .with_argument("k", "How many values to keep per group, a positive integer literal (up to 1,000,000).")
    .with_sql_example(
        "```sql\n\
         > SELECT g, top_k_by(name, points, 2) AS best FROM (VALUES ('a', 'x', 3), ('a', 'y', 5), ('a', 'z', 5),\n\
         >   ('a', 'w', 1), ('b', 'v', NULL), ('b', 'u', 2)) AS t(g, name, points) GROUP BY g ORDER BY g;\n\
         +---+--------+\n\
         | g | best   |\n\
         +---+--------+\n\
         | a | [y, z] |\n\
         | b | [u]    |\n\
         +---+--------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .build()
});

impl AggregateUDFImpl for TopKBy {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "{NAME}: expected 3 arguments (value, score, k), got {}",
                arg_types.len()
            );
        }
        if !RowConverter::supports_fields(&[SortField::new(arg_types[0].clone())]) {
            return plan_err!(
                "{NAME}: argument 1 'value' must be a comparable type, got {}",
                arg_types[0]
            );
        }
        if !(arg_types[1].is_numeric() || arg_types[1].is_null()) {
            return plan_err!(
                "{NAME}: argument 2 'score' must be a number, got {}",
                arg_types[1]
            );
        }
        if !(arg_types[2].is_integer() || arg_types[2].is_null()) {
            return plan_err!(
                "{NAME}: argument 3 'k' must be an integer, got {}",
                arg_types[2]
            );
        }
        Ok(vec![
            arg_types[0].clone(),
            DataType::Float64,
            DataType::Int64,
        ])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_of(arg_types[0].clone()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            state_field(
                args.name,
                "values",
                list_of(args.input_fields[0].data_type().clone()),
            ),
            state_field(args.name, "scores", list_of(DataType::Float64)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(TopKGroups::try_new(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(TopKGroups::try_new(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// A kept value: its score and row encoding. `Ord`: greater = worse, so a `BinaryHeap`'s top
/// is the entry to evict.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    score: f64,
    key: Box<[u8]>,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// True when (score, key) ranks before `worst`.
fn beats(score: f64, key: &[u8], worst: &Entry) -> bool {
    match score.total_cmp(&worst.score) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => key < &worst.key[..],
    }
}

#[derive(Debug)]
struct TopKGroups {
    k: usize,
    converter: RowConverter,
    heaps: Vec<BinaryHeap<Entry>>,
    key_bytes: usize,
}

impl TopKGroups {
    fn try_new(args: &AccumulatorArgs) -> Result<Self> {
        let k = match aggregate_literal(NAME, args, 2, "k")? {
            Some(v) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(k)) if (1..=MAX_K).contains(&k) => k as usize,
                other => {
                    return plan_err!(
                        "{NAME}: argument 3 'k' must be an integer in 1..={MAX_K}, got {other}"
                    );
                }
            },
            None => return plan_err!("{NAME}: missing argument 3 'k'"),
        };
        let value_type = args.exprs[0].data_type(args.schema)?;
        Ok(Self {
            k,
            converter: RowConverter::new(vec![SortField::new(value_type)])?,
            heaps: Vec::new(),
            key_bytes: 0,
        })
    }

    fn offer(&mut self, group: usize, score: f64, key: &[u8]) {
        let heap = &mut self.heaps[group];
        if heap.len() < self.k {
            self.key_bytes += key.len();
            heap.push(Entry {
                score,
                key: key.into(),
            });
        } else if let Some(worst) = heap.peek()
            && beats(score, key, worst)
        {
            let old = heap.pop().expect("non-empty");
            self.key_bytes = self.key_bytes + key.len() - old.key.len();
            heap.push(Entry {
                score,
                key: key.into(),
            });
        }
    }

    /// Offer every element of rows `values`/`scores` (flat arrays) at `idx` to `group`.
    fn offer_rows(&mut self, group: usize, rows: &Rows, scores: &Float64Array, idx: usize) {
        if scores.is_null(idx) || scores.value(idx).is_nan() {
            return;
        }
        self.offer(group, scores.value(idx), rows.row(idx).as_ref());
    }

    /// The heaps of `emit_to` as (List<value>, List<score>), best first; they leave
    /// the accumulator.
    fn emit(&mut self, emit_to: EmitTo) -> Result<(ArrayRef, ArrayRef)> {
        let heaps = emit_to.take_needed(&mut self.heaps);
        self.key_bytes = self.heaps.iter().flatten().map(|e| e.key.len()).sum();
        self.lists(heaps)
    }

    /// `heaps` as (List<value>, List<score>), best first.
    fn lists(&self, heaps: Vec<BinaryHeap<Entry>>) -> Result<(ArrayRef, ArrayRef)> {
        let mut lengths = Vec::with_capacity(heaps.len());
        let mut entries = Vec::new();
        for heap in heaps {
            let sorted = heap.into_sorted_vec(); // ascending by Ord = best first
            lengths.push(sorted.len());
            entries.extend(sorted);
        }
        let parser = self.converter.parser();
        let values = self
            .converter
            .convert_rows(entries.iter().map(|e| parser.parse(&e.key)))?
            .remove(0);
        let scores = Float64Array::from_iter_values(entries.iter().map(|e| e.score));
        let offsets = OffsetBuffer::from_lengths(lengths);
        Ok((
            list_array(&offsets, values)?,
            list_array(&offsets, Arc::new(scores))?,
        ))
    }
}

/// `values` cut into lists at `offsets`.
fn list_array(offsets: &OffsetBuffer<i32>, values: ArrayRef) -> Result<ArrayRef> {
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", values.data_type().clone(), true)),
        offsets.clone(),
        values,
        None,
    )?))
}

impl GroupsAccumulator for TopKGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.heaps.resize_with(total_num_groups, BinaryHeap::new);
        let scores = values[1].as_primitive::<Float64Type>();
        let value_nulls = values[0].logical_nulls();
        // Candidates: rows that could enter their group's heap judging by the score alone
        // against the heap's worst at the start of the batch (a superset: thresholds only
        // rise). Only they are row-encoded; most rows of a large group never are.
        let mut candidates: Vec<u32> = Vec::new();
        for (i, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(i) || !f.value(i))
                || value_nulls.as_ref().is_some_and(|n| n.is_null(i))
                || scores.is_null(i)
                || scores.value(i).is_nan()
            {
                continue;
            }
            let heap = &self.heaps[g];
            if heap.len() < self.k
                || heap
                    .peek()
                    .is_some_and(|w| scores.value(i).total_cmp(&w.score).is_ge())
            {
                candidates.push(i as u32);
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let idx = datafusion::arrow::array::UInt32Array::from(candidates);
        let picked = datafusion::arrow::compute::take(values[0].as_ref(), &idx, None)?;
        let rows = self.converter.convert_columns(&[picked])?;
        for (r, &i) in idx.values().iter().enumerate() {
            let i = i as usize;
            self.offer(group_indices[i], scores.value(i), rows.row(r).as_ref());
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.heaps.resize_with(total_num_groups, BinaryHeap::new);
        let lists = values[0].as_list::<i32>();
        let score_lists = values[1].as_list::<i32>();
        let rows = self
            .converter
            .convert_columns(&[Arc::clone(lists.values())])?;
        let scores = score_lists.values().as_primitive::<Float64Type>();
        let offsets = lists.value_offsets();
        if score_lists.value_offsets() != offsets {
            return exec_err!("{NAME}: corrupt state (values and scores differ in length)");
        }
        for (i, &g) in group_indices.iter().enumerate() {
            if lists.is_null(i) {
                continue;
            }
            for j in offsets[i] as usize..offsets[i + 1] as usize {
                self.offer_rows(g, &rows, scores, j);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to)?.0)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (values, scores) = self.emit(emit_to)?;
        Ok(vec![values, scores])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // every row its own one-element state; filtered rows, NULL values and NULL/NaN scores
        // become empty lists
        let scores = values[1].as_primitive::<Float64Type>();
        let value_nulls = values[0].logical_nulls();
        let keep: Vec<bool> = (0..values[0].len())
            .map(|i| {
                !opt_filter.is_some_and(|f| !f.is_valid(i) || !f.value(i))
                    && !value_nulls.as_ref().is_some_and(|n| n.is_null(i))
                    && scores.is_valid(i)
                    && !scores.value(i).is_nan()
            })
            .collect();
        let idx: Vec<u32> = (0..keep.len() as u32)
            .filter(|&i| keep[i as usize])
            .collect();
        let idx = datafusion::arrow::array::UInt32Array::from(idx);
        let v = datafusion::arrow::compute::take(values[0].as_ref(), &idx, None)?;
        let s = datafusion::arrow::compute::take(values[1].as_ref(), &idx, None)?;
        let offsets = OffsetBuffer::from_lengths(keep.iter().map(|&k| usize::from(k)));
        Ok(vec![list_array(&offsets, v)?, list_array(&offsets, s)?])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.key_bytes
            + self.heaps.capacity() * std::mem::size_of::<BinaryHeap<Entry>>()
            + self
                .heaps
                .iter()
                .map(|h| h.capacity() * std::mem::size_of::<Entry>())
                .sum::<usize>()
    }
}

/// The ungrouped form: one group.
#[derive(Debug)]
struct Single(TopKGroups);

impl Single {
    /// A copy of the group's heap (empty before any row).
    fn heap(&self) -> BinaryHeap<Entry> {
        self.0.heaps.first().cloned().unwrap_or_default()
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; values[0].len()];
        self.0.update_batch(values, &groups, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; states[0].len()];
        self.0.merge_batch(states, &groups, 1)
    }

    // neither drains the heap: as a window function the accumulator keeps growing
    // and is evaluated after every row
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (v, s) = self.0.lists(vec![self.heap()])?;
        Ok(vec![
            ScalarValue::try_from_array(&v, 0)?,
            ScalarValue::try_from_array(&s, 0)?,
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (v, _) = self.0.lists(vec![self.heap()])?;
        ScalarValue::try_from_array(&v, 0)
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

/// The `top_k_by` aggregate (a shared singleton).
pub fn top_k_by() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::new_from_impl(TopKBy {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    });
    Arc::clone(&UDAF)
}
