//! Predictions from fitted models: expected purchases, P(alive), expected spend and
//! discounted customer lifetime value. Each takes the struct a `*_fit` aggregate returns as
//! its first argument (a column, so different rows may use different models, e.g. one per
//! segment).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::fit::ModelKind;
use super::model::{self, Period};
use crate::args::{Kind, Param, check_arg_fields, doc_section, f64_column, param, signature};

/// What a prediction function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Expected(ModelKind),
    Alive(ModelKind),
    Spend,
    Lifetime,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Expected(ModelKind::BgNbd) => "bgnbd_expected_purchases",
            Self::Expected(ModelKind::MbgNbd) => "mbgnbd_expected_purchases",
            Self::Expected(_) => "pareto_nbd_expected_purchases",
            Self::Alive(ModelKind::BgNbd) => "bgnbd_p_alive",
            Self::Alive(ModelKind::MbgNbd) => "mbgnbd_p_alive",
            Self::Alive(_) => "pareto_nbd_p_alive",
            Self::Spend => "gamma_gamma_expected_spend",
            Self::Lifetime => "customer_lifetime_value",
        }
    }

    fn params(self) -> &'static [Param] {
        const EXPECTED: [Param; 5] = [
            param("model", Kind::Struct),
            param("t", Kind::Number),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
        ];
        const ALIVE: [Param; 4] = [
            param("model", Kind::Struct),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
        ];
        const SPEND: [Param; 3] = [
            param("model", Kind::Struct),
            param("frequency", Kind::Number),
            param("monetary_value", Kind::Number),
        ];
        const LIFETIME: [Param; 9] = [
            param("purchase_model", Kind::Struct),
            param("spend_model", Kind::Struct),
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
            param("monetary_value", Kind::Number),
            param("horizon_months", Kind::Integer),
            param("discount_rate", Kind::Number),
            param("days_per_month", Kind::Number),
        ];
        match self {
            Self::Expected(_) => &EXPECTED,
            Self::Alive(_) => &ALIVE,
            Self::Spend => &SPEND,
            Self::Lifetime => &LIFETIME,
        }
    }

    fn required(self) -> usize {
        match self {
            Self::Lifetime => 6,
            _ => self.params().len(),
        }
    }
}

/// A prediction scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Predict {
    op: Op,
    signature: Signature,
}

impl Predict {
    pub fn new(op: Op) -> Self {
        Self {
            op,
            signature: signature(op.params(), op.required(), Volatility::Immutable),
        }
    }
}

/// Planning-time check that a struct argument carries the fields of `kinds`' models.
fn check_model_type(function: &str, arg: &str, t: &DataType, kinds: &[ModelKind]) -> Result<()> {
    let DataType::Struct(fields) = t else {
        if t.is_null() {
            return Ok(());
        }
        return plan_err!("{function}: argument '{arg}' must be a fitted model struct, got {t}");
    };
    let has = |n: &str| fields.find(n).is_some();
    let fits = kinds
        .iter()
        .any(|k| has("model") && k.params().iter().all(|p| has(p)));
    if !fits {
        let wanted: Vec<String> = kinds
            .iter()
            .map(|k| format!("{}_fit(...)", k.tag()))
            .collect();
        return plan_err!(
            "{function}: argument '{arg}' must be the struct returned by {}, got {t}",
            wanted.join(" or ")
        );
    }
    Ok(())
}

/// Rows of a model struct column: model tag, parameters and period per row.
struct Models {
    tags: StringArray,
    params: Vec<Float64Array>,
    periods: Option<StringArray>,
    nulls: Option<datafusion::arrow::buffer::NullBuffer>,
}

