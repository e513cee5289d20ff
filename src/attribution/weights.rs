//! `attribution_weights(path, model [, direct_channel [, first_share [, last_share]]])` and
//! `time_decay_weights(touch_times, conversion_time [, half_life_days])`: per-touch credit
//! weights aligned with the path, summing to 1.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, ListArray, ListBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::model::{Heuristic, heuristic_weights, time_decay_weights};
use crate::args::{Kind, Param, check_arg_fields, doc_section, list_of, param, signature};

fn list_of_doubles() -> DataType {
    list_of(DataType::Float64)
}

fn string_list() -> DataType {
    list_of(DataType::Utf8)
}

fn scalar_str<'a>(v: &'a ColumnarValue, name: &str, function: &str) -> Result<Option<&'a str>> {
    match v {
        ColumnarValue::Scalar(s) if s.is_null() => Ok(None),
        ColumnarValue::Scalar(s) => match s.try_as_str() {
            Some(x) => Ok(x),
            None => plan_err!("{function}: argument '{name}' must be a string"),
        },
        ColumnarValue::Array(_) => plan_err!("{function}: argument '{name}' must be a constant"),
    }
}

fn scalar_f64(v: &ColumnarValue, name: &str, function: &str) -> Result<Option<f64>> {
    match v {
        ColumnarValue::Scalar(s) if s.is_null() => Ok(None),
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64)? {
            ScalarValue::Float64(x) => Ok(x),
            _ => plan_err!("{function}: argument '{name}' must be a number"),
        },
        ColumnarValue::Array(_) => plan_err!("{function}: argument '{name}' must be a constant"),
    }
}

// ---------------------------------------------------------------------------

const WEIGHTS: &str = "attribution_weights";
const WEIGHT_PARAMS: [Param; 5] = [
    param("path", Kind::StringList),
    param("model", Kind::String),
    param("direct_channel", Kind::String),
    param("first_share", Kind::Number),
    param("last_share", Kind::Number),
];

/// The `attribution_weights` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AttributionWeights {
    signature: Signature,
}

impl Default for AttributionWeights {
    fn default() -> Self {
        Self {
            signature: signature(&WEIGHT_PARAMS, 2, Volatility::Immutable),
        }
    }
}

static WEIGHTS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "Heuristic (rule-based) credit for each touch of a journey: a list of doubles aligned with \
         `path`, summing to 1. Models: `'first_touch'`, `'last_touch'`, `'last_non_direct'` (the last \
         touch whose channel is not `direct_channel`, default `'direct'`; an all-direct path falls \
         back to the last touch), `'linear'` (equal shares), `'position_based'` (`first_share` and \
         `last_share`, default 0.4 each, the rest split equally over the middle touches; one touch \
         gets 1, two touches 0.5 each). Use `unnest` (or `array_element`) to turn weights into \
         credit per channel. A NULL path gives NULL, an empty path an empty list; NULL channels \
         are ordinary touches (never direct). An unknown model or shares outside [0, 1] with \
         first + last > 1 are errors.",
        "attribution_weights(path, model [, direct_channel [, first_share [, last_share]]])",
    )
    .with_argument("path", "The journey's channels in time order, a list of strings.")
    .with_argument("model", "'first_touch', 'last_touch', 'last_non_direct', 'linear' or 'position_based'.")
    .with_argument("direct_channel", "Channel name treated as direct by 'last_non_direct'; default 'direct'.")
    .with_argument("first_share", "Share of the first touch for 'position_based'; default 0.4.")
    .with_argument("last_share", "Share of the last touch for 'position_based'; default 0.4.")
    .with_sql_example(
        "```sql\n\
         > SELECT attribution_weights(['social', 'email', 'search', 'direct'], 'position_based') AS u,\n\
         >        attribution_weights(['social', 'direct'], 'last_non_direct') AS lnd;\n\
         +----------------------+------------+\n\
         | u                    | lnd        |\n\
         +----------------------+------------+\n\
         | [0.4, 0.1, 0.1, 0.4] | [1.0, 0.0] |\n\
         +----------------------+------------+\n\
         ```",
    )
    .with_related_udf("time_decay_weights")
    .with_related_udf("markov_attribution")
    .build()
});

