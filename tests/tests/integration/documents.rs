//! The documents point at files that exist: every `docs/…` path named in the README, in the
//! documents under docs/ and in the Prometheus rules (each alert's `runbook_url`), and every
//! relative Markdown link of those documents. An alert whose runbook was renamed would send the
//! operator on call to nothing.

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