impl Models {
    fn new(a: &ArrayRef, names: &[&str]) -> Result<Self> {
        if a.data_type().is_null() {
            let n = a.len();
            return Ok(Self {
                tags: StringArray::new_null(n),
                params: vec![],
                periods: None,
                nulls: Some(datafusion::arrow::buffer::NullBuffer::new_null(n)),
            });
        }
        let s = a.as_struct();
        let field = |n: &str| -> Result<&ArrayRef> {
            s.column_by_name(n).ok_or_else(|| {
                datafusion::common::DataFusionError::Execution(format!(
                    "model struct has no field '{n}'"
                ))
            })
        };
        let tags = cast(field("model")?, &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        let params = names
            .iter()
            .map(|n| f64_column(field(n)?))
            .collect::<Result<Vec<_>>>()?;
        let periods = match s.column_by_name("period") {
            Some(p) => Some(cast(p, &DataType::Utf8)?.as_string::<i32>().clone()),
            None => None,
        };
        Ok(Self {
            tags,
            params,
            periods,
            nulls: s.logical_nulls(),
        })
    }

    fn is_null(&self, i: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(i))
            || self.tags.is_null(i)
            || self.params.iter().any(|p| p.is_null(i))
    }

    fn kind(&self, i: usize) -> Option<ModelKind> {
        ModelKind::from_tag(self.tags.value(i))
    }

    fn get<const N: usize>(&self, i: usize) -> [f64; N] {
        std::array::from_fn(|k| self.params[k].value(i))
    }
}

fn check_customer(function: &str, x: f64, tx: f64, t: f64) -> Result<()> {
    if !(x.is_finite() && tx.is_finite() && t.is_finite())
        || x < 0.0
        || tx < 0.0
        || tx > t
        || (x == 0.0 && tx != 0.0)
    {
        return exec_err!(
            "{function}: invalid customer (frequency {x}, recency {tx}, T {t}): need frequency >= 0, \
             0 <= recency <= T, and recency 0 when frequency is 0"
        );
    }
    Ok(())
}

fn purchase_names(kind: ModelKind) -> &'static [&'static str] {
    kind.params()
}

/// Expected purchases within each of `horizons` periods for a purchase model of `kind`.
fn expected(kind: ModelKind, p: &[f64; 4], horizons: &[f64], c: [f64; 3], out: &mut [f64]) {
    let [x, tx, t] = c;
    match kind {
        ModelKind::BgNbd => model::bgnbd_expected_many(p, horizons, x, tx, t, out),
        ModelKind::MbgNbd => model::mbgnbd_expected_many(p, horizons, x, tx, t, out),
        _ => model::pareto_nbd_expected_many(p, horizons, x, tx, t, out),
    }
}

