-- RFM segments: size, revenue share and average recency / frequency / monetary per segment
-- rfm(table, customer_col, ts_col, amount_col [, as_of [, bins]]) scores every customer with
-- tie-aware quintiles (equal values always get equal scores, unlike NTILE) and names the
-- segment with the 11-segment rfm11 grid.
SELECT
    segment,
    count(*) AS customers,
    round(100.0 * sum(monetary) / sum(sum(monetary)) OVER (), 2) AS revenue_share_pct,
    round(avg(recency_days), 1) AS avg_recency_days,
    round(avg(frequency), 2) AS avg_frequency,
    round(avg(monetary), 2) AS avg_monetary
FROM rfm('orders', 'customer_id', 'order_ts', 'amount', TIMESTAMP '2026-01-01')
GROUP BY segment
ORDER BY revenue_share_pct DESC;
