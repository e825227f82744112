//! APGD, APGD-T, FAB-T, Square and AutoAttack: closed forms (checkpoint schedule, DLR losses, the
//! p schedule), Square's query accounting, determinism, and robust accuracy against
//! pyautoattack 0.2.0 (`tests/reference/autoattack_ref.json`, made by `autoattack_ref.py`
//! beside it).
//!
//! The reference comparison runs on the first `ROBUST_AA_N` images (default 200, to keep CI
//! short; 1000 for the full check) at the ε in `ROBUST_AA_EPS` (default `0.1,0.15`; `all` for
//! every ε of the reference: 0.05, 0.1, 0.15, 0.2, 0.3), with a tolerance of 0.5 points on
//! 1000 images and 1.5 points (three images) on fewer: the two tools draw different random
//! starts and squares, so single images near the boundary may differ. The full check:
//! `ROBUST_AA_N=1000 ROBUST_AA_EPS=all cargo test --release --workspace --test autoattack
//! robust_accuracy -- --nocapture`.

use burn::tensor::{Tensor, TensorData};
use robust_attacks::apgd::{checkpoints, dlr_objective};
use robust_attacks::square::{p_schedule, window_side, Square};
use robust_attacks::{
    attack_at, AttackCtx, AttackPlan, AttackSpec, Batch, Norm, Sweep, TargetMode,
};
use robust_models::Model;

mod common;
use common::{build, cpu, demo_batch, demo_model, root};

