-- Tables for examples/postgres.toml (and the docker-compose stack, which loads this file into
-- its Postgres on first start). `sluice check examples/postgres.toml` prints the CREATE TABLE
-- a missing table would need.

-- Sign-ups, masked by mask-pii, upserted by user id: the latest sign-up of a user wins.
CREATE TABLE IF NOT EXISTS users (
    user_id      text PRIMARY KEY,      -- the JSON field `id` (rename = { id = "user_id" })
    email        text NOT NULL,         -- masked
    phone        text,                  -- masked
    name         jsonb,                 -- {"title", "first", "last"}
    location     jsonb,
    registered   jsonb,
    signed_up_at timestamptz            -- the Kafka record's timestamp
);

-- Purchases routed out of the e-commerce stream. The source position is the upsert key, so a
-- record processed again after a crash (at-least-once) updates its own row instead of adding one.
CREATE TABLE IF NOT EXISTS purchases (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          text NOT NULL,
    product_id       text NOT NULL,
    price            numeric(10,2) NOT NULL CHECK (price >= 0),
    purchased_at     timestamptz NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    UNIQUE (source_partition, source_offset)
);

-- The shop metrics of examples/plugins/rust-shop-metrics (pipeline `shop-metrics`): per product
-- and event-time minute, the views, cart additions and purchases and the conversion rate
-- (purchases / views), written once when the minute's window closes. Upserted by
-- (product_id, minute), so a window replayed after a crash rewrites its own row.
CREATE TABLE IF NOT EXISTS product_minute_metrics (
    product_id      text NOT NULL,
    minute          timestamptz NOT NULL,
    views           bigint NOT NULL,
    cart_adds       bigint NOT NULL,
    purchases       bigint NOT NULL,
    conversion_rate double precision,      -- null for a minute without views
    PRIMARY KEY (product_id, minute)
);

-- Per user running totals, upserted after every event of that user.
CREATE TABLE IF NOT EXISTS user_totals (
    user_id    text PRIMARY KEY,
    views      bigint NOT NULL,
    cart_adds  bigint NOT NULL,
    purchases  bigint NOT NULL,
    spent      numeric(12,2) NOT NULL,
    updated_at timestamptz NOT NULL
);
