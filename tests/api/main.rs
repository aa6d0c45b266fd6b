//! Black-box tests: the real server over HTTP, on SQLite and (with TEST_DATABASE_URL) Postgres.

mod common;

mod admin;
mod audit;
mod auth;
mod cli;
mod connections;
mod dashboard;
mod delivery;
mod durability;
mod metrics;
mod openapi;
mod properties;
mod statements;
mod store_contract;
mod traces;
mod validation;
mod webhooks;
