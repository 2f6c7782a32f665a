//! Writes the files generated from the state graph: the PlantUML diagrams of the graph and the
//! read model into a resources folder, and the CloudFormation template that records the graph into
//! a CloudFormation folder (`make diagrams` passes `resources deploy/cloudformation`). With
//! `--check` it writes nothing and fails when a file is out of date.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use delivery_workflows::graph::DELIVERY_ORDER_V1_YAML;
use delivery_workflows::{DELIVERY_ORDER_V1, cloudformation, diagrams};

const DATA_MODEL: &str = include_str!("../../../resources/data-model.yaml");
const USAGE: &str = "usage: graphgen [--check] <resources-dir> [<cloudformation-dir>]";

fn main() -> ExitCode {
    let mut check = false;
    let mut dirs = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            other => dirs.push(PathBuf::from(other)),
        }
    }
    let (resources, cloudformation_dir) = match dirs.as_slice() {
        [resources] => (resources.clone(), None),
        [resources, cfn] => (resources.clone(), Some(cfn.clone())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let diagrams = match diagrams::all(&DELIVERY_ORDER_V1, DATA_MODEL) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("resources/data-model.yaml: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut files: Vec<(PathBuf, String)> = diagrams
        .into_iter()
        .map(|(name, contents)| (resources.join(name), contents))
        .collect();
    if let Some(dir) = cloudformation_dir {
        files.push((
            dir.join(cloudformation::GRAPH_TEMPLATE_FILE),
            cloudformation::graph_template(&DELIVERY_ORDER_V1, DELIVERY_ORDER_V1_YAML),
        ));
    }
    let mut stale = 0;
    for (path, contents) in files {
        match sync(&path, &contents, check) {
            Ok(Outcome::UpToDate) => println!("up to date  {}", path.display()),
            Ok(Outcome::Written) => println!("written     {}", path.display()),
            Ok(Outcome::Stale) => {
                println!("STALE       {}", path.display());
                stale += 1;
            }
            Err(error) => {
                eprintln!("writing {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if stale > 0 {
        eprintln!("{stale} generated file(s) out of date: run `make diagrams`");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

enum Outcome {
    UpToDate,
    Written,
    Stale,
}

/// Compares `path` with `contents`; writes it unless only checking.
fn sync(path: &Path, contents: &str, check: bool) -> std::io::Result<Outcome> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == contents {
        Ok(Outcome::UpToDate)
    } else if check {
        Ok(Outcome::Stale)
    } else {
        std::fs::write(path, contents).map(|()| Outcome::Written)
    }
}
