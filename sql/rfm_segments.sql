-- RFM segments: size, revenue share and average recency / frequency / monetary per segment
-- Scores use the tie-aware quantile definition score = 1 + floor(5·(rank − 1) / n),
-- so equal values always get equal scores (unlike NTILE).
WITH per_customer AS (
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
        *,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ()) AS BIGINT) AS r_score,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ()) AS BIGINT) AS f_score,
        1 + CAST(floor(5.0 * (rank() OVER (ORDER BY monetary) - 1) / count(*) OVER ()) AS BIGINT) AS m_score
    FROM per_customer
)
SELECT
    rfm_segment(r_score, f_score, m_score) AS segment,
    count(*) AS customers,
    round(100.0 * sum(monetary) / sum(sum(monetary)) OVER (), 2) AS revenue_share_pct,
    round(avg(recency_days), 1) AS avg_recency_days,
    round(avg(frequency), 2) AS avg_frequency,
    round(avg(monetary), 2) AS avg_monetary
FROM scored
GROUP BY rfm_segment(r_score, f_score, m_score)
ORDER BY revenue_share_pct DESC;
