//! Shared helpers for signatures, argument checks and documentation sections.
//!
//! Signatures are built from [`Param`]s: for every accepted arity a `Coercible`
//! variant (so `SHOW FUNCTIONS` lists parameter names and types, and named
//! arguments work), followed by an `Any(n)` catch-all of the same arity. The
//! catch-all lets a call with wrong types reach the function, whose
//! `return_field_from_args` then fails with [`check_arg_types`]'s message naming
//! the function, the argument and what was expected — instead of DataFusion's
//! generic "failed to match any signature".

use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::{
    NativeType, logical_boolean, logical_float64, logical_int64, logical_string,
};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    Coercion, DocSection, Signature, TypeSignature, TypeSignatureClass, Volatility,
};

/// What an argument accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any integer type, coerced to Int64.
    Integer,
    /// Any integer, float or decimal, coerced to Float64.
    Number,
    /// Any integer, float or decimal. Not coerced (a decimal stays exact).
    Amount,
    /// A string (Utf8, LargeUtf8, Utf8View).
    String,
    /// A boolean.
    Boolean,
    /// A list of strings (List, LargeList or FixedSizeList of Utf8, LargeUtf8 or Utf8View).
    StringList,
    /// A list of timestamps.
    TimestampList,
    /// A timestamp (any unit or time zone).
    Timestamp,
    /// A timestamp or a date. Not coerced.
    Instant,
    /// A struct (e.g. a fitted model). Not coerced.
    Struct,
    /// Any type with a total order: numbers, decimals, strings, binary, booleans,
    /// dates, times, timestamps, durations, intervals. Not coerced.
    Orderable,
}

impl Kind {
    fn coercion(self) -> Coercion {
        match self {
            Self::Integer => Coercion::new_implicit(
                TypeSignatureClass::Native(logical_int64()),
                vec![TypeSignatureClass::Integer],
                NativeType::Int64,
            ),
            Self::Number => Coercion::new_implicit(
                TypeSignatureClass::Native(logical_float64()),
                vec![TypeSignatureClass::Numeric],
                NativeType::Float64,
            ),
            Self::Amount => Coercion::new_exact(TypeSignatureClass::Numeric),
            Self::String => Coercion::new_exact(TypeSignatureClass::Native(logical_string())),
            Self::Boolean => Coercion::new_exact(TypeSignatureClass::Native(logical_boolean())),
            Self::Orderable | Self::StringList | Self::TimestampList => {
                Coercion::new_exact(TypeSignatureClass::Any)
            }
            Self::Timestamp => Coercion::new_exact(TypeSignatureClass::Timestamp),
            Self::Instant | Self::Struct => Coercion::new_exact(TypeSignatureClass::Any),
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        match self {
            Self::Integer => t.is_integer() || t.is_null(),
            Self::Number | Self::Amount => t.is_numeric() || t.is_null(),
            Self::String => {
                matches!(
                    t,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                ) || matches!(t, DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
            }
            Self::Boolean => matches!(t, DataType::Boolean | DataType::Null),
            Self::StringList => match list_item(t) {
                Some(item) => matches!(
                    item,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                ),
                None => t.is_null(),
            },
            Self::TimestampList => match list_item(t) {
                Some(item) => matches!(item, DataType::Timestamp(_, _) | DataType::Null),
                None => t.is_null(),
            },
            Self::Timestamp => matches!(t, DataType::Timestamp(_, _) | DataType::Null),
            Self::Struct => matches!(t, DataType::Struct(_) | DataType::Null),
            Self::Instant => matches!(
                t,
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null
            ),
            Self::Orderable => {
                t.is_primitive()
                    || matches!(
                        t,
                        DataType::Null
                            | DataType::Boolean
                            | DataType::Utf8
                            | DataType::LargeUtf8
                            | DataType::Utf8View
                            | DataType::Binary
                            | DataType::LargeBinary
                            | DataType::BinaryView
                            | DataType::FixedSizeBinary(_)
                    )
            }
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::Integer => "an integer",
            Self::Number | Self::Amount => "a number",
            Self::String => "a string",
            Self::Boolean => "a boolean",
            Self::Orderable => "an orderable value (number, string, date or timestamp)",
            Self::StringList => "a list of strings",
            Self::TimestampList => "a list of timestamps",
            Self::Timestamp => "a timestamp",
            Self::Instant => "a timestamp or a date",
            Self::Struct => "a struct (a fitted model)",
        }
    }
}

/// The item type of a list type.
pub fn list_item(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => Some(f.data_type()),
        _ => None,
    }
}

/// One parameter of a function.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
}

