//! `robust`: adversarial robustness evaluation and model integrity checks for image
//! classifiers, as one native binary.
//!
//! Flags are parsed with clap into one struct per subcommand; each command turns them
//! into a validated plan before any heavy work. `main` maps errors to exit codes
//! (see [`exit`]): one line on stderr, 2 for bad input, 1 for internal failures.

mod alloc;
mod commands;
mod config;
mod exit;
mod model_flags;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Adversarial robustness of image classifiers: attacks, reports, a CI gate, and model
/// integrity checks.
#[derive(Debug, Parser)]
#[command(name = "robust", version, about, long_about = None, after_help = "Examples:
  robust eval --attack fgsm --eps 0.1          # the bundled demo model and data (robust.toml)
  robust eval --model net.onnx --data test/ --attack fgsm,pgd --eps 0,0.01,0.03
  robust report reports/results.json --format md
  robust digest models/mnist-cnn/model.onnx
  robust devices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate clean and robust accuracy under attack sweeps; write JSON, HTML, Markdown, JUnit.
    Eval(Box<commands::eval::EvalArgs>),
    /// Write the logits (and optionally an input gradient) the model gives for a data set.
    Predict(Box<commands::predict::PredictArgs>),
    /// Combine the partial results of `eval --shard K/N` runs into one evaluation.
    Merge(Box<commands::shard::MergeArgs>),
    /// Re-render a results.json as HTML, Markdown or JUnit XML.
    Report(commands::report::ReportArgs),
    /// Print the SHA-256 of a model file, or the manifest of a model directory.
    Digest(commands::integrity::DigestArgs),
    /// Generate an Ed25519 key pair (PKCS#8 / SPKI PEM).
    Keygen(commands::integrity::KeygenArgs),
    /// Sign a model file or directory.
    Sign(commands::integrity::SignArgs),
    /// Verify a model against a signature; exit 1 when it was tampered with.
    Verify(commands::integrity::VerifyArgs),
    /// Data drift: per-feature KS (SciPy's or alibi-detect's verdicts) or MMD; exit 1 on drift.
    Drift(Box<commands::drift::DriftArgs>),
    /// Robust accuracy over the runs of a history file; exit 1 on a drop beyond --max-drop.
    History(commands::history::HistoryArgs),
    /// Screen a training set: statistics, duplicates, label disagreements, backdoor signatures.
    Scan(Box<commands::scan::ScanArgs>),
    /// Find a backdoor in the model (Neural Cleanse) or inputs carrying its trigger (STRIP).
    Backdoor(Box<commands::backdoor::BackdoorArgs>),
    /// Audit model files for code that runs on load; exit 1 on findings.
    Audit(commands::audit::AuditArgs),
    /// List the compute devices robust can use.
    Devices,
}

fn devices() -> anyhow::Result<ExitCode> {
    println!(
        "cpu: burn flex backend ({} threads)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let adapters = robust_models::wgpu_adapters();
    if adapters.is_empty() {
        println!("wgpu: no adapter found");
    }
    for a in adapters {
        println!(
            "wgpu: {} ({}, {}, largest buffer {}{})",
            a.name,
            a.api,
            a.device_type,
            commands::human_bytes(a.max_buffer_bytes),
            if a.software {
                ", software: auto skips it"
            } else {
                ""
            }
        );
    }
    let auto = robust_models::select_device(robust_models::DeviceChoice::Auto)?;
    println!("auto selects: {} [{}]", auto.adapter, auto.backend.name());
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes on one line, `outer: cause: ...`. A cause whose text the line
/// already holds is left out: many errors print their source in their own message (`cannot
/// write x: Is a directory (os error 21)`) and also return it as their `source()`, which
/// would print the operating system's message twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    commands::join_lines(&line)
}

fn main() -> ExitCode {
    alloc::configure();
    // Vulkan's loader complains on stderr when this is unset (common in containers and CI);
    // wgpu works either way, so give it a harmless value before any adapter is probed.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // `robust eval | head` closes stdout early: end quietly with the shell's SIGPIPE status
    // instead of a panic message (println! panics on a broken pipe).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info)
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The command runs on a thread of rayon's pool rather than beside it: every parallel
    // kernel it calls then starts on that thread, with the pool's other threads stealing,
    // instead of waking a pool thread and putting the caller to sleep until the work is
    // done. Each such sleep and wake is a futex call and, on a VM, an inter-processor
    // interrupt (a ResNet-18 PGD step runs a few hundred parallel kernels).
    // The pool's threads get the main thread's usual stack (8 MiB rather than rayon's
    // 2 MiB), since the parsers of hostile inputs now run on one of them.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    let result = rayon::scope(|_| run_command(&cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<exit::BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Runs the chosen command.
fn run_command(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Eval(a) => commands::eval::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Merge(a) => commands::shard::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::Digest(a) => commands::integrity::digest::run(a),
        Command::Keygen(a) => commands::integrity::keygen::run(a),
        Command::Sign(a) => commands::integrity::sign::run(a),
        Command::Verify(a) => commands::integrity::verify::run(a),
        Command::Drift(a) => commands::drift::run(a),
        Command::History(a) => commands::history::run(a),
        Command::Scan(a) => commands::scan::run(a),
        Command::Backdoor(a) => commands::backdoor::run(a),
        Command::Audit(a) => commands::audit::run(a),
        Command::Devices => devices(),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let err = anyhow::Error::new(robust_report::ReportError::Write {
            path: "out/results.json".into(),
            source: io,
        });
        assert_eq!(
            one_line(&err),
            "cannot write out/results.json: Is a directory (os error 21)"
        );
        let chained = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(one_line(&chained), "outer: inner cause");
    }
}
