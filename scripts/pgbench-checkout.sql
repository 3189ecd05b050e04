-- pgbench's side of the checkout comparison (scripts/bench-pgcheckout.sh):
-- what shop on PostgreSQL sends to the database for one turn of
-- scripts/checkout-only.yaml, a cart update (PUT /v1/cart/items/{id}) then
-- a checkout (POST /v1/orders), the same statements in the same
-- transactions, so that the ratio of the two rates is the service's own
-- cost: HTTP, JSON, Go and the pool, not a different amount of SQL.
-- Copied from the statements the service sent (PostgreSQL's statement log,
-- shop --role api, at the commit that last changed this file); when the
-- store's statements change, this file must follow:
-- TestPgbenchScriptIsTheShopsCheckout (shop/postgres) compares the two and
-- fails until it does.
-- Run with -M prepared (pgx prepares and caches its statements too) and
-- -D first_session=N, where sessions N+1 .. N+clients exist (each client
-- is one shopper with its own session, as each loadlab user is), and
-- -D now=MICROS (an order's created_at: the service passes the time of
-- the checkout; one time for the whole run puts every order in the same
-- month's partition, as a run of the service does).
\set sid :first_session + :client_id + 1
\set item random(1, 200)
\set key random(1, 4000000000000000000)

-- The cart update (shop/postgres PutCartItemAtOnce): the session's lock
-- and the change in one round trip, as the service's pgx batch sends them,
-- one implicit transaction ending at the pipeline's single sync (100 is
-- shop.MaxCartLines).
\startpipeline
SELECT id FROM sessions WHERE id = :sid FOR UPDATE;
WITH item AS (
	SELECT id FROM items WHERE id = :item AND available AND EXISTS (SELECT 1 FROM sessions WHERE id = :sid)
), counted AS (
	SELECT count(*) AS lines, count(*) FILTER (WHERE item_id = :item) AS with_item
	FROM cart_items WHERE session_id = :sid
), put AS (
	INSERT INTO cart_items (session_id, item_id, quantity)
	SELECT :sid, item.id, 1 FROM item, counted WHERE counted.with_item > 0 OR counted.lines < 100
	ON CONFLICT (session_id, item_id) DO UPDATE SET quantity = excluded.quantity
	RETURNING item_id, quantity
)
SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
FROM (
	SELECT item_id, quantity FROM cart_items
	WHERE session_id = :sid AND item_id <> :item AND EXISTS (SELECT 1 FROM put)
	UNION ALL
	SELECT item_id, quantity FROM put
) c JOIN items i ON i.id = c.item_id
ORDER BY c.item_id;
\endpipeline

-- The checkout (shop/postgres PlaceAtOnce): the session's lock and the
-- checkout in one round trip, as the service's pgx batch sends them, one
-- implicit transaction ending at the pipeline's single sync. The service
-- passes no expected total (NULL: the request gave none) and asks for
-- River's insert notification only when one is due (at most one per
-- fetch cooldown, 100 ms): none here.
\startpipeline
SELECT id FROM sessions WHERE id = :sid FOR UPDATE;
WITH locked AS MATERIALIZED (
	SELECT id, name, price_cents, available, stock FROM items
	WHERE id IN (SELECT item_id FROM cart_items WHERE session_id = :sid)
	ORDER BY id FOR UPDATE
), cart AS MATERIALIZED (
	SELECT c.item_id, l.name, c.quantity, l.price_cents, c.quantity * l.price_cents AS line_total,
		l.available AND l.stock >= c.quantity AS in_stock
	FROM cart_items c JOIN locked l ON l.id = c.item_id
	WHERE c.session_id = :sid
), plain AS MATERIALIZED (
	SELECT count(*) AS lines, sum(line_total)::bigint AS total FROM cart
	HAVING count(*) > 0 AND bool_and(in_stock)
		AND (NULL::bigint IS NULL OR sum(line_total) = NULL::bigint)
		AND NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE session_id = :sid AND key = 'k' || :key::text)
), reserved AS (
	UPDATE items i SET stock = i.stock - c.quantity FROM cart c, plain
	WHERE i.id = c.item_id AND i.available AND i.stock >= c.quantity
	RETURNING i.id, i.stock
), placed AS (
	INSERT INTO orders (id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
	SELECT order_id_at(:now), :sid, 'placed', 'Load Test', 'load@example.com', '', total, :now, :now FROM plain
	RETURNING id
), lines AS (
	INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
	SELECT p.id, c.item_id, c.name, c.quantity, c.price_cents, c.line_total FROM placed p, cart c
	RETURNING order_id, item_id, name, quantity, unit_price_cents, line_total_cents
), placed_event AS (
	INSERT INTO order_events (order_id, seq, status, created_at) SELECT id, 1, 'placed', :now FROM placed
), remembered AS (
	INSERT INTO idempotency_keys (session_id, key, request_hash, order_id, created_at)
	SELECT :sid, 'k' || :key::text, '57ad390142e89dd7cb235c6640971f7c30bfa38bfe5718030064ef217d82a2d5', id, :now FROM placed
), emptied AS (
	DELETE FROM cart_items WHERE session_id = :sid AND EXISTS (SELECT 1 FROM placed)
), menu AS (
	UPDATE catalog_version SET version = version + 1
	WHERE id = 1 AND EXISTS (SELECT 1 FROM reserved WHERE stock = 0)
), job AS (
	INSERT INTO river_job (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags)
	SELECT jsonb_build_object('order_id'::text, id), now(), 'order_placed'::text, 25::smallint, '{}'::jsonb, 1::smallint, 'default'::text,
		now(), 'available'::river_job_state, '{}'::varchar(255)[]
	FROM placed WHERE 'order_placed'::text IS NOT NULL
), woken AS MATERIALIZED (
	SELECT pg_notify(current_schema() || '.' || NULL::text, NULL::text) FROM placed WHERE NULL::text IS NOT NULL
)
SELECT l.order_id, l.item_id, l.name, l.quantity, l.unit_price_cents, l.line_total_cents,
	CASE WHEN (SELECT count(*) FROM reserved) = (SELECT lines FROM plain) THEN (SELECT count(*) FROM woken)
		ELSE checkout_stock_moved() END,
	(SELECT r.stock FROM reserved r WHERE r.id = l.item_id)
FROM lines l ORDER BY l.item_id;
\endpipeline
