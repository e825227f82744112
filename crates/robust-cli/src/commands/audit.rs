//! `robust audit PATH`: what loading a model file or folder would execute or expose.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use robust_integrity::{audit_path, write_atomic};

use crate::exit::bad_input;

/// Audit model files for code that runs on load (pickle imports, Keras Lambda layers),
/// ONNX external data and custom operators, and malformed safetensors/ONNX headers;
/// exit 1 on findings.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
      robust audit models/checkpoint.pt
      robust audit models/ --json audit.json
      robust audit model.keras --json -          # JSON on stdout instead of the table

    Formats: pickle (.pkl .pt .pth .bin .ckpt .joblib, PyTorch zip and legacy checkpoints),
    NumPy .npy/.npz (object arrays), Keras .h5/.keras (Lambda layers, custom objects), ONNX
    (external data, custom domains, oversized tensors), safetensors (header sanity).
    Nothing is loaded or executed: pickles are read opcode by opcode.

    Exit code 0: no finding of severity medium or above; 1: findings (dangerous or unknown
    imports, Lambda layers, external data outside the folder, malformed files); 2: the path
    cannot be read, or the --json file cannot be written.")]
pub struct AuditArgs {
    /// Model file or folder.
    pub path: PathBuf,
    /// Also write the report as JSON to this file (`-`: print JSON instead of the table).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
}

/// Runs `robust audit`.
pub fn run(args: &AuditArgs) -> Result<ExitCode> {
    if let Some(out) = args.json.as_ref().filter(|p| p.as_os_str() != "-") {
        crate::commands::refuse_overlap(&[&args.path], &[out])?;
        crate::commands::refuse_inside_model(&args.path, out)?;
    }
    let report = audit_path(&args.path).map_err(bad_input)?;
    let json = serde_json::to_string_pretty(&report).map_err(bad_input)? + "\n";
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => print!("{json}"),
        Some(p) => {
            write_atomic(p, json.as_bytes()).map_err(bad_input)?;
            print!("{}", report.to_table());
        }
        None => print!("{}", report.to_table()),
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