fn finite(function: &str, v: f64, what: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        exec_err!(
            "{function}: {what} is not finite ({v}); the model's parameters are out of range for this customer"
        )
    }
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.op.name();
        check_arg_fields(name, self.op.params(), args.arg_fields)?;
        let t = |i: usize| args.arg_fields[i].data_type();
        match self.op {
            Op::Expected(k) | Op::Alive(k) => check_model_type(name, "model", t(0), &[k])?,
            Op::Spend => check_model_type(name, "model", t(0), &[ModelKind::GammaGamma])?,
            Op::Lifetime => {
                check_model_type(
                    name,
                    "purchase_model",
                    t(0),
                    &[ModelKind::BgNbd, ModelKind::ParetoNbd],
                )?;
                check_model_type(name, "spend_model", t(1), &[ModelKind::GammaGamma])?;
            }
        }
        Ok(Arc::new(Field::new(name, DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.op.name();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = args.number_rows;
        let out: Float64Array = match self.op {
            Op::Expected(kind) | Op::Alive(kind) => {
                let models = Models::new(&arrays[0], purchase_names(kind))?;
                let nums = arrays[1..]
                    .iter()
                    .map(f64_column)
                    .collect::<Result<Vec<_>>>()?;
                let horizon = matches!(self.op, Op::Expected(_));
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    if models.is_null(i) || nums.iter().any(|c| c.is_null(i)) {
                        out.push(None);
                        continue;
                    }
                    if models.kind(i) != Some(kind) {
                        return exec_err!(
                            "{name}: the model is a '{}' model, expected '{}'",
                            models.tags.value(i),
                            kind.tag()
                        );
                    }
                    let p: [f64; 4] = models.get(i);
                    // (t,) frequency, recency, T — no per-row allocation
                    let v: [f64; 4] =
                        std::array::from_fn(|k| nums.get(k).map_or(0.0, |c| c.value(i)));
                    let value = if horizon {
                        let (h, x, tx, t) = (v[0], v[1], v[2], v[3]);
                        check_customer(name, x, tx, t)?;
                        if !(h >= 0.0 && h.is_finite()) {
                            return exec_err!(
                                "{name}: t must be a finite number of periods >= 0, got {h}"
                            );
                        }
                        let mut e = [0.0];
                        expected(kind, &p, &[h], [x, tx, t], &mut e);
                        finite(name, e[0], "the expected number of purchases")?
                    } else {
                        let (x, tx, t) = (v[0], v[1], v[2]);
                        check_customer(name, x, tx, t)?;
                        let alive = match kind {
                            ModelKind::BgNbd => model::bgnbd_p_alive(&p, x, tx, t),
                            ModelKind::MbgNbd => model::mbgnbd_p_alive(&p, x, tx, t),
                            _ => model::pareto_nbd_p_alive(&p, x, tx, t),
                        };
                        finite(name, alive, "P(alive)")?
                    };
                    out.push(Some(value));
                }
                Float64Array::from(out)
            }
            Op::Spend => {
                let models = Models::new(&arrays[0], ModelKind::GammaGamma.params())?;
                let x = f64_column(&arrays[1])?;
                let m = f64_column(&arrays[2])?;
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    if models.is_null(i) || x.is_null(i) || m.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let p = spend_params(name, &models, i)?;
                    out.push(Some(spend(name, &p, x.value(i), m.value(i))?));
                }
                Float64Array::from(out)
            }
            Op::Lifetime => lifetime(name, &arrays, rows)?,
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.op {
            Op::Expected(ModelKind::BgNbd) => &BG_EXPECTED_DOC,
            Op::Expected(ModelKind::MbgNbd) => &MBG_EXPECTED_DOC,
            Op::Expected(_) => &PARETO_EXPECTED_DOC,
            Op::Alive(ModelKind::BgNbd) => &BG_ALIVE_DOC,
            Op::Alive(ModelKind::MbgNbd) => &MBG_ALIVE_DOC,
            Op::Alive(_) => &PARETO_ALIVE_DOC,
            Op::Spend => &SPEND_DOC,
            Op::Lifetime => &LIFETIME_DOC,
        })
    }
}

fn spend_params(name: &str, models: &Models, i: usize) -> Result<[f64; 3]> {
    if models.kind(i) != Some(ModelKind::GammaGamma) {
        return exec_err!(
            "{name}: the spend model is a '{}' model, expected 'gamma_gamma'",
            models.tags.value(i)
        );
    }
    let p: [f64; 3] = models.get(i);
    if p[1] <= 1.0 {
        return exec_err!(
            "{name}: the Gamma-Gamma model has q = {} <= 1, so its mean spend is infinite",
            p[1]
        );
    }
    Ok(p)
}

fn spend(name: &str, p: &[f64; 3], x: f64, m: f64) -> Result<f64> {
    if !(x.is_finite() && m.is_finite()) || x < 0.0 {
        return exec_err!(
            "{name}: invalid customer (frequency {x}, monetary_value {m}): need finite values and frequency >= 0"
        );
    }
    finite(
        name,
        model::gamma_gamma_expected_spend(p, x, m),
        "the expected spend",
    )
}

