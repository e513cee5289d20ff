-- A custom segment map: join RFM scores against your own table of cells.
-- Here: a 3-tier map on R and the rounded mean of F and M.
WITH cells(r_score, fm_score, tier) AS (
    VALUES (5, 5, 'VIP'), (5, 4, 'VIP'), (4, 5, 'VIP'), (4, 4, 'Core'), (5, 3, 'Core'),
           (3, 5, 'Core'), (3, 4, 'Core'), (4, 3, 'Core'), (3, 3, 'Core')
),
per_customer AS (
    SELECT
        customer_id,
        date_part('day', (SELECT max(order_ts) FROM orders) - max(order_ts)) AS recency_days,
        count(*) AS frequency,
        sum(amount) AS monetary
    FROM orders
    GROUP BY customer_id
),
scored AS (
    SELECT
        customer_id,
        monetary,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ()) AS BIGINT) AS r_score,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ()) AS BIGINT) AS f_score,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY monetary) - 1) / count(*) OVER ()) AS BIGINT) AS m_score
    FROM per_customer
)
SELECT
    coalesce(c.tier, 'Other') AS tier,
    count(*) AS customers,
    round(sum(s.monetary), 2) AS revenue
FROM scored s
LEFT JOIN cells c ON c.r_score = s.r_score AND c.fm_score = (s.f_score + s.m_score + 1) / 2
GROUP BY coalesce(c.tier, 'Other')
ORDER BY revenue DESC;
