//! `journey_path(channel, ts)`: the channels of a journey in time order, as a list.
//! A faster, mergeable alternative to `array_agg(channel ORDER BY ts)` for building
//! attribution paths (pairs are collected and sorted once per group).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, Int64Builder, ListBuilder, StringArray,
    StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};

use crate::args::{
    Kind, Param, check_arg_types, doc_section, list_of, param, scalar_list, signature, state_field,
};

const NAME: &str = "journey_path";

const PARAMS: [Param; 2] = [param("channel", Kind::String), param("ts", Kind::Timestamp)];

/// The `journey_path` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JourneyPath {
    signature: Signature,
}

impl Default for JourneyPath {
    fn default() -> Self {
        Self {
            signature: signature(&PARAMS, 2, Volatility::Immutable),
        }
    }
}

fn string_list() -> DataType {
    list_of(DataType::Utf8)
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "The channels of a group's touches in time order (ties broken by channel name, so the result \
         is deterministic), as a list of strings: the `path` argument of the attribution functions. \
         Equivalent to `array_agg(channel ORDER BY ts, channel)` but several times faster on many \
         groups, and its state merges across partitions. Rows with a NULL channel or timestamp are \
         skipped; a group without any gives an empty list.",
        "journey_path(channel, ts)",
    )
    .with_argument("channel", "The touch's channel, a string.")
    .with_argument("ts", "The touch's timestamp.")
    .with_sql_example(
        "```sql\n\
         > SELECT journey_path(ch, ts) AS path\n\
         > FROM (VALUES ('email', TIMESTAMP '2025-01-03'), ('social', TIMESTAMP '2025-01-01'), ('direct', TIMESTAMP '2025-01-02')) t(ch, ts);\n\
         +-------------------------+\n\
         | path                    |\n\
         +-------------------------+\n\
         | [social, direct, email] |\n\
         +-------------------------+\n\
         ```",
    )
    .with_related_udf("markov_attribution")
    .build()
});

impl AggregateUDFImpl for JourneyPath {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(NAME, &PARAMS, arg_types)?;
        Ok(string_list())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            state_field(args.name, "channels", list_of(DataType::Utf8)),
            state_field(args.name, "times", list_of(DataType::Int64)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<PathAccumulator>::default())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<PathGroups>::default())
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[derive(Debug, Default)]
struct PathAccumulator {
    /// (microseconds, channel)
    touches: Vec<(i64, String)>,
}

impl PathAccumulator {
    fn sorted(&mut self) {
        self.touches.sort_unstable();
    }
}

