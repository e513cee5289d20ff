-- Monetary quintiles within each country: quantile_score(...) OVER (PARTITION BY country)
WITH spend AS (
    SELECT c.country, o.customer_id, sum(o.amount) AS monetary
    FROM orders o JOIN customers c USING (customer_id)
    WHERE c.country IN ('US', 'GB', 'DE')
    GROUP BY c.country, o.customer_id
),
scored AS (
    SELECT country, monetary, quantile_score(monetary, 5) OVER (PARTITION BY country) AS m_score
    FROM spend
)
SELECT
    country,
    m_score,
    count(*) AS customers,
    round(min(monetary), 2) AS min_monetary,
    round(max(monetary), 2) AS max_monetary
FROM scored
GROUP BY country, m_score
ORDER BY country, m_score;
