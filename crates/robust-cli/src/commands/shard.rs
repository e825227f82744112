//! Sharded evaluation: `robust eval --shard K/N` writes a partial results file, and
//! `robust merge` combines the N partials into the results a single run would have written.
//!
//! A shard evaluates whole batches of the single run (batch `b` goes to shard `b % N`), so
//! every sample is computed in the same batch as on one machine and gives the same
//! numbers. The partial keeps what cannot be added up afterwards: per sample, whether it
//! survived each attack at each ε and the size of its perturbation (summed in index order
//! by the merge, as the single run sums them), the component of an ensemble that broke it,
//! and the SHA-256 of its pixels; plus the shard's example images. Counts are added. The
//! merge then runs the same code as `eval` on the rebuilt sweep, so its results.json equals
//! the single run's except for the timing fields (`started_at`: the earliest shard's start;
//! `duration_s`: the shards' summed time plus the merge).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use robust_attacks::{AttackSpec, PointStats, Sweep};
use robust_report as report;
use serde::{Deserialize, Serialize};

use super::eval::{self, SweepRun};
use crate::exit::bad_input;

/// The version of the partial-results format this build writes and reads.
pub const PARTIAL_VERSION: u32 = 1;

/// `--shard K/N` as given: K may be `auto` (from the scheduler's environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardArg {
    index: Option<usize>,
    count: usize,
}

/// Parses `K/N` or `auto/N`.
pub fn parse_shard_arg(s: &str) -> Result<ShardArg, String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not K/N (e.g. 0/4, or auto/4)"))?;
    let count: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': N '{n}' is not a whole number"))?;
    if count == 0 {
        return Err(format!("'{s}': N must be at least 1"));
    }
    let index = match k.trim() {
        "auto" => None,
        k => {
            let i: usize = k
                .parse()
                .map_err(|_| format!("'{s}': K '{k}' is not a whole number or auto"))?;
            if i >= count {
                return Err(format!("'{s}': K must be below N (0..={})", count - 1));
            }
            Some(i)
        }
    };
    Ok(ShardArg { index, count })
}

/// One shard of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl ShardArg {
    /// The shard, with `auto` taken from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) or
    /// SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN when set).
    pub fn resolve(self) -> Result<Shard, String> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    fn resolve_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let index = match self.index {
            Some(i) => i,
            None => {
                let (var, value) = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"]
                    .into_iter()
                    .find_map(|v| env(v).map(|x| (v, x)))
                    .ok_or_else(|| {
                        format!(
                            "--shard auto/{}: neither JOB_COMPLETION_INDEX nor \
                             SLURM_ARRAY_TASK_ID is set; give the index (--shard K/{})",
                            self.count, self.count
                        )
                    })?;
                let parse = |name: &str, v: &str| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--shard auto: {name}='{v}' is not a whole number"))
                };
                let mut i = parse(var, &value)?;
                if var == "SLURM_ARRAY_TASK_ID" {
                    if let Some(min) = env("SLURM_ARRAY_TASK_MIN") {
                        let min = parse("SLURM_ARRAY_TASK_MIN", &min)?;
                        i = i.checked_sub(min).ok_or_else(|| {
                            format!("--shard auto: SLURM_ARRAY_TASK_ID {value} is below SLURM_ARRAY_TASK_MIN {min}")
                        })?;
                    }
                }
                if i >= self.count {
                    return Err(format!(
                        "--shard auto/{}: {var}={value} gives shard {i}, not below {}",
                        self.count, self.count
                    ));
                }
                i
            }
        };
        Ok(Shard {
            index,
            count: self.count,
        })
    }
}

/// What a shard must record besides its results.
pub struct PartialMeta<'a> {
    /// Which shard.
    pub shard: Shard,
    /// The batch size the shards were cut with.
    pub batch_size: usize,
    /// Samples in the whole evaluation (after --limit).
    pub total_samples: usize,
    /// Every label of the whole evaluation, in order (identifies the data set).
    pub labels: &'a [usize],
    /// The attacks.
    pub specs: &'a [AttackSpec],
    /// The run's ε list.
    pub eps: &'a [f32],
    /// Example images per attack and ε.
    pub examples: usize,
    /// The gate's thresholds, applied by the merge.
    pub thresholds: &'a report::Thresholds,
    /// The baseline the merge compares with.
    pub baseline: Option<&'a Path>,
}

