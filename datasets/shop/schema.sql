-- The shared e-commerce dataset: tables only.
-- Keys, constraints and indexes live in constraints.sql and are applied AFTER
-- the bulk load: maintaining a B-tree row by row during COPY costs far more
-- than one sorted build at the end, and checking a foreign key per row costs
-- more than one validating join. See 'Why constraints come last' in README.md.

CREATE TABLE customers (
    id           bigint      NOT NULL,
    email        text        NOT NULL,  -- a few differ from another only by case
    full_name    text        NOT NULL,
    phone        text,                  -- NULL for about a fifth of customers
    country      char(2)     NOT NULL,
    city         text,
    created_at   timestamptz NOT NULL,
    deleted_at   timestamptz,           -- soft-deleted customers (about 2%)
    is_load_test boolean     NOT NULL DEFAULT false  -- the seed ticket's load-test account
);

CREATE TABLE products (
    id          bigint        NOT NULL,
    sku         text          NOT NULL,
    name        text          NOT NULL,
    category    text          NOT NULL,
    vendor      text          NOT NULL,
    price       numeric(10,2) NOT NULL,
    attributes  jsonb         NOT NULL DEFAULT '{}',  -- colour, size, material, tags ...
    version     integer       NOT NULL DEFAULT 1,
    updated_at  timestamptz   NOT NULL,
    deleted_at  timestamptz
);

CREATE TABLE orders (
    id               bigint        NOT NULL,
    customer_id      bigint        NOT NULL,
    status           text          NOT NULL,  -- pending, paid, shipped, delivered, cancelled, refunded
    created_at       timestamptz   NOT NULL,  -- seasonal: busier in November and December
    total            numeric(12,2) NOT NULL,
    shipping_country char(2)       NOT NULL,
    note             text                     -- mostly NULL
);

CREATE TABLE order_items (
    id          bigint        NOT NULL,
    order_id    bigint        NOT NULL,
    product_id  bigint        NOT NULL,
    quantity    integer       NOT NULL,
    unit_price  numeric(10,2) NOT NULL  -- the price paid, not today's price
);

CREATE TABLE accounts (
    id          bigint        NOT NULL,
    customer_id bigint        NOT NULL,
    currency    char(3)       NOT NULL,
    balance     numeric(14,2) NOT NULL,
    version     integer       NOT NULL DEFAULT 0,
    updated_at  timestamptz   NOT NULL
);

-- The migrations challenge's starting point: the seed's `users (id, name)`.
CREATE TABLE users (
    id   bigint NOT NULL,
    name text   NOT NULL
);

-- What was built, so a notebook can assert it runs on the scale it expects.
CREATE TABLE lab_dataset (
    scale         text        NOT NULL,
    seed          integer     NOT NULL,
    faker_version text        NOT NULL,
    row_counts    jsonb       NOT NULL,
    checksum      text        NOT NULL,
    built_at      timestamptz NOT NULL DEFAULT now(),
    build_seconds numeric     NOT NULL
);
