//! HTTP handlers, one module per resource. Handlers parse, call the service, and render.

pub mod changes;
pub mod exceptions;
pub mod ledger;
pub mod evidence;
