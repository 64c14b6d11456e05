//! What the benchmark binaries (`src/bin/bench-*.rs`) share: the binary to
//! run taken from the command line, percentiles, a process's memory from
//! `/proc`, and the machine's load (other work on a shared machine moves
//! every figure, so each is printed with it).

use crate::Build;

/// The harness paths for a benchmark: `bin` is the `confab` binary to run
/// (usually `target/release/confab`); artifacts go under the system's temp
/// folder (`confab-bench/<name>`).
pub fn build(bin: Option<String>) -> Build {
    let bin = bin.unwrap_or_else(|| "target/release/confab".into());
    let tmp = std::env::temp_dir()
        .join("confab-bench")
        .display()
        .to_string();
    Build {
        confab_bin: Box::leak(bin.into_boxed_str()),
        target_tmpdir: Box::leak(tmp.into_boxed_str()),
    }
}

/// The `p` quantile (0–1) of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sort samples (milliseconds) and describe them: `n=… p50=… p99=… max=…`.
pub fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("finite samples"));
    format!(
        "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    )
}

/// A field of /proc/<pid>/status in kB (`VmRSS`, `VmHWM`).
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
