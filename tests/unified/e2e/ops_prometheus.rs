//! Monitoring: the alert rules' unit tests (`promtool test rules`), and a
//! real Prometheus running the repository's configuration against a running
//! stack — every job scraped, the series there, and the provider alerts
//! firing when the provider fails.

use crate::BUILD;
use confab_testkit::{
    eventually,
    prometheus::{config_dir, host_port, Prometheus, Targets},
    Harness, Options, Reply,
};
use serde_json::Value;

/// `ops/prometheus/alerts_test.yml` passes, and the shipped configuration
/// (scrape config and rules) is valid.
#[test]
fn alert_rules_pass_their_unit_tests() {
    let promtool = std::env::var("CONFAB_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let dir = config_dir();
    for args in [
        vec!["test", "rules", "alerts_test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run {promtool} (scripts/deps.sh installs prometheus): {e}")
            });
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn alert<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_stack_and_alerts_on_provider_failures() {
    // Prometheus starts alongside the stack (see `Prometheus::start`).
    let prom_dir = std::path::Path::new(BUILD.target_tmpdir).join("e2e/ops_prometheus.prometheus");
    let (prom, h) = tokio::join!(
        Prometheus::start(&prom_dir, "250ms"),
        Harness::start_with(
            BUILD,
            "ops_prometheus",
            Options {
                env: [
                    ("CONFAB_LLM_RETRIES", "0"),
                    ("CONFAB_LLM_BREAKER_FAILURES", "4"),
                    ("CONFAB_LLM_BREAKER_COOLDOWN_MS", "60000"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                ..Options::default()
            },
        )
    );
    prom.set_targets(Targets {
        auth: &[host_port(&h.auth_url)],
        backend: &[host_port(&h.backend_url)],
        web: &[host_port(&h.web_url)],
    });
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;
    // One failed reply before Prometheus starts: its counter exists from the
    // first scrape, so the next failures are an increase.
    llm.script([Reply::Status(503)]);
    let ack = ws.send_message("p-1", None, "one").await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    assert_eq!(ws.recv_type("error").await["code"], "agent_unavailable");

    // Every job is scraped and up.
    eventually(10, "all three jobs up", || async {
        let up = prom.query("up == 1").await;
        let jobs: Vec<&str> = up
            .iter()
            .filter_map(|s| s["metric"]["job"].as_str())
            .collect();
        ["confab-auth", "confab-backend", "confab-web"]
            .iter()
            .all(|j| jobs.contains(j))
            .then_some(())
    })
    .await;
    // The series the alerts and the console read are there, from the right job.
    for (promql, job) in [
        ("http_requests_total{service=\"auth\"}", "confab-auth"),
        ("ws_connections", "confab-backend"),
        ("web_relayed_sockets", "confab-web"),
        (
            "llm_failures_total{kind=\"server_error\"}",
            "confab-backend",
        ),
        ("llm_breaker_state{provider=\"openai\"}", "confab-backend"),
        ("dependency_up{dependency=\"redis\"}", "confab-auth"),
        ("dependency_up{dependency=\"database\"}", "confab-backend"),
    ] {
        // Each job's series appear at its next scrape after it set them.
        eventually(10, &format!("{promql} from {job}"), || async {
            let r = prom.query(promql).await;
            r.iter().any(|s| s["metric"]["job"] == job).then_some(())
        })
        .await;
    }
    let dep = prom.query("min(dependency_up)").await;
    assert_eq!(
        dep[0]["value"][1], "1",
        "a dependency reported down: {dep:?}"
    );
    // Healthy so far: no provider alert.
    let alerts = prom.alerts().await;
    assert!(alert(&alerts, "ConfabBreakerOpen").is_none(), "{alerts:?}");
    assert!(
        alert(&alerts, "ConfabProviderFailures").is_none(),
        "{alerts:?}"
    );
    assert!(
        alert(&alerts, "ConfabBackendInstanceDown").is_none(),
        "{alerts:?}"
    );

    // The provider fails three more times: the breaker opens (4 failures).
    llm.script([Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    for id in ["p-2", "p-3", "p-4"] {
        ws.send_message(id, Some(&thread), "again").await;
        assert_eq!(ws.recv_type("error").await["code"], "agent_unavailable");
    }
    let alerts = eventually(10, "the provider alerts firing", || async {
        let alerts = prom.alerts().await;
        (alert(&alerts, "ConfabBreakerOpen").is_some()
            && alert(&alerts, "ConfabProviderFailures").is_some())
        .then_some(alerts)
    })
    .await;
    let failures = alert(&alerts, "ConfabProviderFailures").unwrap();
    assert_eq!(failures["labels"]["provider"], "openai");
    assert_eq!(failures["labels"]["kind"], "server_error");
    let breaker = alert(&alerts, "ConfabBreakerOpen").unwrap();
    assert_eq!(breaker["labels"]["instance"], host_port(&h.backend_url));
    assert_eq!(breaker["labels"]["severity"], "page");
}