/// The configuration every shard of one evaluation must share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunConfig {
    shards: usize,
    batch_size: usize,
    total_samples: usize,
    labels_sha256: String,
    seed: u64,
    model_sha256: String,
    model: report::ModelInfo,
    device_backend: String,
    dataset_source: String,
    specs: Vec<AttackSpec>,
    eps: Vec<f32>,
    examples: usize,
    primary_eps: Option<f64>,
    thresholds: serde_json::Value,
    baseline: Option<PathBuf>,
    tool_version: String,
}

/// One (attack, ε) of a shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PartialPoint {
    eps: f32,
    n: usize,
    clean_correct: usize,
    robust_correct: usize,
    fooled: usize,
    per_class_n: Vec<usize>,
    per_class_robust: Vec<usize>,
    zero_grad: usize,
    nonfinite_grad: usize,
    /// The indicators' counts (absent in parts written before them).
    #[serde(default)]
    traced: usize,
    #[serde(default)]
    silent_success: usize,
    #[serde(default)]
    traced_failures: usize,
    #[serde(default)]
    incomplete: usize,
    robust: Vec<bool>,
    perturbations: Vec<f32>,
    components: Vec<String>,
    broken_by: Vec<Option<usize>>,
    /// A minimum-norm attack's smallest perturbation per sample (`null`: none found, +∞);
    /// empty for other attacks and in parts written before them.
    #[serde(default)]
    minimum_norms: Vec<Option<f32>>,
}

/// A shard's partial results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Partial {
    partial_version: u32,
    shard: Shard,
    config: RunConfig,
    /// Global indices of the shard's samples, increasing.
    indices: Vec<usize>,
    /// Per sample: SHA-256 (hex) of its label and pixels.
    sample_sha256: Vec<String>,
    clean_n: usize,
    clean_correct: usize,
    clean_per_class_n: Vec<usize>,
    clean_per_class_correct: Vec<usize>,
    /// Per attack, per ε.
    points: Vec<Vec<PartialPoint>>,
    /// The shard's own results (its samples only), with its example images.
    results: report::RunResults,
}

