//! `item_pairs(items)`: every unordered pair of distinct items of a list, as a list of
//! structs {a, b} with a < b — the pair generator behind `item_similarity`.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, ListArray, OffsetSizeTrait, StructArray,
    UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::args::{doc_section, list_item};

const NAME: &str = "item_pairs";

/// The `item_pairs` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ItemPairs {
    signature: Signature,
}

fn pair_fields(item: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("a", item.clone(), false),
        Field::new("b", item.clone(), false),
    ])
}

fn return_type_for(item: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(pair_fields(item)),
        true,
    )))
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Every unordered pair of distinct items of a list, as a list of structs `{a, b}` with \
         `a < b` (in the item type's order), pairs ordered by `a` then `b`. Duplicates count once \
         and NULL elements are ignored; a list with fewer than two distinct items gives an empty \
         list, a NULL list NULL. A list of n distinct items gives n·(n−1)/2 pairs: this is the \
         co-occurrence generator `item_similarity` uses (`unnest` it and `GROUP BY` the pair); \
         cap the items per list when some lists are very long.",
        "item_pairs(items)",
    )
    .with_argument(
        "items",
        "A list of any comparable type (numbers, strings, dates, …).",
    )
    .with_sql_example(
        "```sql\n\
         > SELECT item_pairs(['tea', 'milk', 'bread', 'milk', NULL]) AS pairs;\n\
         +--------------------------------------------------------------+\n\
         | pairs                                                        |\n\
         +--------------------------------------------------------------+\n\
         | [{a: bread, b: milk}, {a: bread, b: tea}, {a: milk, b: tea}] |\n\
         +--------------------------------------------------------------+\n\
         ```",
    )
    .with_related_udf("jaccard_similarity")
    .build()
});

impl ScalarUDFImpl for ItemPairs {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return plan_err!(
                "{NAME}: expected 1 argument (items), got {}",
                arg_types.len()
            );
        }
        match &arg_types[0] {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                if !RowConverter::supports_fields(&[SortField::new(f.data_type().clone())]) {
                    return plan_err!(
                        "{NAME}: argument 1 'items' must be a list of comparable values, got {}",
                        arg_types[0]
                    );
                }
                if matches!(arg_types[0], DataType::FixedSizeList(_, _)) {
                    Ok(vec![DataType::List(Arc::clone(f))])
                } else {
                    Ok(arg_types.to_vec())
                }
            }
            DataType::Null => Ok(vec![DataType::List(Arc::new(Field::new(
                "item",
                DataType::Null,
                true,
            )))]),
            other => plan_err!("{NAME}: argument 1 'items' must be a list, got {other}"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let item = list_item(&arg_types[0]).cloned().unwrap_or(DataType::Null);
        Ok(return_type_for(&item))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let out: ArrayRef = match input.data_type() {
            DataType::List(_) => Arc::new(pairs(input.as_list::<i32>())?),
            DataType::LargeList(_) => Arc::new(pairs(input.as_list::<i64>())?),
            other => return exec_err!("{NAME}: unexpected argument type {other}"),
        };
        if scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// The pairs of every row of `lists`: sort each row's non-NULL elements by their row
/// encoding, drop duplicates, emit index pairs, then gather the values twice.
fn pairs<O: OffsetSizeTrait>(lists: &GenericListArray<O>) -> Result<ListArray> {
    let values = lists.values();
    let item = values.data_type().clone();
    let converter = RowConverter::new(vec![SortField::new(item.clone())])?;
    let rows = converter.convert_columns(&[Arc::clone(values)])?;
    let offsets = lists.value_offsets();
    let mut idx_a: Vec<u32> = Vec::new();
    let mut idx_b: Vec<u32> = Vec::new();
    let mut lengths = Vec::with_capacity(lists.len());
    let mut members: Vec<u32> = Vec::new();
    if values.len() > u32::MAX as usize {
        return exec_err!("{NAME}: more than 2^32 list elements in one batch");
    }
    for i in 0..lists.len() {
        if lists.is_null(i) {
            lengths.push(0);
            continue;
        }
        members.clear();
        for j in offsets[i].as_usize()..offsets[i + 1].as_usize() {
            if values.is_valid(j) {
                members.push(j as u32);
            }
        }
        members.sort_unstable_by(|&x, &y| rows.row(x as usize).cmp(&rows.row(y as usize)));
        members.dedup_by(|x, y| rows.row(*x as usize) == rows.row(*y as usize));
        let m = members.len();
        let count = m * m.saturating_sub(1) / 2;
        if idx_a.len() + count > i32::MAX as usize {
            return exec_err!(
                "{NAME}: one batch would hold more than 2^31 pairs (a list of {m} distinct items in row {}); cap the items per list",
                i + 1
            );
        }
        for x in 0..m {
            for y in x + 1..m {
                idx_a.push(members[x]);
                idx_b.push(members[y]);
            }
        }
        lengths.push(count);
    }
    let a = take(values.as_ref(), &UInt32Array::from(idx_a), None)?;
    let b = take(values.as_ref(), &UInt32Array::from(idx_b), None)?;
    let structs = StructArray::try_new(pair_fields(&item), vec![a, b], None)?;
    Ok(ListArray::try_new(
        Arc::new(Field::new(
            "item",
            DataType::Struct(pair_fields(&item)),
            true,
        )),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(structs),
        lists.nulls().cloned(),
    )?)
}

/// `item_pairs(items)`.
pub fn item_pairs() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(ItemPairs {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    });
    Arc::clone(&F)
}

