//! The fuzz targets' bodies. They live in one file without libfuzzer so that the stable test
//! suite (`tests/fuzz_corpus.rs`) runs the same bodies over the committed corpora and the
//! regression inputs.
mod targets;
pub use targets::*;
