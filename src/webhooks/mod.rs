//! Webhooks on the wire: Standard Webhooks signatures (`signing`), signing
//! secrets sealed at rest with the configured key (`secrets`), which
//! addresses a delivery may reach (`policy`, checked when an endpoint is
//! created and again at every connection), and the delivery loop that
//! claims due deliveries from the outbox and sends them (`delivery`). The
//! only module that calls a customer's endpoint; it decides nothing about
//! which events exist (the use-cases emit them) and holds no SQL.

pub mod delivery;
pub mod policy;
pub mod secrets;
pub mod signing;

pub use delivery::Deliverer;