/// The paper's schedule: p₀ = 0, p₁ = 0.22, pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06); a
/// check happens after ⌈pⱼ·N⌉ iterations, i.e. at 0-based iteration ⌈pⱼ·N⌉ − 1.
#[test]
fn the_checkpoints_follow_the_papers_schedule() {
    let mut p = vec![0.0f64, 0.22];
    while *p.last().unwrap() < 1.0 {
        let j = p.len() - 1;
        let next = p[j] + (p[j] - p[j - 1] - 0.03).max(0.06);
        p.push(next);
    }
    let from_paper: Vec<usize> = p[1..]
        .iter()
        .map(|&pj| (pj * 100.0 - 1e-9).ceil() as usize)
        .filter(|&it| it <= 100)
        .map(|it| it - 1)
        .collect();
    assert_eq!(from_paper, vec![21, 40, 56, 69, 79, 86, 92, 98]);
    assert_eq!(checkpoints(100), from_paper);
    // Ten iterations: first check after ⌊2.2⌋ = 2, then every max(2 − 1, 1) = 1.
    assert_eq!(checkpoints(10), vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(checkpoints(1), vec![0]);
}

/// DLR and targeted DLR against their closed forms, on logits whose order is known.
#[test]
fn dlr_losses_match_their_closed_forms() {
    let device = cpu();
    let rows: Vec<[f32; 5]> = vec![
        [1.0, 5.0, 3.0, 2.0, -1.0],
        [4.0, 0.5, 2.5, 3.0, 1.0],
        [-2.0, -1.0, 0.0, 7.0, 6.0],
    ];
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    let logits = || Tensor::<2>::from_data(TensorData::new(values.clone(), [3, 5]), &device);
    let labels = [0usize, 0, 4];
    // Untargeted: −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e-12).
    let want = [
        -(1.0 - 5.0) / (5.0 - 2.0), // y not on top: the top class is the other
        -(4.0 - 3.0) / (4.0 - 2.5), // y on top: the runner-up is the other
        -(6.0 - 7.0) / (7.0 - 0.0),
    ];
    let got = robust_models::to_host(dlr_objective(logits(), &values, &labels, None));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    // Targeted: −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e-12).
    let targets = [2usize, 3, 3];
    let want = [
        -(1.0 - 3.0) / (5.0 - (2.0 + 1.0) / 2.0),
        -(4.0 - 3.0) / (4.0 - (2.5 + 1.0) / 2.0),
        -(6.0 - 7.0) / (7.0 - (0.0 + -1.0) / 2.0),
    ];
    let got = robust_models::to_host(dlr_objective(logits(), &values, &labels, Some(&targets)));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

/// p halves after 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 iterations; the window side
/// is round(√(p·h·w)) (L2: at least 3 and odd), at most the image side.
#[test]
fn the_square_schedule_matches_the_reference() {
    assert_eq!(p_schedule(0.8, 0), 0.8);
    assert_eq!(p_schedule(0.8, 10), 0.8);
    assert_eq!(p_schedule(0.8, 11), 0.4);
    assert_eq!(p_schedule(0.8, 4999), 0.8 / 128.0);
    assert_eq!(p_schedule(0.8, 9000), 0.8 / 512.0);
    // √(0.8·784) = 25.04 → 25; √(0.4·784) = 17.7 → 18 (L2: 19); √(0.8/128·784) = 2.2 → 2.
    assert_eq!(window_side(Norm::Linf, 0.8, 0, 28, 28), 25);
    assert_eq!(window_side(Norm::Linf, 0.8, 11, 28, 28), 18);
    assert_eq!(window_side(Norm::L2, 0.8, 11, 28, 28), 19);
    assert_eq!(window_side(Norm::Linf, 0.8, 4999, 28, 28), 2);
    assert_eq!(window_side(Norm::L2, 0.8, 4999, 28, 28), 3);
    assert_eq!(window_side(Norm::Linf, 1.0, 0, 28, 28), 28);
}

/// Whether each sample of `batch` is misclassified at `adv`.
fn fooled(model: &Model, adv: Tensor<4>, labels: &[usize]) -> Vec<bool> {
    let (pred, _) = robust_attacks::predictions(model.forward(adv).unwrap());
    pred.iter().zip(labels).map(|(p, y)| p != y).collect()
}

/// Square's queries: 0 for a point misclassified when clean; 1 + budget for a point never
/// broken; and a point broken at query q is broken at exactly q with any budget ≥ q − 1
/// iterations, and not broken (having used all 1 + budget queries) with one fewer.
#[test]
fn square_counts_its_queries_exactly() {
    let device = cpu();
    let model = demo_model(&device);
    let batch = demo_batch(&model, 0, 24);
    let budget = 60;
    let run = |queries: usize| {
        let sq = Square::new(Norm::Linf).with_queries(queries);
        let mut ctx = AttackCtx::new(&model, 7);
        let (adv, counts) = sq.attack_counted(&mut ctx, &batch, 0.2).unwrap();
        (fooled(&model, adv, &batch.labels), counts)
    };
    let (clean_pred, _) = robust_attacks::predictions(model.forward(batch.x.clone()).unwrap());
    let (broken, counts) = run(budget);
    let mut checked_broken = 0;
    for i in 0..batch.len() {
        if clean_pred[i] != batch.labels[i] {
            assert_eq!(counts[i], 0, "sample {i} was wrong when clean");
        } else if !broken[i] {
            assert_eq!(counts[i], budget + 1, "sample {i} never broken");
        } else {
            let q = counts[i];
            assert!((1..=budget + 1).contains(&q), "sample {i}: {q} queries");
            if q >= 2 {
                let (b, c) = run(q - 1);
                assert!(
                    b[i] && c[i] == q,
                    "sample {i}: budget {} gave {:?}",
                    q - 1,
                    (b[i], c[i])
                );
                let (b, c) = run(q - 2);
                assert!(
                    !b[i] && c[i] == q - 1,
                    "sample {i}: budget {} gave {:?}",
                    q - 2,
                    (b[i], c[i])
                );
                checked_broken += 1;
            }
            if checked_broken >= 3 {
                break;
            }
        }
    }
    assert!(
        checked_broken >= 1,
        "no sample was broken after its first query: {counts:?}"
    );
}

/// The same seed gives the same adversarial images, and a sample's result does not depend
/// on the other samples of its batch.
#[test]
fn apgd_and_square_are_deterministic_per_sample() {
    let device = cpu();
    let model = demo_model(&device);
    for spec in [
        AttackSpec {
            steps: Some(12),
            ..AttackSpec::named("apgd-ce")
        },
        AttackSpec {
            steps: Some(12),
            n_target_classes: Some(2),
            ..AttackSpec::named("apgd-t")
        },
        AttackSpec {
            steps: Some(12),
            norm: Some(Norm::L2),
            ..AttackSpec::named("apgd-dlr")
        },
        AttackSpec {
            queries: Some(40),
            ..AttackSpec::named("square")
        },
        AttackSpec {
            queries: Some(40),
            norm: Some(Norm::L2),
            ..AttackSpec::named("square")
        },
    ] {
        let attack = build(spec.clone());
        let eps = if attack.norm() == Norm::L2 { 1.5 } else { 0.1 };
        let a = demo_batch(&model, 0, 12);
        let b = demo_batch(&model, 6, 12);
        let run = |batch: &Batch, seed| {
            robust_models::to_host(
                attack_at(&model, attack.as_ref(), batch, eps, seed)
                    .unwrap()
                    .adv,
            )
        };
        let first = run(&a, 3);
        assert_eq!(
            first,
            run(&a, 3),
            "{}: same seed, other result",
            attack.label()
        );
        let shifted = run(&b, 3);
        assert_eq!(
            first[6 * 784..],
            shifted[..6 * 784],
            "{}: samples 6..12 depend on their batch",
            attack.label()
        );
        assert_ne!(
            first,
            run(&a, 4),
            "{}: the seed changes nothing",
            attack.label()
        );
    }
}

fn reference() -> Option<serde_json::Value> {
    let path = root().join("crates/robust-attacks/tests/reference/autoattack_ref.json");
    let text = std::fs::read_to_string(&path).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// Robust accuracy of APGD-CE, APGD-T, FAB-T, Square and AutoAttack standard within
/// tolerance of
/// pyautoattack 0.2.0 on the demo model, at each ε of the reference; per-point agreement is
/// printed.
#[test]
fn robust_accuracy_matches_pyautoattack() {
    let r = reference().expect("tests/reference/autoattack_ref.json is committed");
    let n: usize = std::env::var("ROBUST_AA_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tolerance = if n >= 1000 { 0.005 } else { 0.015 };
    let device = cpu();
    let model = demo_model(&device);
    // CI checks the two ε where the attacks differ most cheaply; ROBUST_AA_EPS=all (or a
    // list such as 0.05,0.1) checks more.
    let wanted = std::env::var("ROBUST_AA_EPS").unwrap_or_else(|_| "0.1,0.15".into());
    let eps_map: Vec<(&String, &serde_json::Value)> = r["eps"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| wanted == "all" || wanted.split(',').any(|w| w.trim() == k.as_str()))
        .collect();
    assert!(
        !eps_map.is_empty(),
        "ROBUST_AA_EPS={wanted} matches no ε of the reference"
    );
    let mut failures = Vec::new();
    for (key, res) in eps_map {
        let eps: f32 = key.parse().unwrap();
        let pairs = [
            ("apgd-ce", AttackSpec::named("apgd-ce")),
            ("apgd-t", AttackSpec::named("apgd-t")),
            ("fab-t", AttackSpec::named("fab-t")),
            ("square", AttackSpec::named("square")),
            ("standard", AttackSpec::named("autoattack")),
        ];
        let plans: Vec<AttackPlan> = pairs
            .iter()
            .filter(|(k, _)| res.get(*k).is_some())
            .map(|(_, s)| AttackPlan {
                attack: build(s.clone()),
                eps: vec![eps],
                target: TargetMode::None,
            })
            .collect();
        let keys: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| res.get(*k).is_some())
            .map(|(k, _)| *k)
            .collect();
        let mut sweep = Sweep::new(plans, 10, 0, 0);
        for start in (0..n).step_by(500) {
            let len = 500.min(n - start);
            let b = demo_batch(&model, start, len);
            sweep
                .run_batch(&model, b.x, b.labels, b.indices, || {})
                .unwrap();
        }
        for (p, key_ref) in keys.iter().enumerate() {
            let flags: Vec<bool> = res[*key_ref]["robust"]
                .as_str()
                .unwrap()
                .chars()
                .take(n)
                .map(|c| c == '1')
                .collect();
            let ours = &sweep.stats[p][0].robust;
            let theirs = flags.iter().filter(|&&f| f).count() as f64 / n as f64;
            let mine = sweep.stats[p][0].robust_accuracy();
            let agree = ours.iter().zip(&flags).filter(|(a, b)| a == b).count();
            eprintln!(
                "eps {key} {key_ref}: robust {:.2}% vs pyautoattack {:.2}% ({:+.2} points), \
                 per-point agreement {agree}/{n}",
                mine * 100.0,
                theirs * 100.0,
                (mine - theirs) * 100.0
            );
            if (mine - theirs).abs() > tolerance + 1e-9 {
                failures.push(format!("eps {key} {key_ref}: {mine} vs {theirs}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "beyond tolerance {tolerance}: {failures:?}"
    );
}

/// A small deterministic generator for test vectors (xorshift64*), uniform in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// FAB's L-inf projection is the smallest L-inf step onto the hyperplane inside the box:
/// its size equals the root λ* of h(λ) = w·t − b − Σ_{w>0} w·min(λ, t) − Σ_{w<0} |w|·min(λ, 1 − t)
/// (found by bisection), and it lands on the hyperplane, inside [0, 1].
#[test]
fn fab_linf_projection_is_the_smallest_step_onto_the_hyperplane() {
    let mut rng = Lcg(0x1234_5678);
    for case in 0..50 {
        let n = 20 + case;
        let t: Vec<f32> = (0..n).map(|_| rng.next()).collect();
        let mut w: Vec<f32> = (0..n).map(|_| rng.next() * 2.0 - 1.0).collect();
        w[case % n] = 0.0;
        let wt: f32 = w.iter().zip(&t).map(|(a, b)| a * b).sum();
        let reach: f32 = w
            .iter()
            .zip(&t)
            .map(|(&wi, &ti)| if wi > 0.0 { wi * ti } else { -wi * (1.0 - ti) })
            .sum();
        let gap = reach * (0.1 + 0.8 * rng.next());
        let b = wt - gap;
        let d = robust_attacks::fab::project_linf(&t, &w, b);
        let h = |l: f32| {
            gap - w
                .iter()
                .zip(&t)
                .map(|(&wi, &ti)| {
                    if wi > 0.0 {
                        wi * l.min(ti)
                    } else {
                        -wi * l.min(1.0 - ti)
                    }
                })
                .sum::<f32>()
        };
        let (mut lo, mut hi) = (0f32, 1f32);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if h(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let size = d.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            (size - hi).abs() < 1e-4,
            "case {case}: |d| {size} vs λ* {hi}"
        );
        let on: f32 = w
            .iter()
            .zip(&t)
            .zip(&d)
            .map(|((a, b), c)| a * (b + c))
            .sum();
        assert!((on - b).abs() < 1e-3, "case {case}: w·(t+d) {on} vs b {b}");
        assert!(t
            .iter()
            .zip(&d)
            .all(|(a, c)| (-1e-6..=1.0 + 1e-6).contains(&(a + c))));
    }
}

/// FAB's L2 projection satisfies the optimality conditions of the box-constrained
/// projection: d = clamp(−μ·w, −t, 1 − t) for the μ ≥ 0 that puts t + d on the hyperplane.
#[test]
fn fab_l2_projection_meets_its_optimality_conditions() {
    let mut rng = Lcg(0x9E37_79B9);
    for case in 0..50 {
        let n = 20 + case;
        let t: Vec<f32> = (0..n).map(|_| rng.next()).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.next() * 2.0 - 1.0).collect();
        let wt: f32 = w.iter().zip(&t).map(|(a, b)| a * b).sum();
        let reach: f32 = w
            .iter()
            .zip(&t)
            .map(|(&wi, &ti)| if wi > 0.0 { wi * ti } else { -wi * (1.0 - ti) })
            .sum();
        let gap = reach * (0.1 + 0.8 * rng.next());
        let b = wt - gap;
        let d = robust_attacks::fab::project_l2(&t, &w, b);
        let step = |mu: f32| -> Vec<f32> {
            w.iter()
                .zip(&t)
                .map(|(&wi, &ti)| (-mu * wi).clamp(-ti, 1.0 - ti))
                .collect()
        };
        let phi =
            |mu: f32| -> f32 { gap + w.iter().zip(step(mu)).map(|(a, c)| a * c).sum::<f32>() };
        let (mut lo, mut hi) = (0f32, 1f32);
        while phi(hi) > 0.0 {
            hi *= 2.0;
        }
        for _ in 0..80 {
            let mid = 0.5 * (lo + hi);
            if phi(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let want = step(hi);
        for (i, (g, e)) in d.iter().zip(&want).enumerate() {
            assert!(
                (g - e).abs() < 1e-3,
                "case {case}, coordinate {i}: {g} vs {e}"
            );
        }
    }
}

/// FAB-T finds the same robust accuracy as pyautoattack's on its own (in the reference
/// comparison) and never counts a perturbation larger than ε: every point it breaks at ε is
/// within ε, and what it breaks at a smaller ε it also breaks at a larger one (minimum norm).
#[test]
fn fab_t_breaks_points_within_epsilon_only() {
    let device = cpu();
    let model = demo_model(&device);
    let batch = demo_batch(&model, 0, 16);
    let attack = build(AttackSpec {
        steps: Some(20),
        n_target_classes: Some(3),
        ..AttackSpec::named("fab-t")
    });
    let mut broken_small = Vec::new();
    for (i, eps) in [0.05f32, 0.15].into_iter().enumerate() {
        let out = attack_at(&model, attack.as_ref(), &batch, eps, 0).unwrap();
        for j in 0..batch.len() {
            assert!(out.perturbation[j] <= eps + 1e-6);
            if i == 0 {
                broken_small.push(out.success[j]);
            } else if broken_small[j] {
                assert!(out.success[j], "sample {j} broken at 0.05 but not at 0.15");
            }
        }
    }
    assert!(
        broken_small.iter().any(|&b| b),
        "FAB-T broke nothing at 0.05"
    );
}

/// MI-FGSM is deterministic (no random start): on all 1000 demo images it agrees with
/// torchattacks' MIFGSM (`tests/reference/mifgsm_ref.json`, made by `mifgsm_ref.py`) point by
/// point, but for at most 2 images per ε whose sign of a tiny gradient component float32
/// summation order can flip.
#[test]
fn mifgsm_matches_torchattacks_point_by_point() {
    let path = root().join("crates/robust-attacks/tests/reference/mifgsm_ref.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let device = cpu();
    let model = demo_model(&device);
    for (key, res) in r["eps"].as_object().unwrap() {
        let eps: f32 = key.parse().unwrap();
        let plan = AttackPlan {
            attack: build(AttackSpec::named("mifgsm")),
            eps: vec![eps],
            target: TargetMode::None,
        };
        let mut sweep = Sweep::new(vec![plan], 10, 0, 0);
        for start in (0..1000).step_by(500) {
            let b = demo_batch(&model, start, 500);
            sweep
                .run_batch(&model, b.x, b.labels, b.indices, || {})
                .unwrap();
        }
        let theirs: Vec<bool> = res["robust"]
            .as_str()
            .unwrap()
            .chars()
            .map(|c| c == '1')
            .collect();
        assert_eq!(
            theirs.len(),
            1000,
            "eps {key}: the reference has no flag per image"
        );
        let differ = sweep.stats[0][0]
            .robust
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            differ <= 2,
            "eps {key}: {differ} of 1000 images differ from torchattacks"
        );
    }
}
