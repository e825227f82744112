//! `robust report`: renders a results file as HTML, Markdown and/or JUnit XML.
//!
//! ```text
//! robust report results.json                          # report.html beside it
//! robust report results.json --format md --out -      # Markdown on stdout
//! robust report results.json --format html,md,junit --out reports/
//! robust report results.json --history history.jsonl  # append the run, chart the trend
//! ```
//!
//! The command only renders: the gate verdict stored in the results is shown, not
//! re-evaluated, and does not change the exit code (0 on success, 2 on bad input).
//! Every output is rendered in memory first; the files are then written together or not at
//! all, and the history is appended only after they were.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use robust_report::{
    append_history, read_history, render_html, render_junit, render_markdown, HistoryEntry,
    HtmlOptions, ReportError, RunResults,
};

use crate::exit::bad_input;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Self-contained HTML page (charts, per-class heat map, examples, checks, gate).
    Html,
    /// Compact Markdown summary for a CI job summary or a pull-request comment.
    Md,
    /// JUnit XML: one test case per gate row and per reliability check.
    Junit,
}

impl Format {
    /// The name `robust eval` gives this output in its `--out` folder.
    fn file_name(self) -> &'static str {
        match self {
            Format::Html => "report.html",
            Format::Md => "summary.md",
            Format::Junit => "junit.xml",
        }
    }
}

/// Arguments of `robust report`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  robust report reports/results.json                          # reports/report.html
  robust report reports/results.json --format md --out -      # Markdown on stdout
  robust report reports/results.json --format html,md,junit --out out/
  robust report reports/results.json --history history.jsonl  # append, chart the trend

Exit code 0: written; 2: bad input (an unreadable or invalid results or history file, an
output that would overwrite an input, or an output that cannot be written). With several
formats the files are written together or not at all.")]
pub struct ReportArgs {
    /// The results JSON written by `robust eval`.
    pub results: PathBuf,

    /// Output format(s): html, md, junit. Repeat the flag or separate with commas.
    #[arg(long = "format", value_enum, value_delimiter = ',', default_values_t = [Format::Html])]
    pub formats: Vec<Format>,

    /// Where to write. With one format: the output file, or `-` for stdout. With several:
    /// a directory (created if missing) that receives `report.html`, `summary.md` and
    /// `junit.xml`, the names `robust eval` uses. Default: beside the results file, with
    /// those names (`x.summary.md` beside an `x.json` not called results.json).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// A history file (JSON lines). The run is appended to it unless already there (same
    /// start time and model hash); with two or more runs the HTML report charts robust
    /// accuracy over time. The file is created if missing.
    #[arg(long, value_name = "PATH")]
    pub history: Option<PathBuf>,
}

/// Where each format goes: a file, or stdout (`None`).
fn destinations(args: &ReportArgs) -> anyhow::Result<Vec<(Format, Option<PathBuf>)>> {
    // Each format once, in the order first given.
    let mut formats: Vec<Format> = Vec::new();
    for f in &args.formats {
        if !formats.contains(f) {
            formats.push(*f);
        }
    }
    // eval's names (report.html, summary.md, junit.xml) beside a `results.json`; beside
    // any other file, prefixed with its stem (`baseline.summary.md`).
    let beside = |f: Format| {
        let stem = args
            .results
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem == "results" || stem.is_empty() {
            args.results.with_file_name(f.file_name())
        } else {
            args.results
                .with_file_name(format!("{stem}.{}", f.file_name()))
        }
    };
    match (&args.out, formats.as_slice()) {
        (None, _) => Ok(formats.iter().map(|&f| (f, Some(beside(f)))).collect()),
        (Some(out), [f]) if out.as_os_str() == "-" => Ok(vec![(*f, None)]),
        (Some(out), [f]) => Ok(vec![(*f, Some(out.clone()))]),
        (Some(out), _) => {
            if out.as_os_str() == "-" {
                return Err(bad_input(
                    "--out - (stdout) takes a single --format, not several",
                ));
            }
            if out.exists() && !out.is_dir() {
                return Err(bad_input(format!(
                    "--out {}: with several formats --out must be a directory, and this is a file",
                    out.display()
                )));
            }
            Ok(formats
                .iter()
                .map(|&f| (f, Some(out.join(f.file_name()))))
                .collect())
        }
    }
}

/// Reading the user's files can only fail because of them: exit code 2.
fn input_error(e: ReportError) -> anyhow::Error {
    bad_input(e)
}

/// The history as the report shows it: the entries of `path` (if it exists), with `run`
/// added unless it is already there (same start time and model hash); and whether it must
/// be appended once the outputs are written.
fn planned_history(path: &Path, run: &RunResults) -> anyhow::Result<(Vec<HistoryEntry>, bool)> {
    let mut entries = if path.exists() {
        read_history(path).map_err(input_error)?
    } else {
        Vec::new()
    };
    let already = entries
        .iter()
        .any(|h| h.started_at == run.started_at && h.model_sha256 == run.model.sha256);
    if !already {
        entries.push(HistoryEntry::from_run(run));
    }
    Ok((entries, !already))
}

/// Runs `robust report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let results = RunResults::read(&args.results).map_err(input_error)?;
    let destinations = destinations(args)?;
    let mut outputs: Vec<&Path> = destinations
        .iter()
        .filter_map(|(_, d)| d.as_deref())
        .collect();
    outputs.extend(args.history.as_deref());
    super::refuse_overlap(&[&args.results], &outputs)?;
    let history = match &args.history {
        Some(path) => Some(planned_history(path, &results)?),
        None => None,
    };
    let mut texts: Vec<(Option<PathBuf>, String)> = Vec::new();
    for (format, dest) in destinations {
        let text = match format {
            Format::Html => render_html(
                &results,
                &HtmlOptions {
                    history: history.as_ref().map(|(h, _)| h.as_slice()),
                    ..HtmlOptions::default()
                },
            )
            .context("rendering the HTML report")?,
            Format::Md => render_markdown(&results),
            Format::Junit => render_junit(&results),
        };
        texts.push((dest, text));
    }
    let files: Vec<(PathBuf, Vec<u8>)> = texts
        .iter()
        .filter_map(|(d, t)| Some((d.clone()?, t.clone().into_bytes())))
        .collect();
    let created = match (&args.out, files.len()) {
        (Some(dir), 2..) => super::create_dirs(dir)?,
        _ => Vec::new(),
    };
    if let Err(e) = super::write_all_or_nothing(&files) {
        super::remove_created(&created);
        return Err(e);
    }
    for (dest, text) in &texts {
        match dest {
            None => {
                use std::io::Write as _;
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("writing to stdout")?;
            }
            Some(path) => eprintln!("wrote {}", path.display()),
        }
    }
    if let (Some(path), Some((_, true))) = (&args.history, &history) {
        append_history(path, &results).map_err(input_error)?;
    }
    Ok(ExitCode::SUCCESS)
}
