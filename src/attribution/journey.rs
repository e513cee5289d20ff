//! `journey_path(channel, ts)`: the channels of a journey in time order, as a list.
//! A faster, mergeable alternative to `array_agg(channel ORDER BY ts)` for building
//! attribution paths (pairs are collected and sorted once per group).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use crate::args::{Kind, Param, check_arg_types, doc_section, param, scalar_list, signature};

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
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
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
            Arc::new(Field::new(
                format!("{}[channels]", args.name),
                string_list(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[times]", args.name),
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            )),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<PathAccumulator>::default())
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

/// The `journey_path` aggregate (a shared singleton).
pub fn journey_path() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(JourneyPath::default())));
    Arc::clone(&UDAF)
}
