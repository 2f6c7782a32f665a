//! Writes the PlantUML diagrams of the state graph and the read model into a folder
//! (`make diagrams` passes `resources`). With `--check` it writes nothing and fails when a file is
//! out of date.

use std::path::PathBuf;
use std::process::ExitCode;

use delivery_workflows::{DELIVERY_ORDER_V1, diagrams};

const DATA_MODEL: &str = include_str!("../../../resources/data-model.yaml");

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut dir = None;
    for arg in args.by_ref() {
        match arg.as_str() {
            "--check" => check = true,
            other => dir = Some(PathBuf::from(other)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: graphgen [--check] <resources-dir>");
        return ExitCode::from(2);
    };
    let files = match diagrams::all(&DELIVERY_ORDER_V1, DATA_MODEL) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("resources/data-model.yaml: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = 0;
    for (name, contents) in files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == contents {
            println!("up to date  {}", path.display());
        } else if check {
            println!("STALE       {}", path.display());
            stale += 1;
        } else if let Err(error) = std::fs::write(&path, contents) {
            eprintln!("writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("written     {}", path.display());
        }
    }
    if stale > 0 {
        eprintln!("{stale} diagram(s) out of date: run `make diagrams`");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
