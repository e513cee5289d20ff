-- Customer lifetime value: BG/NBD + Gamma-Gamma fits, CLV deciles, high-value customers likely lost
-- clv_summary turns each customer's orders into (frequency, recency, T, monetary_value) in days,
-- the *_fit aggregates fit the models on those summaries (the day unit travels with them), and
-- customer_lifetime_value discounts 12 months of expected spend at 1% a month (30-day months).
-- (the observation ends at the latest order: a one-row table joined in, which also runs on a
-- Ballista cluster, where a scalar subquery inside an aggregate's arguments cannot be planned)
CREATE OR REPLACE VIEW customer_summary AS
SELECT o.customer_id, clv_summary(o.order_ts, o.amount, l.as_of, 'day') AS s
FROM (SELECT max(order_ts) AS as_of FROM orders) AS l CROSS JOIN orders AS o
GROUP BY o.customer_id;

CREATE OR REPLACE VIEW clv_models AS
SELECT bgnbd_fit(s) AS bg,
       gamma_gamma_fit(s) FILTER (WHERE s.monetary_value > 0) AS gg
FROM customer_summary;

-- the fitted parameters (check `converged` before trusting them)
SELECT round(bg.r, 4) AS r, round(bg.alpha, 2) AS alpha, round(bg.a, 4) AS a, round(bg.b, 3) AS b,
       bg.customers AS customers, bg.converged AS bgnbd_converged,
       round(gg.p, 3) AS p, round(gg.q, 3) AS q, round(gg.v, 2) AS v, gg.converged AS gamma_gamma_converged,
       bg.period AS period
FROM clv_models;

CREATE OR REPLACE VIEW customer_clv AS
SELECT customer_id, s.frequency AS frequency, s.recency AS recency, s."T" AS age, s.monetary_value AS monetary_value,
       bgnbd_p_alive(bg, s.frequency, s.recency, s."T") AS p_alive,
       bgnbd_expected_purchases(bg, 90, s.frequency, s.recency, s."T") AS purchases_next_90_days,
       customer_lifetime_value(bg, gg, s.frequency, s.recency, s."T", s.monetary_value,
                               horizon_months => 12, discount_rate => 0.01) AS clv_12m
FROM customer_summary CROSS JOIN clv_models;

-- CLV deciles: how concentrated the next year's value is
SELECT decile, count(*) AS customers, round(avg(clv_12m), 2) AS avg_clv_12m,
       round(100.0 * sum(clv_12m) / sum(sum(clv_12m)) OVER (), 1) AS clv_share_pct,
       round(avg(p_alive), 3) AS avg_p_alive, round(avg(frequency), 2) AS avg_repeat_purchases
FROM (SELECT *, quantile_score(clv_12m, 10, descending => true) OVER () AS decile FROM customer_clv)
GROUP BY decile
ORDER BY decile;

-- the most valuable past customers the model thinks have churned (win-back candidates)
SELECT customer_id, frequency, recency, age, round(monetary_value, 2) AS monetary_value,
       round(p_alive, 3) AS p_alive, round(clv_12m, 2) AS clv_12m
FROM customer_clv
WHERE frequency >= 3 AND p_alive < 0.3
ORDER BY frequency * monetary_value DESC, customer_id
LIMIT 10;
