//! Workflow definitions: the document ([`model`]), its checks
//! ([`validate`]), parameter merging ([`params`]) and Jinja templating
//! ([`template`]).

pub mod model;
pub(crate) mod params;
pub mod template;
mod template_bounds;
mod template_meta;
pub mod validate;

pub use model::{Dag, OnFailure, Parameter, RetryPolicy, Settings, Step};
