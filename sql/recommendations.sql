-- Recommendations: also-bought neighbours of the best sellers, top-5 picks for a few customers, the strongest rules
-- A customer "has" a product once they bought it in any order. item_similarity counts co-purchases
-- across customers (binary cosine), recommend_items sums those similarities over what each customer
-- already owns, and association_rules mines rules within single orders (baskets).
CREATE OR REPLACE VIEW purchases AS
SELECT o.customer_id, i.product_id
FROM order_items i JOIN orders o ON o.order_id = i.order_id;

CREATE OR REPLACE VIEW best_sellers AS
SELECT product_id, count(DISTINCT customer_id) AS buyers
FROM purchases GROUP BY product_id ORDER BY buyers DESC, product_id LIMIT 3;

-- also bought: the 3 nearest neighbours of the 3 best sellers
SELECT b.product_id, p.name AS product, p.category, n.name AS also_bought, n.category AS neighbor_category,
       round(s.score, 3) AS cosine, s.overlap AS customers_with_both
FROM item_similarity('purchases', 'customer_id', 'product_id', 'cosine', 3) s
JOIN best_sellers b ON b.product_id = s.item
JOIN products p ON p.product_id = s.item
JOIN products n ON n.product_id = s.neighbor
ORDER BY b.buyers DESC, b.product_id, s.score DESC, s.neighbor;

-- top-5 recommendations for the three customers with the most orders
SELECT r."user" AS customer_id, r."rank", p.name AS product, p.category, round(r.score, 3) AS score
FROM recommend_items('purchases', 'customer_id', 'product_id', 5) r
JOIN products p ON p.product_id = r.item
WHERE r."user" IN (SELECT customer_id FROM orders GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 3)
ORDER BY r."user", r."rank";

-- the strongest rules within orders (products bought together in one basket), by product name
CREATE OR REPLACE VIEW basket_lines AS
SELECT i.order_id, p.name AS product FROM order_items i JOIN products p ON p.product_id = i.product_id;

SELECT array_to_string(antecedent, ', ') AS if_bought, array_to_string(consequent, ', ') AS then_also,
       round(support * 100, 3) AS support_pct, round(confidence, 3) AS confidence, round(lift, 1) AS lift
FROM association_rules('basket_lines', 'order_id', 'product', 0.001, 0.2)
ORDER BY lift DESC, support DESC, if_bought, then_also LIMIT 10;
