//! docker-compose.yml describes the same stack as `make run` and the README: the same services,
//! and as host ports exactly those the README's table marks published, which are only the
//! gateway's and the web UIs'. Without a Docker engine here, what `docker compose config` and
//! `up` would refuse is checked from the files: references between services, volumes, build
//! stages and the configuration the containers read; credentials come only from the environment.

use std::collections::BTreeSet;

use delivery_tests::workspace_root;
use serde_yaml::Value;

const SERVICES: [&str; 6] = [
    "temporal",
    "postgres",
    "redis",
    "partner-sim",
    "worker",
    "api",
];

fn compose() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    serde_yaml::from_str(&text).expect("docker-compose.yml is YAML")
}

/// Host ports published by the compose services (`"7233:7233"` or `"127.0.0.1:7233:7233"`).
fn published_ports(compose: &Value) -> BTreeSet<u16> {
    let services = compose["services"].as_mapping().expect("services");
    let mut ports = BTreeSet::new();
    for (_, service) in services {
        for entry in service["ports"].as_sequence().into_iter().flatten() {
            let text = match entry {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("unsupported ports entry {other:?}"),
            };
            let parts: Vec<&str> = text.split(':').collect();
            // HOST:CONTAINER or IP:HOST:CONTAINER: the host port is second from the end.
            let host = if parts.len() >= 2 {
                parts[parts.len() - 2]
            } else {
                parts[0]
            };
            ports.insert(host.parse().unwrap_or_else(|_| panic!("port in {text:?}")));
        }
    }
    ports
}

/// The only ports compose may publish: the gateway and the web UIs (Temporal's, Prometheus,
/// Grafana). Temporal's frontend (no auth), PostgreSQL, Redis, the simulator and the worker's
/// metrics stay on the compose network.
const PUBLISHABLE: [u16; 4] = [8080, 8233, 9090, 3000];

/// One row of the README's `| service | port | docker compose | what |` table.
struct ReadmePort {
    port: u16,
    /// What the `docker compose` column says: `published ...` or `compose network only`.
    published: bool,
}

/// The rows of the README table whose header has `service`, `port` and `docker compose` columns.
fn readme_ports() -> Vec<ReadmePort> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let mut lines = readme.lines();
    let header = lines
        .by_ref()
        .find(|l| {
            let l = l.to_lowercase();
            l.starts_with('|') && l.contains("| service") && l.contains("| port")
        })
        .expect("README.md has a `| service | port | docker compose | ... |` table");
    let columns: Vec<String> = header.split('|').map(|c| c.trim().to_lowercase()).collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("README table has no {name:?} column: {header}"))
    };
    let (port_column, compose_column) = (column("port"), column("docker compose"));
    lines
        .skip(1) // the |---| row
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let cell = cells.get(port_column).copied().unwrap_or_default();
            let compose = cells.get(compose_column).copied().unwrap_or_default();
            let published = match compose {
                c if c.starts_with("published") => true,
                "compose network only" => false,
                other => panic!(
                    "README row {l:?}: the docker compose cell {other:?} is neither `published ...` nor `compose network only`"
                ),
            };
            ReadmePort {
                port: cell
                    .parse()
                    .unwrap_or_else(|_| panic!("README port cell {cell:?} is not a port")),
                published,
            }
        })
        .collect()
}

#[test]
fn compose_has_every_service_of_the_local_stack() {
    let compose = compose();
    for service in SERVICES {
        assert!(
            !compose["services"][service].is_null(),
            "docker-compose.yml lacks service {service}"
        );
    }
}

/// compose publishes exactly the ports the README's table marks published, and those are only
/// the gateway and the web UIs; every other port of the table is `make run`'s alone.
#[test]
fn compose_ports_match_the_readme_table() {
    let compose = published_ports(&compose());
    let readme = readme_ports();
    let publishable = BTreeSet::from(PUBLISHABLE);
    let beyond: Vec<_> = compose.difference(&publishable).collect();
    assert!(
        beyond.is_empty(),
        "docker-compose.yml publishes {beyond:?}; only the gateway and the web UIs ({PUBLISHABLE:?}) may be published"
    );
    let marked: BTreeSet<u16> = readme
        .iter()
        .filter(|r| r.published)
        .map(|r| r.port)
        .collect();
    let only_compose: Vec<_> = compose.difference(&marked).collect();
    let only_readme: Vec<_> = marked.difference(&compose).collect();
    assert!(
        only_compose.is_empty() && only_readme.is_empty(),
        "ports differ: published by docker-compose.yml only {only_compose:?}; marked published in README.md's table only {only_readme:?}"
    );
    // The table still lists every port of the local stack (`make run` uses them all).
    let listed: BTreeSet<u16> = readme.iter().map(|r| r.port).collect();
    for port in [8080, 7233, 8233, 8090, 9464, 5432, 6379] {
        assert!(
            listed.contains(&port),
            "README.md's table lacks port {port}"
        );
    }
}

