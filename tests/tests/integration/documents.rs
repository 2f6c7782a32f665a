//! The documents point at files that exist: every `docs/…` path named in the README, in the
//! documents under docs/ and in the Prometheus rules (each alert's `runbook_url`), and every
//! relative Markdown link of those documents. An alert whose runbook was renamed would send the
//! operator on call to nothing. And the commands they tell someone to run exist: every `make`
//! target, and every `temporal` CLI subcommand in the CLI `make test` installs.

use std::path::{Path, PathBuf};

use delivery_tests::workspace_root;

/// The files whose references are checked, relative to the workspace root.
fn referencing_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, ext, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ext.contains(&e))
            {
                out.push(path);
            }
        }
    }
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &["md"], &mut files);
    walk(
        &root.join("resources/prometheus"),
        &["yml", "yaml"],
        &mut files,
    );
    files.sort();
    files
}

/// How an alert's `runbook_url` begins: the external label `runbook_base_url` when Prometheus has
/// one, else the runbooks' path in this repository.
const RUNBOOK_BASE: &str =
    "{{ with $externalLabels.runbook_base_url }}{{ . }}{{ else }}docs/runbooks{{ end }}/";

/// The runbook files the alerts of a rules file link, as repository paths; panics on a link that
/// does not begin with [`RUNBOOK_BASE`].
fn runbook_links(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|value| {
            let value = value.trim_matches('\'');
            let file = value
                .strip_prefix(RUNBOOK_BASE)
                .unwrap_or_else(|| panic!("a runbook link not under the base: {value}"));
            format!("docs/runbooks/{file}")
        })
        .collect()
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./-".contains(c)
}

/// Every `docs/…` path in `text` that stands on its own (not the tail of a URL or of another
/// path, such as `https://docs.temporal.io/docs/server/`), without trailing punctuation.
fn docs_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in text.match_indices("docs/") {
        if text[..at].chars().next_back().is_some_and(path_char) {
            continue;
        }
        let path: String = text[at..].chars().take_while(|&c| path_char(c)).collect();
        paths.push(path.trim_end_matches('.').to_owned());
    }
    paths
}

/// The targets of the relative Markdown links in `text` (`[words](target)`), without anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for (at, _) in text.match_indices("](") {
        let target: String = text[at + 2..]
            .chars()
            .take_while(|&c| c != ')' && !c.is_whitespace())
            .collect();
        let target = target.split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            links.push(target.to_owned());
        }
    }
    links
}

