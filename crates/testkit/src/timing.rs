//! Per-flow durations, compared with the baseline in the repository
//! (`tests/unified/e2e/baseline.json`). A flow slower than its baseline by
//! more than the margin is reported (in `target/e2e-report.txt`, which the
//! test command prints), not failed: wall-clock time on a shared machine is a
//! signal to look at, not an assertion.

use std::{io::Write, path::PathBuf, time::Duration};

/// How much slower than its baseline a flow may be before it is reported,
/// unless baseline.json sets `margin`.
pub const DEFAULT_MARGIN: f64 = 0.5;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn report_path() -> PathBuf {
    workspace_root().join("target/e2e-report.txt")
}

/// Append `name`'s time to the report; `phases` (how long the harness took
/// to start, to stop, …) follow it on the line.
pub fn record(name: &str, elapsed: Duration, phases: &[(&str, Duration)]) {
    let secs = elapsed.as_secs_f64();
    let file: serde_json::Value =
        std::fs::read_to_string(workspace_root().join("tests/unified/e2e/baseline.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
    let baseline = file["flows"][name]["seconds"].as_f64();
    let margin = file["margin"].as_f64().unwrap_or(DEFAULT_MARGIN);
    let line = match baseline {
        Some(b) if secs > b * (1.0 + margin) => format!(
            "SLOWER  {name:<40} {secs:>7.2}s  baseline {b:.2}s (+{:.0}%, margin {:.0}%)",
            (secs / b - 1.0) * 100.0,
            margin * 100.0
        ),
        Some(b) => format!("ok      {name:<40} {secs:>7.2}s  baseline {b:.2}s"),
        None => format!("new     {name:<40} {secs:>7.2}s  (no baseline yet)"),
    };
    let phases: Vec<String> = phases
        .iter()
        .map(|(what, d)| format!("{what} {:.2}s", d.as_secs_f64()))
        .collect();
    let line = if phases.is_empty() {
        line
    } else {
        format!("{line}  [{}]", phases.join(", "))
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report_path())
    {
        let _ = writeln!(f, "{line}");
    }
}