pub const fn param(name: &'static str, kind: Kind) -> Param {
    Param { name, kind }
}

/// A signature taking the first `required` params and optionally the rest.
pub fn signature(params: &[Param], required: usize, volatility: Volatility) -> Signature {
    let mut variants = Vec::new();
    for n in required..=params.len() {
        variants.push(TypeSignature::Coercible(
            params[..n].iter().map(|p| p.kind.coercion()).collect(),
        ));
    }
    for n in required..=params.len() {
        variants.push(TypeSignature::Any(n));
    }
    named_one_of(params, variants, volatility)
}

/// Like [`signature`], with catch-alls also for `min_any..required` arguments (for
/// functions that also accept a struct standing for several arguments).
pub fn signature_with_short_forms(
    params: &[Param],
    required: usize,
    min_any: usize,
    volatility: Volatility,
) -> Signature {
    let mut variants = Vec::new();
    for n in required..=params.len() {
        variants.push(TypeSignature::Coercible(
            params[..n].iter().map(|p| p.kind.coercion()).collect(),
        ));
    }
    for n in min_any.min(required)..=params.len() {
        variants.push(TypeSignature::Any(n));
    }
    named_one_of(params, variants, volatility)
}

fn named_one_of(
    params: &[Param],
    variants: Vec<TypeSignature>,
    volatility: Volatility,
) -> Signature {
    Signature::one_of(variants, volatility)
        .with_parameter_names(params.iter().map(|p| p.name).collect())
        .expect("parameter names match the signature")
}

/// Check argument types after coercion; the error names function, argument and
/// expectation.
pub fn check_arg_types(function: &str, params: &[Param], types: &[DataType]) -> Result<()> {
    for (i, (p, t)) in params.iter().zip(types).enumerate() {
        if !p.kind.accepts(t) {
            return plan_err!(
                "{function}: argument {} '{}' must be {}, got {t}",
                i + 1,
                p.name,
                p.kind.expected()
            );
        }
    }
    Ok(())
}

/// The documentation section for a function family.
pub const fn doc_section(label: &'static str) -> DocSection {
    DocSection {
        include: true,
        label,
        description: None,
    }
}

/// A string-literal argument of a table function (table and column names).
pub fn string_literal_arg(
    function: &str,
    exprs: &[datafusion::logical_expr::Expr],
    i: usize,
    what: &str,
) -> datafusion::common::Result<String> {
    use datafusion::logical_expr::Expr;
    match exprs.get(i) {
        Some(Expr::Literal(v, _)) => match v.try_as_str() {
            Some(Some(s)) => Ok(s.to_string()),
            _ => plan_err!(
                "{function}: argument {} '{what}' must be a string literal, got {v}",
                i + 1
            ),
        },
        Some(e) => plan_err!(
            "{function}: argument {} '{what}' must be a string literal, got {e}",
            i + 1
        ),
        None => plan_err!("{function}: missing argument {} '{what}'", i + 1),
    }
}

/// A one-row list scalar holding `values` (aggregate states and results).
pub fn scalar_list(values: datafusion::arrow::array::ArrayRef) -> datafusion::common::ScalarValue {
    use datafusion::arrow::array::{Array, ListArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Field;
    let field = std::sync::Arc::new(Field::new("item", values.data_type().clone(), true));
    let len = values.len();
    datafusion::common::ScalarValue::List(std::sync::Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths([len]),
        values,
        None,
    )))
}

/// Like [`check_arg_types`], from the argument fields DataFusion passes at planning.
pub fn check_arg_fields(
    function: &str,
    params: &[Param],
    fields: &[datafusion::arrow::datatypes::FieldRef],
) -> datafusion::common::Result<()> {
    let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
    check_arg_types(function, params, &types)
}

/// A field of an aggregate's serialized state, named `function[name]`.
pub fn state_field(
    function: &str,
    name: &str,
    data_type: DataType,
) -> datafusion::arrow::datatypes::FieldRef {
    std::sync::Arc::new(datafusion::arrow::datatypes::Field::new(
        format!("{function}[{name}]"),
        data_type,
        true,
    ))
}

/// `List(item)` with a nullable item field named "item".
pub fn list_of(item: DataType) -> DataType {
    DataType::List(std::sync::Arc::new(
        datafusion::arrow::datatypes::Field::new("item", item, true),
    ))
}

/// A numeric column as Float64 (a no-op cast when it already is).
pub fn f64_column(
    a: &datafusion::arrow::array::ArrayRef,
) -> datafusion::common::Result<datafusion::arrow::array::Float64Array> {
    use datafusion::arrow::array::AsArray;
    Ok(datafusion::arrow::compute::cast(a, &DataType::Float64)?
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .clone())
}

