//! `cosine_similarity(a, b)`, `cosine_distance(a, b)` and `inner_product(a, b)` (alias
//! `dot_product`) over numeric lists.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, Float64Array, GenericListArray, OffsetSizeTrait};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::model::{cosine, dot};
use crate::args::doc_section;

/// Which product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorOp {
    Cosine,
    CosineDistance,
    Inner,
}

impl VectorOp {
    fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine_similarity",
            Self::CosineDistance => "cosine_distance",
            Self::Inner => "inner_product",
        }
    }
}

/// A vector similarity scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorSimilarity {
    op: VectorOp,
    signature: Signature,
    aliases: Vec<String>,
}

impl VectorSimilarity {
    pub fn new(op: VectorOp) -> Self {
        Self {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: if op == VectorOp::Inner {
                vec!["dot_product".to_string()]
            } else {
                vec![]
            },
        }
    }
}

const COMMON: &str = "Both arguments are lists of numbers (List, LargeList or FixedSizeList of \
    integers, floats or decimals, computed in double precision); a constant list is compared \
    with every row. A NULL list gives NULL; lists of different lengths are an error naming both \
    lengths; a list with a NULL element gives NULL; NaN elements give NaN.";

fn doc(op: VectorOp) -> Documentation {
    let (description, example) = match op {
        VectorOp::Cosine => (
            format!(
                "Cosine similarity Σaᵢbᵢ / (‖a‖·‖b‖), in [-1, 1]. NULL when either vector is all \
                 zeros (or empty): the angle is undefined. {COMMON}"
            ),
            "```sql\n\
             > SELECT cosine_similarity([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) AS same,\n\
             >        cosine_similarity([1, 0], [0, 1]) AS orthogonal,\n\
             >        cosine_similarity([0, 0], [1, 1]) AS zero;\n\
             +------+------------+------+\n\
             | same | orthogonal | zero |\n\
             +------+------------+------+\n\
             | 1.0  | 0.0        | NULL |\n\
             +------+------------+------+\n\
             ```",
        ),
        VectorOp::CosineDistance => (
            format!(
                "Cosine distance 1 − cosine_similarity(a, b), in [0, 2] (scipy's \
                 `spatial.distance.cosine`). NULL when either vector is all zeros (or empty). \
                 {COMMON}"
            ),
            "```sql\n\
             > SELECT cosine_distance([1.0, 0.0], [1.0, 1.0]) AS d;\n\
             +---------------------+\n\
             | d                   |\n\
             +---------------------+\n\
             | 0.29289321881345254 |\n\
             +---------------------+\n\
             ```",
        ),
        VectorOp::Inner => (
            format!(
                "Inner (dot) product Σaᵢbᵢ, summed in element order; 0 for two empty lists. \
                 Also available as `dot_product`. {COMMON}"
            ),
            "```sql\n\
             > SELECT inner_product([1, 2, 3], [4, 5, 6]) AS ip, dot_product([0.5], [4]) AS dp;\n\
             +------+-----+\n\
             | ip   | dp  |\n\
             +------+-----+\n\
             | 32.0 | 2.0 |\n\
             +------+-----+\n\
             ```",
        ),
    };
    Documentation::builder(
        doc_section("Recommendation similarity"),
        description,
        format!("{}(a, b)", op.name()),
    )
    .with_argument("a", "A list of numbers.")
    .with_argument("b", "A list of numbers of the same length.")
    .with_sql_example(example)
    .with_related_udf(if op == VectorOp::Inner {
        "cosine_similarity"
    } else {
        "inner_product"
    })
    .with_related_udf("jaccard_similarity")
    .build()
}

static DOCS: LazyLock<[Documentation; 3]> = LazyLock::new(|| {
    [
        doc(VectorOp::Cosine),
        doc(VectorOp::CosineDistance),
        doc(VectorOp::Inner),
    ]
});