impl ScalarUDFImpl for AttributionWeights {
    fn name(&self) -> &str {
        WEIGHTS
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_of_doubles())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        check_arg_fields(WEIGHTS, &WEIGHT_PARAMS, args.arg_fields)?;
        if let Some(Some(v)) = args.scalar_arguments.get(1)
            && let Some(Some(m)) = v.try_as_str()
            && Heuristic::parse(m).is_none()
        {
            return plan_err!(
                "{WEIGHTS}: unknown model '{m}' for argument 'model'; expected one of {}",
                Heuristic::NAMES.map(|n| format!("'{n}'")).join(", ")
            );
        }
        Ok(Arc::new(Field::new(WEIGHTS, list_of_doubles(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let direct = match args.args.get(2) {
            Some(v) => scalar_str(v, "direct_channel", WEIGHTS)?.map(str::to_string),
            None => Some("direct".to_string()),
        };
        let first = args
            .args
            .get(3)
            .map(|v| scalar_f64(v, "first_share", WEIGHTS))
            .transpose()?
            .flatten()
            .unwrap_or(0.4);
        let last = args
            .args
            .get(4)
            .map(|v| scalar_f64(v, "last_share", WEIGHTS))
            .transpose()?
            .flatten()
            .unwrap_or(0.4);
        if !(0.0..=1.0).contains(&first)
            || !(0.0..=1.0).contains(&last)
            || first + last > 1.0 + 1e-12
        {
            return exec_err!(
                "{WEIGHTS}: first_share ({first}) and last_share ({last}) must lie in [0, 1] and sum to at most 1"
            );
        }
        // the model: usually a constant, possibly a column
        let models = cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let models = models.as_string::<i32>();
        let parse = |name: &str| -> Result<Heuristic> {
            match Heuristic::parse(name) {
                Some(Heuristic::PositionBased { .. }) => {
                    Ok(Heuristic::PositionBased { first, last })
                }
                Some(m) => Ok(m),
                None => exec_err!(
                    "{WEIGHTS}: unknown model '{name}'; expected one of {}",
                    Heuristic::NAMES.map(|n| format!("'{n}'")).join(", ")
                ),
            }
        };
        let mut cached: Option<(String, Heuristic)> = None;
        let paths = args.args[0].to_array(rows)?;
        let paths = cast(&paths, &string_list())?;
        let paths: &ListArray = paths.as_list::<i32>();
        let channels = paths.values().as_string::<i32>();
        let mut out = ListBuilder::new(Float64Builder::new());
        for i in 0..rows {
            if paths.is_null(i) || models.is_null(i) {
                out.append_null();
                continue;
            }
            let name = models.value(i);
            let model = match &cached {
                Some((n, m)) if n == name => *m,
                _ => {
                    let m = parse(name)?;
                    cached = Some((name.to_string(), m));
                    m
                }
            };
            let (lo, hi) = (
                paths.value_offsets()[i] as usize,
                paths.value_offsets()[i + 1] as usize,
            );
            let is_direct = |k: usize| {
                let j = lo + k;
                channels.is_valid(j) && direct.as_deref() == Some(channels.value(j))
            };
            for w in heuristic_weights(model, hi - lo, is_direct) {
                out.values().append_value(w);
            }
            out.append(true);
        }
        finish(out.finish(), &args.args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&WEIGHTS_DOC)
    }
}

fn finish(list: ListArray, inputs: &[ColumnarValue]) -> Result<ColumnarValue> {
    let array: ArrayRef = Arc::new(list);
    if inputs.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// The `attribution_weights` function (a shared singleton).
pub fn attribution_weights() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(AttributionWeights::default())));
    Arc::clone(&UDF)
}

// ---------------------------------------------------------------------------

const DECAY: &str = "time_decay_weights";
const DECAY_PARAMS: [Param; 3] = [
    param("touch_times", Kind::TimestampList),
    param("conversion_time", Kind::Timestamp),
    param("half_life_days", Kind::Number),
];

/// The `time_decay_weights` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeDecayWeights {
    signature: Signature,
}

