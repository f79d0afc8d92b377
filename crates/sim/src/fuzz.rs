//! The seeded fuzzer.