fn lifetime(name: &str, arrays: &[ArrayRef], rows: usize) -> Result<Float64Array> {
    let purchase_tags = Models::new(&arrays[0], &[])?;
    // every parameter column any purchase model has, cast once (absent ones are None)
    const NAMES: [&str; 6] = ["r", "alpha", "a", "b", "s", "beta"];
    let columns: Vec<Option<Float64Array>> = match arrays[0].as_struct_opt() {
        Some(s) => NAMES
            .iter()
            .map(|n| s.column_by_name(n).map(f64_column).transpose())
            .collect::<Result<_>>()?,
        None => vec![None; NAMES.len()],
    };
    let spend_models = Models::new(&arrays[1], ModelKind::GammaGamma.params())?;
    let nums = arrays[2..6]
        .iter()
        .map(f64_column)
        .collect::<Result<Vec<_>>>()?;
    let optional =
        |i: usize| -> Result<Option<Float64Array>> { arrays.get(i).map(f64_column).transpose() };
    let (months, rate, days) = (optional(6)?, optional(7)?, optional(8)?);
    let value_or = |c: &Option<Float64Array>, i: usize, d: f64| -> Option<f64> {
        match c {
            None => Some(d),
            Some(c) if c.is_null(i) => None,
            Some(c) => Some(c.value(i)),
        }
    };
    let mut out = Vec::with_capacity(rows);
    let (mut horizons, mut curve) = (Vec::new(), Vec::new());
    for i in 0..rows {
        let (Some(h), Some(d), Some(dpm)) = (
            value_or(&months, i, 12.0),
            value_or(&rate, i, 0.01),
            value_or(&days, i, 30.0),
        ) else {
            out.push(None);
            continue;
        };
        if purchase_tags.is_null(i) || spend_models.is_null(i) || nums.iter().any(|c| c.is_null(i))
        {
            out.push(None);
            continue;
        }
        let kind = purchase_tags.kind(i);
        let slots: [usize; 4] = match kind {
            Some(ModelKind::BgNbd | ModelKind::MbgNbd) => [0, 1, 2, 3],
            Some(ModelKind::ParetoNbd) => [0, 1, 4, 5],
            _ => {
                return exec_err!(
                    "{name}: the purchase model is a '{}' model, expected bgnbd, mbgnbd or pareto_nbd",
                    purchase_tags.tags.value(i)
                );
            }
        };
        let kind = kind.expect("checked");
        let mut p = [0.0; 4];
        let mut null = false;
        for (k, &slot) in slots.iter().enumerate() {
            let Some(c) = &columns[slot] else {
                return exec_err!(
                    "{name}: the purchase model lacks the parameters {:?}",
                    kind.params()
                );
            };
            null |= c.is_null(i);
            p[k] = c.value(i);
        }
        if null {
            out.push(None);
            continue;
        }
        let period = purchase_tags
            .periods
            .as_ref()
            .filter(|p| p.is_valid(i))
            .and_then(|p| Period::parse(p.value(i)));
        let Some(period) = period else {
            return exec_err!(
                "{name}: the purchase model has no period unit ('day', 'week' or 'month'), so months \
                 cannot be converted; fit it on clv_summary(...) or pass period => 'day' to the fit"
            );
        };
        if !(h >= 0.0 && h.fract() == 0.0 && h <= 1200.0) {
            return exec_err!("{name}: horizon_months must be a whole number in 0..=1200, got {h}");
        }
        if !(d > -1.0 && d.is_finite()) {
            return exec_err!("{name}: discount_rate must be > -1 (a monthly rate), got {d}");
        }
        if !(dpm > 0.0 && dpm.is_finite()) {
            return exec_err!("{name}: days_per_month must be > 0, got {dpm}");
        }
        let [x, tx, t, m] = [0, 1, 2, 3].map(|k| nums[k].value(i));
        check_customer(name, x, tx, t)?;
        let sp = spend_params(name, &spend_models, i)?;
        let e_spend = spend(name, &sp, x, m)?;
        model::month_horizons(h as u32, period.per_month(dpm), &mut horizons);
        curve.resize(horizons.len(), 0.0);
        expected(kind, &p, &horizons, [x, tx, t], &mut curve);
        let value = model::discounted_value(&curve, e_spend, d);
        out.push(Some(finite(name, value, "the lifetime value")?));
    }
    Ok(Float64Array::from(out))
}

fn section() -> datafusion::logical_expr::DocSection {
    doc_section("Customer lifetime value")
}

