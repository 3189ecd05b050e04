-- session_order_id_floor (00010) bounds "my orders" below by the session's
-- month. Declared STRICT around a CASE, it is never inlined: the planner
-- inlines a strict SQL function only when its body is strict too, and a
-- CASE is not. So every "my orders" page ran it as an SQL function,
-- planning its body on each execution, inside runtime partition pruning
-- (docs/postgres.md, "Where PostgreSQL's CPU goes"). Its answer for a NULL
-- is NULL either way (the CASE's test is then NULL, and order_id_floor is
-- strict), so it may be called on a NULL and is then inlined: the plan
-- holds its expression, computed in place.

-- +goose Up
ALTER FUNCTION session_order_id_floor(BIGINT) CALLED ON NULL INPUT;

-- +goose Down
ALTER FUNCTION session_order_id_floor(BIGINT) STRICT;
