//! Errors of the backdoor screens.

/// What can go wrong while looking for a backdoor.
#[derive(Debug, thiserror::Error)]
pub enum BackdoorError {
    /// The model failed while running (named by the model crate's message).
    #[error(transparent)]
    Model(#[from] robust_models::ModelError),
    /// A parameter or input that cannot be used, with the reason.
    #[error("{0}")]
    Input(String),
    /// An image of the HTML report could not be encoded, or the template failed.
    #[error("cannot render the report: {0}")]
    Render(String),
    /// Something that should not happen (a missing gradient).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BackdoorError>;
