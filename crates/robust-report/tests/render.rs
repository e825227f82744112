//! Rendering tests: escaping of hostile strings, self-containment, snapshots of the text
//! renderings and well-formedness of the JUnit XML.

mod common;

use common::{history_of, realistic_run, IMG, SCRIPT};
use robust_report::*;

fn assert_no_raw_hostile_markup(text: &str, what: &str) {
    for needle in [SCRIPT, IMG, "<script", "<img src=x", "onerror=alert(1)>"] {
        assert!(
            !text.contains(needle),
            "{what} contains unescaped {needle:?}"
        );
    }
}

#[test]
fn html_escapes_every_hostile_string() {
    let run = realistic_run();
    let history = history_of(&run);
    let html = render_html(
        &run,
        &HtmlOptions {
            history: Some(&history),
            ..HtmlOptions::default()
        },
    )
    .unwrap();
    assert_no_raw_hostile_markup(&html, "HTML");
    // The hostile names are shown, escaped: in the summary, the heat map and the examples.
    let escaped_script = "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;";
    assert!(
        html.matches(escaped_script).count() >= 4,
        "escaped class name missing"
    );
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn svg_text_from_plotters_is_escaped() {
    let mut run = realistic_run();
    // Attack labels end up as legend text inside the plotters SVG.
    run.attacks[0].label = SCRIPT.into();
    run.attacks[1].label = IMG.into();
    for w in &mut run.worst_case {
        w.attacks = vec![SCRIPT.into(), IMG.into()];
    }
    run.examples.clear();
    run.gate = None;
    run.checks.clear();
    let history = history_of(&run);
    let html = render_html(
        &run,
        &HtmlOptions {
            history: Some(&history),
            ..HtmlOptions::default()
        },
    )
    .unwrap();
    assert_no_raw_hostile_markup(&html, "HTML with hostile attack labels");
    // Plotters' own escaping, in the caption of a history chart (a <text> element).
    assert!(
        html.contains(">\n&lt;script&gt;alert(1)&lt;/script&gt;: robust accuracy over"),
        "caption text missing"
    );
    assert!(html.contains(">\n&quot;&gt;&lt;img src=x onerror=alert(1)&gt;: robust accuracy over"));
    // The template's escaping, in the legends below the charts.
    assert!(html.contains("</i>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</span>"));
}

#[test]
fn html_is_self_contained() {
    let run = realistic_run();
    let history = history_of(&run);
    let html = render_html(
        &run,
        &HtmlOptions {
            history: Some(&history),
            ..HtmlOptions::default()
        },
    )
    .unwrap();
    // The only URL is the SVG namespace, which is a name, not a fetch.
    let urls: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|u| !u.starts_with("http://www.w3.org/2000/svg"))
        .collect();
    assert!(urls.is_empty(), "external URLs: {urls:?}");
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i + attr.len()..];
            assert!(
                value.starts_with("data:image/png;base64,") || value.starts_with('#'),
                "{attr} not inline: {}",
                &value[..40.min(value.len())]
            );
        }
    }
    assert!(!html.contains("<link") && !html.contains("@import") && !html.contains("url("));
    // Four examples, three images each.
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 12);
    // Two accuracy charts (one per norm) and three history charts (one per attack).
    assert_eq!(html.matches("<svg").count(), 5);
}

