//! The deployment files parse and say what they must: the compose file and
//! the Kubernetes manifests are read as YAML and checked for their pieces
//! (a 3-node NATS cluster, two ingest and two query replicas, gRPC health
//! probes, resources, disruption budgets, non-root users), and every
//! setting they pass is one the `truce` command line knows. (Nothing here
//! builds the image or talks to a cluster.)

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn documents(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// A mapping's value, following a `<<` merge key when the key is not
/// there itself.
fn get<'a>(node: &'a Yaml, key: &str) -> &'a Yaml {
    let direct = &node[key];
    if !direct.is_badvalue() {
        return direct;
    }
    &node["<<"][key]
}

/// The `--help` text of `truce <command>`, which lists every flag's
/// environment variable.
fn help(command: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args([command, "--help"])
        .output()
        .expect("run truce");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn known(variable: &str) -> bool {
    ["ingest", "query"]
        .iter()
        .any(|command| help(command).contains(&format!("[env: {variable}=")))
}

#[test]
fn the_compose_file_runs_a_nats_cluster_and_two_replicas_of_each_service() {
    let compose = documents(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_hash().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for expected in [
        "nats-1", "nats-2", "nats-3", "ingest-1", "ingest-2", "query-1", "query-2",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    for (name, service) in services {
        let name = name.as_str().expect("name");
        assert!(
            !get(service, "healthcheck")["test"].is_badvalue(),
            "{name} has no health check"
        );
        assert!(!service["volumes"].is_badvalue(), "{name} keeps nothing");
        if name.starts_with("ingest") || name.starts_with("query") {
            let test: Vec<&str> = service["healthcheck"]["test"]
                .as_vec()
                .expect("test")
                .iter()
                .filter_map(Yaml::as_str)
                .collect();
            assert!(
                test.contains(&"health"),
                "{name} is not checked over gRPC health: {test:?}"
            );
            let command = service["command"].as_vec().expect("command");
            let log = command
                .iter()
                .filter_map(Yaml::as_str)
                .find(|a| a.starts_with("nats://"));
            assert!(
                log.is_some_and(|l| l.split(',').count() == 3),
                "{name} does not use all three NATS nodes"
            );
        }
    }
    let environment = compose["x-truce"]["environment"].as_hash().expect("environment");
    for variable in environment.keys().filter_map(Yaml::as_str) {
        assert!(known(variable), "{variable} is no truce setting");
    }
    let nats = std::fs::read_to_string(deploy().join("nats.conf")).expect("nats.conf");
    assert!(nats.contains("jetstream") && nats.contains("routes"), "{nats}");
}

#[test]
fn the_kubernetes_manifests_have_probes_resources_budgets_and_secrets() {
    let mut resources = Vec::new();
    let kustomization = documents(&deploy().join("kubernetes/kustomization.yaml")).remove(0);
    for file in kustomization["resources"].as_vec().expect("resources") {
        resources.extend(documents(
            &deploy().join("kubernetes").join(file.as_str().expect("file")),
        ));
    }
    let find = |kind: &str, name: &str| {
        resources
            .iter()
            .find(|r| r["kind"].as_str() == Some(kind) && r["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert_eq!(find("StatefulSet", "nats")["spec"]["replicas"].as_i64(), Some(3));
    for (kind, name, port) in [
        ("Deployment", "truce-ingest", 50051),
        ("StatefulSet", "truce-query", 50052),
    ] {
        let workload = find(kind, name);
        assert_eq!(workload["spec"]["replicas"].as_i64(), Some(2), "{name}");
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{name}");
        let container = &pod["containers"][0];
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["grpc"]["port"].as_i64(), Some(port), "{name} {probe}");
        }
        for bound in ["requests", "limits"] {
            assert!(!container["resources"][bound]["memory"].is_badvalue(), "{name} {bound}");
        }
        find("Service", name);
        find("PodDisruptionBudget", name);
    }
    find("PodDisruptionBudget", "nats");
    find("Secret", "truce-secrets");
    let config = find("ConfigMap", "truce-config")["data"].as_hash().expect("data");
    for variable in config
        .keys()
        .filter_map(Yaml::as_str)
        .filter(|v| v.starts_with("TRUCE_"))
    {
        assert!(
            known(variable) || variable == "TRUCE_LOG",
            "{variable} is no truce setting"
        );
    }
    // TRUCE_LOG is the ingest side's --log; the query side reads it as
    // --upstream.
    assert!(help("ingest").contains("[env: TRUCE_LOG="));
}

#[test]
fn the_image_is_built_in_stages_and_runs_unprivileged_with_a_health_check() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2
    );
    assert!(dockerfile.contains("USER 10001"), "runs as root");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"health\""));
    // The health command exists and fails cleanly when nothing listens.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args(["health", "--address", "http://127.0.0.1:9"])
        .output()
        .expect("run truce health");
    assert!(!output.status.success());
}
