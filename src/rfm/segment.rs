//! `rfm_segment(r_score, f_score, m_score [, scheme])`: the segment name of an RFM cell.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::model::Scheme;
use crate::args::{Kind, Param, check_arg_fields, doc_section, param, signature};

const NAME: &str = "rfm_segment";

/// The `rfm_segment` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmSegment {
    signature: Signature,
}

impl Default for RfmSegment {
    fn default() -> Self {
        Self::new()
    }
}

const PARAMS: [Param; 4] = [
    param("r_score", Kind::Integer),
    param("f_score", Kind::Integer),
    param("m_score", Kind::Integer),
    param("scheme", Kind::String),
];

impl RfmSegment {
    pub fn new() -> Self {
        Self {
            signature: signature(&PARAMS, 3, Volatility::Immutable),
        }
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("RFM"),
        "The customer segment for an RFM cell (recency, frequency and monetary scores in 1..5).\n\n\
         Scheme `'rfm11'` (default) is the widely used 11-segment grid on R × FM with \
         FM = (F + M + 1) / 2 in integer division (half rounds up): Champions, Loyal Customers, \
         Potential Loyalists, New Customers, Promising, Need Attention, About To Sleep, At Risk, \
         Can't Lose Them, Hibernating, Lost. Every one of the 125 cells has a segment.\n\n\
         Scheme `'rfm10'` is the R `rfm` package's list, evaluated first-match in this order: \
         Champions R4–5 F4–5 M4–5; Loyal Customers R2–5 F3–5 M3–5; Potential Loyalist R3–5 F1–3 M1–3; \
         New Customers R4–5 F1 M1; Promising R3–4 F1 M1; Need Attention R2–3 F2–3 M2–3; \
         About To Sleep R2–3 F1–2 M1–2; At Risk R1–2 F2–5 M2–5; Can't Lose Them R1 F4–5 M4–5; \
         Lost R1–2 F1–2 M1–2; anything else 'Others'. As in the R package, New Customers and \
         Promising never match (Potential Loyalist comes first) and neither does Can't Lose Them \
         (At Risk comes first).\n\n\
         A NULL score or scheme gives NULL. A score outside 1..5 or an unknown scheme is an error \
         naming the value. For a custom map, join the scores against a table of cells \
         (see `sql/rfm_custom_segments.sql`).",
        "rfm_segment(r_score, f_score, m_score [, scheme])",
    )
    .with_argument("r_score", "Recency score, an integer in 1..5 (5 = most recent).")
    .with_argument("f_score", "Frequency score, an integer in 1..5.")
    .with_argument("m_score", "Monetary score, an integer in 1..5.")
    .with_argument("scheme", "Segment map: `'rfm11'` (default) or `'rfm10'`.")
    .with_sql_example(
        "```sql\n\
         > SELECT rfm_segment(5, 4, 5) AS a, rfm_segment(1, 1, 2) AS b, rfm_segment(3, 3, 3, 'rfm10') AS c;\n\
         +-----------+-------------+-----------------+\n\
         | a         | b           | c               |\n\
         +-----------+-------------+-----------------+\n\
         | Champions | Hibernating | Loyal Customers |\n\
         +-----------+-------------+-----------------+\n\
         ```",
    )
    .with_related_udf("quantile_score")
    .build()
});

fn parse_scheme(name: &str) -> Result<Scheme> {
    match Scheme::parse(name) {
        Some(s) => Ok(s),
        None => plan_err!(
            "{NAME}: unknown scheme '{name}' for argument 'scheme'; expected one of {}",
            Scheme::NAMES.map(|n| format!("'{n}'")).join(", ")
        ),
    }
}

fn score(value: i64, arg: &str) -> Result<u8> {
    if (1..=5).contains(&value) {
        Ok(value as u8)
    } else {
        exec_err!("{NAME}: {arg} must be in 1..5, got {value}")
    }
}

