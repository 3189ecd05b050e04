-- A checkout placed in one statement (shop/postgres/atonce.go) calls this
-- when the stock it reserved is not the stock it checked under its item
-- locks: it cannot happen while those locks hold, and if it ever did, the
-- error undoes the whole statement (SQLSTATE 40001, so the store takes the
-- checkout the general way) instead of committing an order whose stock was
-- not taken.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION checkout_stock_moved() RETURNS BIGINT
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RAISE EXCEPTION 'checkout: the stock reserved is not the stock checked under the item locks'
        USING ERRCODE = 'serialization_failure';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION checkout_stock_moved();