/// Every `${...}` in the file: compose interpolation, as `docker compose config` reads it.
fn interpolations(text: &str) -> Vec<&str> {
    text.match_indices("${")
        .map(|(start, _)| {
            let rest = &text[start + 2..];
            &rest[..rest
                .find('}')
                .expect("an unclosed ${ in docker-compose.yml")]
        })
        .collect()
}

#[test]
fn compose_interpolations_are_well_formed_and_secrets_have_no_default() {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml")).unwrap();
    let found = interpolations(&text);
    assert!(!found.is_empty(), "secrets come from the environment");
    for expression in found {
        let name_end = expression
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(expression.len());
        let (name, modifier) = expression.split_at(name_end);
        assert!(!name.is_empty(), "${{{expression}}} names no variable");
        assert!(
            modifier.is_empty()
                || [":-", "-", ":?", "?"]
                    .iter()
                    .any(|m| modifier.starts_with(m)),
            "${{{expression}}} is not compose interpolation syntax"
        );
        let secret = ["SECRET", "PASSWORD", "TOKEN", "KEY"]
            .iter()
            .any(|word| name.contains(word));
        if secret {
            assert!(
                modifier.starts_with(":?"),
                "${{{expression}}}: a secret must be required from the environment (`${{{name}:?...}}`), never defaulted"
            );
        }
    }
}

/// A setting that is a credential (by its name, or one an image is known to default) takes its
/// value from the environment, required: no service runs with a literal or published secret.
#[test]
fn compose_credentials_are_required_from_the_environment() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for (key, value) in service["environment"].as_mapping().into_iter().flatten() {
            let key = key.as_str().unwrap();
            let credential = ["SECRET", "PASSWORD", "TOKEN", "KEYS", "_KEY"]
                .iter()
                .any(|word| key.contains(word));
            if !credential {
                continue;
            }
            let value = value.as_str().unwrap_or_default();
            assert!(
                value.contains("${") && interpolations(value).iter().all(|e| e.contains(":?")),
                "service {name}: {key} must come from the environment, required (`${{NAME:?...}}`), not {value:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} credential settings found");
    // Grafana's admin password defaults to a published one unless it is set.
    assert!(
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
            .as_str()
            .is_some_and(|v| v.contains(":?")),
        "Grafana's admin password comes from the environment"
    );
}

#[test]
fn compose_images_are_pinned_and_ports_stay_on_loopback() {
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("service {name} names no image"));
        let tag = image
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_else(|| panic!("service {name}: image {image} has no tag"));
        // `2.53.2` or `v2.53.2` (Prometheus tags carry the `v`), never `latest` or `2`.
        let version = tag.strip_prefix('v').unwrap_or(tag);
        assert!(
            version.contains('.') && version.starts_with(|c: char| c.is_ascii_digit()),
            "service {name}: image {image} is not pinned to a version (major.minor at least)"
        );
        for entry in service["ports"].as_sequence().into_iter().flatten() {
            let entry = entry.as_str().unwrap_or_default();
            assert!(
                entry.starts_with("127.0.0.1:"),
                "service {name} publishes {entry:?} beyond loopback"
            );
        }
    }
}

/// The volume entries of a service, as (source, target): `./path:/target[:ro]` or `name:/target`.
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|entry| {
            let mut parts = entry.split(':');
            let source = parts.next().unwrap_or_default().to_owned();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("volume {entry:?} names no target"))
                .to_owned();
            (source, target)
        })
        .collect()
}