impl Default for TimeDecayWeights {
    fn default() -> Self {
        Self {
            signature: signature(&DECAY_PARAMS, 2, Volatility::Immutable),
        }
    }
}

static DECAY_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Attribution"),
        "Time-decay credit for each touch: weight 0.5^(Δt / half_life) with Δt the time from the \
         touch to the conversion, normalised to sum to 1 (a list aligned with `touch_times`). \
         Touches after the conversion count as Δt = 0. Default half-life 7 days. NULL times or a \
         NULL conversion time give NULL; an empty list gives an empty list; a half-life that is \
         not positive is an error.",
        "time_decay_weights(touch_times, conversion_time [, half_life_days])",
    )
    .with_argument("touch_times", "The touches' timestamps, a list (same order as the path).")
    .with_argument("conversion_time", "The conversion's timestamp.")
    .with_argument("half_life_days", "Half-life in days (a positive number); default 7.")
    .with_sql_example(
        "```sql\n\
         > SELECT time_decay_weights([TIMESTAMP '2025-01-01', TIMESTAMP '2025-01-08'], TIMESTAMP '2025-01-15') AS w;\n\
         +------------------------------------------+\n\
         | w                                        |\n\
         +------------------------------------------+\n\
         | [0.3333333333333333, 0.6666666666666666] |\n\
         +------------------------------------------+\n\
         ```",
    )
    .with_related_udf("attribution_weights")
    .build()
});

impl ScalarUDFImpl for TimeDecayWeights {
    fn name(&self) -> &str {
        DECAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_of_doubles())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        check_arg_fields(DECAY, &DECAY_PARAMS, args.arg_fields)?;
        Ok(Arc::new(Field::new(DECAY, list_of_doubles(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let half_life_days = match args.args.get(2) {
            Some(v) => scalar_f64(v, "half_life_days", DECAY)?.unwrap_or(7.0),
            None => 7.0,
        };
        if !(half_life_days > 0.0 && half_life_days.is_finite()) {
            return exec_err!(
                "{DECAY}: half_life_days must be a positive number, got {half_life_days}"
            );
        }
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let times = args.args[0].to_array(rows)?;
        let times = cast(
            &times,
            &DataType::List(Arc::new(Field::new("item", micros.clone(), true))),
        )?;
        let times = times.as_list::<i32>();
        let touch = cast(times.values(), &DataType::Int64)?;
        let touch = touch.as_primitive::<Int64Type>();
        let conv = cast(
            &cast(&args.args[1].to_array(rows)?, &micros)?,
            &DataType::Int64,
        )?;
        let conv = conv.as_primitive::<Int64Type>();
        let half_life = half_life_days * 86_400e6;
        let mut out = ListBuilder::new(Float64Builder::new());
        let mut buf = Vec::new();
        for i in 0..rows {
            let (lo, hi) = (
                times.value_offsets()[i] as usize,
                times.value_offsets()[i + 1] as usize,
            );
            if times.is_null(i) || conv.is_null(i) || (lo..hi).any(|j| touch.is_null(j)) {
                out.append_null();
                continue;
            }
            buf.clear();
            buf.extend((lo..hi).map(|j| touch.value(j)));
            for w in time_decay_weights(&buf, conv.value(i), half_life) {
                out.values().append_value(w);
            }
            out.append(true);
        }
        finish(out.finish(), &args.args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DECAY_DOC)
    }
}

/// The `time_decay_weights` function (a shared singleton).
pub fn time_decay_weights_udf() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(TimeDecayWeights::default())));
    Arc::clone(&UDF)
}