fn expected_doc(kind: ModelKind, example: &str) -> Documentation {
    let model = match kind {
        ModelKind::BgNbd => "BG/NBD",
        ModelKind::MbgNbd => "MBG/NBD",
        _ => "Pareto/NBD",
    };
    let f = Op::Expected(kind).name();
    Documentation::builder(
        section(),
        format!(
            "Expected number of purchases in the next `t` periods of a customer with history \
             (frequency, recency, T), under a fitted {model} model (the conditional expectation \
             of the model's paper, as lifetimes' `conditional_expected_number_of_purchases_up_to_time`). \
             `t` is in the model's period unit. The hypergeometric function is evaluated after \
             Euler's transformation, so frequent buyers do not overflow. NULL inputs give NULL; \
             a customer with recency > T, negative values or recency > 0 at frequency 0 is an error."
        ),
        format!("{f}(model, t, frequency, recency, T)"),
    )
    .with_argument("model", format!("The struct returned by `{}_fit`.", kind.tag()))
    .with_argument("t", "Horizon, in the model's periods.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument("recency", "Periods between the customer's first and last purchase.")
    .with_argument("T", "Periods between the customer's first purchase and the end of observation.")
    .with_sql_example(example)
    .build()
}

fn alive_doc(kind: ModelKind, example: &str) -> Documentation {
    let model = match kind {
        ModelKind::BgNbd => "BG/NBD (1 for a customer without repeat purchases, as in the model)",
        ModelKind::MbgNbd => "MBG/NBD",
        _ => "Pareto/NBD",
    };
    let f = Op::Alive(kind).name();
    Documentation::builder(
        section(),
        format!(
            "Probability that a customer with history (frequency, recency, T) is still active \
             at the end of observation, under a fitted {model} model. NULL inputs give NULL."
        ),
        format!("{f}(model, frequency, recency, T)"),
    )
    .with_argument(
        "model",
        format!("The struct returned by `{}_fit`.", kind.tag()),
    )
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument(
        "recency",
        "Periods between the customer's first and last purchase.",
    )
    .with_argument(
        "T",
        "Periods between the customer's first purchase and the end of observation.",
    )
    .with_sql_example(example)
    .build()
}

const BG_MODEL: &str =
    "named_struct('model', 'bgnbd', 'r', 0.2426, 'alpha', 4.4136, 'a', 0.7929, 'b', 2.4259)";
const MBG_MODEL: &str =
    "named_struct('model', 'mbgnbd', 'r', 0.525, 'alpha', 6.183, 'a', 0.891, 'b', 1.614)";
const PARETO_MODEL: &str = "named_struct('model', 'pareto_nbd', 'r', 0.5534, 'alpha', 10.5802, 's', 0.6061, 'beta', 11.6562)";

fn example(call: &str, header: &str, value: &str) -> String {
    let w = header.len().max(value.len());
    let line = format!("+{}+", "-".repeat(w + 2));
    format!(
        "```sql\n> SELECT round({call}, 4) AS {header};\n{line}\n| {header:<w$} |\n{line}\n| {value:<w$} |\n{line}\n```"
    )
}

static BG_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::BgNbd,
        &example(
            &format!("bgnbd_expected_purchases({BG_MODEL}, 39, 2, 30.43, 38.86)"),
            "expected",
            "1.2259",
        ),
    )
});
static MBG_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::MbgNbd,
        &example(
            &format!("mbgnbd_expected_purchases({MBG_MODEL}, 39, 2, 30.43, 38.86)"),
            "expected",
            "1.263",
        ),
    )
});
static PARETO_EXPECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    expected_doc(
        ModelKind::ParetoNbd,
        &example(
            &format!("pareto_nbd_expected_purchases({PARETO_MODEL}, 52, 26, 30.86, 31)"),
            "expected",
            "25.4549",
        ),
    )
});
static BG_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::BgNbd,
        &example(
            &format!("bgnbd_p_alive({BG_MODEL}, 2, 30.43, 38.86)"),
            "p_alive",
            "0.7266",
        ),
    )
});
static MBG_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::MbgNbd,
        &example(
            &format!("mbgnbd_p_alive({MBG_MODEL}, 2, 30.43, 38.86)"),
            "p_alive",
            "0.7062",
        ),
    )
});
static PARETO_ALIVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    alive_doc(
        ModelKind::ParetoNbd,
        &example(
            &format!("pareto_nbd_p_alive({PARETO_MODEL}, 26, 30.86, 31)"),
            "p_alive",
            "0.9979",
        ),
    )
});

const GG_MODEL: &str = "named_struct('model', 'gamma_gamma', 'p', 6.25, 'q', 3.74, 'v', 15.44)";

