"""The demo database: a small shop to query, registered as the integration `demo`.

`ensure_demo_integration(store, admin_url, workspace_id)` creates, on the
PostgreSQL server at `admin_url` (the embedded one in the default setup):

- the database `broker_demo`: customers, products, orders, order_items,
  events and the view order_totals, a few thousand rows generated from a
  seeded RNG, so every install (and every test) sees the same data;
- the role `broker_demo_reader`: LOGIN, SELECT on those tables and nothing
  else, read-only by default;
- in the workspace, the integration `demo` (kind `postgres`) whose DSN logs
  in as that role, marked `managed`: the one integration the policy lets
  reach the broker's own server (`broker/integrations/policy.py`); only this
  code sets the flag, inside the sealed credentials.

Every step is idempotent, so `broker up` calls it on every start: a missing
database, role or grant is repaired, the data is seeded once (inside one
transaction, under an advisory lock, so a half-seeded database is never
seen), and an existing integration is returned as it is.

The role's password is random and lives only in the integration's sealed
credentials. On every start the role is given the sealed password again,
so a repaired role keeps working; a new registration draws a new password
(the role then belongs to the newest registration: one demo per server).
An integration registered by an older broker (a password derived from the
admin URL, no `managed` flag) is re-sealed with a random password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import random
import re
import secrets
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import structlog
from sqlalchemy.engine import make_url

from broker.errors import Conflict
from broker.integrations.querying import asyncpg_dsn
from broker.store.postgres import Store
from broker.store.records import IntegrationRecord
from models.ids import WorkspaceId

__all__ = [
    "DEMO_DATABASE",
    "DEMO_INTEGRATION",
    "DEMO_ROLE",
    "demo_rows",
    "ensure_demo_integration",
    "reader_dsn",
]

log = structlog.get_logger(__name__)

DEMO_DATABASE = "broker_demo"
DEMO_ROLE = "broker_demo_reader"
DEMO_INTEGRATION = "demo"
_SEED = 20_251_121
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_SCHEMA = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    country text NOT NULL,
    signed_up_at timestamptz NOT NULL
);
CREATE TABLE products (
    id integer PRIMARY KEY,
    name text NOT NULL UNIQUE,
    category text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price > 0),
    in_stock boolean NOT NULL
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    ordered_at timestamptz NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'refunded'))
);
CREATE INDEX ON orders (customer_id);
CREATE TABLE order_items (
    order_id integer NOT NULL REFERENCES orders,
    product_id integer NOT NULL REFERENCES products,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE events (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    kind text NOT NULL,
    path text NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE VIEW order_totals AS
    SELECT o.id AS order_id, o.customer_id, o.ordered_at, o.status,
           sum(i.quantity * i.unit_price) AS total
    FROM orders o JOIN order_items i ON i.order_id = o.id
    GROUP BY o.id;
COMMENT ON TABLE customers IS 'People who signed up to the shop';
COMMENT ON TABLE products IS 'The catalogue; price in EUR';
COMMENT ON TABLE orders IS 'One checkout of a customer';
COMMENT ON TABLE order_items IS 'The lines of an order; unit_price as charged, in EUR';
COMMENT ON TABLE events IS 'What customers did on the website';
COMMENT ON VIEW order_totals IS 'Each order with its total in EUR';
"""

_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "name", "email", "country", "signed_up_at"),
    "products": ("id", "name", "category", "price", "in_stock"),
    "orders": ("id", "customer_id", "ordered_at", "status"),
    "order_items": ("order_id", "product_id", "quantity", "unit_price"),
    "events": ("id", "customer_id", "kind", "path", "occurred_at"),
}

