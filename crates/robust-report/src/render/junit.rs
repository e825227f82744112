//! JUnit XML, so that CI systems show gate rows and reliability checks as test results.
//!
//! Two test suites: `robust.gate` with one test case per gate row (class name: the attack
//! label; name: `eps=0.1 min_robust_accuracy>=0.8`), failed when the row failed; and
//! `robust.checks` with one test case per reliability check, failed when the check failed.
//! A warning passes, with its message in `<system-out>`.

use std::fmt::Write as _;

use crate::format::eps as fmt_eps;
use crate::gate::threshold_text;
use crate::schema::{CheckStatus, RunResults};

/// Escapes text for XML content and attribute values, and drops characters that XML 1.0
/// cannot contain (control characters other than tab and line breaks).
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

struct Case {
    classname: String,
    name: String,
    failure: Option<(String, String)>,
    system_out: Option<String>,
}

fn suite(xml: &mut String, name: &str, cases: &[Case]) {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        escape_xml(name),
        cases.len()
    );
    for c in cases {
        let _ = write!(
            xml,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
            escape_xml(&c.classname),
            escape_xml(&c.name)
        );
        if c.failure.is_none() && c.system_out.is_none() {
            xml.push_str("/>\n");
            continue;
        }
        xml.push_str(">\n");
        if let Some((message, body)) = &c.failure {
            let _ = writeln!(
                xml,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                escape_xml(message),
                escape_xml(name),
                escape_xml(body)
            );
        }
        if let Some(out) = &c.system_out {
            let _ = writeln!(xml, "      <system-out>{}</system-out>", escape_xml(out));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n");
}

/// Renders the JUnit XML of `run`'s gate and checks.
pub fn render_junit(run: &RunResults) -> String {
    let gate_cases: Vec<Case> = run
        .gate
        .iter()
        .flat_map(|g| g.rows.iter())
        .map(|r| {
            let eps = if r.all_eps {
                "*".to_string()
            } else {
                fmt_eps(r.eps)
            };
            Case {
                classname: r.attack.clone(),
                name: format!("eps={eps} {}", threshold_text(r)),
                failure: (!r.passed).then(|| (r.message.clone(), r.message.clone())),
                system_out: None,
            }
        })
        .collect();
    let check_cases: Vec<Case> = run
        .checks
        .iter()
        .map(|c| {
            let kind = c.id.split('/').next().unwrap_or("check");
            Case {
                classname: format!("reliability.{kind}"),
                name: c.title.clone(),
                failure: (c.status == CheckStatus::Fail)
                    .then(|| (c.title.clone(), c.message.clone())),
                system_out: (c.status == CheckStatus::Warn)
                    .then(|| format!("WARNING: {}", c.message)),
            }
        })
        .collect();
    let tests = gate_cases.len() + check_cases.len();
    let failures = gate_cases
        .iter()
        .chain(&check_cases)
        .filter(|c| c.failure.is_some())
        .count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"robust\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">"
    );
    if run.gate.is_some() {
        suite(&mut xml, "robust.gate", &gate_cases);
    }
    suite(&mut xml, "robust.checks", &check_cases);
    xml.push_str("</testsuites>\n");
    xml
}
