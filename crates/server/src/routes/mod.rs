//! HTTP handlers, one module per resource. Handlers parse, call the service, and render.

pub mod audit;
pub mod changes;
pub mod evidence;
pub mod exceptions;
pub mod ledger;
