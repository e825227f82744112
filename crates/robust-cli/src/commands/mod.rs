//! One module per subcommand.

pub mod eval;
pub mod integrity;
pub mod report;
pub mod scan;
