-- A custom segment map: join RFM scores against your own table of cells
-- Here a 3-tier map on R and FM = (F + M + 1) / 2; cells not listed are 'Other'.
WITH cells(r_score, fm_score, tier) AS (
    VALUES (5, 5, 'VIP'), (5, 4, 'VIP'), (4, 5, 'VIP'), (4, 4, 'Core'), (5, 3, 'Core'),
           (3, 5, 'Core'), (3, 4, 'Core'), (4, 3, 'Core'), (3, 3, 'Core')
)
SELECT
    coalesce(c.tier, 'Other') AS tier,
    count(*) AS customers,
    round(sum(s.monetary), 2) AS revenue
FROM rfm('orders', 'customer_id', 'order_ts', 'amount') s
LEFT JOIN cells c ON c.r_score = s.r_score AND c.fm_score = (s.f_score + s.m_score + 1) / 2
GROUP BY coalesce(c.tier, 'Other')
ORDER BY revenue DESC;