_FIRST = _words(
    "Ada Alan Amara Ben Chen Clara Dario Elena Emil Fatima Grace Hana Ivan Jonas Kai Lea "
    "Leila Lucas Maya Mateo Nina Omar Paula Rosa Sami Sofia Tomas Yuki Zoe Noah"
)
_LAST = _words(
    "Adams Baker Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Laurent "
    "Moreau Novak Okafor Petrov Rossi Silva Tanaka Weber"
)
_COUNTRIES = ("FR", "DE", "US", "GB", "ES", "IT", "NL", "JP", "BR", "CA")
_COUNTRY_WEIGHTS = (18, 16, 15, 10, 8, 8, 7, 6, 6, 6)
_CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "coffee": (
        ("Ethiopia Yirgacheffe 250g", "12.50"),
        ("Colombia Huila 250g", "11.00"),
        ("Kenya AA 250g", "13.90"),
        ("Brazil Cerrado 1kg", "29.00"),
        ("Guatemala Antigua 250g", "12.00"),
        ("House Espresso 1kg", "26.50"),
        ("Decaf Sugarcane 250g", "11.50"),
        ("Sumatra Mandheling 250g", "12.90"),
    ),
    "tea": (
        ("Sencha 100g", "9.50"),
        ("Darjeeling First Flush 100g", "14.00"),
        ("Earl Grey 100g", "7.90"),
        ("Chamomile 50g", "5.50"),
        ("Oolong Tieguanyin 100g", "16.00"),
        ("Rooibos Vanilla 100g", "6.90"),
    ),
    "brewing": (
        ("Pour-over Dripper", "24.00"),
        ("French Press 1L", "35.00"),
        ("Gooseneck Kettle", "59.00"),
        ("Burr Grinder", "129.00"),
        ("Moka Pot 6 cups", "39.00"),
        ("Paper Filters x100", "6.50"),
        ("AeroPress", "42.00"),
        ("Cold Brew Bottle", "28.00"),
    ),
    "accessories": (
        ("Ceramic Mug", "14.00"),
        ("Travel Tumbler", "22.00"),
        ("Digital Scale", "32.00"),
        ("Milk Frother", "45.00"),
        ("Tea Infuser", "8.00"),
        ("Gift Card 25 EUR", "25.00"),
    ),
}
_STATUSES = ("delivered", "shipped", "paid", "pending", "refunded")
_STATUS_WEIGHTS = (60, 15, 10, 8, 7)
_EVENT_KINDS = ("page_view", "search", "add_to_cart", "checkout", "sign_in")
_EVENT_WEIGHTS = (55, 15, 15, 5, 10)
_PATHS = ("/", "/shop/coffee", "/shop/tea", "/shop/brewing", "/shop/accessories", "/cart", "/blog")
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def demo_rows(seed: int = _SEED) -> dict[str, list[tuple[Any, ...]]]:
    """The demo data, table by table in insertion order; the same for the same seed."""
    rng = random.Random(seed)
    customers: list[tuple[Any, ...]] = []
    for cid in range(1, 121):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first}.{last}.{cid}@example.com".lower()
        country = rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0]
        signed_up = _EPOCH + dt.timedelta(days=rng.randrange(540), seconds=rng.randrange(86_400))
        customers.append((cid, f"{first} {last}", email, country, signed_up))
    products: list[tuple[Any, ...]] = []
    for category, items in _CATALOGUE.items():
        for name, price in items:
            products.append(
                (len(products) + 1, name, category, decimal.Decimal(price), rng.random() > 0.1)
            )
    orders: list[tuple[Any, ...]] = []
    items_rows: list[tuple[Any, ...]] = []
    for oid in range(1, 401):
        customer = rng.choice(customers)
        ordered_at = customer[4] + dt.timedelta(
            days=rng.randrange(1, 200), seconds=rng.randrange(86_400)
        )
        orders.append((oid, customer[0], ordered_at, rng.choices(_STATUSES, _STATUS_WEIGHTS)[0]))
        for product in rng.sample(products, rng.randint(1, 4)):
            discount = decimal.Decimal("0.90") if rng.random() < 0.15 else decimal.Decimal(1)
            unit_price = (product[3] * discount).quantize(decimal.Decimal("0.01"))
            items_rows.append((oid, product[0], rng.randint(1, 3), unit_price))
    events: list[tuple[Any, ...]] = []
    for eid in range(1, 1501):
        customer = rng.choice(customers)
        occurred = customer[4] + dt.timedelta(minutes=rng.randrange(300 * 24 * 60))
        kind = rng.choices(_EVENT_KINDS, _EVENT_WEIGHTS)[0]
        events.append((eid, customer[0], kind, rng.choice(_PATHS), occurred))
    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items_rows,
        "events": events,
    }


def reader_dsn(admin_url: str, database: str, role: str, password: str) -> str:
    """The DSN of `role` on `database`, on the admin URL's server (socket `host=` kept)."""
    url = make_url(admin_url).set(
        drivername="postgresql", username=role, password=password, database=database
    )
    return url.render_as_string(hide_password=False)


