-- Channel attribution: conversions credited to each channel by every heuristic model, Markov order 1 and Shapley
-- Journeys: each touch belongs to the customer's next order within 30 days (a converting journey, with the
-- order's amount as value); touches with no order in the next 30 days form one non-converting journey per
-- customer and calendar month.
CREATE OR REPLACE VIEW journeys AS
WITH touch_order AS (
    SELECT t.customer_id, t.ts, t.channel, min(o.order_ts) AS conversion_ts
    FROM touchpoints t
    LEFT JOIN orders o
      ON o.customer_id = t.customer_id AND o.order_ts > t.ts AND o.order_ts <= t.ts + INTERVAL '30 days'
    GROUP BY t.customer_id, t.ts, t.channel
)
SELECT
    j.customer_id,
    j.conversion_ts,
    j.path,
    date_trunc('month', j.journey_key) AS month,
    CASE WHEN j.conversion_ts IS NULL THEN 0 ELSE 1 END AS converted,
    coalesce(o.amount, 0.0) AS value
FROM (
    SELECT customer_id, conversion_ts,
           coalesce(conversion_ts, date_trunc('month', min(ts))) AS journey_key,
           journey_path(channel, ts) AS path
    FROM touch_order
    GROUP BY customer_id, conversion_ts, coalesce(conversion_ts, date_trunc('month', ts))
) j
LEFT JOIN orders o ON o.customer_id = j.customer_id AND o.order_ts = j.conversion_ts;

WITH heuristic AS (
    SELECT m.model, ch AS channel, sum(w * converted) AS conversions
    FROM (
        SELECT m.model, converted, unnest(path) AS ch, unnest(attribution_weights(path, m.model)) AS w
        FROM journeys,
             (VALUES ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'), ('position_based')) m(model)
        WHERE converted = 1
    )
    GROUP BY m.model, ch
),
markov AS (
    SELECT c.channel AS channel, c.conversions AS conversions, c.removal_effect AS removal_effect
    FROM (SELECT unnest(markov_attribution(path, converted, value)) AS c FROM journeys)
),
shapley AS (
    SELECT c.channel AS channel, c.conversions AS conversions
    FROM (SELECT unnest(shapley_attribution(path, converted, value)) AS c FROM journeys)
)
SELECT
    k.channel,
    round(sum(CASE WHEN h.model = 'first_touch' THEN h.conversions END), 1) AS first_touch,
    round(sum(CASE WHEN h.model = 'last_touch' THEN h.conversions END), 1) AS last_touch,
    round(sum(CASE WHEN h.model = 'last_non_direct' THEN h.conversions END), 1) AS last_non_direct,
    round(sum(CASE WHEN h.model = 'linear' THEN h.conversions END), 1) AS linear,
    round(sum(CASE WHEN h.model = 'position_based' THEN h.conversions END), 1) AS position_based,
    round(max(k.conversions), 1) AS markov,
    round(max(k.removal_effect), 3) AS markov_removal_effect,
    round(max(s.conversions), 1) AS shapley
FROM markov k
LEFT JOIN heuristic h ON h.channel = k.channel
LEFT JOIN shapley s ON s.channel = k.channel
GROUP BY k.channel
ORDER BY markov DESC;

-- Markov order 1 by month (the aggregate's state merges, so it works grouped): the last quarter of the lake
SELECT month, m.c.channel AS channel, round(m.c.conversions, 1) AS markov_conversions
FROM (
    SELECT month, unnest(markov_attribution(path, converted, value)) AS c
    FROM (SELECT month, path, converted, value FROM journeys WHERE month >= TIMESTAMP '2025-10-01')
    GROUP BY month
) m
-- (DataFusion 55 drops a sort key that is only an alias of a struct field, hence "+ 0")
ORDER BY month, m.c.conversions + 0 DESC;
