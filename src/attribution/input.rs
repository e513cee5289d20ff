//! Decoding the rows `markov_attribution` and `shapley_attribution` accept: one per
//! journey, or one per path with `non_conversions`. One place for the validation, so
//! both aggregates treat NULLs and bad counts the same way.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};

use crate::args::{f64_column, list_of};

/// Decoded argument columns of one batch.
pub struct JourneyRows {
    function: &'static str,
    paths: ListArray,
    conversions: Float64Array,
    value: Float64Array,
    non_conversions: Option<Float64Array>,
}

/// One row: conversions, non-conversions and value (all validated).
pub struct JourneyCounts {
    pub conversions: f64,
    pub non_conversions: f64,
    pub value: f64,
}

impl JourneyRows {
    /// `values` = [path, conversions, value, non_conversions?].
    pub fn new(function: &'static str, values: &[ArrayRef]) -> Result<Self> {
        let paths = cast(&values[0], &list_of(DataType::Utf8))?
            .as_list::<i32>()
            .clone();
        Ok(Self {
            function,
            paths,
            conversions: f64_column(&values[1])?,
            value: f64_column(&values[2])?,
            non_conversions: values.get(3).map(f64_column).transpose()?,
        })
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    fn count(&self, v: &Float64Array, i: usize, what: &str) -> Result<f64> {
        if v.is_null(i) {
            return Ok(0.0);
        }
        let x = v.value(i);
        if !x.is_finite() || x < 0.0 {
            return exec_err!(
                "{}: {what} must be a finite number >= 0, got {x}",
                self.function
            );
        }
        Ok(x)
    }

    /// Row `i`'s counts, or `None` for a NULL path (skipped). NULL counts and values
    /// are 0; without `non_conversions` (absent or NULL) the row is one journey.
    pub fn counts(&self, i: usize) -> Result<Option<JourneyCounts>> {
        if self.paths.is_null(i) {
            return Ok(None);
        }
        let conversions = self.count(&self.conversions, i, "conversions")?;
        let non_conversions = match &self.non_conversions {
            Some(nc) if nc.is_valid(i) => self.count(nc, i, "non_conversions")?,
            _ if conversions > 0.0 => 0.0,
            _ => 1.0,
        };
        let value = if self.value.is_null(i) {
            0.0
        } else {
            self.value.value(i)
        };
        if !value.is_finite() || value.abs() > 1e26 {
            return exec_err!(
                "{}: value must be finite and at most 1e26 in magnitude, got {value}",
                self.function
            );
        }
        Ok(Some(JourneyCounts {
            conversions,
            non_conversions,
            value,
        }))
    }

    /// Row `i`'s channels into `out` (NULL channels are named "NULL"); channel names
    /// may not contain U+001F or start with NUL (the serialized states use them).
    pub fn channels<'a>(&'a self, i: usize, out: &mut Vec<&'a str>) -> Result<()> {
        out.clear();
        let channels = self.paths.values().as_string::<i32>();
        let offsets = self.paths.value_offsets();
        for j in offsets[i] as usize..offsets[i + 1] as usize {
            let name = if channels.is_null(j) {
                "NULL"
            } else {
                channels.value(j)
            };
            if name.contains('\u{1f}') || name.starts_with('\u{0}') {
                return exec_err!(
                    "{}: channel names must not contain U+001F or start with NUL: {name:?}",
                    self.function
                );
            }
            out.push(name);
        }
        Ok(())
    }
}
