"""Reference values for the CLV functions, from the `lifetimes` package (0.11.3).

    python -m venv /tmp/v && /tmp/v/bin/pip install lifetimes duckdb pandas
    cargo run -- generate /tmp/rfm-lake --customers 3000 --seed 7      # the lake tests/common.rs makes
    /tmp/v/bin/python tests/data/make_clv_fixture.py /tmp/rfm-lake

Writes
- tests/data/clv_lifetimes_cdnow.csv: fitted parameters and log-likelihoods of BG/NBD,
  Pareto/NBD, MBG/NBD and Gamma-Gamma on CDNOW (weeks), and per-customer predictions for
  the first 50 customers with those parameters (horizon 39 weeks; CLV over 12 months at
  1% a month with lifetimes' freq="W", i.e. 4.345 weeks a month = 30.415 days).
- tests/data/clv_lifetimes_lake_seed7.csv: `summary_data_from_transaction_data` of the
  test lake's orders (freq "D", observation end = the latest order), and for each
  customer P(alive), expected purchases in 30 days, expected spend and the 12-month CLV
  (freq "D": 30 days a month) from BG/NBD + Gamma-Gamma fitted by lifetimes on that summary.

Fits run with the tightest tolerance lifetimes' optimizer (scipy BFGS) reaches, 1e-10 to
1e-7, well beyond the 1e-4 relative agreement the tests ask for. Tests do not need Python.
"""
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
from lifetimes.utils import summary_data_from_transaction_data

out = Path(__file__).parent


def fit(model, *args):
    """Fit with the tightest tolerance scipy's BFGS reaches ("precision loss" below it)."""
    for tol in (1e-10, 1e-9, 1e-8, 1e-7):
        try:
            return model.fit(*args, tol=tol)
        except Exception:
            continue
    raise RuntimeError("lifetimes did not converge")


def arrays(df):
    return (df["frequency"].to_numpy(), df["recency"].to_numpy(), df["T"].to_numpy())


def cdnow():
    d = load_cdnow_summary_data_with_monetary_value()
    f, r, t = arrays(d)
    rows = []
    bg = fit(BetaGeoFitter(), f, r, t)
    pn = fit(ParetoNBDFitter(), f, r, t)
    mbg = fit(ModifiedBetaGeoFitter(), f, r, t)
    rep = d[d["frequency"] > 0]
    gg = fit(GammaGammaFitter(), rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy())
    for name, m, n in [("bgnbd", bg, len(d)), ("pareto_nbd", pn, len(d)), ("mbgnbd", mbg, len(d)), ("gamma_gamma", gg, len(rep))]:
        for k, v in m.params_.items():
            rows.append(f"param,{name},{k},{float(v)!r}")
        if name == "gamma_gamma":
            # lifetimes keeps the mean negative log-likelihood (of the time-rescaled data for
            # the purchase models, so only Gamma-Gamma's is comparable); report the total
            rows.append(f"param,{name},log_likelihood,{float(-m._negative_log_likelihood_ * n)!r}")
    head = d.head(50)
    hf, hr, ht = arrays(head)
    hm = head["monetary_value"].to_numpy()
    spend = gg.conditional_expected_average_profit(pd.Series(hf), pd.Series(hm)).to_numpy()
    clv = gg.customer_lifetime_value(bg, pd.Series(hf), pd.Series(hr), pd.Series(ht), pd.Series(hm),
                                     time=12, discount_rate=0.01, freq="W").to_numpy()
    preds = {
        "bgnbd_expected": bg.conditional_expected_number_of_purchases_up_to_time(39, hf, hr, ht),
        "bgnbd_p_alive": bg.conditional_probability_alive(hf, hr, ht),
        "pareto_nbd_expected": pn.conditional_expected_number_of_purchases_up_to_time(39, hf, hr, ht),
        "pareto_nbd_p_alive": pn.conditional_probability_alive(hf, hr, ht),
        "mbgnbd_expected": mbg.conditional_expected_number_of_purchases_up_to_time(39, hf, hr, ht),
        "mbgnbd_p_alive": mbg.conditional_probability_alive(hf, hr, ht),
        "gamma_gamma_spend": spend,
        "clv_12m": clv,
    }
    # Pareto/NBD with given parameters: the published customer, and numerically hard inputs
    # (frequencies in the hundreds, recency close to T)
    fixed = ParetoNBDFitter()
    fixed.params_ = pd.Series(dict(r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562))
    cases = [("published", fixed, 26, 30.86, 31.0)]
    hard = ParetoNBDFitter()
    hard.params_ = pd.Series(dict(r=0.5143, alpha=2.8845, s=0.2856, beta=14.1087))
    cases += [("hard", hard, x, tx, T) for x, tx, T in
              [(221, 103.43, 103.57), (254, 97.14, 97.29), (161, 94.71, 98.00), (204, 98.57, 99.43)]]
    for label, m, x, tx, T in cases:
        key = f"{label}:{x}:{tx}:{T}"
        rows.append(f"pareto,{key},p_alive,{float(m.conditional_probability_alive(x, tx, T))!r}")
        rows.append(f"pareto,{key},expected_52,{float(m.conditional_expected_number_of_purchases_up_to_time(52, x, tx, T))!r}")
    for i, cid in enumerate(head.index):
        for k, v in preds.items():
            rows.append(f"customer,{cid},{k},{float(np.asarray(v)[i])!r}")
    (out / "clv_lifetimes_cdnow.csv").write_text("kind,key,name,value\n" + "\n".join(rows) + "\n")


def lake(path):
    tx = duckdb.sql(
        f"SELECT customer_id, order_ts, amount FROM read_parquet('{path}/orders/*/*.parquet', hive_partitioning = true)"
    ).df()
    end = tx["order_ts"].max()
    s = summary_data_from_transaction_data(tx, "customer_id", "order_ts", monetary_value_col="amount",
                                           observation_period_end=end, freq="D")
    f, r, t = arrays(s)
    bg = fit(BetaGeoFitter(), f, r, t)
    rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    gg = fit(GammaGammaFitter(), rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy())
    m = s["monetary_value"]
    s["p_alive"] = bg.conditional_probability_alive(f, r, t)
    s["expected_30"] = bg.conditional_expected_number_of_purchases_up_to_time(30, f, r, t)
    s["spend"] = gg.conditional_expected_average_profit(s["frequency"], m)
    s["clv_12m"] = gg.customer_lifetime_value(bg, s["frequency"], s["recency"], s["T"], m,
                                              time=12, discount_rate=0.01, freq="D")
    lines = ["customer_id,frequency,recency,T,monetary_value,p_alive,expected_30,spend,clv_12m"]
    for cid, row in s.sort_index().iterrows():
        lines.append(",".join([str(cid)] + [repr(float(row[c])) for c in
                     ["frequency", "recency", "T", "monetary_value", "p_alive", "expected_30", "spend", "clv_12m"]]))
    params = [f"# bgnbd {k}={v!r}" for k, v in bg.params_.items()]
    params += [f"# gamma_gamma {k}={v!r}" for k, v in gg.params_.items()]
    (out / "clv_lifetimes_lake_seed7.csv").write_text("\n".join(params + lines) + "\n")


cdnow()
if len(sys.argv) > 1:
    lake(sys.argv[1])
