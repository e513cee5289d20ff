-- Session funnel: how many sessions reach each step (view → add_to_cart → checkout → purchase)
WITH steps AS (
    SELECT
        session_id,
        max(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS viewed,
        max(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted,
        max(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS checked_out,
        max(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased
    FROM events
    GROUP BY session_id
)
SELECT
    count(*) AS sessions,
    sum(viewed) AS viewed,
    sum(carted) AS added_to_cart,
    sum(checked_out) AS checked_out,
    sum(purchased) AS purchased,
    round(100.0 * sum(purchased) / count(*), 2) AS conversion_pct
FROM steps;
