//! Thin `.icc` handlers: extract → one service call → wire response.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod catalog;
pub(crate) mod edit;
pub mod file;
pub(crate) mod share;
pub(crate) mod thumb;
pub(crate) mod upload;
pub(crate) mod view;
