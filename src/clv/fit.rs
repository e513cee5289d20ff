//! `bgnbd_fit`, `pareto_nbd_fit`, `mbgnbd_fit`, `gamma_gamma_fit`: maximum-likelihood fits as
//! aggregates. The state is a histogram of distinct customer patterns with counts, so it
//! stays small for millions of customers and merges across partitions; the optimizer runs
//! once, in `evaluate`, on the canonically sorted histogram (same input, same bits).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::histogram::{Histogram, SpendKey};
use super::model::{self, Fit, FitOptions, Pattern, Period, Spend};
use super::real::is_whole;
use crate::args::{
    Kind, Param, aggregate_literal, check_arg_types, doc_section, f64_column, list_of, param,
    scalar_list, signature_with_short_forms, state_field,
};

/// Which model a fit (and the struct it returns) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    BgNbd,
    ParetoNbd,
    MbgNbd,
    GammaGamma,
}

impl ModelKind {
    /// The `model` field of the fitted struct.
    pub fn tag(self) -> &'static str {
        match self {
            Self::BgNbd => "bgnbd",
            Self::ParetoNbd => "pareto_nbd",
            Self::MbgNbd => "mbgnbd",
            Self::GammaGamma => "gamma_gamma",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        [Self::BgNbd, Self::ParetoNbd, Self::MbgNbd, Self::GammaGamma]
            .into_iter()
            .find(|k| k.tag() == tag)
    }

    fn function(self) -> &'static str {
        match self {
            Self::BgNbd => "bgnbd_fit",
            Self::ParetoNbd => "pareto_nbd_fit",
            Self::MbgNbd => "mbgnbd_fit",
            Self::GammaGamma => "gamma_gamma_fit",
        }
    }

    /// Parameter names, in the order of the struct fields.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Self::BgNbd | Self::MbgNbd => &["r", "alpha", "a", "b"],
            Self::ParetoNbd => &["r", "alpha", "s", "beta"],
            Self::GammaGamma => &["p", "q", "v"],
        }
    }

    fn inputs(self) -> &'static [Param] {
        const PURCHASE: [Param; 5] = [
            param("frequency", Kind::Number),
            param("recency", Kind::Number),
            param("T", Kind::Number),
            param("penalizer", Kind::Number),
            param("period", Kind::String),
        ];
        const SPEND: [Param; 4] = [
            param("frequency", Kind::Number),
            param("monetary_value", Kind::Number),
            param("penalizer", Kind::Number),
            param("period", Kind::String),
        ];
        match self {
            Self::GammaGamma => &SPEND,
            _ => &PURCHASE,
        }
    }

    /// Number of data columns in the expanded form.
    fn data_columns(self) -> usize {
        if self == Self::GammaGamma { 2 } else { 3 }
    }
}

/// The struct a fit returns.
pub fn model_fields(kind: ModelKind) -> Fields {
    // nullable: a NULL model (no customers) has NULL fields
    let mut fields = vec![Field::new("model", DataType::Utf8, true)];
    for p in kind.params() {
        fields.push(Field::new(*p, DataType::Float64, true));
    }
    fields.extend([
        Field::new("log_likelihood", DataType::Float64, true),
        Field::new("customers", DataType::Int64, true),
        Field::new("converged", DataType::Boolean, true),
        Field::new("iterations", DataType::Int64, true),
        Field::new("period", DataType::Utf8, true),
    ]);
    Fields::from(fields)
}

/// A model fit aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ModelFit {
    kind: ModelKind,
    signature: Signature,
}

impl ModelFit {
    pub fn new(kind: ModelKind) -> Self {
        let inputs = kind.inputs();
        Self {
            kind,
            signature: signature_with_short_forms(
                inputs,
                kind.data_columns(),
                1,
                Volatility::Immutable,
            ),
        }
    }

    /// Is this call the short form `f(summary [, penalizer])`?
    fn short_form(types: &[DataType]) -> bool {
        matches!(types.first(), Some(DataType::Struct(_)))
    }
}

