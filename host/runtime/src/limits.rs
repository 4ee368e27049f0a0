//! Per-instance resource metering: memory and table growth are checked
//! against the app's limits, and a breach is recorded so the error can say
//! exactly which limit was hit.

use wasmtime::ResourceLimiter;

/// Which limit an instance ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    Memory { limit: u64, requested: u64 },
    Table { limit: u64, requested: u64 },
    Time { limit_ms: u64 },
}

/// Table elements one instance may hold. Rust components need a few hundred.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Core instances, tables and memories one component may create.
pub const MAX_INSTANCES: usize = 16;
pub const MAX_TABLES: usize = 16;
pub const MAX_MEMORIES: usize = 2;

/// The limiter of one store.
#[derive(Debug)]
pub struct Meter {
    memory_limit: u64,
    pub(crate) breach: Option<Breach>,
}

impl Meter {
    pub fn new(memory_limit: u64) -> Self {
        Meter {
            memory_limit,
            breach: None,
        }
    }
}

impl ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.breach = Some(Breach::Memory {
                limit: self.memory_limit,
                requested: desired as u64,
            });
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.breach = Some(Breach::Table {
                limit: MAX_TABLE_ELEMENTS as u64,
                requested: desired as u64,
            });
            return Err(wasmtime::Error::msg("table limit exceeded"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
