//! Thin `.icc` handlers: extract → one service call → wire response.

pub mod account;
pub mod catalog;
pub mod file;