impl ScalarUDFImpl for RfmSegment {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        check_arg_fields(NAME, &PARAMS, args.arg_fields)?;
        // validate a literal scheme at planning time
        if let Some(Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        )) = args.scalar_arguments.get(3)
        {
            parse_scheme(s)?;
        }
        Ok(Arc::new(Field::new(NAME, DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // the signature coerces scores to Int64; casting again is free then and keeps
        // any other integer type (or NULL) from reaching a typed downcast
        let ints = [0, 1, 2].map(|i| cast(&arrays[i], &DataType::Int64));
        let [r, f, m] = ints;
        let (r, f, m) = (r?, f?, m?);
        let r = r.as_primitive::<Int64Type>();
        let f = f.as_primitive::<Int64Type>();
        let m = m.as_primitive::<Int64Type>();
        // scheme: a constant (the common case) or a column
        let constant_scheme = match args.args.get(3) {
            None => Some(Some(Scheme::Rfm11)),
            Some(ColumnarValue::Scalar(s)) if s.is_null() => Some(None),
            Some(ColumnarValue::Scalar(s)) => match s.try_as_str() {
                Some(Some(name)) => Some(Some(parse_scheme(name)?)),
                Some(None) => Some(None),
                None => {
                    return exec_err!(
                        "{NAME}: argument 'scheme' must be a string, got {}",
                        s.data_type()
                    );
                }
            },
            Some(ColumnarValue::Array(_)) => None,
        };
        let scheme_array = match (&constant_scheme, arrays.get(3)) {
            (None, Some(a)) => Some(cast(a, &DataType::Utf8)?),
            _ => None,
        };
        let scheme_array = scheme_array.as_ref().map(|a| a.as_string::<i32>());
        let segment = |i: usize| -> Result<Option<&'static str>> {
            if r.is_null(i) || f.is_null(i) || m.is_null(i) {
                return Ok(None);
            }
            let scheme = match constant_scheme {
                Some(s) => s,
                None => match scheme_array {
                    Some(a) if a.is_null(i) => None,
                    Some(a) => Some(parse_scheme(a.value(i))?),
                    None => return exec_err!("{NAME}: argument 'scheme' must be a string"),
                },
            };
            let Some(scheme) = scheme else {
                return Ok(None);
            };
            Ok(Some(scheme.segment(
                score(r.value(i), "r_score")?,
                score(f.value(i), "f_score")?,
                score(m.value(i), "m_score")?,
            )))
        };
        let array: ArrayRef = match constant_scheme {
            Some(Some(scheme)) if r.null_count() + f.null_count() + m.null_count() == 0 => {
                // the common case: a table of the 125 cells, no per-row branching on NULLs
                let cells = scheme.cells();
                let names = r
                    .values()
                    .iter()
                    .zip(f.values())
                    .zip(m.values())
                    .map(|((&r, &f), &m)| {
                        let cell = usize::from(score(r, "r_score")? - 1) * 25
                            + usize::from(score(f, "f_score")? - 1) * 5
                            + usize::from(score(m, "m_score")? - 1);
                        Ok(cells[cell])
                    })
                    .collect::<Result<Vec<_>>>()?;
                let bytes = names.iter().map(|n| n.len()).sum();
                let mut out = StringBuilder::with_capacity(rows, bytes);
                for name in names {
                    out.append_value(name);
                }
                Arc::new(out.finish())
            }
            _ => {
                // two passes: the names' total length first, so the strings are allocated
                // once at their exact size (a guess that is too small doubles the buffer:
                // `rfm` over a million customers held 21 MB of name bytes for 11 MB of names)
                let mut bytes = 0;
                for i in 0..rows {
                    bytes += segment(i)?.map_or(0, str::len);
                }
                let mut out = StringBuilder::with_capacity(rows, bytes);
                for i in 0..rows {
                    out.append_option(segment(i)?);
                }
                Arc::new(out.finish())
            }
        };
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// The `rfm_segment` function (a shared singleton).
pub fn rfm_segment() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(RfmSegment::new())));
    Arc::clone(&UDF)
}