/// Check the fields of a `clv_summary` struct used as input.
pub fn check_summary_struct(function: &str, t: &DataType, needs_monetary: bool) -> Result<()> {
    let DataType::Struct(fields) = t else {
        return plan_err!("{function}: expected a clv_summary struct, got {t}");
    };
    let mut wanted = vec!["frequency", "recency", "T"];
    if needs_monetary {
        wanted.push("monetary_value");
    }
    for name in wanted {
        match fields.find(name) {
            Some((_, f)) if f.data_type().is_numeric() => {}
            Some((_, f)) => {
                return plan_err!(
                    "{function}: summary field '{name}' must be a number, got {}",
                    f.data_type()
                );
            }
            None => {
                return plan_err!(
                    "{function}: the summary struct has no field '{name}' (pass clv_summary(...) or the columns frequency, recency, T)"
                );
            }
        }
    }
    Ok(())
}

fn section() -> datafusion::logical_expr::DocSection {
    doc_section("Customer lifetime value")
}

const COMMON_DOC: &str = "Fits by maximum likelihood: BFGS on the logarithms of the parameters with the \
    exact gradient of the log-likelihood (computed by forward-mode differentiation of the \
    same code, or written out by hand and tested against it), from a data-derived start, to a \
    gradient below 1e-9 (or 1e-6 once the objective stops decreasing at machine precision). \
    With 2,048 or more distinct patterns the fit goes coarse to fine: it first fits \
    systematic samples of about 1/8, 1/64, … of the patterns (proportional to their counts), \
    then each finer level from the coarser optimum and curvature; only the run on all the data \
    decides the result and `converged`, and `iterations` counts every level's iterations. \
    Returns a struct {model, parameters…, \
    log_likelihood (total, without the penalty), customers, converged, iterations, period}; \
    `converged` is false when the optimizer stopped without reaching the tolerance — check it \
    rather than trusting the numbers. The objective is the mean negative log-likelihood plus \
    `penalizer` × the sum of squared parameters (lifetimes' penalty, but on the unscaled \
    parameters). The state is a histogram of distinct customer patterns with counts (it \
    merges, so the fit runs partitioned and distributed, and gives bit-identical results \
    whatever the partitioning). Call it with columns, or with the struct `clv_summary` \
    returns (then the period unit travels into the model, and the `period` argument is not \
    needed). NULL rows are skipped; no rows gives NULL.";

/// How the BG/NBD and Gamma-Gamma fits finish on all the data (after "the … fit").
const NEWTON_DOC: &str = "takes Newton steps with the log-likelihood's analytic Hessian \
    (quadratic convergence from the coarse optimum), the same line search and tolerance, and \
    goes on with BFGS where the Hessian is not positive definite.";

static BGNBD_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
            "BG/NBD model (Fader, Hardie & Lee 2005) fitted on one row per customer: parameters \
             r, alpha (purchase-rate gamma), a, b (dropout beta). {COMMON_DOC} On all the data \
             the BG/NBD fit {NEWTON_DOC} Rows \
             must have a whole frequency >= 0, 0 <= recency <= T, and recency 0 when frequency is 0; \
             anything else is an error naming the row."
        ),
        "bgnbd_fit(frequency, recency, T [, penalizer [, period]]) | bgnbd_fit(summary [, penalizer])",
    )
    .with_argument("frequency", "Repeat purchases (periods with a purchase minus one).")
    .with_argument("recency", "Periods between the first and the last purchase.")
    .with_argument("T", "Periods between the first purchase and the end of observation.")
    .with_argument("penalizer", "L2 penalty coefficient, a literal >= 0; default 0.")
    .with_argument("period", "Label of the period unit ('day', 'week', 'month'), a literal; default NULL.")
    .with_argument("summary", "A `clv_summary(...)` struct instead of the three columns.")
    .with_sql_example(
        "```sql\n\
         > SELECT round(m.r, 3) AS r, round(m.alpha, 2) AS alpha, round(m.a, 3) AS a, round(m.b, 3) AS b, m.converged AS ok\n\
         > FROM (SELECT bgnbd_fit(x, tx, t, 0, 'week') AS m\n\
         >       FROM (VALUES (0, 0, 30), (0, 0, 30), (0, 0, 25), (1, 2, 30), (1, 20, 28), (2, 5, 30), (4, 25, 30),\n\
         >               (7, 29, 30), (12, 28, 29), (0, 0, 20), (3, 10, 30), (1, 1, 30)) v(x, tx, t));\n\
         +-------+-------+------+-------+------+\n\
         | r     | alpha | a    | b     | ok   |\n\
         +-------+-------+------+-------+------+\n\
         | 0.584 | 3.62  | 0.27 | 0.687 | true |\n\
         +-------+-------+------+-------+------+\n\
         ```",
    )
    .with_related_udf("clv_summary")
    .with_related_udf("bgnbd_expected_purchases")
    .with_related_udf("bgnbd_p_alive")
    .build()
});