/// The list type both arguments are cast to: LargeList if either is large, else List;
/// items Float64.
fn coerce_vectors(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() != 2 {
        return plan_err!("{name}: expected 2 arguments (a, b), got {}", types.len());
    }
    let mut large = false;
    for (i, t) in types.iter().enumerate() {
        let arg = ["a", "b"][i];
        match t {
            DataType::Null => {}
            DataType::List(f) | DataType::FixedSizeList(f, _) | DataType::LargeList(f)
                if f.data_type().is_numeric() || f.data_type().is_null() =>
            {
                large |= matches!(t, DataType::LargeList(_));
            }
            other => {
                return plan_err!(
                    "{name}: argument {} '{arg}' must be a list of numbers, got {other}",
                    i + 1
                );
            }
        }
    }
    let item = Arc::new(Field::new("item", DataType::Float64, true));
    let t = if large {
        DataType::LargeList(item)
    } else {
        DataType::List(item)
    };
    Ok(vec![t.clone(), t])
}

impl ScalarUDFImpl for VectorSimilarity {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_vectors(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let op = self.op;
        super::invoke_two_lists(
            self.name(),
            &args,
            |a, b, n| products(op, a, b, n),
            |a, b, n| products(op, a, b, n),
        )
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.op {
            VectorOp::Cosine => &DOCS[0],
            VectorOp::CosineDistance => &DOCS[1],
            VectorOp::Inner => &DOCS[2],
        })
    }
}

fn products<O: OffsetSizeTrait>(
    op: VectorOp,
    a: &GenericListArray<O>,
    b: &GenericListArray<O>,
    n: usize,
) -> Result<Float64Array> {
    let av = a
        .values()
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let bv = b
        .values()
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let (a_vals, b_vals) = (av.values(), bv.values());
    let a_nulls = av.nulls().filter(|x| x.null_count() > 0);
    let b_nulls = bv.nulls().filter(|x| x.null_count() > 0);
    let (ao, bo) = (a.value_offsets(), b.value_offsets());
    let broadcast_a = a.len() == 1;
    let broadcast_b = b.len() == 1;
    let mut out = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for i in 0..n {
        let ia = if broadcast_a { 0 } else { i };
        let ib = if broadcast_b { 0 } else { i };
        if a.is_null(ia) || b.is_null(ib) {
            out.push(0.0);
            valid.push(false);
            continue;
        }
        let (alo, ahi) = (ao[ia].as_usize(), ao[ia + 1].as_usize());
        let (blo, bhi) = (bo[ib].as_usize(), bo[ib + 1].as_usize());
        if ahi - alo != bhi - blo {
            return exec_err!(
                "{}: the lists have different lengths ({} and {}) in row {}",
                op.name(),
                ahi - alo,
                bhi - blo,
                i + 1
            );
        }
        let has_null = a_nulls.is_some_and(|nb| nb.slice(alo, ahi - alo).null_count() > 0)
            || b_nulls.is_some_and(|nb| nb.slice(blo, bhi - blo).null_count() > 0);
        if has_null {
            out.push(0.0);
            valid.push(false);
            continue;
        }
        let (x, y) = (&a_vals[alo..ahi], &b_vals[blo..bhi]);
        let r = match op {
            VectorOp::Inner => Some(dot(x, y)),
            VectorOp::Cosine => cosine(x, y),
            VectorOp::CosineDistance => cosine(x, y).map(|c| 1.0 - c),
        };
        out.push(r.unwrap_or(0.0));
        valid.push(r.is_some());
    }
    Ok(Float64Array::new(out.into(), Some(valid.into())))
}

/// `cosine_similarity(a, b)`.
pub fn cosine_similarity() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(VectorSimilarity::new(
            VectorOp::Cosine,
        )))
    });
    Arc::clone(&F)
}

/// `cosine_distance(a, b)`.
pub fn cosine_distance() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(VectorSimilarity::new(
            VectorOp::CosineDistance,
        )))
    });
    Arc::clone(&F)
}

/// `inner_product(a, b)`, alias `dot_product`.
pub fn inner_product() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(VectorSimilarity::new(
            VectorOp::Inner,
        )))
    });
    Arc::clone(&F)
}
