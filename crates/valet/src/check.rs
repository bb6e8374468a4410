//! `valet check`: every problem of a config, with its line and column.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    match valet_config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} classes, {} routes, driver {})",
                path.display(),
                config.containers.len(),
                config.routes.len(),
                config.server.driver
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}", valet_config::render_report(&errors));
            ExitCode::FAILURE
        }
    }
}