static MBGNBD_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
            "Modified BG/NBD model (Batislam, Denizel & Filiztekin 2007: customers may also drop \
             out right after their first purchase), parameters r, alpha, a, b. {COMMON_DOC} Input \
             rules as for `bgnbd_fit`."
        ),
        "mbgnbd_fit(frequency, recency, T [, penalizer [, period]]) | mbgnbd_fit(summary [, penalizer])",
    )
    .with_argument("frequency", "Repeat purchases.")
    .with_argument("recency", "Periods between the first and the last purchase.")
    .with_argument("T", "Periods between the first purchase and the end of observation.")
    .with_argument("penalizer", "L2 penalty coefficient, a literal >= 0; default 0.")
    .with_argument("period", "Label of the period unit, a literal; default NULL.")
    .with_argument("summary", "A `clv_summary(...)` struct instead of the three columns.")
    .with_sql_example(
        "```sql\n\
         > SELECT round(m.r, 3) AS r, round(m.alpha, 2) AS alpha, m.customers AS n\n\
         > FROM (SELECT mbgnbd_fit(x, tx, t) AS m\n\
         >       FROM (VALUES (0, 0, 30), (0, 0, 30), (0, 0, 25), (1, 2, 30), (1, 20, 28), (2, 5, 30), (4, 25, 30),\n\
         >               (7, 29, 30), (12, 28, 29), (0, 0, 20), (3, 10, 30), (1, 1, 30)) v(x, tx, t));\n\
         +-------+-------+----+\n\
         | r     | alpha | n  |\n\
         +-------+-------+----+\n\
         | 3.825 | 15.93 | 12 |\n\
         +-------+-------+----+\n\
         ```",
    )
    .with_related_udf("mbgnbd_expected_purchases")
    .build()
});

static PARETO_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
            "Pareto/NBD model (Schmittlein, Morrison & Colombo 1987), parameters r, alpha \
             (purchase rate), s, beta (dropout rate). The likelihood uses Fader & Hardie's form \
             with the Gauss hypergeometric function evaluated after Euler's transformation (a \
             series of positive terms: no overflow or cancellation for frequencies in the \
             hundreds) and the difference of its two terms taken in log space. {COMMON_DOC} \
             Input rules as for `bgnbd_fit`."
        ),
        "pareto_nbd_fit(frequency, recency, T [, penalizer [, period]]) | pareto_nbd_fit(summary [, penalizer])",
    )
    .with_argument("frequency", "Repeat purchases.")
    .with_argument("recency", "Periods between the first and the last purchase.")
    .with_argument("T", "Periods between the first purchase and the end of observation.")
    .with_argument("penalizer", "L2 penalty coefficient, a literal >= 0; default 0.")
    .with_argument("period", "Label of the period unit, a literal; default NULL.")
    .with_argument("summary", "A `clv_summary(...)` struct instead of the three columns.")
    .with_sql_example(
        "```sql\n\
         > SELECT m.model AS model, m.customers AS n, m.converged AS ok\n\
         > FROM (SELECT pareto_nbd_fit(x, tx, t) AS m\n\
         >       FROM (VALUES (0, 0, 30), (0, 0, 30), (0, 0, 25), (1, 2, 30), (1, 20, 28), (2, 5, 30), (4, 25, 30),\n\
         >               (7, 29, 30), (12, 28, 29), (0, 0, 20), (3, 10, 30), (1, 1, 30)) v(x, tx, t));\n\
         +------------+----+------+\n\
         | model      | n  | ok   |\n\
         +------------+----+------+\n\
         | pareto_nbd | 12 | true |\n\
         +------------+----+------+\n\
         ```",
    )
    .with_related_udf("pareto_nbd_expected_purchases")
    .with_related_udf("pareto_nbd_p_alive")
    .build()
});