// ---------------------------------------------------------------------------

const KEYS: &str = "item_pair_keys";

/// The `item_pair_keys` scalar function: `item_pairs` for dense integer ids, each pair packed
/// into one BIGINT (`a · 2³² + b`), so counting pairs groups by a single integer column.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ItemPairKeys {
    signature: Signature,
}

static KEYS_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        doc_section("Recommendation similarity"),
        "Every unordered pair of distinct ids of a list of integer ids in [0, 2³²), packed into \
         one BIGINT `a · 4294967296 + b` with `a < b` (decode with `key / 4294967296` and \
         `key % 4294967296`), ascending. Duplicates count once and NULL ids are ignored; fewer \
         than two distinct ids give an empty list, a NULL list NULL; an id outside [0, 2³²) is \
         an error. `item_similarity` numbers the items 0, 1, … and counts pairs with it: \
         grouping by one integer is much cheaper than by two columns.",
        "item_pair_keys(ids)",
    )
    .with_argument("ids", "A list of integer ids in [0, 4294967295].")
    .with_sql_example(
        "```sql\n\
         > SELECT item_pair_keys([2, 0, 2, 1]) AS keys;\n\
         +--------------------+\n\
         | keys               |\n\
         +--------------------+\n\
         | [1, 2, 4294967298] |\n\
         +--------------------+\n\
         ```",
    )
    .with_related_udf("item_pairs")
    .build()
});

impl ScalarUDFImpl for ItemPairKeys {
    fn name(&self) -> &str {
        KEYS
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return plan_err!("{KEYS}: expected 1 argument (ids), got {}", arg_types.len());
        }
        match &arg_types[0] {
            DataType::Null => {}
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
                if f.data_type().is_integer() || f.data_type().is_null() => {}
            other => {
                return plan_err!(
                    "{KEYS}: argument 1 'ids' must be a list of integers, got {other}"
                );
            }
        }
        Ok(vec![DataType::List(Arc::new(Field::new(
            "item",
            DataType::Int64,
            true,
        )))])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Int64,
            false,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::Int64Type;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let lists = input.as_list::<i32>();
        let values = lists.values().as_primitive::<Int64Type>();
        let offsets = lists.value_offsets();
        let mut keys: Vec<i64> = Vec::new();
        let mut lengths = Vec::with_capacity(lists.len());
        let mut ids: Vec<i64> = Vec::new();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                lengths.push(0);
                continue;
            }
            ids.clear();
            for j in offsets[i] as usize..offsets[i + 1] as usize {
                if values.is_valid(j) {
                    let id = values.value(j);
                    if !(0..=i64::from(u32::MAX)).contains(&id) {
                        return exec_err!("{KEYS}: id {id} is outside [0, 4294967295]");
                    }
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids.dedup();
            let before = keys.len();
            for x in 0..ids.len() {
                let high = ids[x] << 32;
                keys.extend(ids[x + 1..].iter().map(|&b| high | b));
            }
            if keys.len() > i32::MAX as usize {
                return exec_err!(
                    "{KEYS}: one batch would hold more than 2^31 pairs (a list of {} distinct ids in row {}); cap the ids per list",
                    ids.len(),
                    i + 1
                );
            }
            lengths.push(keys.len() - before);
        }
        let out: ArrayRef = Arc::new(ListArray::try_new(
            Arc::new(Field::new("item", DataType::Int64, false)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(Int64Array::from(keys)),
            lists.nulls().cloned(),
        )?);
        if scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&KEYS_DOC)
    }
}

/// `item_pair_keys(ids)`.
pub fn item_pair_keys() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(ItemPairKeys {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    });
    Arc::clone(&F)
}
