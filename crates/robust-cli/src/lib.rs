//! robust-cli
