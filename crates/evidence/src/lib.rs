//! Evidence: facts from outside changegate about what changed production, turned into one
//! vocabulary. Git repositories (the first-parent history of a protected branch), GitHub and
//! GitLab webhook deliveries and exports, and CI/CD deployment reports all end up as the
//! types of [`model`]. Nothing here decides whether a change was authorized: that is the
//! reconciliation's job. Parsers never guess silently: input they cannot read is an error
//! that names what was wrong.

pub mod git;
pub mod github;
pub mod gitlab;
pub mod message;
pub mod model;
pub mod pipeline;
pub mod records;
pub mod signature;
pub mod times;

pub use model::*;