def _managed_credentials(admin_url: str, database: str, role: str, password: str) -> dict[str, Any]:
    return {"dsn": reader_dsn(admin_url, database, role, password), "managed": True}


def _dsn_for(admin_url: str, database: str | None = None) -> str:
    url = make_url(admin_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return asyncpg_dsn(url.render_as_string(hide_password=False))


async def ensure_demo_integration(
    store: Store,
    admin_url: str,
    workspace_id: WorkspaceId,
    *,
    database: str = DEMO_DATABASE,
    role: str = DEMO_ROLE,
    name: str = DEMO_INTEGRATION,
) -> IntegrationRecord:
    """Create (or repair) the demo database and its reader; register it as `name`."""
    for identifier in (database, role):
        if not _IDENTIFIER.fullmatch(identifier):
            raise ValueError(f"{identifier!r} is not a plain lower-case identifier")
    await _ensure_database_and_role(admin_url, database, role)
    await _ensure_schema_and_grants(_dsn_for(admin_url, database), role)
    existing = await _find(store, workspace_id, name)
    if existing is None:
        password = secrets.token_hex(24)  # hex: safe in a URL and in a SQL literal
        await _set_password(admin_url, role, password)
        credentials = _managed_credentials(admin_url, database, role, password)
        try:
            record = await store.create_integration(workspace_id, "postgres", name, credentials)
        except Conflict:
            # Another process registered it between our look-up and our insert.
            existing = await _find(store, workspace_id, name)
            if existing is None:
                raise
        else:
            log.info("demo_integration_registered", integration_id=str(record.integration_id))
            return record
    await _adopt(store, existing, admin_url, database, role)
    return existing


async def _adopt(
    store: Store, record: IntegrationRecord, admin_url: str, database: str, role: str
) -> None:
    """Give the role the password sealed in `record`; re-seal an older, unmanaged one."""
    _, credentials = await store.integration_credentials(record.integration_id)
    password = None
    if credentials.get("managed") is True:
        password = make_url(str(credentials.get("dsn", ""))).password
    if not password:
        password = secrets.token_hex(24)
        await store.replace_integration_credentials(
            record.integration_id, _managed_credentials(admin_url, database, role, password)
        )
        log.info("demo_integration_resealed", integration_id=str(record.integration_id))
    await _set_password(admin_url, role, str(password))


async def _set_password(admin_url: str, role: str, password: str) -> None:
    conn = await asyncpg.connect(_dsn_for(admin_url))
    try:
        # Hex digits only, so the literal needs no escaping (utility statements take no $1).
        await conn.execute(f"ALTER ROLE \"{role}\" WITH PASSWORD '{password}'")
    finally:
        await conn.close()


async def _find(store: Store, workspace_id: WorkspaceId, name: str) -> IntegrationRecord | None:
    for record in await store.list_integrations(workspace_id):
        if record.name == name:
            if record.kind != "postgres":
                raise Conflict(f"the workspace has an integration {name!r} of kind {record.kind}")
            return record
    return None


async def _ensure_database_and_role(admin_url: str, database: str, role: str) -> None:
    """`CREATE DATABASE` and the reader role, each only if missing; grants on the database."""
    conn = await asyncpg.connect(_dsn_for(admin_url))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created concurrently
                await conn.execute(f'CREATE DATABASE "{database}"')
                log.info("demo_database_created", database=database)
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            with contextlib.suppress(asyncpg.DuplicateObjectError):  # created concurrently
                await conn.execute(f'CREATE ROLE "{role}"')
        await conn.execute(
            f'ALTER ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
            "NOREPLICATION NOBYPASSRLS"
        )
        await conn.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
        await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
    finally:
        await conn.close()


async def _ensure_schema_and_grants(dsn: str, role: str) -> None:
    """Create and seed the tables once, in one transaction; grant SELECT every time."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # Serialises concurrent first starts; released with the transaction.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('broker_demo_seed'))")
            if await conn.fetchval("SELECT to_regclass('public.events')") is None:
                await conn.execute(_SCHEMA)
                await _copy(conn, demo_rows())
                log.info("demo_database_seeded")
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    finally:
        await conn.close()


async def _copy(conn: Any, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, rows in tables.items():
        columns: Sequence[str] = _COLUMNS[table]
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))