static GAMMA_GAMMA_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        section(),
        format!(
            "Gamma-Gamma spend model (Fader & Hardie note 025), parameters p, q, v, fitted on \
             customers with repeat purchases: rows with frequency 0 are ignored, as the model \
             requires. A customer with frequency > 0 must have monetary_value > 0 (an error \
             otherwise — filter refunds out, e.g. `FILTER (WHERE monetary_value > 0)`). \
             {COMMON_DOC} On all the data the Gamma-Gamma fit {NEWTON_DOC}"
        ),
        "gamma_gamma_fit(frequency, monetary_value [, penalizer [, period]]) | gamma_gamma_fit(summary [, penalizer])",
    )
    .with_argument("frequency", "Repeat purchases.")
    .with_argument("monetary_value", "Mean spend of the repeat purchases.")
    .with_argument("penalizer", "L2 penalty coefficient, a literal >= 0; default 0.")
    .with_argument("period", "Label of the period unit, a literal; default NULL.")
    .with_argument("summary", "A `clv_summary(...)` struct instead of the two columns.")
    .with_sql_example(
        "```sql\n\
         > SELECT round(m.p, 2) AS p, round(m.q, 2) AS q, round(m.v, 2) AS v, m.customers AS n\n\
         > FROM (SELECT gamma_gamma_fit(x, m) AS m\n\
         >       FROM (VALUES (1, 20.0), (2, 35.5), (0, 0.0), (4, 28.0), (1, 12.5), (3, 50.0), (2, 18.0)) v(x, m));\n\
         +------+-------+--------+---+\n\
         | p    | q     | v      | n |\n\
         +------+-------+--------+---+\n\
         | 3.92 | 21.51 | 157.53 | 6 |\n\
         +------+-------+--------+---+\n\
         ```",
    )
    .with_related_udf("gamma_gamma_expected_spend")
    .with_related_udf("customer_lifetime_value")
    .build()
});

fn literal(args: &AccumulatorArgs, i: usize, function: &str, what: &str) -> Result<ScalarValue> {
    Ok(aggregate_literal(function, args, i, what)?.unwrap_or(ScalarValue::Null))
}

