-- pgbench's side of the checkout comparison (scripts/bench-pgcheckout.sh):
-- what shop on PostgreSQL sends to the database for one turn of
-- scripts/checkout-only.yaml, a cart update (PUT /v1/cart/items/{id}) then
-- a checkout (POST /v1/orders), the same statements in the same two
-- transactions, so that the ratio of the two rates is the service's own
-- cost: HTTP, JSON, Go and the pool, not a different amount of SQL.
-- Run with -M prepared (pgx prepares and caches its statements too) and
-- -D first_session=N, where sessions N+1 .. N+clients exist: each client
-- is one shopper with its own session, as each loadlab user is.
\set sid :first_session + :client_id + 1
\set item random(1, 200)
\set key random(1, 4000000000000000000)

-- The cart update (shop/postgres SetCartItem).
BEGIN;
SELECT id FROM sessions WHERE id = :sid FOR UPDATE;
SELECT name, available FROM items WHERE id = :item;
SELECT COUNT(*), COALESCE(bool_or(item_id = :item), FALSE) FROM cart_items WHERE session_id = :sid;
INSERT INTO cart_items (session_id, item_id, quantity) VALUES (:sid, :item, 1)
  ON CONFLICT (session_id, item_id) DO UPDATE SET quantity = excluded.quantity;
SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
  FROM cart_items c JOIN items i ON i.id = c.item_id WHERE c.session_id = :sid ORDER BY c.item_id;
COMMIT;

-- The checkout (shop.Orders.PlaceOrder over shop/postgres InCheckout).
BEGIN;
SELECT id FROM sessions WHERE id = :sid FOR UPDATE;
SELECT request_hash, order_id FROM idempotency_keys
  WHERE session_id = :sid AND key = 'k' || :key::text AND created_at > 0;
DELETE FROM idempotency_keys WHERE session_id = :sid AND key = 'k' || :key::text;
SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
  FROM cart_items c JOIN items i ON i.id = c.item_id WHERE c.session_id = :sid ORDER BY c.item_id;
UPDATE items SET stock = stock - 1 WHERE id = :item AND available AND stock >= 1 RETURNING stock;
INSERT INTO orders (session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
  VALUES (:sid, 'placed', 'Load Test', 'load@example.com', '', 100, 1, 1) RETURNING id AS order_id \gset
INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
  SELECT :order_id::bigint, * FROM unnest(ARRAY[:item::bigint], ARRAY['Item']::text[], ARRAY[1]::int[], ARRAY[100]::bigint[], ARRAY[100]::bigint[]);
INSERT INTO order_events (order_id, seq, status, created_at)
  VALUES (:order_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = :order_id), 'placed', 1);
INSERT INTO idempotency_keys (session_id, key, request_hash, order_id, created_at)
  VALUES (:sid, 'k' || :key::text, 'pgbench', :order_id, 1);
DELETE FROM cart_items WHERE session_id = :sid;
INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, scheduled_at, tags, metadata)
  VALUES (jsonb_build_object('order_id', :order_id::bigint), 'order_placed', 25, 1, 'default', 'available', now(), '{}', '{}');
COMMIT;
