//! What an operator deploys beside the service: the alert rules (checked
//! by promtool, and seen to fire in a real Prometheus scraping a running
//! service), the Grafana dashboard (every metric it reads exists), and the
//! Kubernetes manifests (valid against the Kubernetes schemas).

use std::collections::BTreeSet;
use std::process::Command;

use crate::helpers::{TestEnv, free_port};
use crate::live::{LiveRig, limit_order, refuse_nth_order, wait_for_status};
use crate::skips::{cannot_run, runs};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The Kubernetes release the manifests are validated for, and the
/// validator release that knows it.
const KUBERNETES: &str = "1.37.0";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const GRAFANA_SDK: &str = "'grafana-foundation-sdk==1769699379!11.6.0'";
const PROMETHEUS_PACKAGE: &str = "apt-get install prometheus (Debian's package, 2.42)";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|err| panic!("{program}: {err}"))
}

fn assert_success(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !runs("promtool") {
        return cannot_run(
            "the alert rules under promtool",
            "promtool",
            PROMETHEUS_PACKAGE,
        );
    }
    let check = run(
        "promtool",
        &["check", "rules", "docker/prometheus/alerts.yml"],
    );
    assert_success("promtool check rules", &check);
    let test = run(
        "promtool",
        &["test", "rules", "docker/prometheus/alerts.test.yml"],
    );
    assert_success("promtool test rules", &test);
    // Every rule has a test that fires it: a rule without one is a rule
    // nobody has seen work.
    let rules = std::fs::read_to_string(format!("{ROOT}/docker/prometheus/alerts.yml")).unwrap();
    let tests =
        std::fs::read_to_string(format!("{ROOT}/docker/prometheus/alerts.test.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    for rule in rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
    {
        let name = rule["alert"].as_str().expect("an alerting rule");
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no unit test"
        );
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        let anchor = runbook.split('#').nth(1).expect("a README section");
        assert!(
            readme_anchors().contains(anchor),
            "{name}: README has no section #{anchor}"
        );
        assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
    }
}

/// The anchors GitHub gives the README's headings.
fn readme_anchors() -> BTreeSet<String> {
    std::fs::read_to_string(format!("{ROOT}/README.md"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("## ").or(line.strip_prefix("### ")))
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_dead_letter_fires_its_alert_in_a_real_prometheus() {
    if !runs("prometheus") {
        return cannot_run(
            "an alert seen to fire in a real Prometheus",
            "prometheus",
            PROMETHEUS_PACKAGE,
        );
    }
    let env = TestEnv::new().await;
    let app = env.spawn("alerting", &[("SHIM_ENABLED", "false")]).await;
    let target = app.url.trim_start_matches("http://").to_owned();
    let dir = std::env::temp_dir().join(format!("execution-it-prom-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{ROOT}/docker/prometheus/alerts.yml']\n\
             scrape_configs:\n  - job_name: execution\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let api = format!("http://127.0.0.1:{port}/api/v1");
    // Scraped before anything goes wrong: the counter's rise is the alert.
    env.wait_until("Prometheus scrapes the service", || async {
        query(&api, "execution_orders_dead_lettered_total").await == Some(0.0)
    })
    .await;
    assert!(firing(&api).await.is_empty(), "alerts before any fault");

    env.xadd_payload("not an order at all").await;
    env.wait_until("ExecutionDeadLetters fires", || async {
        firing(&api)
            .await
            .contains(&"ExecutionDeadLetters".to_owned())
    })
    .await;
    assert_eq!(
        firing(&api).await,
        vec!["ExecutionDeadLetters".to_owned()],
        "nothing else is wrong"
    );
    let _ = prometheus.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// The value of an instant query's first sample, if any.
async fn query(api: &str, promql: &str) -> Option<f64> {
    let mut url = url::Url::parse(&format!("{api}/query")).ok()?;
    url.query_pairs_mut().append_pair("query", promql);
    let body: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The names of the alerts firing now.
async fn firing(api: &str) -> Vec<String> {
    let Ok(reply) = reqwest::get(format!("{api}/alerts")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = reply.json().await.unwrap_or_default();
    body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["state"] == "firing")
        .filter_map(|alert| alert["labels"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_reads_is_served() {
    let check = Command::new("python3")
        .arg(format!("{ROOT}/tests/dashboard_check.py"))
        .arg(format!(
            "{ROOT}/docker/grafana/dashboards/execution-service.json"
        ))
        .output()
        .expect("python3");
    if check.status.code() == Some(3) {
        return cannot_run(
            "the Grafana dashboard's model",
            &String::from_utf8_lossy(&check.stderr),
            &format!("pip install {GRAFANA_SDK}"),
        );
    }
    assert_success("the dashboard check", &check);
    let names: Vec<String> = String::from_utf8_lossy(&check.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 20, "{names:?}");

    // A live replica, with one order MEXC refuses, so that the live
    // families with labels have a series.
    let env = LiveRig::start().await;
    refuse_nth_order(&env.fake, 1, 10101, "Insufficient balance");
    let app = env.replica("dashboard", &[]).await;
    env.xadd_payload(&limit_order("dash-refused", "0.002", "50000"))
        .await;
    wait_for_status(&env, "dash-refused", "REJECTED").await;
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // `up` is Prometheus' own.
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| *name != "up" && !served.contains(name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard reads metrics the service does not serve: {unknown:?}"
    );
    app.stop().await;
}

#[test]
fn the_kubernetes_manifests_are_valid_for_a_current_kubernetes() {
    let dir = format!("{ROOT}/docker/kubernetes");
    let kustomization: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{dir}/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let file = resource.as_str().unwrap();
        assert!(
            std::path::Path::new(&format!("{dir}/{file}")).is_file(),
            "{file} is listed but missing"
        );
    }
    // What the deployment must say, whatever the validator.
    let deployment: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{dir}/deployment.yaml")).unwrap())
            .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    let consumer = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|var| var["name"] == "CONSUMER_NAME")
        .expect("CONSUMER_NAME");
    assert_eq!(
        consumer["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > 30,
        "shorter than a batch's last try (BATCH_TIMEOUT_SECS, 30 s)"
    );
    // The settings the pod gets are settings the service accepts: the
    // ConfigMap's, then the container's own, secrets as files.
    let configmap: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{dir}/configmap.yaml")).unwrap())
            .unwrap();
    let mut vars: std::collections::HashMap<String, String> = configmap["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let secrets = std::env::temp_dir().join(format!("execution-it-k8s-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&secrets).unwrap();
    for var in container["env"].as_sequence().unwrap() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match var["value"].as_str() {
            // From the pod: its name.
            None => "execution-service-7d9f-abcde".to_owned(),
            Some(_) if name.ends_with("_FILE") => {
                let file = secrets.join(&name);
                std::fs::write(&file, "a-secret-of-16-or-more-characters\n").unwrap();
                file.display().to_string()
            }
            Some(value) => value.to_owned(),
        };
        vars.insert(name, value);
    }
    let settings = execution_service::config::Settings::from_lookup(|name| vars.get(name).cloned());
    let _ = std::fs::remove_dir_all(&secrets);
    let settings = settings.unwrap_or_else(|err| panic!("the manifests' settings: {err}"));
    assert_eq!(
        settings.streams.topology.consumer,
        "execution-service-7d9f-abcde"
    );
    assert!(settings.local.redis_named && settings.local.postgres_named);

    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .map(|path| path.display().to_string())
        .collect();
    if !runs("kubernetes-validate") {
        return cannot_run(
            "the Kubernetes manifests against the Kubernetes schemas",
            "kubernetes-validate",
            &format!("pip install {KUBERNETES_VALIDATE}"),
        );
    }
    let mut args = vec!["--strict", "--kubernetes-version", KUBERNETES];
    args.extend(files.iter().map(String::as_str));
    let output = run("kubernetes-validate", &args);
    assert_success("kubernetes-validate", &output);
}