/// A double-quoted SQL identifier (exact case, quotes doubled).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A possibly qualified table name (`schema.table`), quoted part by part.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The table macros' last step: plan `sql` (written with this crate's functions) against the
/// calling session and return it as a view, so the optimizer, spilling and Ballista apply.
/// `table` is the user's table argument, named in the errors.
pub fn sql_view(
    function: &str,
    session: &dyn datafusion::catalog::Session,
    sql: String,
    table: &str,
) -> Result<std::sync::Arc<dyn datafusion::catalog::TableProvider>> {
    use datafusion::execution::session_state::SessionState;
    use futures::FutureExt;
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        return plan_err!("{function}: needs a DataFusion SessionState to resolve table '{table}'");
    };
    let reference = datafusion::common::TableReference::from(table);
    let exists = state
        .schema_for_ref(reference.clone())
        .is_ok_and(|schema| schema.table_exist(reference.table()));
    if !exists {
        return plan_err!("{function}: table '{table}' not found");
    }
    let plan = match state.create_logical_plan(&sql).now_or_never() {
        Some(Ok(plan)) => plan,
        Some(Err(e)) => return plan_err!("{function}: {e}"),
        None => {
            return plan_err!(
                "{function}: table '{table}' cannot be resolved without blocking; register it first"
            );
        }
    };
    Ok(std::sync::Arc::new(datafusion::datasource::ViewTable::new(
        plan,
        Some(sql),
    )))
}

/// The value of an aggregate's literal argument `i` (None when the call has fewer
/// arguments), read at physical planning; anything but a literal is a planning error
/// naming the function and the argument.
pub fn aggregate_literal(
    function: &str,
    args: &datafusion::logical_expr::function::AccumulatorArgs,
    i: usize,
    what: &str,
) -> Result<Option<datafusion::common::ScalarValue>> {
    use datafusion::physical_expr::expressions::Literal;
    match args.exprs.get(i) {
        None => Ok(None),
        Some(e) => match e.downcast_ref::<Literal>() {
            Some(l) => Ok(Some(l.value().clone())),
            None => plan_err!("{function}: argument {} '{what}' must be a literal", i + 1),
        },
    }
}

/// An aggregate's optional boolean-literal argument `i`: false when absent or NULL;
/// anything but a boolean literal is a planning error naming the function and the argument.
pub fn aggregate_bool_literal(
    function: &str,
    args: &datafusion::logical_expr::function::AccumulatorArgs,
    i: usize,
    what: &str,
) -> Result<bool> {
    use datafusion::common::ScalarValue;
    match aggregate_literal(function, args, i, what)? {
        None | Some(ScalarValue::Boolean(None)) => Ok(false),
        Some(ScalarValue::Boolean(Some(b))) => Ok(b),
        Some(other) => {
            plan_err!("{function}: argument '{what}' must be true or false, got {other}")
        }
    }
}

/// An optional integer-literal argument `i` of a table function: None when absent or NULL;
/// a value outside `min..=max` or a non-integer is a planning error naming the argument.
pub fn integer_literal_arg(
    function: &str,
    exprs: &[datafusion::logical_expr::Expr],
    i: usize,
    what: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    match exprs.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) if v.is_null() => Ok(None),
        Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(x)))
                if v.data_type().is_integer() && (min..=max).contains(&x) =>
            {
                Ok(Some(x))
            }
            _ => plan_err!(
                "{function}: argument {} '{what}' must be an integer in {min}..={max}, got {v}",
                i + 1
            ),
        },
        Some(e) => plan_err!(
            "{function}: argument {} '{what}' must be an integer literal, got {e}",
            i + 1
        ),
    }
}

/// An optional number-literal argument `i` of a table function (None when absent or NULL).
pub fn number_literal_arg(
    function: &str,
    exprs: &[datafusion::logical_expr::Expr],
    i: usize,
    what: &str,
) -> Result<Option<f64>> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    match exprs.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) if v.is_null() => Ok(None),
        Some(Expr::Literal(v, _)) if v.data_type().is_numeric() => {
            match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(x))) if x.is_finite() => Ok(Some(x)),
                _ => plan_err!(
                    "{function}: argument {} '{what}' must be a finite number, got {v}",
                    i + 1
                ),
            }
        }
        Some(e) => plan_err!(
            "{function}: argument {} '{what}' must be a number literal, got {e}",
            i + 1
        ),
    }
}