#[test]
fn every_referenced_document_exists() {
    let root = workspace_root();
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in referencing_files(&root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let mut paths = docs_paths(&text);
        if name.ends_with("delivery.rules.yml") {
            paths.extend(runbook_links(&text));
        }
        for path in paths {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{name}: {path}"));
            }
        }
        if name.ends_with(".md") {
            for link in relative_links(&text) {
                checked += 1;
                if !file.parent().unwrap().join(&link).exists() {
                    missing.push(format!("{name}: link ({link})"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} references found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "references to files that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_and_links_and_skips_urls() {
    let text = "See docs/runbooks/restore.md. Or [deploy](runbooks/deploy.md#roll-back), \
                (https://docs.temporal.io/docs/server/x/) and [site](https://example.com/a).\n\
                runbook_url: docs/runbooks/stuck-batch.md";
    assert_eq!(
        docs_paths(text),
        ["docs/runbooks/restore.md", "docs/runbooks/stuck-batch.md"]
    );
    assert_eq!(relative_links(text), ["runbooks/deploy.md"]);
    let rules = format!("          runbook_url: '{RUNBOOK_BASE}stuck-batch.md'\n");
    assert_eq!(runbook_links(&rules), ["docs/runbooks/stuck-batch.md"]);
}

/// The code in a Markdown text: fenced blocks and inline code spans, where commands are written
/// (prose such as "make it" stays out).
fn code_of(text: &str) -> Vec<String> {
    let mut code = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push(line.to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    code
}

/// The `make` targets and the `temporal` subcommand paths (`["workflow", "show"]`) a piece of
/// code runs: commands at the start of a shell command (after `;`, `|`, `&&`, `(`, environment
/// assignments, `sudo`, `nohup`), also inside `docker compose exec <service> …` and after a
/// `--`. A word such as a namespace or a Helm release named `temporal` is not the CLI.
fn commands_in(code: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let is_word = |w: &&&str| {
        w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let is_assignment = |w: &&str| {
        w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
    };
    let mut targets = Vec::new();
    let mut subcommands = Vec::new();
    for segment in code.split([';', '|', '&', '(', ')', '\n']) {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let mut starts = vec![0];
        starts.extend(words.iter().position(|w| *w == "--").map(|i| i + 1));
        for start in starts {
            let mut command = &words[start.min(words.len())..];
            while let Some((first, rest)) = command.split_first()
                && (is_assignment(first) || ["sudo", "nohup", "env", "$"].contains(first))
            {
                command = rest;
            }
            if command.starts_with(&["docker", "compose", "exec"]) && command.len() > 4 {
                command = &command[4..];
            }
            let Some((first, rest)) = command.split_first() else {
                continue;
            };
            if *first == "make" {
                targets.extend(rest.first().filter(is_word).map(|t| (*t).to_owned()));
            } else if *first == "temporal" || first.ends_with("/temporal") {
                let path: Vec<String> = rest
                    .iter()
                    .take_while(is_word)
                    .map(|w| (*w).to_owned())
                    .collect();
                if !path.is_empty() {
                    subcommands.push(path);
                }
            }
        }
    }
    (targets, subcommands)
}

#[test]
fn the_command_scan_reads_code_only() {
    let text = "Run `make test` to make it so.\n```bash\nCHAOS_MINUTES=1 make chaos\n\
                .venv/bin/temporal workflow show -w x\ntemporal worker deployment describe --name d\n\
                kubectl -n temporal create secret generic x\nhelm install temporal temporal/temporal\n\
                for ns in temporal delivery; do echo; done\n\
                docker compose exec temporal temporal workflow list\n\
                kubectl exec deploy/x -- temporal operator namespace list\n```\n";
    let code = code_of(text).join("\n");
    let (targets, subcommands) = commands_in(&code);
    assert_eq!(targets, ["test", "chaos"]);
    assert_eq!(
        subcommands,
        [
            vec!["workflow", "show"],
            vec!["worker", "deployment", "describe"],
            vec!["workflow", "list"],
            vec!["operator", "namespace", "list"],
        ]
    );
}

/// Every `make` target and every `temporal` CLI subcommand the documents tell someone to run
/// exists: the Makefile has the target, and the CLI `make test` installs knows the command (its
/// `--help` answers). A renamed target or a CLI upgrade cannot leave a runbook step that fails.
#[test]
fn documented_make_targets_and_temporal_commands_exist() {
    let root = workspace_root();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let known_targets: Vec<&str> = makefile
        .lines()
        .filter_map(|line| line.split_once(':').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .collect();
    let mut files = referencing_files(&root);
    files.retain(|f| f.extension().is_some_and(|e| e == "md"));
    files.push(root.join("k8s/README.md"));
    let mut subcommands = std::collections::BTreeMap::<Vec<String>, String>::new();
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for code in code_of(&text) {
            let (targets, paths) = commands_in(&code);
            for target in targets {
                if !known_targets.contains(&target.as_str()) {
                    missing.push(format!("{name}: make {target}"));
                }
            }
            for path in paths {
                subcommands.entry(path).or_insert_with(|| name.clone());
            }
        }
    }
    assert!(
        subcommands.len() >= 5,
        "the documents name temporal commands: {subcommands:?}"
    );
    let cli = delivery_tests::temporal::temporal_cli();
    assert!(
        cli.exists(),
        "no Temporal CLI at {}: run make test",
        cli.display()
    );
    for (path, file) in &subcommands {
        let help = std::process::Command::new(&cli)
            .args(path)
            .arg("--help")
            .output()
            .expect("running the Temporal CLI");
        // The CLI answers an unknown subcommand with its parent's help: the usage line names
        // the whole path only when every word of it is a command.
        let usage = String::from_utf8_lossy(&help.stdout);
        let named = format!("temporal {}", path.join(" "));
        if !help.status.success() || !usage.contains(&named) {
            missing.push(format!("{file}: {named}"));
        }
    }
    assert!(
        missing.is_empty(),
        "documented commands that do not exist: {missing:#?}"
    );
}