static SPEND_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        "Expected mean spend per purchase of a customer with `frequency` repeat purchases of \
         mean `monetary_value`, under a fitted Gamma-Gamma model: the weighted average \
         (1 − w)·p·v/(q − 1) + w·monetary_value with w = p·x/(p·x + q − 1) (lifetimes' \
         `conditional_expected_average_profit`). A customer without repeat purchases gets the \
         population mean. A model with q <= 1 (infinite mean) is an error; NULL inputs give NULL.",
        "gamma_gamma_expected_spend(model, frequency, monetary_value)",
    )
    .with_argument("model", "The struct returned by `gamma_gamma_fit`.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument(
        "monetary_value",
        "Mean spend of the customer's repeat purchases.",
    )
    .with_sql_example(example(
        &format!("gamma_gamma_expected_spend({GG_MODEL}, 2, 22.35)"),
        "spend",
        "24.6637",
    ))
    .build()
});

static LIFETIME_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        "Discounted customer lifetime value over the next `horizon_months` months: the sum over \
         months i = 1..horizon of expected spend × (E(i months) − E(i − 1 months)) / \
         (1 + discount_rate)^i, with E the purchase model's expected purchases and the spend \
         from the Gamma-Gamma model (lifetimes' `customer_lifetime_value`). Months are converted \
         to the purchase model's period unit by the function itself — `days_per_month` days \
         (default 30) make a month, so 30 periods for 'day', 30/7 for 'week', 1 for 'month' — \
         so units cannot be mixed up; a purchase model without a period unit is an error. \
         `discount_rate` is monthly (default 0.01). NULL inputs give NULL.",
        "customer_lifetime_value(purchase_model, spend_model, frequency, recency, T, monetary_value [, horizon_months [, discount_rate [, days_per_month]]])",
    )
    .with_argument("purchase_model", "The struct returned by `bgnbd_fit`, `mbgnbd_fit` or `pareto_nbd_fit`.")
    .with_argument("spend_model", "The struct returned by `gamma_gamma_fit`.")
    .with_argument("frequency", "The customer's repeat purchases.")
    .with_argument("recency", "Periods between the customer's first and last purchase.")
    .with_argument("T", "Periods between the customer's first purchase and the end of observation.")
    .with_argument("monetary_value", "Mean spend of the customer's repeat purchases.")
    .with_argument("horizon_months", "Months to sum over, a whole number; default 12.")
    .with_argument("discount_rate", "Monthly discount rate; default 0.01.")
    .with_argument("days_per_month", "Days in a month for the unit conversion; default 30.")
    .with_sql_example(format!(
        "```sql\n\
         > SELECT round(customer_lifetime_value(named_struct('model', 'bgnbd', 'r', 0.2426, 'alpha', 4.4136, 'a', 0.7929, 'b', 2.4259, 'period', 'week'),\n\
         >   {GG_MODEL}, 2, 30.43, 38.86, 22.35), 2) AS clv;\n\
         +-------+\n\
         | clv   |\n\
         +-------+\n\
         | 35.88 |\n\
         +-------+\n\
         ```"
    ))
    .with_related_udf("bgnbd_fit")
    .with_related_udf("gamma_gamma_fit")
    .build()
});

macro_rules! predict_udf {
    ($fn:ident, $op:expr) => {
        #[doc = concat!("The `", stringify!($fn), "` scalar function (a shared singleton).")]
        pub fn $fn() -> Arc<ScalarUDF> {
            static UDF: LazyLock<Arc<ScalarUDF>> =
                LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(Predict::new($op))));
            Arc::clone(&UDF)
        }
    };
}

predict_udf!(bgnbd_expected_purchases, Op::Expected(ModelKind::BgNbd));
predict_udf!(bgnbd_p_alive, Op::Alive(ModelKind::BgNbd));
predict_udf!(mbgnbd_expected_purchases, Op::Expected(ModelKind::MbgNbd));
predict_udf!(mbgnbd_p_alive, Op::Alive(ModelKind::MbgNbd));
predict_udf!(
    pareto_nbd_expected_purchases,
    Op::Expected(ModelKind::ParetoNbd)
);
predict_udf!(pareto_nbd_p_alive, Op::Alive(ModelKind::ParetoNbd));
predict_udf!(gamma_gamma_expected_spend, Op::Spend);
predict_udf!(customer_lifetime_value, Op::Lifetime);
