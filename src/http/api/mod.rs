//! Thin `.icc` handlers: extract → one service call → wire response.

pub mod account;
pub mod admin;
pub mod catalog;
pub mod edit;
pub mod file;
pub mod share;
pub mod thumb;
pub mod upload;
pub mod view;