/// What `docker compose config` would refuse or what would fail at `up`, checked without Docker:
/// every `depends_on` names a service (with a healthcheck when it waits for `service_healthy`),
/// every named volume is declared and every bind mount exists in the repository, every build
/// target is a stage of the Dockerfile, and the files the containers read at the paths they are
/// given are the ones mounted there (Prometheus's rules, Grafana's dashboards).
#[test]
fn compose_references_resolve() {
    let root = workspace_root();
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let stages: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| line.split_once(" AS ").map(|(_, stage)| stage.trim()))
        .collect();
    let declared_volumes: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    let mut problems = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let depends = &service["depends_on"];
        let dependencies: Vec<(&str, Option<&str>)> = match depends {
            Value::Sequence(list) => list
                .iter()
                .filter_map(|d| d.as_str())
                .map(|d| (d, None))
                .collect(),
            Value::Mapping(map) => map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?, v["condition"].as_str())))
                .collect(),
            _ => Vec::new(),
        };
        for (dependency, condition) in dependencies {
            if !names.contains(dependency) {
                problems.push(format!("{name} depends on {dependency}, no such service"));
            } else if condition == Some("service_healthy")
                && services[dependency]["healthcheck"].is_null()
            {
                problems.push(format!(
                    "{name} waits for {dependency} to be healthy, which has no healthcheck"
                ));
            }
        }
        if let Some(target) = service["build"]["target"].as_str()
            && !stages.contains(target)
        {
            problems.push(format!(
                "{name} builds Dockerfile stage {target}, which it lacks"
            ));
        }
        for (source, _) in mounts(service) {
            if let Some(path) = source.strip_prefix("./") {
                if !root.join(path).exists() {
                    problems.push(format!("{name} mounts {source}, which does not exist"));
                }
            } else if !declared_volumes.contains(source.as_str()) {
                problems.push(format!("{name} mounts volume {source}, not declared"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Prometheus reads its rules where the compose file mounts them.
    let prometheus: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("resources/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let prometheus_mounts = mounts(&services["prometheus"]);
    for rules in prometheus["rule_files"].as_sequence().unwrap() {
        let rules = rules.as_str().unwrap();
        assert!(
            prometheus_mounts.iter().any(|(_, target)| target == rules),
            "prometheus.yml reads {rules}, which compose does not mount"
        );
    }
    // Grafana's dashboard provider reads the folder compose mounts the dashboards at.
    let grafana_mounts = mounts(&services["grafana"]);
    let providers_dir = root.join("resources/grafana/provisioning/dashboards");
    for entry in std::fs::read_dir(&providers_dir).unwrap() {
        let provider: Value =
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for p in provider["providers"].as_sequence().into_iter().flatten() {
            let path = p["options"]["path"].as_str().unwrap();
            assert!(
                grafana_mounts.iter().any(|(_, target)| target == path),
                "Grafana's dashboard provider reads {path}, which compose does not mount"
            );
        }
    }
    // Grafana's home dashboard is one of the mounted dashboards.
    let home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    let served = grafana_mounts
        .into_iter()
        .find_map(|(source, target)| {
            home.strip_prefix(&format!("{target}/"))
                .map(|file| root.join(source.trim_start_matches("./")).join(file))
        })
        .unwrap_or_else(|| panic!("Grafana's home dashboard {home} is not under a mount"));
    assert!(served.is_file(), "{} does not exist", served.display());
}

/// Every `datasource` a dashboard names anywhere (panels, targets, variables).
fn datasources(value: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(ds) = map.get("datasource") {
                found.push(ds.clone());
            }
            map.values().for_each(|v| datasources(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| datasources(v, found)),
        _ => {}
    }
}

/// Each dashboard's panels query a data source Grafana is provisioned with (by uid and type), so
/// none opens on "data source not found".
#[test]
fn dashboards_name_the_provisioned_data_source() {
    let root = workspace_root();
    let provisioned: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            root.join("resources/grafana/provisioning/datasources/prometheus.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    let known: BTreeSet<(String, String)> = provisioned["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().unwrap().to_owned(),
                d["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut dashboards = 0;
    for entry in std::fs::read_dir(root.join("resources/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut found = Vec::new();
        datasources(&dashboard, &mut found);
        assert!(!found.is_empty(), "{} names no data source", path.display());
        for ds in found {
            let key = (
                ds["uid"].as_str().unwrap_or_default().to_owned(),
                ds["type"].as_str().unwrap_or_default().to_owned(),
            );
            assert!(
                known.contains(&key),
                "{} queries data source {ds}, which Grafana is not provisioned with ({known:?})",
                path.display()
            );
        }
        dashboards += 1;
    }
    assert!(dashboards >= 4, "{dashboards} dashboards");
}