impl Accumulator for PathAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let channels = cast(&values[0], &DataType::Utf8)?;
        let channels = channels.as_string::<i32>();
        let micros = cast(
            &values[1],
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let micros = cast(&micros, &DataType::Int64)?;
        let micros = micros.as_primitive::<Int64Type>();
        for i in 0..channels.len() {
            if channels.is_valid(i) && micros.is_valid(i) {
                self.touches
                    .push((micros.value(i), channels.value(i).to_string()));
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let channels = states[0].as_list::<i32>();
        let times = states[1].as_list::<i32>();
        for i in 0..channels.len() {
            if channels.is_null(i) {
                continue;
            }
            let c = channels.value(i);
            let c = c.as_string::<i32>();
            let t = times.value(i);
            let t = t.as_primitive::<Int64Type>();
            for j in 0..c.len() {
                self.touches.push((t.value(j), c.value(j).to_string()));
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.sorted();
        let channels = StringArray::from_iter_values(self.touches.iter().map(|t| t.1.as_str()));
        let times = Int64Array::from_iter_values(self.touches.iter().map(|t| t.0));
        Ok(vec![
            scalar_list(Arc::new(channels)),
            scalar_list(Arc::new(times)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.sorted();
        let channels = StringArray::from_iter_values(self.touches.iter().map(|t| t.1.as_str()));
        Ok(scalar_list(Arc::new(channels)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.touches.capacity() * std::mem::size_of::<(i64, String)>()
            + self.touches.iter().map(|t| t.1.capacity()).sum::<usize>()
    }
}

/// The many-groups form: per group a vector of (microseconds, channel id) with one
/// channel dictionary shared by all groups (16 bytes per touch, no box per group).
#[derive(Debug, Default)]
struct PathGroups {
    groups: Vec<Vec<(i64, u32)>>,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    touches: usize,
}

impl PathGroups {
    fn push(&mut self, group: usize, micros: i64, channel: &str) {
        let id = match self.ids.get(channel) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(channel.to_string());
                self.ids.insert(channel.to_string(), id);
                id
            }
        };
        self.groups[group].push((micros, id));
        self.touches += 1;
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<(i64, u32)>> {
        let mut taken = emit_to.take_needed(&mut self.groups);
        let names = &self.names;
        for g in &mut taken {
            // time order, ties by channel name (not by dictionary id, which depends on arrival)
            g.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| names[a.1 as usize].cmp(&names[b.1 as usize]))
            });
        }
        self.touches -= taken.iter().map(Vec::len).sum::<usize>();
        taken
    }

    fn channel_lists(&self, groups: &[Vec<(i64, u32)>]) -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for g in groups {
            for &(_, id) in g {
                b.values().append_value(&self.names[id as usize]);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    }
}

fn time_lists(groups: &[Vec<(i64, u32)>]) -> ArrayRef {
    let mut b = ListBuilder::new(Int64Builder::new());
    for g in groups {
        for &(t, _) in g {
            b.values().append_value(t);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn micros_and_channels(values: &[ArrayRef]) -> Result<(ArrayRef, ArrayRef)> {
    let channels = cast(&values[0], &DataType::Utf8)?;
    let micros = cast(
        &values[1],
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )?;
    Ok((cast(&micros, &DataType::Int64)?, channels))
}

impl GroupsAccumulator for PathGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let (micros, channels) = micros_and_channels(values)?;
        let micros = micros.as_primitive::<Int64Type>();
        let channels = channels.as_string::<i32>();
        for (i, &g) in group_indices.iter().enumerate() {
            let keep = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if keep && channels.is_valid(i) && micros.is_valid(i) {
                self.push(g, micros.value(i), channels.value(i));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to);
        Ok(self.channel_lists(&taken))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        Ok(vec![self.channel_lists(&taken), time_lists(&taken)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let channels = values[0].as_list::<i32>();
        let times = values[1].as_list::<i32>();
        let names = channels.values().as_string::<i32>();
        let micros = times.values().as_primitive::<Int64Type>();
        for (i, &g) in group_indices.iter().enumerate() {
            if channels.is_null(i) {
                continue;
            }
            let (lo, hi) = (
                channels.value_offsets()[i] as usize,
                channels.value_offsets()[i + 1] as usize,
            );
            let t0 = times.value_offsets()[i] as usize;
            for (k, j) in (lo..hi).enumerate() {
                self.push(g, micros.value(t0 + k), names.value(j));
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (micros, channels) = micros_and_channels(values)?;
        let micros = micros.as_primitive::<Int64Type>();
        let channels = channels.as_string::<i32>();
        let mut c = ListBuilder::new(StringBuilder::new());
        let mut t = ListBuilder::new(Int64Builder::new());
        for i in 0..channels.len() {
            let keep = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if keep && channels.is_valid(i) && micros.is_valid(i) {
                c.values().append_value(channels.value(i));
                t.values().append_value(micros.value(i));
            }
            c.append(true);
            t.append(true);
        }
        Ok(vec![Arc::new(c.finish()), Arc::new(t.finish())])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Vec<(i64, u32)>>()
            + self.touches * std::mem::size_of::<(i64, u32)>()
            + self.names.iter().map(|n| 2 * n.len() + 64).sum::<usize>()
    }
}

/// The `journey_path` aggregate (a shared singleton).
pub fn journey_path() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(JourneyPath::default())));
    Arc::clone(&UDAF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMicrosecondArray;

    fn inputs() -> Vec<ArrayRef> {
        vec![
            Arc::new(StringArray::from(vec![
                Some("b"),
                Some("x"),
                Some("a"),
                None,
                Some("c"),
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(5),
                Some(1),
                Some(5),
                Some(0),
                Some(2),
            ])),
        ]
    }

    fn strings(a: &ArrayRef) -> Vec<Vec<String>> {
        let l = a.as_list::<i32>();
        (0..l.len())
            .map(|i| {
                let v = l.value(i);
                let s = v.as_string::<i32>();
                (0..s.len()).map(|j| s.value(j).to_string()).collect()
            })
            .collect()
    }

    #[test]
    fn groups_sort_by_time_then_name_and_emit_in_parts() {
        let mut acc = PathGroups::default();
        // rows -> groups 0, 1, 0, 1, 0
        acc.update_batch(&inputs(), &[0, 1, 0, 1, 0], None, 2)
            .unwrap();
        let first = acc.evaluate(EmitTo::First(1)).unwrap();
        assert_eq!(strings(&first), vec![vec!["c", "a", "b"]]);
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!(strings(&rest), vec![vec!["x"]]);
        assert_eq!(acc.touches, 0);
    }

    #[test]
    fn convert_to_state_then_merge_equals_direct_update() {
        let mut direct = PathGroups::default();
        direct
            .update_batch(&inputs(), &[0, 0, 0, 0, 0], None, 1)
            .unwrap();
        let filter = BooleanArray::from(vec![true, true, true, true, false]);
        let states = direct.convert_to_state(&inputs(), Some(&filter)).unwrap();
        let mut merged = PathGroups::default();
        merged.merge_batch(&states, &[0, 0, 0, 0, 0], 1).unwrap();
        // the filtered-out row ("c") is missing from the merged result only
        assert_eq!(
            strings(&merged.evaluate(EmitTo::All).unwrap()),
            vec![vec!["x", "a", "b"]]
        );
        assert_eq!(
            strings(&direct.evaluate(EmitTo::All).unwrap()),
            vec![vec!["x", "c", "a", "b"]]
        );
    }
}