impl AggregateUDFImpl for ModelFit {
    fn name(&self) -> &str {
        self.kind.function()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let f = self.kind.function();
        if Self::short_form(arg_types) {
            check_summary_struct(f, &arg_types[0], self.kind == ModelKind::GammaGamma)?;
            if arg_types.len() > 2 {
                return plan_err!(
                    "{f}: with a summary struct the only other argument is 'penalizer', got {} arguments",
                    arg_types.len()
                );
            }
            if let Some(t) = arg_types.get(1)
                && !(t.is_numeric() || t.is_null())
            {
                return plan_err!("{f}: argument 2 'penalizer' must be a number, got {t}");
            }
        } else {
            let n = self.kind.data_columns();
            if arg_types.len() < n {
                return plan_err!(
                    "{f}: expected {n} columns ({}) or a clv_summary struct, got {} arguments",
                    self.kind.inputs()[..n]
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                    arg_types.len()
                );
            }
            check_arg_types(f, self.kind.inputs(), arg_types)?;
        }
        Ok(DataType::Struct(model_fields(self.kind)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // the histogram of patterns (see `histogram`): keys, counts
        Ok(vec![
            state_field(args.name, "keys", list_of(DataType::UInt64)),
            state_field(args.name, "counts", list_of(DataType::Float64)),
            state_field(args.name, "period", DataType::Utf8),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let f = self.kind.function();
        let types: Vec<DataType> = args
            .exprs
            .iter()
            .map(|e| e.data_type(args.schema))
            .collect::<Result<_>>()?;
        let short = Self::short_form(&types);
        let n = self.kind.data_columns();
        let (pen_i, period_i) = if short { (1, usize::MAX) } else { (n, n + 1) };
        let penalizer = match literal(&args, pen_i, f, "penalizer")? {
            v if v.is_null() => 0.0,
            v => match v.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(p)) if p >= 0.0 && p.is_finite() => p,
                other => {
                    return plan_err!(
                        "{f}: argument 'penalizer' must be a number >= 0, got {other}"
                    );
                }
            },
        };
        let period = match literal(&args, period_i, f, "period")? {
            v if v.is_null() => None,
            v => match v.try_as_str() {
                Some(Some(s)) => Some(match Period::parse(s) {
                    Some(p) => p.name().to_string(),
                    None => s.to_string(),
                }),
                _ => return plan_err!("{f}: argument 'period' must be a string, got {v}"),
            },
        };
        Ok(Box::new(FitAccumulator {
            kind: self.kind,
            short,
            penalizer,
            period,
            patterns: if self.kind == ModelKind::GammaGamma {
                Patterns::Spend(Histogram::default())
            } else {
                Patterns::Purchase(Histogram::default())
            },
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.kind {
            ModelKind::BgNbd => &BGNBD_DOC,
            ModelKind::ParetoNbd => &PARETO_DOC,
            ModelKind::MbgNbd => &MBGNBD_DOC,
            ModelKind::GammaGamma => &GAMMA_GAMMA_DOC,
        })
    }
}

#[derive(Debug)]
struct FitAccumulator {
    kind: ModelKind,
    short: bool,
    penalizer: f64,
    /// The period label: from the `period` argument, or from the summary structs.
    period: Option<String>,
    patterns: Patterns,
}

/// The histogram of a fit's patterns: (x, t_x, T) for the purchase models, (x, m) for
/// Gamma-Gamma (two words a key, see [`SpendKey`]).
#[derive(Debug)]
enum Patterns {
    Purchase(Histogram),
    Spend(Histogram<SpendKey>),
}

/// `$body` with `$h` the histogram, whichever its key.
macro_rules! on_histogram {
    ($patterns:expr, $h:ident => $body:expr) => {
        match $patterns {
            Patterns::Purchase($h) => $body,
            Patterns::Spend($h) => $body,
        }
    };
}

impl FitAccumulator {
    fn set_period(&mut self, p: &str) -> Result<()> {
        match &self.period {
            None => self.period = Some(p.to_string()),
            Some(q) if q == p => {}
            Some(q) => {
                return exec_err!(
                    "{}: customers summarised with different periods ('{q}' and '{p}')",
                    self.kind.function()
                );
            }
        }
        Ok(())
    }

    /// Validate and add one purchase-model row.
    fn add_purchase(&mut self, x: f64, tx: f64, t: f64) -> Result<()> {
        let f = self.kind.function();
        if !(x.is_finite() && tx.is_finite() && t.is_finite()) {
            return exec_err!("{f}: frequency, recency and T must be finite, got ({x}, {tx}, {t})");
        }
        if x < 0.0 || !is_whole(x) {
            return exec_err!("{f}: frequency must be a whole number >= 0, got {x}");
        }
        if tx < 0.0 || tx > t {
            return exec_err!(
                "{f}: recency must be between 0 and T, got recency {tx} with T {t} (frequency {x})"
            );
        }
        if x == 0.0 && tx != 0.0 {
            return exec_err!(
                "{f}: a customer with frequency 0 must have recency 0, got recency {tx} (T {t})"
            );
        }
        on_histogram!(&mut self.patterns, h => h.add_row([x, tx, t]));
        Ok(())
    }

    fn add_spend(&mut self, x: f64, m: f64) -> Result<()> {
        let f = self.kind.function();
        if !(x.is_finite() && m.is_finite()) {
            return exec_err!("{f}: frequency and monetary_value must be finite, got ({x}, {m})");
        }
        if x < 0.0 || !is_whole(x) {
            return exec_err!("{f}: frequency must be a whole number >= 0, got {x}");
        }
        if x == 0.0 {
            return Ok(());
        }
        if m <= 0.0 {
            return exec_err!(
                "{f}: monetary_value must be > 0 for customers with repeat purchases, got {m} \
                 (frequency {x}); leave them out, e.g. FILTER (WHERE monetary_value > 0)"
            );
        }
        on_histogram!(&mut self.patterns, h => h.add_row([x, m, 0.0]));
        Ok(())
    }

    fn fit_struct(&mut self) -> Result<ScalarValue> {
        let kind = self.kind;
        let started = std::time::Instant::now();
        if on_histogram!(&self.patterns, h => h.is_empty()) {
            return ScalarValue::try_from(DataType::Struct(model_fields(kind)));
        }
        let opts = FitOptions {
            penalizer: self.penalizer,
            ..FitOptions::default()
        };
        let distinct;
        let (params, fit_ll, customers, converged, iterations): (Vec<f64>, f64, f64, bool, u32) =
            match &mut self.patterns {
                Patterns::Spend(h) => {
                    let rows = h.collect(|[x, m, _], w| Spend { x, m, w });
                    distinct = rows.len();
                    // the histogram gives its patterns in the canonical order
                    debug_assert!(rows.is_sorted_by(|a, b| (a.x, a.m) <= (b.x, b.m)));
                    outcome(model::fit_gamma_gamma(&rows, opts))
                }
                Patterns::Purchase(h) => 'purchase: {
                    // BG/NBD on whole-period patterns: the fit reads only the time table,
                    // merged straight from the packed keys
                    if kind == ModelKind::BgNbd
                        && let Some(times) = h.whole_times()
                    {
                        distinct = times.len();
                        break 'purchase outcome(model::fit_bgnbd_times(times, opts));
                    }
                    let rows = h.collect(|[x, tx, t], w| Pattern { x, tx, t, w });
                    distinct = rows.len();
                    // the histogram gives its patterns in the canonical order
                    debug_assert!(rows.is_sorted_by(|a, b| (a.x, a.tx, a.t) <= (b.x, b.tx, b.t)));
                    outcome(match kind {
                        ModelKind::BgNbd => model::fit_bgnbd(&rows, opts),
                        ModelKind::MbgNbd => model::fit_mbgnbd(&rows, opts),
                        _ => model::fit_pareto_nbd(&rows, opts),
                    })
                }
            };
        log::debug!(
            "{}: {} patterns sorted and fitted in {:?}",
            kind.function(),
            distinct,
            started.elapsed()
        );
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![kind.tag()]))];
        for p in params {
            columns.push(Arc::new(Float64Array::from(vec![p])));
        }
        columns.extend([
            Arc::new(Float64Array::from(vec![fit_ll])) as ArrayRef,
            Arc::new(Int64Array::from(vec![customers as i64])),
            Arc::new(BooleanArray::from(vec![converged])),
            Arc::new(Int64Array::from(vec![iterations as i64])),
            Arc::new(StringArray::from(vec![self.period.clone()])),
        ]);
        Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
            model_fields(kind),
            columns,
            None,
        )?)))
    }
}

