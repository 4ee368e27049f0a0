//! Browser tests: the web shell in real headless Chromium, driven over
//! WebDriver (`chromedriver`, with fantoccini), against the real server on
//! a loopback port. Each step saves a screenshot under
//! `target/browser-tests/<test>/`; the folder is kept, so a failing test
//! leaves the screens that led to it.

#[path = "../support/cable.rs"]
mod cable;
#[path = "../server/common.rs"]
#[allow(dead_code)]
mod common;
mod harness;
mod shell;
