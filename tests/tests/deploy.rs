//! The deployment files parse and say what they must: the compose file and
//! the Kubernetes manifests are read as YAML and checked for their pieces
//! (a 3-node NATS cluster, two ingest and two query replicas, gRPC health
//! probes, resources, disruption budgets, non-root users), and every
//! setting they pass is one the `truce` command line knows. Real checkers
//! then read them as their consumers would: kubernetes-validate against
//! the Kubernetes API schemas, checkov, and docker-compose's `config`;
//! each is also shown a broken copy, to prove it can fail. The image's
//! health check runs against real servers. (Nothing here builds the image
//! or talks to a cluster.)

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

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
    // Hardened pods on pinned images, each behind a network policy.
    for (kind, name) in [
        ("StatefulSet", "nats"),
        ("Deployment", "truce-ingest"),
        ("StatefulSet", "truce-query"),
    ] {
        let pod = &find(kind, name)["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false), "{name}");
        for container in pod["containers"].as_vec().expect("containers") {
            let image = container["image"].as_str().expect("image");
            let tag = image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(tag.is_some_and(|t| t != "latest"), "{name} runs {image}");
            if image.starts_with("truce:") {
                assert_eq!(image, format!("truce:{}", env!("CARGO_PKG_VERSION")), "{name}");
            }
            let context = &container["securityContext"];
            assert_eq!(context["allowPrivilegeEscalation"].as_bool(), Some(false), "{name}");
            assert_eq!(context["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
            assert_eq!(context["capabilities"]["drop"][0].as_str(), Some("ALL"), "{name}");
        }
        let app = find(kind, name)["spec"]["template"]["metadata"]["labels"]["app"]
            .as_str()
            .expect("app label");
        assert!(
            resources.iter().any(|r| r["kind"].as_str() == Some("NetworkPolicy")
                && r["spec"]["podSelector"]["matchLabels"]["app"].as_str() == Some(app)),
            "no network policy for {app}"
        );
    }
    assert!(
        resources.iter().any(|r| r["kind"].as_str() == Some("NetworkPolicy")
            && r["spec"]["podSelector"].as_hash().is_some_and(|h| h.is_empty())),
        "no default-deny network policy"
    );
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
    assert!(healthcheck_script(&dockerfile).contains("truce health"));
    // The health command exists and fails cleanly when nothing listens.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args(["health", "--address", "http://127.0.0.1:9"])
        .output()
        .expect("run truce health");
    assert!(!output.status.success());
}

/// The Kubernetes versions the manifests are validated against: the
/// oldest the namespace's Pod Security label names, and the newest the
/// pinned validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.32.0", "1.37.0"];

/// A checker that tests/run installs (tests/tools/python-tools.sh) into
/// `TRUCE_TEST_VENV`, by default target/test-tools/venv.
fn checker(name: &str) -> PathBuf {
    let venv = std::env::var_os("TRUCE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with tests/run, which installs it (tests/tools/python-tools.sh)",
        path.display()
    );
    path
}

/// Runs `program` in `dir`: whether it succeeded, and what it printed.
fn run(program: &Path, args: &[&str], dir: &Path) -> (bool, String, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The manifests kustomization.yaml applies, as paths relative to `dir`.
fn manifest_files(dir: &Path) -> Vec<String> {
    documents(&dir.join("kustomization.yaml")).remove(0)["resources"]
        .as_vec()
        .expect("resources")
        .iter()
        .map(|file| file.as_str().expect("file").to_owned())
        .collect()
}

/// A copy of the Kubernetes manifests in a temporary directory, with
/// `edits` (file, from, to) made.
fn broken_manifests(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let source = deploy().join("kubernetes");
    for entry in std::fs::read_dir(&source).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.path().join(path.file_name().expect("name"))).expect("copy");
    }
    for (file, from, to) in edits {
        let path = copy.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} has no {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }
    copy
}

/// kubernetes-validate, strict (an unknown field is an error), on every
/// manifest in `dir` against `version`: how many resources passed, or what
/// it said.
fn validate(dir: &Path, version: &str) -> Result<usize, String> {
    let files = manifest_files(dir);
    let mut args = vec!["--strict", "--kubernetes-version", version];
    args.extend(files.iter().map(String::as_str));
    let (ok, stdout, stderr) = run(&checker("kubernetes-validate"), &args, dir);
    if !ok {
        return Err(format!("{stdout}{stderr}"));
    }
    Ok(stdout.lines().filter(|l| l.contains(" passed for resource ")).count())
}

#[test]
fn the_manifests_validate_against_the_kubernetes_api_schemas() {
    let dir = deploy().join("kubernetes");
    let resources: usize = manifest_files(&dir)
        .iter()
        .map(|file| documents(&dir.join(file)).len())
        .sum();
    for version in KUBERNETES_VERSIONS {
        let passed = validate(&dir, version).unwrap_or_else(|e| panic!("Kubernetes {version}: {e}"));
        // A kind without a schema is only a warning: every resource must
        // have been checked.
        assert_eq!(
            passed, resources,
            "Kubernetes {version}: not every resource was checked"
        );
    }
    // A misspelt field, which the API server would silently drop.
    let broken = broken_manifests(&[("ingest.yaml", "readOnlyRootFilesystem", "readOnlyRootFileSystem")]);
    let error = validate(broken.path(), KUBERNETES_VERSIONS[0]).expect_err("a misspelt field passed");
    assert!(error.contains("'readOnlyRootFileSystem' was unexpected"), "{error}");
}

/// What checkov found for one framework.
#[derive(Debug)]
struct Findings {
    framework: String,
    passed: u64,
    /// "CHECK_ID resource" of each failed check.
    failed: Vec<String>,
    /// (check id, the reason given) of each suppressed check.
    skipped: Vec<(String, String)>,
}

/// checkov's findings on `dir`, per framework.
fn checkov(dir: &Path, frameworks: &[&str]) -> Vec<Findings> {
    let mut args = vec!["--directory", ".", "--output", "json", "--skip-download", "--framework"];
    args.extend(frameworks);
    let (_, stdout, stderr) = run(&checker("checkov"), &args, dir);
    let reports: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("checkov printed no report ({e}): {stdout}{stderr}"));
    let reports = match reports {
        serde_json::Value::Array(reports) => reports,
        report => vec![report],
    };
    let checks = |report: &serde_json::Value, kind: &str| -> Vec<serde_json::Value> {
        report["results"][kind].as_array().cloned().unwrap_or_default()
    };
    reports
        .iter()
        .map(|report| {
            let summary = &report["summary"];
            assert_eq!(summary["parsing_errors"], 0, "checkov could not parse: {report}");
            Findings {
                framework: report["check_type"].as_str().expect("check_type").to_owned(),
                passed: summary["passed"].as_u64().expect("passed"),
                failed: checks(report, "failed_checks")
                    .iter()
                    .map(|c| format!("{} {}", c["check_id"].as_str().expect("id"), c["resource"]))
                    .collect(),
                skipped: checks(report, "skipped_checks")
                    .iter()
                    .map(|c| {
                        (
                            c["check_id"].as_str().expect("id").to_owned(),
                            c["check_result"]["suppress_comment"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn checkov_finds_nothing_to_fix_in_the_manifests_or_the_image() {
    let reports = checkov(&deploy(), &["kubernetes", "dockerfile", "secrets"]);
    for framework in ["kubernetes", "dockerfile"] {
        assert!(
            reports.iter().any(|r| r.framework == framework && r.passed > 0),
            "checkov checked no {framework} file: {reports:?}"
        );
    }
    for Findings {
        framework,
        passed,
        failed,
        skipped,
    } in &reports
    {
        assert!(
            failed.is_empty(),
            "checkov {framework}: {} failed: {failed:#?}",
            failed.len()
        );
        for (id, reason) in skipped {
            // Only the digest check, which needs a pushed image, is
            // suppressed, and never without saying why.
            assert_eq!(id, "CKV_K8S_43", "checkov {framework} skips {id}: {reason}");
            assert!(reason.len() > 20 && reason != "No comment provided", "{id}: {reason:?}");
        }
        eprintln!(
            "checkov {framework}: {passed} passed, 0 failed, {} skipped",
            skipped.len()
        );
    }
    // What a careless edit would do: escalation allowed, and a writable
    // root file system by a misspelt field.
    let broken = broken_manifests(&[
        (
            "query.yaml",
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
        ),
        ("ingest.yaml", "readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    ]);
    let reports = checkov(broken.path(), &["kubernetes"]);
    let failed: Vec<&String> = reports.iter().flat_map(|r| &r.failed).collect();
    for (id, resource) in [("CKV_K8S_20", "truce-query"), ("CKV_K8S_22", "truce-ingest")] {
        assert!(
            failed.iter().any(|f| f.starts_with(id) && f.contains(resource)),
            "checkov missed {id} on {resource}: {failed:?}"
        );
    }
}

/// docker-compose's `config` on a copy of compose.yaml whose text is
/// edited by `edit`: the file as Compose resolves it, or what it said.
fn compose_config(edit: impl Fn(String) -> String) -> Result<Yaml, String> {
    let copy = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(deploy().join("compose.yaml")).expect("compose.yaml");
    std::fs::write(copy.path().join("compose.yaml"), edit(text)).expect("write");
    std::fs::copy(deploy().join("nats.conf"), copy.path().join("nats.conf")).expect("copy");
    let (ok, stdout, stderr) = run(
        &checker("docker-compose"),
        &["--file", "compose.yaml", "config"],
        copy.path(),
    );
    if !ok {
        return Err(stderr);
    }
    Ok(YamlLoader::load_from_str(&stdout)
        .expect("compose config prints YAML")
        .remove(0))
}

#[test]
fn compose_reads_the_compose_file_hardened_with_a_health_check_on_each_port() {
    let config = compose_config(|text| text).unwrap_or_else(|e| panic!("docker-compose config: {e}"));
    let services = config["services"].as_hash().expect("services");
    assert_eq!(services.len(), 7);
    for (name, service) in services {
        let name = name.as_str().expect("name");
        let list = |key: &str| -> Vec<&str> {
            service[key]
                .as_vec()
                .map(|v| v.iter().filter_map(Yaml::as_str).collect())
                .unwrap_or_default()
        };
        assert_eq!(service["read_only"].as_bool(), Some(true), "{name}");
        assert_eq!(list("cap_drop"), ["ALL"], "{name}");
        assert!(list("security_opt").contains(&"no-new-privileges:true"), "{name}");
        let image = service["image"].as_str().expect("image");
        assert!(
            !image.ends_with(":latest") && image.contains(':'),
            "{name} runs {image}"
        );
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_vec()
            .expect("health check")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let role = service["command"][0].as_str().unwrap_or("");
        let port = match role {
            "ingest" => 50051,
            "query" => 50052,
            _ => {
                assert!(test.iter().any(|t| t.contains(":8222/healthz")), "{name}: {test:?}");
                continue;
            }
        };
        assert_eq!(image, format!("truce:{}", env!("CARGO_PKG_VERSION")), "{name}");
        assert!(list("tmpfs").iter().any(|t| t.starts_with("/tmp")), "{name}");
        assert!(
            test.contains(&format!("http://127.0.0.1:{port}").as_str()),
            "{name} serves {port} but checks {test:?}"
        );
        assert_eq!(service["ports"][0]["target"].as_i64(), Some(port), "{name}");
    }
    let error = compose_config(|text| text.replacen("read_only: true", "read_only: true\n  cap_dropp: [ALL]", 1))
        .expect_err("an unknown option passed");
    assert!(
        error.contains("Unsupported config option") && error.contains("cap_dropp"),
        "{error}"
    );
}

/// The shell command of the Dockerfile's HEALTHCHECK (`/bin/sh -c ...`).
fn healthcheck_script(dockerfile: &str) -> String {
    let line = dockerfile
        .replace("\\\n", " ")
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK")
        .to_owned();
    let (_, command) = line.split_once(" CMD ").expect("HEALTHCHECK ... CMD");
    let command: Vec<String> = serde_json::from_str(command.trim()).expect("CMD in exec form");
    assert_eq!(command[..2], ["/bin/sh", "-c"], "{command:?}");
    command[2].clone()
}

/// Runs the image's health check with `truce` on PATH, asking
/// `addresses`: whether it found the container healthy.
async fn healthy(script: &str, addresses: &[String]) -> bool {
    let bin = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_truce-testbed"), bin.path().join("truce")).expect("link");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    tokio::process::Command::new("/bin/sh")
        .args(["-c", script])
        .env("PATH", path)
        .env("TRUCE_HEALTH_ADDRESSES", addresses.join(" "))
        .status()
        .await
        .expect("run the health check")
        .success()
}

#[tokio::test]
async fn the_image_health_check_fits_every_role() {
    let script = healthcheck_script(&std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile"));
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = truce_tests::Pair::start(dir.path()).await;
    let url = |addr: std::net::SocketAddr| format!("http://{addr}");
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        url(listener.local_addr().expect("addr"))
    };
    // A server that answers NOT_SERVING, as ingest does after a failed
    // fsync.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sick = url(listener.local_addr().expect("addr"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // The default addresses name the ingest port first, the query port
    // second.
    for (role, addresses, expected) in [
        ("up", [url(pair.ingest), url(pair.query)], true),
        ("ingest", [url(pair.ingest), closed.clone()], true),
        ("query", [closed.clone(), url(pair.query)], true),
        ("nothing listening", [closed.clone(), closed.clone()], false),
        ("one side not serving", [url(pair.ingest), sick.clone()], false),
    ] {
        assert_eq!(healthy(&script, &addresses).await, expected, "{role}: {addresses:?}");
    }
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("TRUCE_HEALTH_ADDRESSES=\"http://127.0.0.1:50051 http://127.0.0.1:50052\""),
        "the default addresses are not the image's two ports"
    );
    pair.stop().await;
}

/// Decodes standard base64 (the Secret's `data`).
fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn ingest_refuses_to_start_with_the_secrets_placeholder_key() {
    let config = documents(&deploy().join("kubernetes/config.yaml"));
    let secret = config
        .iter()
        .find(|d| d["kind"].as_str() == Some("Secret"))
        .expect("the Secret");
    let key = base64(secret["data"]["checkpoint.key"].as_str().expect("checkpoint.key"));
    assert_eq!(
        key.len(),
        32,
        "the placeholder has a key's length, so only the rule refuses it"
    );
    assert!(truce_log::CheckpointSigner::placeholder(&key.clone().try_into().expect("32 bytes")).is_some());

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("checkpoint.key");
    std::fs::write(&path, &key).expect("write the key");
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_truce-testbed"))
        .args([
            "ingest",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "embedded",
            "--insecure-loopback",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--checkpoint-key")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ingest");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingest.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = ingest.kill();
            panic!("ingest started with the placeholder key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = ingest.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{} holds a placeholder, not a signing key", path.display())),
        "{stderr}"
    );
}