#[test]
fn html_has_every_section_and_the_numbers() {
    let run = realistic_run();
    let html = render_html(&run, &HtmlOptions::default()).unwrap();
    for id in [
        "summary",
        "accuracy",
        "per-class",
        "examples",
        "checks",
        "gate",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    assert!(!html.contains("<section id=\"history\">"));
    // Summary facts.
    for fact in [
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "[3 × 32 × 32]",
        "[0, 1]",
        "mean [0.4914, 0.4822, 0.4465], std [0.247, 0.243, 0.261]",
        "NVIDIA H100 (Vulkan)",
        "2025-03-14T09:26:53Z",
        "183.4 s",
    ] {
        assert!(html.contains(fact), "missing {fact}");
    }
    // Table: PGD-10 at 8/255.
    assert!(html.contains("<td class=\"num\">8&#x2f;255</td><td class=\"num\">6.0%</td>"));
    // Heat map: a class without samples is grey with a dash.
    assert!(html.contains("style=\"background: #f0f0f0\">—</td>"));
    // Gate: failed, with the missing-data-free failing rows.
    assert!(html.contains("Regression gate: <span class=\"badge fail\">failed</span>"));
    // Checks: the gradient warning.
    assert!(html.contains("<span class=\"badge warn\">warn</span>"));
}

#[test]
fn history_with_one_entry_explains_why_there_is_no_chart() {
    let run = realistic_run();
    let history = vec![HistoryEntry::from_run(&run)];
    let html = render_html(
        &run,
        &HtmlOptions {
            history: Some(&history),
            ..HtmlOptions::default()
        },
    )
    .unwrap();
    assert!(html.contains("The history has 1 run"));
    assert_eq!(html.matches("<svg").count(), 2);
}

#[test]
fn heat_map_keeps_the_weakest_classes_when_there_are_too_many() {
    let run = realistic_run();
    let html = render_html(
        &run,
        &HtmlOptions {
            max_heatmap_classes: 3,
            ..HtmlOptions::default()
        },
    )
    .unwrap();
    assert!(html.contains("Showing the 3 of 10 classes"));
    // Classes 0..2 have the lowest per-class accuracy in the fixture.
    let pgd = &html[html.find("<h3>PGD-10 Linf</h3>").unwrap()..];
    let table = &pgd[..pgd.find("</table>").unwrap()];
    assert_eq!(table.matches("<th class=\"class\">").count(), 3);
    assert!(table.contains("airplane") && table.contains("automobile") && table.contains("bird"));
}

#[test]
fn markdown_snapshot() {
    let md = render_markdown(&realistic_run());
    assert_no_raw_hostile_markup(&md, "Markdown");
    insta::assert_snapshot!(md);
}

#[test]
fn markdown_escapes_table_breaking_labels() {
    let mut run = realistic_run();
    run.attacks[0].label = "a|b <i>".into();
    let md = render_markdown(&run);
    assert!(md.contains("### a\\|b &lt;i&gt; (L∞)"), "{md}");
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!(render_junit(&realistic_run()));
}

#[test]
fn junit_is_well_formed_and_counts_match() {
    let mut run = realistic_run();
    // Hostile text everywhere the XML takes text, including control characters.
    run.checks[0].title = format!("{SCRIPT} & {IMG} \u{1}");
    run.checks[0].status = CheckStatus::Fail;
    run.checks[0].message = "line one\nline two ]]> <![CDATA[".into();
    run.gate.as_mut().unwrap().rows[0].attack = IMG.into();
    let xml = render_junit(&run);
    assert_no_raw_hostile_markup(&xml, "JUnit");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let cases: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let gate = run.gate.as_ref().unwrap();
    assert_eq!(cases.len(), gate.rows.len() + run.checks.len());
    let failures = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .count();
    let expected = gate.rows.iter().filter(|r| !r.passed).count()
        + run
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count();
    assert_eq!(failures, expected);
    assert_eq!(
        root.attribute("failures"),
        Some(expected.to_string().as_str())
    );
    // Attribute values round-trip exactly (minus the control character).
    assert_eq!(cases[0].attribute("classname"), Some(IMG));
    let check_case = cases[gate.rows.len()];
    assert_eq!(
        check_case.attribute("name"),
        Some(format!("{SCRIPT} & {IMG} ").as_str())
    );
    let failure = check_case
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.text(), Some("line one\nline two ]]> <![CDATA["));
    // Warnings pass, with the message in system-out.
    let warn = cases
        .iter()
        .find(|c| {
            c.attribute("classname") == Some("reliability.gradients")
                && c.children().any(|n| n.has_tag_name("system-out"))
        })
        .expect("a warning case");
    assert!(!warn.children().any(|n| n.has_tag_name("failure")));
}

#[test]
fn results_file_round_trip_keeps_the_rendering() {
    let run = realistic_run();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    run.write(&path).unwrap();
    let back = RunResults::read(&path).unwrap();
    // serde_json's default float parser may be off by one unit in the last place (its
    // `float_roundtrip` feature is not enabled in this workspace), so compare what a reader
    // sees rather than the bits.
    assert_eq!(back.attacks.len(), run.attacks.len());
    assert!((back.attacks[1].points[3].robust_accuracy - 0.06).abs() < 1e-12);
    assert_eq!(render_markdown(&back), render_markdown(&run));
    assert_eq!(render_junit(&back), render_junit(&run));
    assert_eq!(
        render_html(&back, &HtmlOptions::default()).unwrap(),
        render_html(&run, &HtmlOptions::default()).unwrap()
    );
}
