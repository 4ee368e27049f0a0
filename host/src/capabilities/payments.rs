//! `payments`: orders confirmed by the user in a host-drawn sheet. The
//! ledger that settles them is not part of this host yet, so every call that
//! passes the manifest check answers `unavailable`.

use wasmtime::component::{HasSelf, Linker};

use super::HostState;
use crate::bindings::superapp::plugin::payments::{self as wit, OrderStatus, PaymentRequest};
use crate::bindings::superapp::plugin::types::Error;
use crate::contract::Capability;

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

fn unavailable() -> Error {
    Error::Unavailable("payments are not available on this host".into())
}

impl wit::Host for HostState {
    async fn request(&mut self, _req: PaymentRequest) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.require(Capability::Payments).and(Err(unavailable())))
    }

    async fn status(&mut self, _order_id: String) -> wasmtime::Result<Result<OrderStatus, Error>> {
        Ok(self.require(Capability::Payments).and(Err(unavailable())))
    }

    async fn refund(
        &mut self,
        _order_id: String,
        _amount: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.require(Capability::Payments).and(Err(unavailable())))
    }
}
