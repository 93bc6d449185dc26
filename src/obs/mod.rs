//! What an operator sees: the log on stderr (never fatal) and the metrics
//! file.

pub mod logging;
pub mod metrics;
