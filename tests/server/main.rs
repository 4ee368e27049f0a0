//! Black-box tests of `superapp serve`: the real binary on an ephemeral
//! loopback port, real HTTP and WebSocket clients.

mod accounts;
mod apps;
mod audit;
#[path = "../support/bombs.rs"]
mod bombs;
#[path = "../support/cable.rs"]
mod cable;
mod callbacks;
mod city;
mod cluster;
mod common;
mod connections;
mod demo;
mod document_wallet;
mod documents;
mod durability;
mod hospital;
mod hospital_backend;
mod http;
mod https;
mod live;
mod messaging;
#[path = "../support/nats.rs"]
mod nats_server;
mod operator;
mod ops;
mod payments;
#[path = "../support/postgres.rs"]
mod pg_server;
mod postgres;
mod registry;
mod shell;
mod upgrade;