/// What a fit's struct reports of it: parameters, log-likelihood, customers, converged,
/// iterations.
fn outcome<const N: usize>(fit: Fit<N>) -> (Vec<f64>, f64, f64, bool, u32) {
    (
        fit.params.to_vec(),
        fit.log_likelihood,
        fit.customers,
        fit.converged,
        fit.iterations,
    )
}

/// The numeric columns of a summary struct (cast to Float64) and its period labels.
pub fn summary_columns(
    function: &str,
    summary: &ArrayRef,
    names: &[&str],
) -> Result<(Vec<Float64Array>, Option<StringArray>, StructArray)> {
    let s = summary.as_struct().clone();
    let mut out = Vec::new();
    for name in names {
        match s.column_by_name(name) {
            Some(c) => out.push(f64_column(c)?),
            None => return exec_err!("{function}: the summary struct has no field '{name}'"),
        }
    }
    let period = match s.column_by_name("period") {
        Some(c) => Some(
            datafusion::arrow::compute::cast(c, &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
        ),
        None => None,
    };
    Ok((out, period, s))
}

impl Accumulator for FitAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let f = self.kind.function();
        let spend = self.kind == ModelKind::GammaGamma;
        let (cols, periods, nulls) = if self.short {
            let names: &[&str] = if spend {
                &["frequency", "monetary_value"]
            } else {
                &["frequency", "recency", "T"]
            };
            let (cols, periods, s) = summary_columns(f, &values[0], names)?;
            (cols, periods, s.logical_nulls())
        } else {
            let n = self.kind.data_columns();
            let cols = values[..n]
                .iter()
                .map(f64_column)
                .collect::<Result<Vec<_>>>()?;
            (cols, None, None)
        };
        let all_valid = nulls.as_ref().is_none_or(|n| n.null_count() == 0)
            && cols.iter().all(|c| c.null_count() == 0);
        if all_valid && periods.is_none() {
            // the common case, without per-row NULL checks
            match &mut self.patterns {
                Patterns::Spend(h) => {
                    let (xs, ms) = (cols[0].values(), cols[1].values());
                    // rows that are all valid: in bulk, leaving out those without repeat
                    // purchases (the conditions of `add_spend`)
                    if h.add_spend_rows(xs, ms, |x, m| {
                        let valid = x.is_finite() && m.is_finite() && x >= 0.0 && is_whole(x);
                        match valid.then_some(x > 0.0) {
                            Some(true) if m <= 0.0 => None,
                            keep => keep,
                        }
                    }) {
                        return Ok(());
                    }
                    for (&x, &m) in xs.iter().zip(ms.iter()) {
                        self.add_spend(x, m)?;
                    }
                }
                Patterns::Purchase(h) => {
                    let (xs, txs, ts) = (cols[0].values(), cols[1].values(), cols[2].values());
                    // whole-period rows that are all valid purchases: in bulk (the conditions
                    // of `add_purchase` that packing does not already check)
                    if h.add_packed_rows(xs, txs, ts, |x, tx, t| {
                        (tx <= t) & ((x > 0.0) | (tx == 0.0))
                    }) {
                        return Ok(());
                    }
                    for ((&x, &tx), &t) in xs.iter().zip(txs.iter()).zip(ts.iter()) {
                        self.add_purchase(x, tx, t)?;
                    }
                }
            }
            return Ok(());
        }
        for i in 0..cols[0].len() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) || cols.iter().any(|c| c.is_null(i)) {
                continue;
            }
            if let Some(p) = &periods
                && p.is_valid(i)
            {
                self.set_period(p.value(i))?;
            }
            if spend {
                self.add_spend(cols[0].value(i), cols[1].value(i))?;
            } else {
                self.add_purchase(cols[0].value(i), cols[1].value(i), cols[2].value(i))?;
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (keys, counts) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        let periods = states[2].as_string::<i32>();
        for i in 0..keys.len() {
            if periods.is_valid(i) {
                self.set_period(periods.value(i))?;
            }
            if keys.is_null(i) || counts.is_null(i) {
                continue;
            }
            let (k, c) = (keys.value(i), counts.value(i));
            let (k, c) = (
                k.as_primitive::<UInt64Type>(),
                c.as_primitive::<Float64Type>(),
            );
            on_histogram!(&mut self.patterns, h => h.merge_state(k, c))?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (keys, counts) = on_histogram!(&mut self.patterns, h => h.state());
        Ok(vec![
            scalar_list(Arc::new(keys)),
            scalar_list(Arc::new(counts)),
            ScalarValue::Utf8(self.period.clone()),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.fit_struct()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + on_histogram!(&self.patterns, h => h.size())
    }
}

macro_rules! fit_udaf {
    ($fn:ident, $kind:expr) => {
        #[doc = concat!("The `", stringify!($fn), "` aggregate (a shared singleton).")]
        pub fn $fn() -> Arc<AggregateUDF> {
            static UDAF: LazyLock<Arc<AggregateUDF>> =
                LazyLock::new(|| Arc::new(AggregateUDF::new_from_impl(ModelFit::new($kind))));
            Arc::clone(&UDAF)
        }
    };
}

fit_udaf!(bgnbd_fit, ModelKind::BgNbd);
fit_udaf!(pareto_nbd_fit, ModelKind::ParetoNbd);
fit_udaf!(mbgnbd_fit, ModelKind::MbgNbd);
fit_udaf!(gamma_gamma_fit, ModelKind::GammaGamma);
