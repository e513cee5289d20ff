//! `jaccard_similarity(a, b)` and `overlap_coefficient(a, b)`: set similarity of two lists
//! of any comparable type (duplicates and NULL elements ignored).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, Float64Array, GenericListArray, OffsetSizeTrait};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::row::{Row, RowConverter, SortField};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::model::{intersection_size, jaccard, overlap};
use crate::args::{doc_section, list_item};

/// Which set similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetOp {
    Jaccard,
    Overlap,
}

impl SetOp {
    fn name(self) -> &'static str {
        match self {
            Self::Jaccard => "jaccard_similarity",
            Self::Overlap => "overlap_coefficient",
        }
    }
}

/// A set similarity scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SetSimilarity {
    op: SetOp,
    signature: Signature,
}

const COMMON: &str = "Lists are read as sets: duplicates count once and NULL elements are \
    ignored. The two lists may have any lengths and any comparable item type (numbers, strings, \
    dates, …; different numeric or string types are coerced to a common one). A NULL list gives \
    NULL; a constant list is compared with every row.";

fn doc(op: SetOp) -> Documentation {
    let (description, example) = match op {
        SetOp::Jaccard => (
            format!(
                "Jaccard similarity |A ∩ B| / |A ∪ B|, in [0, 1]. NULL when both sets are empty \
                 (undefined). {COMMON}"
            ),
            "```sql\n\
             > SELECT jaccard_similarity(['tea', 'milk', 'bread', 'tea'], ['milk', 'tea', 'jam']) AS j,\n\
             >        jaccard_similarity([1, 2], [3]) AS disjoint;\n\
             +-----+----------+\n\
             | j   | disjoint |\n\
             +-----+----------+\n\
             | 0.5 | 0.0      |\n\
             +-----+----------+\n\
             ```",
        ),
        SetOp::Overlap => (
            format!(
                "Overlap (Szymkiewicz–Simpson) coefficient |A ∩ B| / min(|A|, |B|), in [0, 1]: 1 \
                 when one set contains the other. NULL when either set is empty. {COMMON}"
            ),
            "```sql\n\
             > SELECT overlap_coefficient([1, 2], [1, 2, 3, 4]) AS contained,\n\
             >        overlap_coefficient([1, 2, 5], [2, 3, NULL]) AS partial;\n\
             +-----------+---------+\n\
             | contained | partial |\n\
             +-----------+---------+\n\
             | 1.0       | 0.5     |\n\
             +-----------+---------+\n\
             ```",
        ),
    };
    Documentation::builder(
        doc_section("Recommendation similarity"),
        description,
        format!("{}(a, b)", op.name()),
    )
    .with_argument("a", "A list.")
    .with_argument("b", "A list of a comparable item type.")
    .with_sql_example(example)
    .with_related_udf(if op == SetOp::Jaccard {
        "overlap_coefficient"
    } else {
        "jaccard_similarity"
    })
    .with_related_udf("cosine_similarity")
    .build()
}

static DOCS: LazyLock<[Documentation; 2]> =
    LazyLock::new(|| [doc(SetOp::Jaccard), doc(SetOp::Overlap)]);

fn coerce_sets(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    if types.len() != 2 {
        return plan_err!("{name}: expected 2 arguments (a, b), got {}", types.len());
    }
    let mut large = false;
    let mut items = Vec::with_capacity(2);
    for (i, t) in types.iter().enumerate() {
        let arg = ["a", "b"][i];
        match t {
            DataType::Null => items.push(DataType::Null),
            DataType::List(f) | DataType::FixedSizeList(f, _) | DataType::LargeList(f) => {
                large |= matches!(t, DataType::LargeList(_));
                items.push(f.data_type().clone());
            }
            other => {
                return plan_err!(
                    "{name}: argument {} '{arg}' must be a list, got {other}",
                    i + 1
                );
            }
        }
    }
    let item = if items[0] == items[1] {
        items[0].clone()
    } else if items[0].is_null() {
        items[1].clone()
    } else if items[1].is_null() {
        items[0].clone()
    } else {
        match comparison_coercion(&items[0], &items[1]) {
            Some(t) => t,
            None => {
                return plan_err!(
                    "{name}: the lists' items cannot be compared: {} and {}",
                    items[0],
                    items[1]
                );
            }
        }
    };
    if !RowConverter::supports_fields(&[SortField::new(item.clone())]) {
        return plan_err!("{name}: list items of type {item} cannot be compared");
    }
    let field = Arc::new(Field::new("item", item, true));
    let t = if large {
        DataType::LargeList(field)
    } else {
        DataType::List(field)
    };
    Ok(vec![t.clone(), t])
}

impl ScalarUDFImpl for SetSimilarity {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_sets(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let op = self.op;
        super::invoke_two_lists(
            self.name(),
            &args,
            |a, b, n| set_similarities(op, a, b, n),
            |a, b, n| set_similarities(op, a, b, n),
        )
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.op {
            SetOp::Jaccard => &DOCS[0],
            SetOp::Overlap => &DOCS[1],
        })
    }
}

/// The non-NULL elements of `list[i]` as sorted, distinct rows, into `out` (reused).
fn set_of<'a, O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    rows: &'a datafusion::arrow::row::Rows,
    i: usize,
    out: &mut Vec<Row<'a>>,
) {
    out.clear();
    let offsets = list.value_offsets();
    let values = list.values();
    for j in offsets[i].as_usize()..offsets[i + 1].as_usize() {
        if values.is_valid(j) {
            out.push(rows.row(j));
        }
    }
    out.sort_unstable();
    out.dedup();
}

fn set_similarities<O: OffsetSizeTrait>(
    op: SetOp,
    a: &GenericListArray<O>,
    b: &GenericListArray<O>,
    n: usize,
) -> Result<Float64Array> {
    let item = list_item(a.data_type()).cloned().unwrap_or(DataType::Null);
    let converter = RowConverter::new(vec![SortField::new(item)])?;
    let ra = converter.convert_columns(&[Arc::clone(a.values())])?;
    let rb = converter.convert_columns(&[Arc::clone(b.values())])?;
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for i in 0..n {
        let ia = if a.len() == 1 { 0 } else { i };
        let ib = if b.len() == 1 { 0 } else { i };
        if a.is_null(ia) || b.is_null(ib) {
            out.push(0.0);
            valid.push(false);
            continue;
        }
        set_of(a, &ra, ia, &mut sa);
        set_of(b, &rb, ib, &mut sb);
        let common = intersection_size(&sa, &sb);
        let r = match op {
            SetOp::Jaccard => jaccard(sa.len(), sb.len(), common),
            SetOp::Overlap => overlap(sa.len(), sb.len(), common),
        };
        out.push(r.unwrap_or(0.0));
        valid.push(r.is_some());
    }
    Ok(Float64Array::new(out.into(), Some(valid.into())))
}

fn udf(op: SetOp) -> ScalarUDF {
    ScalarUDF::new_from_impl(SetSimilarity {
        op,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// `jaccard_similarity(a, b)`.
pub fn jaccard_similarity() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(udf(SetOp::Jaccard)));
    Arc::clone(&F)
}

/// `overlap_coefficient(a, b)`.
pub fn overlap_coefficient() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(udf(SetOp::Overlap)));
    Arc::clone(&F)
}