fn labels_sha256(labels: &[usize]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for &y in labels {
        h.update((y as u64).to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// The partial file's name for a shard.
pub fn partial_name(shard: Shard) -> String {
    format!("shard-{}-of-{}.json", shard.index, shard.count)
}

/// Writes a shard's partial results into `out` and says what to do next.
pub fn write_partial(
    run: &report::RunResults,
    swept: &SweepRun,
    meta: &PartialMeta<'_>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let sweep = &swept.sweep;
    let config = RunConfig {
        shards: meta.shard.count,
        batch_size: meta.batch_size,
        total_samples: meta.total_samples,
        labels_sha256: labels_sha256(meta.labels),
        seed: run.seed,
        model_sha256: run.model.sha256.clone(),
        model: run.model.clone(),
        device_backend: run.device.backend.clone(),
        dataset_source: run.dataset.source.clone(),
        specs: meta.specs.to_vec(),
        eps: meta.eps.to_vec(),
        examples: meta.examples,
        primary_eps: run.primary_eps,
        thresholds: serde_json::to_value(meta.thresholds)?,
        baseline: meta.baseline.map(Path::to_path_buf),
        tool_version: run.tool.version.clone(),
    };
    let points = sweep
        .stats
        .iter()
        .map(|per_eps| {
            per_eps
                .iter()
                .map(|st| PartialPoint {
                    eps: st.eps,
                    n: st.n,
                    clean_correct: st.clean_correct,
                    robust_correct: st.robust_correct,
                    fooled: st.fooled,
                    per_class_n: st.per_class_n.clone(),
                    per_class_robust: st.per_class_robust.clone(),
                    zero_grad: st.zero_grad,
                    nonfinite_grad: st.nonfinite_grad,
                    traced: st.traced,
                    silent_success: st.silent_success,
                    traced_failures: st.traced_failures,
                    incomplete: st.incomplete,
                    robust: st.robust.clone(),
                    perturbations: st.perturbations.clone(),
                    components: st.components.clone(),
                    broken_by: st.broken_by.clone(),
                    minimum_norms: st
                        .minimum_norms
                        .iter()
                        .map(|v| v.is_finite().then_some(*v))
                        .collect(),
                })
                .collect()
        })
        .collect();
    let partial = Partial {
        partial_version: PARTIAL_VERSION,
        shard: meta.shard,
        config,
        indices: swept.indices.clone(),
        sample_sha256: swept.digests.iter().map(hex::encode).collect(),
        clean_n: sweep.clean.n,
        clean_correct: sweep.clean.correct,
        clean_per_class_n: sweep.clean.per_class_n.clone(),
        clean_per_class_correct: sweep.clean.per_class_correct.clone(),
        points,
        results: run.clone(),
    };
    let path = out.join(partial_name(meta.shard));
    let json = serde_json::to_string(&partial)?;
    let created = super::create_dirs(out)?;
    if let Err(e) = super::write_all_or_nothing(&[(path.clone(), json.into_bytes())]) {
        super::remove_created(&created);
        return Err(e);
    }
    println!(
        "shard {}/{}: {} of {} samples; wrote {} (combine the {} parts with `robust merge`)",
        meta.shard.index,
        meta.shard.count,
        swept.indices.len(),
        meta.total_samples,
        path.display(),
        meta.shard.count
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `robust merge`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  robust eval --shard 0/2 --out parts/ && robust eval --shard 1/2 --out parts/
  robust merge parts/shard-*.json --out reports/
  robust merge parts/*.json --out reports/ --history reports/history.jsonl

The parts must come from one evaluation: the same model, data, attacks, ε, seed, batch size
and number of shards, each shard exactly once. The merged results.json equals a single
run's (bit for bit on the CPU) except for started_at and duration_s. The gate of the
evaluation (--baseline/--max-drop/--min-robust given to the shards) is applied here.

Exit code 0: merged, and the gate held; 1: the gate failed; 2: bad input (a missing,
unreadable or foreign part, parts of different evaluations, a shard missing or given
twice, an output that cannot be written).")]
pub struct MergeArgs {
    /// The partial results files written by `robust eval --shard K/N`.
    #[arg(required = true, value_name = "PART")]
    pub parts: Vec<PathBuf>,
    /// Output directory for results.json, report.html, summary.md and junit.xml.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Append the merged run to a history file (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// After a merge whose gate passed (or that had no gate), also write results.json here.
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
}

fn read_part(path: &Path) -> anyhow::Result<Partial> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| {
            bad_input(format!(
                "{}: not a partial results file: {e}",
                path.display()
            ))
        })?
        .get("partial_version")
        .and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(PARTIAL_VERSION) => {}
        Some(v) => {
            return Err(bad_input(format!(
                "{}: partial results version {v}; this robust reads version {PARTIAL_VERSION}",
                path.display()
            )))
        }
        None => {
            return Err(bad_input(format!(
                "{}: not a partial results file (no partial_version); write parts with \
                 `robust eval --shard K/N`",
                path.display()
            )))
        }
    }
    let part: Partial = serde_json::from_str(&text)
        .map_err(|e| bad_input(format!("{}: invalid partial results: {e}", path.display())))?;
    check_part(&part).map_err(|why| bad_input(format!("{}: {why}", path.display())))?;
    Ok(part)
}

/// Internal consistency of one part: sizes agree, indices increase, belong to the shard.
fn check_part(p: &Partial) -> Result<(), String> {
    let c = &p.config;
    let n = p.indices.len();
    if p.shard.count != c.shards || p.shard.index >= p.shard.count || c.batch_size == 0 {
        return Err("its shard numbers are inconsistent".into());
    }
    if p.sample_sha256.len() != n || p.clean_n != n {
        return Err("its per-sample lists do not match its sample count".into());
    }
    if p.indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err("its sample indices are not increasing".into());
    }
    if let Some(&i) = p
        .indices
        .iter()
        .find(|&&i| i >= c.total_samples || (i / c.batch_size) % c.shards != p.shard.index)
    {
        return Err(format!(
            "sample {i} does not belong to shard {}/{}",
            p.shard.index, p.shard.count
        ));
    }
    if p.points.len() != c.specs.len() {
        return Err("its attack list does not match its configuration".into());
    }
    for pts in &p.points {
        for pt in pts {
            if pt.n != n
                || pt.robust.len() != n
                || pt.perturbations.len() != n
                || (!pt.broken_by.is_empty() && pt.broken_by.len() != n)
                || (!pt.minimum_norms.is_empty() && pt.minimum_norms.len() != n)
            {
                return Err(format!(
                    "the point at eps {} does not have one value per sample",
                    pt.eps
                ));
            }
        }
    }
    Ok(())
}

/// The first key in which two configurations differ.
fn first_difference(a: &RunConfig, b: &RunConfig) -> Option<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Some("configuration".into());
    };
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
}

/// Runs `robust merge`.
pub fn run(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let inputs: Vec<&Path> = args.parts.iter().map(PathBuf::as_path).collect();
    let mut outputs: Vec<PathBuf> = ["results.json", "report.html", "summary.md", "junit.xml"]
        .iter()
        .map(|f| args.out.join(f))
        .collect();
    outputs.extend(args.history.clone());
    outputs.extend(args.save_baseline.clone());
    let outputs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    super::refuse_overlap(&inputs, &outputs)?;

    let parts: Vec<(PathBuf, Partial)> = args
        .parts
        .iter()
        .map(|p| read_part(p).map(|part| (p.clone(), part)))
        .collect::<anyhow::Result<_>>()?;
    let (first_path, first) = &parts[0];
    let count = first.config.shards;
    let mut by_index: BTreeMap<usize, &Path> = BTreeMap::new();
    for (path, part) in &parts {
        if let Some(key) = first_difference(&first.config, &part.config) {
            return Err(bad_input(format!(
                "{} and {} come from different evaluations: their `{key}` differs",
                first_path.display(),
                path.display()
            )));
        }
        if let Some(other) = by_index.insert(part.shard.index, path) {
            return Err(bad_input(format!(
                "shard {}/{count} is given twice: {} and {}",
                part.shard.index,
                other.display(),
                path.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        let (s, verb) = if missing.len() == 1 {
            ("", "is")
        } else {
            ("s", "are")
        };
        return Err(bad_input(format!(
            "shard{s} {} {verb} missing: give all {count} parts",
            missing.join(", ")
        )));
    }

    // Samples in global order: (index, part, position in the part).
    let mut order: Vec<(usize, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(k, (_, p))| p.indices.iter().enumerate().map(move |(j, &i)| (i, k, j)))
        .collect();
    order.sort_unstable();
    let total = first.config.total_samples;
    if order.len() != total || order.iter().enumerate().any(|(n, s)| s.0 != n) {
        return Err(bad_input(format!(
            "the parts hold {} samples, not the evaluation's {total} samples 0..{total}",
            order.len()
        )));
    }

    let cfg = &first.config;
    let plans = eval::build_plans(&cfg.specs, &cfg.eps, false)?;
    let labels = eval::labels_of(&plans);
    let num_classes = cfg.model.num_classes;
    let mut sweep = Sweep::new(plans, num_classes, cfg.seed, cfg.examples);
    sweep.clean.n = total;
    for (_, p) in &parts {
        sweep.clean.correct += p.clean_correct;
        add(&mut sweep.clean.per_class_n, &p.clean_per_class_n);
        add(
            &mut sweep.clean.per_class_correct,
            &p.clean_per_class_correct,
        );
    }
    for (a, per_eps) in sweep.stats.iter_mut().enumerate() {
        for (e, st) in per_eps.iter_mut().enumerate() {
            merge_point(st, &parts, &order, a, e)?;
        }
    }

    let mut run = first.results.clone();
    run.dataset.size = total;
    let digests = order
        .iter()
        .map(|&(_, k, j)| {
            hex::decode(&parts[k].1.sample_sha256[j])
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    bad_input(format!(
                        "{}: a sample digest is not 64 hex digits",
                        parts[k].0.display()
                    ))
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    run.dataset.samples_sha256 = Some(eval::samples_digest(&digests));
    let mut conversions: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in &parts {
        for c in &p.results.dataset.conversions {
            *conversions.entry(c.what.clone()).or_insert(0) += c.samples;
        }
    }
    run.dataset.conversions = conversions
        .into_iter()
        .map(|(what, samples)| report::DataConversion { what, samples })
        .collect();
    run.started_at = parts
        .iter()
        .map(|(_, p)| p.results.started_at.clone())
        .min()
        .unwrap_or_default();
    let shards_time: f64 = parts.iter().map(|(_, p)| p.results.duration_s).sum();
    eval::sweep_fields(&mut run, &sweep, &labels);
    run.examples = merge_examples(&parts, &labels, &sweep.plans, cfg.batch_size, cfg.examples);
    run.checks = report::reliability_checks(&run, &report::CheckOptions::default());
    run.gate = None;
    let thresholds: report::Thresholds =
        serde_json::from_value(cfg.thresholds.clone()).map_err(|e| {
            bad_input(format!(
                "{}: invalid gate settings: {e}",
                first_path.display()
            ))
        })?;
    let baseline = match &cfg.baseline {
        Some(p) => Some((
            p.display().to_string(),
            report::RunResults::read(p).map_err(bad_input)?,
        )),
        None => None,
    };
    let code = eval::finish(
        run,
        started
            .checked_sub(std::time::Duration::from_secs_f64(shards_time.max(0.0)))
            .unwrap_or(started),
        &eval::Finish {
            out: &args.out,
            history: args.history.as_deref(),
            baseline,
            thresholds: &thresholds,
            save_baseline: args.save_baseline.as_deref(),
            config_path: None,
        },
    )?;
    Ok(code)
}

fn add(total: &mut [usize], part: &[usize]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t += p;
    }
}

/// Rebuilds one (attack, ε) point from the parts: counts added, per-sample values laid out
/// in global index order, and the perturbations summed in that order as a single run does.
fn merge_point(
    st: &mut PointStats,
    parts: &[(PathBuf, Partial)],
    order: &[(usize, usize, usize)],
    a: usize,
    e: usize,
) -> anyhow::Result<()> {
    let point = |k: usize| -> anyhow::Result<&PartialPoint> {
        parts[k].1.points[a].get(e).ok_or_else(|| {
            bad_input(format!(
                "{}: attack {a} has no point {e}",
                parts[k].0.display()
            ))
        })
    };
    for (k, (path, _)) in parts.iter().enumerate() {
        let p = point(k)?;
        if p.eps.to_bits() != st.eps.to_bits() {
            return Err(bad_input(format!(
                "{}: eps {} where the configuration has {}",
                path.display(),
                p.eps,
                st.eps
            )));
        }
        st.n += p.n;
        st.clean_correct += p.clean_correct;
        st.robust_correct += p.robust_correct;
        st.fooled += p.fooled;
        add(&mut st.per_class_n, &p.per_class_n);
        add(&mut st.per_class_robust, &p.per_class_robust);
        st.zero_grad += p.zero_grad;
        st.nonfinite_grad += p.nonfinite_grad;
        st.traced += p.traced;
        st.silent_success += p.silent_success;
        st.traced_failures += p.traced_failures;
        st.incomplete += p.incomplete;
        if st.components.is_empty() {
            st.components.clone_from(&p.components);
        }
    }
    let ensemble = !st.components.is_empty();
    let minimum_norm = parts
        .iter()
        .enumerate()
        .any(|(k, _)| point(k).is_ok_and(|p| !p.minimum_norms.is_empty()));
    for &(_, k, j) in order {
        let p = point(k)?;
        if minimum_norm {
            let v = p.minimum_norms.get(j).copied().flatten();
            st.minimum_norms.push(v.unwrap_or(f32::INFINITY));
        }
        st.robust.push(p.robust[j]);
        let d = p.perturbations[j];
        st.perturbations.push(d);
        st.perturbation_sum += d as f64;
        st.perturbation_max = st.perturbation_max.max(d);
        if ensemble {
            st.broken_by.push(p.broken_by.get(j).copied().flatten());
        }
    }
    Ok(())
}

/// The examples a single run keeps: per attack and ε the first `examples` by sample index,
/// listed batch by batch, then by attack, ε and index (the order the sweep finds them).
fn merge_examples(
    parts: &[(PathBuf, Partial)],
    labels: &[String],
    plans: &[robust_attacks::AttackPlan],
    batch_size: usize,
    per_point: usize,
) -> Vec<report::Example> {
    let plan_of = |label: &str| labels.iter().position(|l| l == label).unwrap_or(usize::MAX);
    let eps_of = |p: usize, eps: f64| {
        plans
            .get(p)
            .and_then(|plan| {
                plan.eps
                    .iter()
                    .position(|&e| report::eps_eq(eval::eps_f64(e), eps))
            })
            .unwrap_or(usize::MAX)
    };
    let mut all: Vec<(usize, usize, usize, usize, report::Example)> = parts
        .iter()
        .flat_map(|(_, p)| p.results.examples.iter().cloned())
        .map(|ex| {
            let p = plan_of(&ex.attack);
            let e = eps_of(p, ex.eps);
            (ex.index / batch_size.max(1), p, e, ex.index, ex)
        })
        .collect();
    // First `examples` per (attack, ε) by index.
    all.sort_by_key(|a| (a.1, a.2, a.3));
    let mut kept: Vec<(usize, usize, usize, usize, report::Example)> = Vec::new();
    for item in all {
        let n = kept
            .iter()
            .filter(|k| (k.1, k.2) == (item.1, item.2))
            .count();
        if n < per_point {
            kept.push(item);
        }
    }
    kept.sort_by_key(|a| (a.0, a.1, a.2, a.3));
    kept.into_iter().map(|k| k.4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_arguments() {
        assert_eq!(
            parse_shard_arg("1/4").unwrap().resolve_with(|_| None),
            Ok(Shard { index: 1, count: 4 })
        );
        assert!(parse_shard_arg("4/4").is_err());
        assert!(parse_shard_arg("1/0").is_err());
        assert!(parse_shard_arg("x/2").is_err());
        let auto = parse_shard_arg("auto/3").unwrap();
        assert!(auto.resolve_with(|_| None).is_err());
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(auto.resolve_with(env), Ok(Shard { index: 2, count: 3 }));
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        assert!(auto.resolve_with(k8s).is_err(), "3 is not below 3");
    }
}
