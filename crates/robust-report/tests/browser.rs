//! Opens the HTML report in headless Chromium: no console errors, and a screenshot that is
//! not blank.
//!
//! Needs `/usr/bin/chromium` (Debian: `apt-get install -y chromium`). Without it the test
//! fails, unless `ROBUST_SKIP_BROWSER=1` is set: a missing browser must be a decision, not
//! an accident. The page and screenshot are kept in `$CARGO_TARGET_TMPDIR/browser-check/`
//! for a person to look at.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{history_of, realistic_run};
use robust_report::{render_html, HtmlOptions};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs chromium with a time limit; returns (exit success, stderr).
fn run_chromium(args: &[String], limit: Duration) -> (bool, String) {
    let mut child = Command::new(CHROMIUM)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let mut stderr = stderr;
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = reader.join().unwrap();
    (status.is_some_and(|s| s.success()), log)
}

#[test]
fn report_renders_in_headless_chromium_without_errors() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("ROBUST_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipping: {CHROMIUM} not found and ROBUST_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "{CHROMIUM} not found: install it (apt-get install -y chromium) or set \
             ROBUST_SKIP_BROWSER=1 to skip this test"
        );
    }

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

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-check");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let page = out.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = out.join("shot.png");
    let profile = tempfile::tempdir().unwrap();

    let args: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.path().display()),
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2000".into(),
        format!("file://{}", page.display()),
    ];
    let (ok, log) = run_chromium(&args, Duration::from_secs(90));
    std::fs::write(out.join("chromium.log"), &log).unwrap();
    assert!(ok, "chromium failed or timed out; log:\n{log}");

    // The page has no script, so the console must stay silent: this chromium logs every
    // console message, errors and uncaught exceptions included, as `<LEVEL>:CONSOLE`, and a
    // resource that failed to load (anything not inline) as a console error too.
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Uncaught") || l.contains(":CONSOLE"))
        .collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    // The hostile class names must not have run: an alert() in headless mode is logged.
    assert!(!log.contains("alert"), "a script ran:\n{log}");

    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("screenshot {} unreadable: {e}", shot.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (1280, 2000));
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 200,
        "screenshot looks blank: {} distinct colours",
        colours.len()
    );
    let white = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    let total = (img.width() * img.height()) as usize;
    assert!(white * 10 < total * 9, "screenshot is over 90% white");
    // The dark header band across the top is there (the stylesheet applied).
    let top = img.get_pixel(640, 10).0;
    assert!(top.iter().all(|&c| c < 80), "header not dark: {top:?}");
}
