//! Upload throughput benchmark (issue 3); filled in below.
fn main() {}
